"""The console's check-in board and alerts over HTTP: the board of one committee, an alert taken and
closed from the page through the CSRF check with the bot's own refusals, another committee's ids (404),
the XLSX downloads, and the live stream (server-sent events): a change arrives as an event, the stream
is scoped to one committee, ends when the session does, and holds no transaction while it waits."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from io import BytesIO

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from bot.console.pages import checkins as page
from services import checkins as cs
from services.models import Account, Alert, AlertOutcome, AlertStatus, AuditLog, CheckinRound, Staff, StaffRole
from services.scope import Actor, load_staff_grants
from tests.helpers import NOW, console_app, console_login, csrf_of, make_account, make_world, zh


@pytest.fixture
async def world(engine):
    """DXYC's 赵桂兰 and FLSQ's 冯志强 enrolled (on the bot), both silent today: an alert each at 10:30."""
    from bot.db import session_factory

    async with session_factory(engine)() as s:
        world = await make_world(s)
        for i, key in enumerate(("zhao", "feng")):
            await make_account(s, 500 + i, world.residents[key], first_name=key)
            await cs.enrol_resident(s, world.residents[key], now=NOW - timedelta(days=1), cfg=cs.CheckinConfig())
        await s.commit()
        return world


@pytest.fixture
async def app(engine, tmp_path, world):
    async with console_app(engine, tmp_path) as a:
        await console_login(a, world.dxyc_staff.account.id)
        yield a


async def tick(app, minutes: float) -> None:
    app.clock.set(NOW + timedelta(minutes=minutes))
    await cs.tick(app.sessions, app.rt.dp["checkin_config"], app.clock())


async def alerted(app) -> None:
    """09:00 asked, 09:31 reminded, 10:35 alerted: both elders stay silent."""
    for minutes in (0, 31, 95):
        await tick(app, minutes)


async def alert_of(app, world, key: str) -> Alert:
    async with app.sessions() as s:
        return await s.scalar(select(Alert).where(Alert.resident_id == world.residents[key].id))


async def test_the_board_shows_the_committee_and_its_open_alert_only(app, world):
    await tick(app, 0)
    page_ = await app.client.get(f"/console/checkins/{world.regions['DXYC'].id}")
    text = await page_.text()
    assert page_.status == 200
    assert "赵桂兰" in text and "冯志强" not in text
    assert zh("⌛ Asked, no answer yet") in text
    await alerted(app)
    text = await (await app.client.get(f"/console/checkins/{world.regions['DXYC'].id}")).text()
    alert = await alert_of(app, world, "zhao")
    assert alert.status == AlertStatus.open
    assert f'data-alert="{alert.id}"' in text and zh("🙋 I'm on it") in text
    feng = await alert_of(app, world, "feng")
    assert f'data-alert="{feng.id}"' not in text
    fragment = await app.client.get(f"/console/checkins/{world.regions['DXYC'].id}/live")
    assert fragment.status == 200 and f'data-alert="{alert.id}"' in await fragment.text()
    assert "<html" not in await fragment.text()


async def test_one_committee_staff_is_sent_to_its_board(app, world):
    response = await app.client.get("/console/checkins", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == f"/console/checkins/{world.regions['DXYC'].id}"


async def test_street_staff_see_every_committee_and_switch_between_boards(engine, tmp_path, world):
    async with console_app(engine, tmp_path) as a:
        await console_login(a, world.street_staff.account.id)
        await alerted(a)
        overview = await a.client.get("/console/checkins")
        text = await overview.text()
        assert overview.status == 200
        assert world.regions["DXYC"].name in text and world.regions["RJXC"].name in text
        assert world.regions["FLSQ"].name not in text
        switch = await a.client.get("/console/checkins", params={"committee": str(world.regions["RJXC"].id)},
                                    allow_redirects=False)
        assert switch.headers["Location"] == f"/console/checkins/{world.regions['RJXC'].id}"
        assert (await a.client.get(f"/console/checkins/{world.regions['FLSQ'].id}")).status == 404


async def test_another_committees_board_stream_alert_and_exports_are_404(app, world):
    await alerted(app)
    flsq = world.regions["FLSQ"].id
    feng = await alert_of(app, world, "feng")
    for path in (f"/checkins/{flsq}", f"/checkins/{flsq}/live", f"/checkins/{flsq}/events",
                 f"/checkins/{flsq}/export.xlsx", f"/checkins/{flsq}/alerts.xlsx", f"/checkins/alerts/{feng.id}",
                 "/checkins/99999999", "/checkins/alerts/99999999"):
        response = await app.client.get("/console" + path)
        assert response.status == 404, path
        assert "冯志强" not in await response.text()
    csrf = csrf_of(await (await app.client.get("/console/")).text())
    ack = await app.client.post(f"/console/checkins/alerts/{feng.id}/ack", data={"csrf": csrf})
    close = await app.client.post(f"/console/checkins/alerts/{feng.id}/resolve", data={"csrf": csrf,
                                                                                      "outcome": "safe"})
    assert (ack.status, close.status) == (404, 404)
    assert (await alert_of(app, world, "feng")).status == AlertStatus.open


async def test_an_alert_is_taken_and_closed_from_the_page_through_the_csrf_check(app, world):
    await alerted(app)
    alert = await alert_of(app, world, "zhao")
    board = f"/console/checkins/{world.regions['DXYC'].id}"
    csrf = csrf_of(await (await app.client.get(board)).text())
    no_token = await app.client.post(f"/console/checkins/alerts/{alert.id}/ack", data={})
    wrong = await app.client.post(f"/console/checkins/alerts/{alert.id}/resolve",
                                  data={"csrf": "forged", "outcome": "safe"})
    assert (no_token.status, wrong.status) == (403, 403)
    assert (await alert_of(app, world, "zhao")).status == AlertStatus.open

    taken = await app.client.post(f"/console/checkins/alerts/{alert.id}/ack", data={"csrf": csrf},
                                  allow_redirects=False)
    assert taken.status == 303 and taken.headers["Location"] == board + "?done=ack"
    after = await alert_of(app, world, "zhao")
    assert after.status == AlertStatus.acknowledged
    assert after.acknowledged_by_account_id == world.dxyc_staff.account.id
    bad = await app.client.post(f"/console/checkins/alerts/{alert.id}/resolve", data={"csrf": csrf, "outcome": "x"})
    assert bad.status == 400
    closed = await app.client.post(f"/console/checkins/alerts/{alert.id}/resolve",
                                   data={"csrf": csrf, "outcome": "not_reachable", "back": "alert"},
                                   allow_redirects=False)
    assert closed.headers["Location"] == f"/console/checkins/alerts/{alert.id}?done=resolved"
    after = await alert_of(app, world, "zhao")
    assert (after.status, after.outcome) == (AlertStatus.resolved, AlertOutcome.not_reachable)
    again = await app.client.post(f"/console/checkins/alerts/{alert.id}/resolve",
                                  data={"csrf": csrf, "outcome": "safe"})
    assert again.status == 409 and zh("This alert is already closed.") in await again.text()
    assert (await alert_of(app, world, "zhao")).outcome == AlertOutcome.not_reachable
    history = await (await app.client.get(f"/console/checkins/alerts/{alert.id}")).text()
    assert zh("on it") in history and zh("closed") in history
    async with app.sessions() as s:
        actions = set(await s.scalars(select(AuditLog.action).where(AuditLog.target_id == alert.id)))
    assert {"checkin.alert_ack", "checkin.alert_resolve"} <= actions


async def test_an_alert_someone_else_took_is_refused_in_the_bots_words(app, world):
    await alerted(app)
    alert = await alert_of(app, world, "zhao")
    async with app.sessions() as s:
        colleague = await make_account(s, 777, first_name="李干事")
        s.add(Staff(account_id=colleague.id, region_id=world.regions["DXYC"].id, role=StaffRole.committee,
                    created_at=NOW))
        await s.flush()
        await cs.acknowledge(s, Actor(account=colleague, staff=await load_staff_grants(s, colleague.id)), alert.id,
                             now=app.clock())
        await s.commit()
    csrf = csrf_of(await (await app.client.get("/console/")).text())
    refused = await app.client.post(f"/console/checkins/alerts/{alert.id}/ack", data={"csrf": csrf})
    assert refused.status == 409
    assert zh("{who} is already on it.").format(who="李干事") in await refused.text()
    assert (await alert_of(app, world, "zhao")).acknowledged_by_account_id == colleague.id


async def test_the_board_and_the_open_alerts_download_as_xlsx(app, world):
    await alerted(app)
    dxyc = world.regions["DXYC"].id
    board = await app.client.get(f"/console/checkins/{dxyc}/export.xlsx")
    assert board.status == 200
    rows = list(load_workbook(BytesIO(await board.read())).active.iter_rows(values_only=True))
    assert any("赵桂兰" in (cell or "") for row in rows for cell in row if isinstance(cell, str))
    assert not any("冯志强" in str(cell) for row in rows for cell in row)
    alerts = await app.client.get(f"/console/checkins/{dxyc}/alerts.xlsx")
    rows = list(load_workbook(BytesIO(await alerts.read())).active.iter_rows(values_only=True))
    assert any("赵桂兰" in str(cell) for row in rows for cell in row)
    assert any("+8613800138003" in str(cell) for row in rows for cell in row)


# --- the live stream --------------------------------------------------------------------------------


async def read_event(response, *, seconds: float = 10.0) -> tuple[str, str]:
    """The next event of a stream (name, data), comments skipped; a guard, not a timing."""
    name, data = "", ""

    async def one() -> tuple[str, str]:
        nonlocal name, data
        while True:
            line = (await response.content.readline()).decode()
            if not line:
                return "eof", ""
            line = line.rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and name:
                return name, data

    return await asyncio.wait_for(one(), seconds)


@pytest.fixture
def fast_polls(monkeypatch):
    monkeypatch.setattr(page, "POLL_SECONDS", 0.05)


async def test_a_change_arrives_on_the_committees_stream_and_only_there(app, world, fast_polls):
    dxyc = world.regions["DXYC"].id
    async with app.client.get(f"/console/checkins/{dxyc}/events") as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        first, version = await read_event(stream)
        assert first == "board" and version
        await alerted(app)  # the tick raises the alert: not through the console, found by the poll
        async with app.sessions() as s:
            now_version = await cs.board_version(s, world.dxyc_staff, dxyc, now=app.clock(),
                                                 cfg=app.rt.dp["checkin_config"])
        newer = version
        while newer != now_version:  # each step of the ticks may have been seen on its own
            changed, newer = await read_event(stream)
            assert changed == "board"
        fragment = await (await app.client.get(f"/console/checkins/{dxyc}/live")).text()
        assert f'data-board-version="{newer}"' in fragment
        assert f'data-alert="{(await alert_of(app, world, "zhao")).id}"' in fragment


async def test_a_stream_resumed_with_the_version_it_has_says_nothing_until_a_change(app, world, fast_polls,
                                                                                     monkeypatch):
    monkeypatch.setattr(page, "POLL_SECONDS", 60.0)  # only the in-process wake-up can make it look again
    await alerted(app)
    dxyc = world.regions["DXYC"].id
    html = await (await app.client.get(f"/console/checkins/{dxyc}")).text()
    csrf = csrf_of(html)
    version = html.split('data-board-version="', 1)[1].split('"', 1)[0]
    alert = await alert_of(app, world, "zhao")
    async with app.client.get(f"/console/checkins/{dxyc}/events", headers={"Last-Event-ID": version}) as stream:
        assert (await stream.content.readline()).startswith(b"retry: ")
        pending = asyncio.ensure_future(read_event(stream))
        await asyncio.sleep(0.2)
        assert not pending.done()  # the same version: no event
        taken = await app.client.post(f"/console/checkins/alerts/{alert.id}/ack", data={"csrf": csrf})
        assert taken.status == 200
        name, newer = await pending
        assert name == "board" and newer != version


async def test_the_stream_ends_when_the_session_does(app, world, fast_polls):
    dxyc = world.regions["DXYC"].id
    csrf = csrf_of(await (await app.client.get("/console/")).text())
    async with app.client.get(f"/console/checkins/{dxyc}/events") as stream:
        assert (await read_event(stream))[0] == "board"
        out = await app.client.post("/console/logout", data={"csrf": csrf}, allow_redirects=False)
        assert out.status in (302, 303)
        assert (await read_event(stream))[0] == "end"
        assert (await read_event(stream))[0] == "eof"


async def test_a_waiting_stream_holds_no_database_connection(app, world, fast_polls, monkeypatch):
    monkeypatch.setattr(page, "POLL_SECONDS", 60.0)
    dxyc = world.regions["DXYC"].id
    pool = app.rt.engine.pool
    before = pool.checkedout()
    async with app.client.get(f"/console/checkins/{dxyc}/events") as stream:
        assert (await read_event(stream))[0] == "board"
        await asyncio.sleep(0.1)
        assert pool.checkedout() == before


async def test_the_version_follows_one_committee_and_refuses_another(app, world):
    cfg = app.rt.dp["checkin_config"]
    dxyc, flsq = world.regions["DXYC"].id, world.regions["FLSQ"].id
    await tick(app, 0)
    async with app.sessions() as s:
        before = await cs.board_version(s, world.dxyc_staff, dxyc, now=app.clock(), cfg=cfg)
        assert await cs.board_version(s, world.dxyc_staff, flsq, now=app.clock(), cfg=cfg) is None
        feng = await s.scalar(select(CheckinRound).where(CheckinRound.resident_id == world.residents["feng"].id))
        elder = await s.scalar(select(Account).where(Account.resident_id == world.residents["feng"].id))
        flsq_before = await cs.board_version(s, world.flsq_staff, flsq, now=app.clock(), cfg=cfg)
        await cs.answer(s, elder, feng.id, need_help=False, now=app.clock(), cfg=cfg)
        await s.commit()
    async with app.sessions() as s:
        assert await cs.board_version(s, world.dxyc_staff, dxyc, now=app.clock(), cfg=cfg) == before
        assert await cs.board_version(s, world.flsq_staff, flsq, now=app.clock(), cfg=cfg) != flsq_before


async def test_shutdown_wakes_every_stream_to_end():
    live = page.LiveBoards()
    with live.listening(1) as one, live.listening(1) as two, live.listening(2) as other:
        assert live.streams() == 3
        live.changed(1)
        assert one.is_set() and two.is_set() and not other.is_set()
        await live.close(None)
        assert live.closing and other.is_set()
    assert live.streams() == 0
