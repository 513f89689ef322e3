"""The console's polls over HTTP: making one (who may vote counted as the expression is typed, the
draft checks' refusals shown), the results with their chart, the open ballots and the XLSX exports,
closing early; CSRF and scope."""

from __future__ import annotations

from datetime import timedelta
from io import BytesIO

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from services import polls
from services.models import AuditLog, OutboxMessage, Poll, PollStatus
from services.polls import PollConfig, PollDraft
from services.scope import Actor
from tests.helpers import NOW, console_app, console_login, csrf_of, make_account, make_world, zh

CFG = PollConfig()


@pytest.fixture
async def world(sqlite_engine):
    from bot.db import session_factory

    async with session_factory(sqlite_engine)() as s:
        world = await make_world(s)
        world.voters = {key: Actor(account=await make_account(s, 300 + i, world.residents[key]),
                                   resident=world.residents[key], locale="en")
                        for i, key in enumerate(("wang", "li"))}
        await s.commit()
        return world


@pytest.fixture
async def app(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path) as a:
        await console_login(a, world.dxyc_staff.account.id)
        yield a


def form(csrf: str, **kw) -> dict:
    return {"committee": "DXYC", "question": "周末义诊放在哪天？", "options": "周六\n周日", "unit": "resident",
            "rule": "plurality", "eligible": "", "closes_at": "2026-12-05T20:00", "multiple": "1", "csrf": csrf, **kw}


async def test_who_may_vote_is_counted_as_it_is_typed(app):
    everyone = await (await app.client.get("/console/polls/eligible", params={"committee": "DXYC"})).json()
    assert everyone["ok"] and "5" in everyone["text"]
    building = await (await app.client.get("/console/polls/eligible", params={
        "committee": "DXYC", "eligible": 'building == "3"'})).json()
    assert building["ok"] and "2" in building["text"]
    broken = await (await app.client.get("/console/polls/eligible", params={
        "committee": "DXYC", "eligible": "building =="})).json()
    assert not broken["ok"] and broken["position"] == 12
    assert (await app.client.get("/console/polls/eligible", params={"committee": "FLSQ"})).status == 404


async def test_a_poll_is_made_through_the_csrf_check_and_its_refusals_are_shown(app):
    page = await app.client.get("/console/polls/new")
    assert page.status == 200
    csrf = csrf_of(await page.text())
    assert (await app.client.post("/console/polls", data={**form(csrf), "csrf": ""})).status == 403
    one_option = await app.client.post("/console/polls", data=form(csrf, options="周六"))
    assert one_option.status == 400
    assert zh("A poll needs 2 to 10 different options, one per line.") in await one_option.text()
    past = await app.client.post("/console/polls", data=form(csrf, closes_at="2026-11-01T20:00"))
    assert past.status == 400
    broken = await app.client.post("/console/polls", data=form(csrf, eligible='building == '))
    assert broken.status == 400
    assert (await app.client.post("/console/polls", data=form(csrf, committee="FLSQ"))).status == 404
    async with app.sessions() as s:
        assert await s.scalar(select(Poll.id)) is None
    made = await app.client.post("/console/polls", data=form(csrf, eligible='building == "3"'),
                                 allow_redirects=False)
    assert made.status == 303
    async with app.sessions() as s:
        poll = await s.scalar(select(Poll))
        assert (poll.question, poll.options, poll.eligible, poll.status) == (
            "周末义诊放在哪天？", ["周六", "周日"], 'building == "3"', PollStatus.open)
        assert poll.closes_at == NOW + timedelta(days=7, hours=11)  # 2026-12-05 20:00 in Shanghai
    assert made.headers["Location"] == f"/console/polls/{poll.id}?done=created"


async def make_poll(app, world, **kw) -> int:
    async with app.sessions() as s:
        poll = await polls.create_poll(s, world.dxyc_staff, world.regions["DXYC"], PollDraft(
            question="加装电梯？", options=["同意", "反对"], closes_at=NOW + timedelta(days=3), **kw), now=NOW, cfg=CFG)
        await s.commit()
        for key, option in (("wang", 0), ("li", 1)):
            await polls.vote(s, world.voters[key], poll.id, option, now=NOW, cfg=CFG)
        await s.commit()
        return poll.id


