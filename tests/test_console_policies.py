"""The console's policies over HTTP: the catalogue of the area, one policy with who qualifies and the
push through the CSRF check (once however often pressed), a rule tried on a resident (the reasons, the
fields that would decide it, a mistake's column; audited; another committee's resident is a 404), a
policy of another region (404), the take-up report and the XLSX downloads."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from services import policies as pol
from services.models import AuditLog, OutboxMessage, PolicyCase
from tests.helpers import NOW, console_app, console_login, csrf_of, make_account, make_world, zh

SAMPLE = Path(__file__).resolve().parent.parent / "policies" / "sample"
FLSQ_ONLY = """\
policies:
  - code: flsq_only_grant
    region: "FLSQ"
    title: {zh: 枫林专项补贴, en: Fenglin grant}
    summary: {zh: 只在枫林。, en: Only in Fenglin.}
    rule: 'age >= 60'
    benefit:
      text: {zh: 补贴, en: a grant}
    apply:
      where: {zh: 枫林居委会, en: the Fenglin committee}
    valid_from: 2024-01-01
"""


@pytest.fixture
async def world(engine, tmp_path):
    from bot.db import session_factory

    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    for f in SAMPLE.glob("*.yaml"):
        (catalogue / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (catalogue / "zz_flsq.yaml").write_text(FLSQ_ONLY, encoding="utf-8")
    async with session_factory(engine)() as s:
        world = await make_world(s)
        for i, key in enumerate(("wang", "li", "zhao")):  # on the bot: they can be told
            await make_account(s, 600 + i, world.residents[key])
        await pol.load_catalogue(s, catalogue, NOW)
        await s.commit()
        return world


@pytest.fixture
async def app(engine, tmp_path, world):
    async with console_app(engine, tmp_path) as a:
        await console_login(a, world.dxyc_staff.account.id)
        yield a


async def test_the_catalogue_shows_the_policies_of_the_area(app):
    page = await app.client.get("/console/policies")
    text = await page.text()
    assert page.status == 200
    assert "meal_assistance" in text and "老年助餐服务补贴" in text
    assert "flsq_only_grant" not in text
    assert (await app.client.get("/console/policies/flsq_only_grant")).status == 404
    assert (await app.client.get("/console/policies/no_such_policy")).status == 404
    sheet = await app.client.get("/console/policies/catalogue.xlsx")
    rows = list(load_workbook(BytesIO(await sheet.read())).active.iter_rows(values_only=True))
    assert any(row[0] == "meal_assistance" for row in rows) and not any(row[0] == "flsq_only_grant" for row in rows)


async def test_a_policy_counts_who_qualifies_and_tells_them_once_through_the_csrf_check(app, world):
    page = await app.client.get("/console/policies/meal_assistance")
    text = await page.text()
    assert page.status == 200
    assert 'data-figure="eligible">3<' in text  # 王秀英 (81), 李建国 (76, alone), 赵桂兰 (88)
    assert 'data-figure="unknown">1<' in text  # 钱八十: 79, living alone not recorded
    assert 'data-figure="to_push">3<' in text
    csrf = csrf_of(text)
    refused = await app.client.post("/console/policies/meal_assistance/push", data={})
    assert refused.status == 403
    async with app.sessions() as s:
        assert await s.scalar(select(func.count(PolicyCase.id))) == 0
    pushed = await app.client.post("/console/policies/meal_assistance/push", data={"csrf": csrf},
                                   allow_redirects=False)
    assert pushed.status == 303 and pushed.headers["Location"].endswith("done=pushed&n=3")
    again = await app.client.post("/console/policies/meal_assistance/push", data={"csrf": csrf},
                                  allow_redirects=False)
    assert again.headers["Location"].endswith("done=pushed&n=0")
    async with app.sessions() as s:
        assert await s.scalar(select(func.count(OutboxMessage.id)).where(
            OutboxMessage.ref_type == "policy_case")) == 3
        assert await s.scalar(select(func.count(AuditLog.id)).where(AuditLog.action == "policy.push")) == 2
    done = await (await app.client.get(pushed.headers["Location"])).text()
    assert zh("Notices queued for {n} residents.").format(n=3) in done
    assert (await app.client.post("/console/policies/flsq_only_grant/push", data={"csrf": csrf})).status == 404


async def test_a_rule_is_tried_on_a_resident_with_its_reasons_and_audited(app, world):
    zhao = world.residents["zhao"].id
    found = await (await app.client.get("/console/policies/emergency_call_device", params={"q": "赵桂兰"})).text()
    assert f"resident={zhao}" in found
    page = await app.client.get("/console/policies/emergency_call_device", params={"resident": str(zhao)})
    text = await page.text()
    assert page.status == 200
    assert 'data-truth="UNKNOWN"' in text
    assert "家中已有紧急呼叫设备" in text  # the question that would decide it
    meal = await (await app.client.get("/console/policies/meal_assistance", params={"resident": str(zhao)})).text()
    assert 'data-truth="TRUE"' in meal
    young = world.residents["young"].id
    changed = await (await app.client.get("/console/policies/meal_assistance", params={
        "resident": str(young), "rule": "age >= 30"})).text()
    assert 'data-truth="TRUE"' in changed
    broken = await (await app.client.get("/console/policies/meal_assistance", params={
        "resident": str(zhao), "rule": "age >="})).text()
    assert "data-truth" not in broken and zh("column {column}: {message}").split("{")[0] in broken
    async with app.sessions() as s:
        tried = list(await s.scalars(select(AuditLog.target_id).where(AuditLog.action == "policy.test")))
    assert tried.count(zhao) == 3 and young in tried


async def test_another_committees_resident_cannot_be_tried(app, world):
    feng = world.residents["feng"].id
    response = await app.client.get("/console/policies/meal_assistance", params={"resident": str(feng)})
    assert response.status == 404 and "冯志强" not in await response.text()
    assert (await app.client.get("/console/policies/meal_assistance", params={"resident": "x"})).status == 404
    async with app.sessions() as s:
        assert await s.scalar(select(func.count(AuditLog.id)).where(AuditLog.action == "policy.test",
                                                                   AuditLog.target_id == feng)) == 0


async def test_the_take_up_report_and_the_eligible_list_download(app, world):
    page = await app.client.get("/console/policies/take-up")
    text = await page.text()
    assert page.status == 200 and 'data-policy="meal_assistance"' in text and "flsq_only_grant" not in text
    sheet = await app.client.get("/console/policies/take-up.xlsx")
    rows = list(load_workbook(BytesIO(await sheet.read())).active.iter_rows(values_only=True))
    meal = next(row for row in rows if row[0] == "meal_assistance")
    assert meal[2] == 3  # eligible
    eligible = await app.client.get("/console/policies/meal_assistance/eligible.xlsx")
    names = {row[0] for row in load_workbook(BytesIO(await eligible.read())).active.iter_rows(values_only=True)}
    assert {"王秀英", "李建国", "赵桂兰"} <= names and "冯志强" not in names
    async with app.sessions() as s:
        assert await s.scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action == "policy.eligible_export")) == 1
