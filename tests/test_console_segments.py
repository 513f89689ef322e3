"""The console's segments page over HTTP: the list with live counts, the editor's JSON count (or the
mistake's column) as staff type, saving and deleting through the CSRF check, and nothing of another
committee's segments."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services.models import AuditLog, Segment
from services.segments import save_segment
from tests.helpers import NOW, console_app, console_login, csrf_of, make_world, zh


@pytest.fixture
async def world(sqlite_engine):
    from bot.db import session_factory

    async with session_factory(sqlite_engine)() as s:
        world = await make_world(s)
        await save_segment(s, world.dxyc_staff, "高龄", "age >= 80", NOW)
        await save_segment(s, world.flsq_staff, "FLSQ's own", "age >= 60", NOW)
        await s.commit()
        return world


@pytest.fixture
async def app(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path) as a:
        await console_login(a, world.dxyc_staff.account.id)
        yield a


def world_region(html: str) -> str:
    """The region a segment's editor saves it in (its hidden field)."""
    import re

    return re.search(r'name="region" value="(\d+)"', html).group(1)


async def segment_id(app, name: str) -> int:
    async with app.sessions() as s:
        return await s.scalar(select(Segment.id).where(Segment.name == name))


async def test_the_list_counts_the_areas_segments_and_hides_other_committees(app):
    page = await app.client.get("/console/segments")
    html = await page.text()
    assert page.status == 200 and zh("Segments") in html
    assert "高龄" in html and "FLSQ&#39;s own" not in html and "FLSQ's own" not in html
    assert f'href="/console/residents?segment={await segment_id(app, "高龄")}">2</a>' in html
    foreign = await segment_id(app, "FLSQ's own")
    assert (await app.client.get(f"/console/segments/{foreign}")).status == 404
    assert (await app.client.get("/console/segments/99999999999999999999")).status == 404


async def test_the_editor_counts_as_you_type_and_points_at_the_mistake(app):
    ok = await (await app.client.get("/console/segments/count", params={"expression": "age >= 80"})).json()
    assert ok["ok"] and ok["count"] == 2 and ok["text"] == "2 位居民符合条件。"
    broken = await (await app.client.get("/console/segments/count", params={"expression": "age >= "})).json()
    assert not broken["ok"] and broken["position"] == 8 and broken["count"] is None
    assert broken["text"].startswith("第 8 个字符处")
    typo = await (await app.client.get("/console/segments/count", params={"expression": "独居 且 agee > 3"})).json()
    assert typo["position"] == 6 and "age" in typo["text"]
    # without JavaScript the page draws the same answer, the mistake's character marked
    page = await app.client.get("/console/segments", params={"expression": "独居 且 agee > 3"})
    html = await page.text()
    assert "第 6 个字符处" in html and "独居 且 <mark>a</mark>gee &gt; 3" in html


async def test_saving_needs_the_csrf_token_and_a_broken_expression_is_shown_with_its_column(app):
    csrf = csrf_of(await (await app.client.get("/console/segments")).text())
    form = {"name": "独居老人", "expression": "独居 且 年龄 >= 70"}
    assert (await app.client.post("/console/segments", data=form, allow_redirects=False)).status == 403
    assert (await app.client.post("/console/segments", data={**form, "csrf": "forged"},
                                  allow_redirects=False)).status == 403
    assert await segment_id(app, "独居老人") is None
    saved = await app.client.post("/console/segments", data={**form, "csrf": csrf}, allow_redirects=False)
    assert saved.status == 303
    new_id = await segment_id(app, "独居老人")
    assert saved.headers["Location"] == f"/console/segments/{new_id}?done=saved"
    detail = await (await app.client.get(f"/console/segments/{new_id}")).text()
    assert "李建国" in detail and "赵桂兰" in detail and "王秀英" not in detail  # living alone and 70+
    edited = await app.client.post("/console/segments", data={**form, "expression": "独居 且 年龄 >= 85",
                                                              "region": world_region(detail), "csrf": csrf},
                                   allow_redirects=False)
    assert edited.status == 303 and await segment_id(app, "独居老人") == new_id  # replaced, not a second one
    detail = await (await app.client.get(f"/console/segments/{new_id}")).text()
    assert "赵桂兰" in detail and "李建国" not in detail
    broken = await app.client.post("/console/segments", data={"name": "坏", "expression": "年龄 >=", "csrf": csrf})
    assert broken.status == 400 and "第 6 个字符处" in await broken.text()
    assert await segment_id(app, "坏") is None


async def test_deleting_is_scoped_audited_and_needs_the_token(app):
    csrf = csrf_of(await (await app.client.get("/console/segments")).text())
    mine, foreign = await segment_id(app, "高龄"), await segment_id(app, "FLSQ's own")
    assert (await app.client.post(f"/console/segments/{mine}/delete", allow_redirects=False)).status == 403
    assert (await app.client.post(f"/console/segments/{foreign}/delete", data={"csrf": csrf})).status == 404
    done = await app.client.post(f"/console/segments/{mine}/delete", data={"csrf": csrf}, allow_redirects=False)
    assert done.status == 303 and await segment_id(app, "高龄") is None
    assert await segment_id(app, "FLSQ's own") is not None
    async with app.sessions() as s:
        assert await s.scalar(select(AuditLog.id).where(AuditLog.action == "segment.delete")) is not None


async def test_the_list_exports_as_xlsx(app):
    response = await app.client.get("/console/segments/export.xlsx")
    assert response.status == 200 and response.content_type.endswith("spreadsheetml.sheet")
    from io import BytesIO

    from openpyxl import load_workbook

    sheet = load_workbook(BytesIO(await response.read())).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert any(row[:3] == ["高龄", "age >= 80", 2] for row in values)
    assert not any("FLSQ's own" in row for row in values)


async def test_an_expression_too_long_for_a_url_is_posted_with_the_csrf_header(app):
    csrf = csrf_of(await (await app.client.get("/console/segments")).text())
    # 80 compound names: 1,116 characters, more than 6 KB once in a query string (counts.js posts it)
    long = "小区 in (" + ", ".join(f'"阳光花园第{i}期东区"' for i in range(80)) + ') or 年龄 >= 80'
    refused = await app.client.post("/console/segments/count", data={"expression": long})
    assert refused.status == 403
    answer = await (await app.client.post("/console/segments/count", data={"expression": long},
                                          headers={"X-CSRF-Token": csrf})).json()
    assert answer["ok"] and answer["count"] == 2
    broken = await (await app.client.post("/console/segments/count", data={"expression": long + " and"},
                                          headers={"X-CSRF-Token": csrf})).json()
    assert broken["position"] == len(long) + 5
