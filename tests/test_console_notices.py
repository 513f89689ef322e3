"""The console's notices over HTTP: composing for an audience with its recipients counted live, the
draft's preview sent once however often it is posted, the delivery report with who has not received
it, the call list of those the bot cannot reach; CSRF, scope and polite refusals."""

from __future__ import annotations

from io import BytesIO

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, update

from services import notices as ns
from services.i18n import ngettext, use_locale
from services.models import AuditLog, Notice, NoticeStatus, OutboxMessage, OutboxStatus, StaffRole
from tests.helpers import console_app, console_login, csrf_of, make_account, make_actor, make_world, zh


@pytest.fixture
async def world(sqlite_engine):
    from bot.db import session_factory

    async with session_factory(sqlite_engine)() as s:
        world = await make_world(s)
        for i, key in enumerate(("wang", "li", "zhao")):  # 王小明 and 钱八十 have no account
            await make_account(s, 100 + i, world.residents[key])
        await make_account(s, 200, world.residents["feng"])  # FLSQ
        await s.commit()
        return world


@pytest.fixture
async def app(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path) as a:
        await console_login(a, world.dxyc_staff.account.id)
        yield a


def audience_text(residents: int, reachable: int) -> str:
    with use_locale("zh_Hans"):
        return ngettext("Audience: {n} resident, of whom {reachable} can be reached in the bot.",
                        "Audience: {n} residents, of whom {reachable} can be reached in the bot.",
                        residents).format(n=residents, reachable=reachable)


async def csrf(app) -> str:
    return csrf_of(await (await app.client.get("/console/notices/new")).text())


async def compose(app, token: str, text: str = "周二9点到12点停水。", **audience) -> int:
    data = {"text": text, "audience": "committee", "csrf": token, **audience}
    response = await app.client.post("/console/notices", data=data, allow_redirects=False)
    assert response.status == 303, await response.text()
    return int(response.headers["Location"].rsplit("/", 1)[1])


async def test_the_audience_is_counted_live_as_it_is_chosen(app):
    count = await (await app.client.get("/console/notices/count", params={"audience": "committee"})).json()
    assert count == {"ok": True, "residents": 5, "reachable": 3, "text": audience_text(5, 3)}
    tags = await (await app.client.get("/console/notices/count", params=[
        ("audience", "tag"), ("tags", "aged_60"), ("tags", "volunteer")])).json()
    assert tags["ok"] and tags["residents"] == 0  # rule tags not computed in this world
    injected = 'x") or age > 0 or has_tag("y'
    forged = await (await app.client.get("/console/notices/count",
                                         params={"audience": "tag", "tags": injected})).json()
    assert forged == {"ok": False, "text": zh("This audience is not available.")}
    page = await (await app.client.get("/console/notices/new", params={"audience": "committee"})).text()
    assert audience_text(5, 3) in page


async def test_a_draft_is_sent_once_and_the_report_fills_with_who_has_not_received(app, world):
    token = await csrf(app)
    notice_id = await compose(app, token, "停水通知 <b>周二</b>")
    preview = await (await app.client.get(f"/console/notices/{notice_id}")).text()
    assert "停水通知 &lt;b&gt;周二&lt;/b&gt;" in preview and zh("Send now") in preview
    assert (await app.client.post(f"/console/notices/{notice_id}/send", data={"when": "now"},
                                  allow_redirects=False)).status == 403
    sent = await app.client.post(f"/console/notices/{notice_id}/send", data={"when": "now", "csrf": token},
                                 allow_redirects=False)
    assert sent.status == 303
    again = await app.client.post(f"/console/notices/{notice_id}/send", data={"when": "now", "csrf": token})
    assert again.status == 400 and zh("Notice #{id} has already been sent.").format(id=notice_id) in await again.text()
    async with app.sessions() as s:
        rows = list(await s.scalars(select(OutboxMessage).where(OutboxMessage.ref_type == ns.REF)))
        assert len(rows) == 3  # once, to the three residents in the bot
        assert rows[0].payload["data"]["text"] == "停水通知 &lt;b&gt;周二&lt;/b&gt;"  # shown as typed in Telegram
        # the sender delivered to 王秀英 (chat 100) and gave up on 李建国 (101); 赵桂兰 (102) waits
        await s.execute(update(OutboxMessage).where(OutboxMessage.chat_id == 100).values(status=OutboxStatus.sent))
        await s.execute(update(OutboxMessage).where(OutboxMessage.chat_id == 101).values(status=OutboxStatus.failed))
        await s.commit()
    figures = await (await app.client.get(f"/console/notices/{notice_id}/report.json")).json()
    assert figures["fields"] == {"recipients": 3, "sent": 1, "pending": 1, "failed": 1, "unreachable": 0,
                                 "received": 0, "unconfirmed": 3}
    assert figures["final"] is False
    report = await (await app.client.get(f"/console/notices/{notice_id}")).text()
    assert zh("Who has not received it") in report and zh("failed") in report
    assert f'data-poll="/console/notices/{notice_id}/report.json"' in report  # the figures keep filling in
    assert report.index("李建国") < report.index("王秀英")  # the failed delivery first
    sheet = load_workbook(BytesIO(await (await app.client.get(
        f"/console/notices/{notice_id}/unconfirmed.xlsx")).read())).active
    # failed first, then waiting, then delivered but not confirmed
    assert [row[0].value for row in sheet.iter_rows(min_row=3)] == ["李建国", "赵桂兰", "王秀英"]


