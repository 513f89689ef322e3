"""The outbox sender against the sandbox Bot API server (SQLite file)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web
from sqlalchemy import func, insert, select

from bot.db import session_factory
from bot.sandbox import Sandbox, create_sandbox_app
from bot.sandbox.client import SandboxClient
from notifications.render import to_reply_markup
from notifications.sender import OutboxSender
from services import outbox
from services.models import Account, AuditLog, OutboxMessage, OutboxStatus
from services.outbox import OutboxItem, Priority
from tests.conftest import NOW

WORKER = Path(__file__).with_name("outbox_worker.py")


class SandboxServer:
    def __init__(self, sandbox: Sandbox, url: str) -> None:
        self.sandbox = sandbox
        self.url = url

    def bot(self, url: str | None = None) -> Bot:
        return Bot(token="42:sandbox", session=AiohttpSession(api=TelegramAPIServer.from_base(url or self.url)))

    def users(self, n: int) -> list[int]:
        return [self.sandbox.create_user(f"User {i}").id for i in range(n)]

    def bot_texts(self, uid: int) -> list[str]:
        return [m["text"] or m["caption"] for m in self.sandbox.messages(uid) if m["from_bot"]]


@pytest.fixture
async def server() -> AsyncIterator[SandboxServer]:
    sandbox = Sandbox()
    runner = web.AppRunner(create_sandbox_app(sandbox))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield SandboxServer(sandbox, f"http://{host}:{port}")
    await runner.cleanup()


@pytest.fixture
async def bot(server) -> AsyncIterator[Bot]:
    bot = server.bot()
    yield bot
    await bot.session.close()


@pytest.fixture
def factory(sqlite_engine):
    return session_factory(sqlite_engine)


async def enqueue(factory, *items: OutboxItem) -> None:
    async with factory() as s:
        await outbox.enqueue_many(s, items, now=NOW)
        await s.commit()


async def rows(factory) -> list[OutboxMessage]:
    async with factory() as s:
        return list((await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def eventually(done: Callable[[], bool], interval: float = 0.005) -> None:
    """Poll ``done`` (state of the in-process sandbox) until true; wrap in asyncio.timeout."""
    while True:
        if done():
            return
        await asyncio.sleep(interval)


async def run_until(sender: OutboxSender, done: Callable[[], bool], seconds: float = 30.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        async with asyncio.timeout(seconds):
            await eventually(done)
    finally:
        stop.set()
        await task


def text(value: str, buttons=None) -> dict:
    return outbox.make_payload(value, buttons=buttons)


async def test_queued_message_arrives_in_the_sandbox_chat_with_buttons(server, bot, factory):
    async with SandboxClient(server.url, wait_for_bot=False) as client:
        user = await client.create_user("王阿姨")
        buttons = [[outbox.button("收到 Received", callback_data="notice:ack:7")],
                   [outbox.button("Details", url="https://example.org/n/7")]]
        await enqueue(factory, OutboxItem("notice:7:1", user.id, text("<b>停水通知</b>", buttons),
                                          ref_type="notice_recipient", ref_id=1))
        sender = OutboxSender(bot, factory, rate=100)
        seen = []

        async def counted(session, row, now):
            seen.append((row.ref_id, row.status, now))

        sender.on_sent("notice_recipient", counted)
        assert await sender.drain_once(NOW) == 1

        [message] = await user.bot_messages()
        assert (message["text"], message["html"]) == ("停水通知", "<b>停水通知</b>")  # sent as HTML
        assert message["reply_markup"] == {"inline_keyboard": [
            [{"text": "收到 Received", "callback_data": "notice:ack:7"}],
            [{"text": "Details", "url": "https://example.org/n/7"}]]}
        [row] = await rows(factory)
        assert row.status == OutboxStatus.sent and row.telegram_message_id == message["message_id"]
        assert row.sent_at == NOW and row.claimed_until is None and row.claimed_by == sender.worker_id
        assert seen == [(1, OutboxStatus.sent, NOW)]
        assert await sender.drain_once(NOW) == 0


async def test_photo_and_document_payloads_are_sent_as_media(server, bot, factory, tmp_path):
    [uid] = server.users(1)
    picture = tmp_path / "map.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 8 + (3).to_bytes(4, "big") + (2).to_bytes(4, "big"))
    sheet = tmp_path / "list.csv"
    sheet.write_text("a,b\n")
    await enqueue(factory,
                  OutboxItem("p", uid, outbox.make_payload("the map", photo={"path": str(picture)})),
                  OutboxItem("d", uid, outbox.make_payload("", document={"path": str(sheet)}),
                             not_before=NOW + timedelta(seconds=2)))
    sender = OutboxSender(bot, factory, rate=100)
    await sender.drain_once(NOW)
    await sender.drain_once(NOW + timedelta(seconds=2))
    messages = [m for m in server.sandbox.messages(uid) if m["from_bot"]]
    assert messages[0]["photo"] is not None and messages[0]["caption"] == "the map"
    assert messages[1]["document"]["file_name"] == "list.csv" and messages[1]["caption"] is None


def test_render_builds_inline_keyboards():
    assert to_reply_markup(None) is None and to_reply_markup([]) is None
    markup = to_reply_markup([[outbox.button("A", callback_data="a"), outbox.button("B", url="https://x.org")]])
    assert [[(b.text, b.callback_data, b.url) for b in row] for row in markup.inline_keyboard] == [
        [("A", "a", None), ("B", None, "https://x.org")]]


async def test_flood_control_is_honoured_and_costs_no_attempt(server, bot, factory):
    server.sandbox.set_rate_limits(10, None)
    uids = server.users(25)
    await enqueue(factory, *(OutboxItem(f"b:{uid}", uid, text(f"hi {uid}")) for uid in uids))
    sender = OutboxSender(bot, factory, rate=50)  # five times what the "server" allows

    await run_until(sender, lambda: server.sandbox.stats()["sent_total"] == 25)

    stats = server.sandbox.stats()
    assert stats["too_many_requests"] > 0 and sender.counters["flood_waits"] > 0
    assert all(server.bot_texts(uid) == [f"hi {uid}"] for uid in uids)
    done = await rows(factory)
    assert {r.status for r in done} == {OutboxStatus.sent}
    assert {r.attempts for r in done} == {0}


async def test_blocked_user_makes_account_unreachable_and_listener_escalates(server, bot, factory):
    async with SandboxClient(server.url, wait_for_bot=False) as client:
        user = await client.create_user("Zhang")
        await user.block()
    async with factory() as s:
        account = Account(telegram_id=user.id, chat_id=user.id, first_name="Zhang", created_at=NOW)
        s.add(account)
        await s.flush()
        await outbox.enqueue(s, key="checkin:5:prompt", chat_id=user.id, account_id=account.id,
                             payload=text("今天好吗？"), priority=Priority.checkin,
                             ref_type="checkin_round", ref_id=5, now=NOW)
        await s.commit()

    sender = OutboxSender(bot, factory, rate=100)
    escalated = []

    async def escalate(session, row, now):
        escalated.append(row.ref_id)
        session.add(AuditLog(at=now, action="checkin.unreachable", target_type="checkin_round",
                             target_id=row.ref_id))

    async def broken(session, row, now):
        raise RuntimeError("a buggy listener must not undo the mark")

    sender.on_unreachable("checkin_round", broken)
    sender.on_unreachable("checkin_round", escalate)
    await sender.drain_once(NOW)

    [row] = await rows(factory)
    assert row.status == OutboxStatus.unreachable and "blocked" in row.last_error
    assert escalated == [5]
    async with factory() as s:
        assert (await s.get(Account, account.id)).unreachable_at == NOW
        assert await s.scalar(select(func.count()).select_from(AuditLog)) == 1
    assert server.bot_texts(user.id) == []


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_network_errors_retry_with_backoff_then_fail(server, factory):
    [uid] = server.users(1)
    await enqueue(factory, OutboxItem("r", uid, text("hello"), ref_type="notice_recipient", ref_id=3))
    bot = server.bot(closed_port_url())
    sender = OutboxSender(bot, factory, rate=100, max_attempts=3)
    failed = []

    async def on_failed(session, row, now):
        failed.append(row.id)

    sender.on_failed("notice_recipient", on_failed)
    try:
        now = NOW
        assert await sender.drain_once(now) == 1
        [row] = await rows(factory)
        assert (row.status, row.attempts, row.not_before) == (OutboxStatus.pending, 1, now + timedelta(seconds=2))
        assert "TelegramNetworkError" in row.last_error
        assert await sender.drain_once(now + timedelta(seconds=1)) == 0  # backing off

        now += timedelta(seconds=2)
        assert await sender.drain_once(now) == 1
        [row] = await rows(factory)
        assert (row.status, row.attempts, row.not_before) == (OutboxStatus.pending, 2, now + timedelta(seconds=4))
        assert failed == []

        assert await sender.drain_once(now + timedelta(seconds=4)) == 1
    finally:
        await bot.session.close()
    [row] = await rows(factory)
    assert row.status == OutboxStatus.failed and row.attempts == 3
    assert row.last_error.startswith("gave up after 3 attempts: TelegramNetworkError")
    assert failed == [row.id]


async def test_request_telegram_rejects_fails_at_once(server, bot, factory):
    [uid] = server.users(1)
    async with factory() as s:
        # Enqueue refuses such a payload; a row written around it must still fail cleanly.
        await s.execute(insert(OutboxMessage).values(
            idempotency_key="long", chat_id=uid, priority=2, payload={"text": "x" * 5000}, status="pending",
            not_before=NOW, attempts=0, created_at=NOW))
        await s.commit()
    await OutboxSender(bot, factory, rate=100).drain_once(NOW)
    [row] = await rows(factory)
    assert row.status == OutboxStatus.failed and row.attempts == 1 and "too long" in row.last_error


async def test_alert_overtakes_a_queue_of_broadcasts(server, bot, factory):
    uids = server.users(300)
    [duty] = server.users(1)
    await enqueue(factory, *(OutboxItem(f"notice:1:{uid}", uid, text("broadcast")) for uid in uids))
    sender = OutboxSender(bot, factory, rate=200, poll_interval=0.02)
    sent = lambda: server.sandbox.stats()["sent_total"]  # noqa: E731
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        async with asyncio.timeout(20):
            await eventually(lambda: sent() >= 40)
            async with factory() as s:
                await outbox.enqueue(s, key="alert:9", chat_id=duty, payload=text("ALERT"),
                                     priority=Priority.alert, now=NOW)
                await s.commit()
            before = sent()
            await eventually(lambda: bool(server.bot_texts(duty)), 0.002)
            overtaken_by = sent() - before - 1
    finally:
        stop.set()
        await task
    # Only what was already claimed (one batch) or in flight may go before the alert.
    assert overtaken_by <= sender.batch + sender.max_in_flight
    assert sent() < len(uids), "the alert did not overtake the queue"


async def test_rows_for_one_chat_are_spaced_by_the_per_chat_rate(server, bot, factory):
    [busy] = server.users(1)
    others = server.users(5)
    await enqueue(factory, *(OutboxItem(f"busy:{i}", busy, text(f"n{i}")) for i in range(3)),
                  *(OutboxItem(f"o:{uid}", uid, text("other")) for uid in others))
    sender = OutboxSender(bot, factory, rate=100, per_chat_rate=4)  # 0.26 s apart per chat
    server.sandbox.set_rate_limits(None, 4)  # Telegram here answers 429 to a chat written to faster
    await run_until(sender, lambda: server.sandbox.stats()["sent_total"] == 8)
    assert server.bot_texts(busy) == ["n0", "n1", "n2"]
    assert server.sandbox.stats()["too_many_requests"] == 0


async def unsent(engine) -> int:
    # A deferred (read) transaction: the sender process must not wait for the test's lock.
    async with engine.connect() as conn:
        conn = await conn.execution_options(sqlite_deferred=True)
        return await conn.scalar(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.status != OutboxStatus.sent))


async def test_killed_sender_resends_its_window_and_loses_nothing(server, bot, tmp_path, sqlite_engine):
    factory = session_factory(sqlite_engine)
    db_url = str(sqlite_engine.url)
    uids = server.users(2000)
    await enqueue(factory, *(OutboxItem(f"notice:1:{uid}", uid, text(f"to {uid}")) for uid in uids))
    batch = 20  # also the in-flight window: at most this many sends can be unmarked at the kill
    lease = timedelta(seconds=2)

    sent = lambda: server.sandbox.stats()["sent_total"]  # noqa: E731
    first = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), "--db", db_url, "--api", server.url, "--rate", "400", "--batch", str(batch),
        "--lease", str(lease.total_seconds()), "--worker-id", "first", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert (await asyncio.wait_for(first.stdout.readline(), 60)) == b"ready\n"
        async with asyncio.timeout(60):
            await eventually(lambda: sent() >= 600)
        os.kill(first.pid, signal.SIGKILL)
        await first.wait()
        assert sent() < len(uids), "the worker finished before it could be killed"
    finally:
        if first.returncode is None:
            first.kill()
        await first.communicate()
    assert first.returncode == -signal.SIGKILL

    # The restart: a new sender with the same options (in this process: nothing of the killed one is
    # left but the database) takes over the rows whose lease expires, and stops cleanly when told.
    second = OutboxSender(bot, factory, rate=400, per_chat_rate=1.0, worker_id="second", batch=batch, lease=lease,
                          poll_interval=0.05, reclaim_every=lease.total_seconds() / 2)
    stop = asyncio.Event()
    sending = asyncio.create_task(second.run(stop))
    try:
        async with asyncio.timeout(60):
            while True:
                if not await unsent(sqlite_engine):
                    break
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await sending

    received = {uid: len(server.bot_texts(uid)) for uid in uids}
    assert min(received.values()) >= 1
    duplicates = sum(received.values()) - len(uids)
    assert duplicates <= batch
    assert sent() == len(uids) + duplicates


async def test_a_row_held_past_what_its_lease_covers_is_not_sent_by_its_old_holder(server, bot, factory):
    """A sender that kept claimed rows too long (the shared rate away, a long wait) sends only those
    whose lease still covers a request; the others may be another sender's by now. Once their lease
    has run out, another sender reclaims them and each goes once."""
    early, late = server.users(2)
    await enqueue(factory, OutboxItem("held:1", early, text("停水通知")), OutboxItem("held:2", late, text("停电通知")))
    first = OutboxSender(bot, factory, rate=100, lease=timedelta(seconds=60), worker_id="first")
    await first._fill(NOW)
    await first._send_next(None, NOW + timedelta(seconds=29))  # the request (30 s at most) ends in the lease
    await first._send_next(None, NOW + timedelta(seconds=31))  # it could outlast the lease: not sent
    await first._wait_in_flight()
    assert (server.bot_texts(early), server.bot_texts(late)) == (["停水通知"], [])
    assert [r.status for r in await rows(factory)] == [OutboxStatus.sent, OutboxStatus.sending]
    second = OutboxSender(bot, factory, rate=100, lease=timedelta(seconds=60), worker_id="second")
    assert await second.drain_once(NOW + timedelta(seconds=61)) == 1
    assert (server.bot_texts(early), server.bot_texts(late)) == (["停水通知"], ["停电通知"])
    assert [r.status for r in await rows(factory)] == [OutboxStatus.sent, OutboxStatus.sent]
