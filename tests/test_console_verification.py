"""The console's verification queue over HTTP: the area's requests, approving and rejecting through
the CSRF check (the requester told once, the decision audited), a second decision refused politely,
another committee's request not found."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services import verification as vs
from services.models import Account, AuditLog, OutboxMessage, RequestStatus, VerificationRequest
from tests.helpers import NOW, console_app, console_login, csrf_of, make_account, make_world, zh


@pytest.fixture
async def world(sqlite_engine):
    from bot.db import session_factory

    async with session_factory(sqlite_engine)() as s:
        world = await make_world(s)
        ids = {}
        for tid, name, committee in ((600, "新居民", "DXYC"), (601, "第二位", "DXYC"), (602, "别处的人", "FLSQ")):
            account = await make_account(s, tid)
            vs.give_consent(account, NOW)
            req = await vs.request_review(s, account, committee_id=world.regions[committee].id, name=name,
                                          address="7号楼101", now=NOW)
            ids[name] = req.id
        await s.commit()
        world.requests = ids
        return world


@pytest.fixture
async def telegram():
    """A stand-in for the Bot API that records what the console asked of it (command lists only)."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    calls: list[tuple[str, dict]] = []

    async def method(request: web.Request) -> web.Response:
        calls.append((request.match_info["method"], await request.json()))  # the bot sends JSON
        return web.json_response({"ok": True, "result": True})

    api = web.Application()
    api.router.add_post("/bot{token}/{method}", method)
    async with TestServer(api) as server:
        yield str(server.make_url("")).rstrip("/"), calls


@pytest.fixture
async def app(sqlite_engine, tmp_path, world, telegram):
    async with console_app(sqlite_engine, tmp_path, telegram_api_base=telegram[0]) as a:
        await console_login(a, world.dxyc_staff.account.id)
        yield a


async def test_the_queue_lists_the_areas_requests_oldest_first(app):
    page = await app.client.get("/console/verification")
    html = await page.text()
    assert page.status == 200 and html.index("新居民") < html.index("第二位") and "别处的人" not in html
    sheet = await app.client.get("/console/verification/export.xlsx")
    assert sheet.status == 200 and sheet.content_type.endswith("spreadsheetml.sheet")


async def test_approving_tells_the_requester_once_and_a_second_decision_is_refused(app, world, telegram):
    request_id = world.requests["新居民"]
    assert (await app.client.post(f"/console/verification/{request_id}/approve",
                                  allow_redirects=False)).status == 403
    csrf = csrf_of(await (await app.client.get("/console/verification")).text())
    done = await app.client.post(f"/console/verification/{request_id}/approve", data={"csrf": csrf},
                                 allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/console/verification?done=approved"
    again = await app.client.post(f"/console/verification/{request_id}/reject", data={"csrf": csrf})
    assert again.status == 409 and zh("This request has already been decided.") in await again.text()
    async with app.sessions() as s:
        req = await s.get(VerificationRequest, request_id)
        assert req.status == RequestStatus.approved
        account = await s.get(Account, req.account_id)
        assert account.verified_at is not None and account.resident_id is not None
        told = list(await s.scalars(select(OutboxMessage.payload).where(OutboxMessage.account_id == account.id)))
        assert told == [{"message": "verification.decision", "data": {"approved": True}, "locale": "zh_Hans"}]
        assert await s.scalar(select(AuditLog.outcome).where(AuditLog.action == "verify.decision")) == "approved"
    listed = await (await app.client.get("/console/verification")).text()
    assert "新居民" not in listed and "第二位" in listed
    # the new resident's "/" list is published for what a verified resident may use, as the bot does
    [(name, sent)] = telegram[1]
    assert name == "setMyCommands" and sent["scope"] == {"type": "chat", "chat_id": 600}
    assert "mydata" in [c["command"] for c in sent["commands"]]


async def test_rejecting_and_another_committees_request(app, world):
    csrf = csrf_of(await (await app.client.get("/console/verification")).text())
    foreign = world.requests["别处的人"]
    assert (await app.client.post(f"/console/verification/{foreign}/approve", data={"csrf": csrf})).status == 404
    rejected = await app.client.post(f"/console/verification/{world.requests['第二位']}/reject", data={"csrf": csrf},
                                     allow_redirects=False)
    assert rejected.status == 303
    async with app.sessions() as s:
        assert (await s.get(VerificationRequest, foreign)).status == RequestStatus.pending
        assert (await s.get(VerificationRequest, world.requests["第二位"])).status == RequestStatus.rejected