async def test_results_with_the_chart_ballots_and_exports(app, world):
    poll_id = await make_poll(app, world)
    page = await app.client.get(f"/console/polls/{poll_id}")
    html = await page.text()
    assert page.status == 200 and "加装电梯？" in html and "王秀英" in html and "李建国" in html
    assert f'src="/console/polls/{poll_id}/chart.png"' in html
    chart = await app.client.get(f"/console/polls/{poll_id}/chart.png")
    assert chart.status == 200 and chart.content_type == "image/png" and (await chart.read())[:4] == b"\x89PNG"
    results = load_workbook(BytesIO(await (await app.client.get(f"/console/polls/{poll_id}/results.xlsx")).read()))
    assert [[c.value for c in row] for row in results.active.iter_rows(min_row=3, max_row=4)] == [
        ["同意", 1, None], ["反对", 1, None]]
    ballots = load_workbook(BytesIO(await (await app.client.get(f"/console/polls/{poll_id}/ballots.xlsx")).read()))
    assert [[c.value for c in row][:3] for row in ballots.active.iter_rows(min_row=3)] == [
        ["王秀英", "3-2-201", "同意"], ["李建国", "3-2-202", "反对"]]
    async with app.sessions() as s:  # who chose what left the console: audited, with the count only
        assert list(await s.execute(select(AuditLog.target_id, AuditLog.detail)
                                    .where(AuditLog.action == "poll.ballots_export"))) == [(poll_id, {"rows": 2})]


async def test_a_secret_ballot_shows_no_ballots_and_has_none_to_export(app, world):
    poll_id = await make_poll(app, world, secret=True, allow_change=False)
    html = await (await app.client.get(f"/console/polls/{poll_id}")).text()
    assert "王秀英" not in html
    assert (await app.client.get(f"/console/polls/{poll_id}/ballots.xlsx")).status == 404


async def test_closing_early_needs_the_token_and_happens_once(app, world):
    poll_id = await make_poll(app, world)
    csrf = csrf_of(await (await app.client.get(f"/console/polls/{poll_id}")).text())
    assert (await app.client.post(f"/console/polls/{poll_id}/close", allow_redirects=False)).status == 403
    closed = await app.client.post(f"/console/polls/{poll_id}/close", data={"csrf": csrf}, allow_redirects=False)
    assert closed.status == 303 and closed.headers["Location"].endswith("done=closed")
    again = await app.client.post(f"/console/polls/{poll_id}/close", data={"csrf": csrf}, allow_redirects=False)
    assert again.status == 303 and again.headers["Location"] == f"/console/polls/{poll_id}?error=closed"
    assert zh("This poll is closed.") in await (await app.client.get(again.headers["Location"])).text()
    forged = await (await app.client.get(f"/console/polls/{poll_id}", params={"error": "Call 110 now"})).text()
    assert "Call 110" not in forged  # only refusals the page knows are shown
    async with app.sessions() as s:
        assert (await s.get(Poll, poll_id)).status == PollStatus.closed
        results = list(await s.scalars(select(OutboxMessage).where(OutboxMessage.ref_type == polls.REF_POLL)))
        assert {m.payload["message"] for m in results} == {"polls.results"}


async def test_another_committees_poll_is_not_found(app, world):
    async with app.sessions() as s:
        poll = await polls.create_poll(s, world.flsq_staff, world.regions["FLSQ"], PollDraft(
            question="FLSQ?", options=["a", "b"], closes_at=NOW + timedelta(days=3)), now=NOW, cfg=CFG)
        await s.commit()
    csrf = csrf_of(await (await app.client.get("/console/polls")).text())
    for path in ("", "/chart.png", "/results.xlsx", "/ballots.xlsx"):
        assert (await app.client.get(f"/console/polls/{poll.id}{path}")).status == 404, path
    assert (await app.client.post(f"/console/polls/{poll.id}/close", data={"csrf": csrf})).status == 404
    assert "FLSQ?" not in await (await app.client.get("/console/polls")).text()


async def test_street_staff_choose_one_of_their_committees_for_a_new_poll(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path) as a:
        await console_login(a, world.street_staff.account.id)
        page = await a.client.get("/console/polls/new")  # no committee of their own: was a 404
        html = await page.text()
        assert page.status == 200
        assert f'<option value="DXYC" selected>{world.regions["DXYC"].name}</option>' in html
        assert world.regions["RJXC"].name in html and world.regions["FLSQ"].name not in html
        made = await a.client.post("/console/polls", data=form(csrf_of(html), committee="RJXC"), allow_redirects=False)
        assert made.status == 303
        async with a.sessions() as s:
            poll = await s.scalar(select(Poll))
        assert poll.committee_id == world.regions["RJXC"].id