async def test_the_call_list_names_those_the_bot_cannot_reach(app):
    notice_id = await compose(app, await csrf(app))
    calls = await (await app.client.get(f"/console/notices/{notice_id}/calls")).text()
    assert "王小明" in calls and "钱八十" in calls and "李建国" not in calls
    xlsx = await (await app.client.get(f"/console/notices/{notice_id}/calls.xlsx")).read()
    sheet = load_workbook(BytesIO(xlsx)).active
    assert {row[0].value for row in sheet.iter_rows(min_row=3)} == {"王小明", "钱八十"}
    async with app.sessions() as s:  # phone numbers were shown, then downloaded: both audited, rows counted
        seen = list(await s.execute(select(AuditLog.action, AuditLog.target_id, AuditLog.detail)
                                    .where(AuditLog.action == "notice.call_list").order_by(AuditLog.id)))
        assert seen == [("notice.call_list", notice_id, {"rows": 2, "export": False}),
                        ("notice.call_list", notice_id, {"rows": 2, "export": True})]


async def test_an_over_long_notice_and_a_bad_time_are_refused_politely(app):
    token = await csrf(app)
    too_long = await app.client.post("/console/notices", data={"text": "长" * 4000, "audience": "committee",
                                                               "csrf": token})
    assert too_long.status == 400
    assert zh("The notice is too long: at most {n} characters.").format(n=3996) in await too_long.text()
    notice_id = await compose(app, token)
    bad_time = await app.client.post(f"/console/notices/{notice_id}/send",
                                     data={"when": "later", "send_at": "tomorrow", "csrf": token})
    assert bad_time.status == 400
    past = await app.client.post(f"/console/notices/{notice_id}/send",
                                 data={"when": "later", "send_at": "2026-11-27T09:00", "csrf": token})
    assert past.status == 400 and zh("The send time must be in the future.") in await past.text()
    later = await app.client.post(f"/console/notices/{notice_id}/send",
                                  data={"when": "later", "send_at": "2026-12-01T09:00", "csrf": token},
                                  allow_redirects=False)
    assert later.status == 303
    async with app.sessions() as s:
        notice = await s.get(Notice, notice_id)
        assert notice.status == NoticeStatus.scheduled and notice.send_at.hour == 1  # 09:00 in Shanghai
        assert await s.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    cancelled = await app.client.post(f"/console/notices/{notice_id}/cancel", data={"csrf": token},
                                      allow_redirects=False)
    assert cancelled.status == 303


async def test_another_committees_notice_and_a_colleagues_draft_are_not_found(app, world):
    async with app.sessions() as s:
        flsq = await ns.create_notice(s, world.flsq_staff, text="FLSQ", now=world_now(app),
                                      aud=await ns.audience(s, world.flsq_staff, "committee", None))
        other = await make_actor(s, 50, world.regions["DXYC"], StaffRole.committee)  # a colleague in DXYC
        colleague = await ns.save_draft(s, other, text="draft", now=world_now(app),
                                        aud=await ns.audience(s, other, "committee", None))
        await s.commit()
    token = await csrf(app)
    for path in (f"/console/notices/{flsq.id}", f"/console/notices/{flsq.id}/calls",
                 f"/console/notices/{flsq.id}/report.json", f"/console/notices/{colleague.id}"):
        assert (await app.client.get(path)).status == 404, path
    assert (await app.client.post(f"/console/notices/{flsq.id}/remind", data={"csrf": token})).status == 404
    assert (await app.client.post(f"/console/notices/{colleague.id}/send",
                                  data={"when": "now", "csrf": token})).status == 404
    listing = await (await app.client.get("/console/notices")).text()
    assert f'href="/console/notices/{flsq.id}"' not in listing


def world_now(app):
    return app.clock()
