"""PostgreSQL and Redis going away under a running bot, and coming back: the bot (``run --webhook`` in
this process, behind the sandbox's webhook delivery) recovers without a hand, /healthz says unhealthy
meanwhile (503) and healthy after, and nothing is lost.

The machine's servers are never restarted: a TCP proxy of the test (tests.helpers.TcpProxy) stands
between the bot and each of them and is cut (every connection reset, new ones refused, as during a
restart) and restored.

What the design guarantees, and these tests hold it to:
- an update that arrives while the database is away is acknowledged to Telegram (the webhook answers
  at once) and answered "Sorry, something went wrong … try again" (or "it could not be saved"); none of
  it is applied, so trying again after works; no update goes unanswered;
- a message of the outbox is never lost: one the sender could not mark as sent goes again when its lease
  ends, so a person may get such a message twice (Telegram took it, the database never heard) — at most
  the sender's messages in flight at the cut;
- while Redis is away, the webhook cannot take an update's chat turn: it answers 503 and says so in the
  log, and Telegram delivers the update again (after Redis is back it is handled); the sender sends
  nothing (the shared Telegram rate lives there) and says so in the log; a conversation under way (its
  state in Redis) carries on where it was.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bot.db import create_engine
from services import notices as ns
from services import outbox
from services.models import Base, OutboxMessage, OutboxStatus
from services.regions import get_region
from tests.conftest import TEST_DATA_KEYS
from tests.helpers import (
    ErrorLog,
    TcpProxy,
    bot_reply,
    fresh_pg_database,
    fresh_redis,
    make_actor,
    seed_residents,
    tr,
    webhook_bot,
)
from tests.seed import ID_WANG, seed_registry

SORRY = (tr("en", "Sorry, something went wrong on our side. Please try again in a moment."),
         tr("en", "Sorry, that did not work: it could not be saved. Please try again in a moment."))
BROADCAST = "Water off on Tuesday 9:00-12:00"
NOTE = "The lift is serviced on Friday"


def text_of(message: dict) -> str:
    return (message["text"] if message["text"] is not None else message["caption"]) or ""


async def _schema(url: str) -> None:
    engine = create_engine(url, data_keys=TEST_DATA_KEYS)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


def _via(url: str, proxy: TcpProxy) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


async def _answers(user) -> list[str]:
    return [text_of(m) for m in await user.bot_messages()]


class Load:
    """Users sending /help in turns, one update in hand per user at a time (each waits for its answer
    before the next), until stopped; every update must get exactly one answer."""

    def __init__(self, users) -> None:
        self.users = users
        self.sent = Counter()
        self.stopping = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def _user(self, user) -> None:
        while not self.stopping.is_set():
            await user.send("/help")
            self.sent[user.id] += 1
            await bot_reply(user, seconds=60)

    def start(self) -> None:
        self.task = asyncio.gather(*(self._user(u) for u in self.users))

    async def stop(self) -> None:
        self.stopping.set()
        assert self.task is not None
        await self.task

    def total(self) -> int:
        return sum(self.sent.values())


async def test_postgres_cut_under_load_the_bot_recovers_by_itself_and_health_follows(tmp_path):
    async with fresh_pg_database("outage") as url:
        await _schema(url)
        target = make_url(url)
        async with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy, \
                webhook_bot(tmp_path, database_url=_via(url, proxy), outbox_rate=40) as bot:
            rt = bot.rt
            residents = [p.user for p in await seed_residents(rt.sessions, bot.sandbox, 120, committee="DXYC",
                                                              prefix="居民", first_phone=13700000000)]
            talkers = [await bot.client.create_user(f"Talker {n}", language_code="en") for n in range(6)]
            for user in talkers:
                await user.send("/help")
                help_text = text_of(await bot_reply(user))
            status, report = await bot.health()
            assert status == 200, report
            # A broadcast on its way (40 a second: three seconds of sending) and users talking.
            async with rt.sessions() as s:
                actor = await make_actor(s, 999_001, await get_region(s, "DXYC"), _committee_role())
                notice = await ns.create_notice(s, actor, text=BROADCAST, aud=await ns.audience(s, actor, "committee",
                                                                                                None), now=rt.clock())
                await s.commit()
            load = Load(talkers)
            load.start()
            sent_before_cut = 0
            async with asyncio.timeout(60):
                while sent_before_cut < 20:  # some of the broadcast out, then the database goes away
                    sent_before_cut = sum(1 for u in residents[:60] if bot.sandbox.chats[u.id].messages)
                    await asyncio.sleep(0.05)
            with ErrorLog() as errors:
                await proxy.cut()
                during = load.total()
                unhealthy = await bot.health_becomes(503)
                # Updates keep coming while it is away (each is a change of the sandbox's).
                assert await bot.sandbox.wait_until(lambda: load.total() >= during + 12, 60)
                await proxy.restore()
                healthy = await bot.health_becomes(200)
            await load.stop()
            assert unhealthy["checks"]["database"]["ok"] is False and unhealthy["checks"]["database"]["error"]
            assert healthy["checks"]["database"]["ok"] is True and healthy["checks"]["sender"]["ok"] is True
            assert any("failed" in line for line in errors.lines)  # the failed updates were logged
            # Every update got exactly one answer: the help, or "sorry, try again" while it was away.
            outage_answers = 0
            for user in talkers:
                answers = (await _answers(user))[1:]
                assert len(answers) == load.sent[user.id], (answers, load.sent[user.id])
                assert set(answers) <= {help_text, *SORRY}, answers
                outage_answers += sum(a in SORRY for a in answers)
                # And after it, without a hand: the bot answers as before.
                await user.send("/help")
                assert text_of(await bot_reply(user)) == help_text
            assert outage_answers >= 1
            # The broadcast reached every resident; a second copy only of what was in flight at the cut.
            async with asyncio.timeout(120):
                while True:
                    async with rt.sessions() as s:
                        left = await s.scalar(select(func.count()).select_from(OutboxMessage).where(
                            OutboxMessage.ref_id == notice.id, OutboxMessage.status != OutboxStatus.sent))
                    if not left:
                        break
                    await asyncio.sleep(0.2)
            copies = Counter(sum(BROADCAST in text_of(m) for m in bot.sandbox.messages(u.id)) for u in residents)
            assert set(copies) <= {1, 2} and copies[1] >= len(residents) - rt_sender_window(rt), copies
            print(f"\nPostgreSQL cut: {outage_answers} updates answered 'try again' while it was away, "
                  f"{load.total()} in all; broadcast of {len(residents)}: {dict(copies)} (copies: residents)")


def rt_sender_window(rt) -> int:
    """The most messages one sender has in flight (sent, not yet marked): notifications.sender."""
    from bot.app import outbox_config

    cfg = outbox_config(rt.settings)
    return max(1, -(-int(cfg.rate) // 4))


def _committee_role():
    from services.models import StaffRole

    return StaffRole.committee


async def test_redis_away_is_a_clear_error_health_shows_it_and_nothing_is_lost(tmp_path):
    redis = await fresh_redis()
    await redis.aclose()
    target = make_url(os.environ["TEST_REDIS_URL"].replace("redis://", "postgresql://"))
    database = int(target.database or "0")
    async with fresh_pg_database("redis_outage") as url:
        await _schema(url)
        async with TcpProxy(target.host or "127.0.0.1", target.port or 6379) as proxy, \
                webhook_bot(tmp_path, database_url=url,
                            redis_url=f"redis://127.0.0.1:{proxy.port}/{database}") as bot:
            rt = bot.rt
            await seed_registry(rt.sessions)
            user = await bot.client.create_user("秀英", language_code="en", phone_number="+8613800138001")
            # A conversation under way, its state in Redis: consent given, contact shared, name asked for.
            await user.send("/start")
            await bot_reply(user, lambda m: tr("en", "I agree") in str(m.get("reply_markup")))
            await user.press(tr("en", "I agree"))
            await bot_reply(user, lambda m: text_of(m).startswith(tr("en", "Other ways to join:")))
            await user.share_contact()
            await bot_reply(user, lambda m: "full name" in text_of(m))
            with ErrorLog() as errors:
                await proxy.cut()
                unhealthy = await bot.health_becomes(503)
                # The name typed now: it cannot take its chat's turn (that lives in Redis).
                seen = len(await user.bot_messages())
                await user.send("王秀英")
                # A message due now is not sent while the shared rate is away, and the log says why.
                async with rt.sessions() as s:
                    await outbox.enqueue(s, key="outage:1", chat_id=user.id, payload=outbox.make_payload(NOTE),
                                         priority=outbox.Priority.reply, now=rt.clock())
                    await s.commit()
                async with asyncio.timeout(30):
                    while not any("shared rate (Redis) did not answer" in line for line in errors.lines):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)  # a log line is no event anyone announces
                assert await _status(rt, "outage:1") != OutboxStatus.sent
                assert not [m for m in (await user.bot_messages())[seen:] if text_of(m) == NOTE]
                await proxy.restore()
                healthy = await bot.health_becomes(200)
            assert unhealthy["checks"]["redis"]["ok"] is False and unhealthy["checks"]["database"]["ok"] is True
            assert healthy["checks"]["redis"]["ok"] is True
            # The name was not lost: the webhook could not take its chat's turn and answered 503, said so
            # in the log, and Telegram delivered it again once Redis was back.
            assert any("its chat's turn could not be had" in line for line in errors.lines), errors.lines
            assert not [line for line in errors.lines if line.startswith("asyncio")], errors.lines  # no task failed
            await bot_reply(user, lambda m: "last 4" in text_of(m), seconds=60)
            assert not [m for m in (await user.bot_messages())[seen:] if text_of(m) in SORRY]
            # The conversation carries on where it was (its state was kept), the message goes once.
            await user.send(ID_WANG[-4:])
            await bot_reply(user, lambda m: tr("en", "You are verified. Welcome to your community!") in text_of(m))
            await bot_reply(user, lambda m: text_of(m) == NOTE)
            async with asyncio.timeout(30):
                while await _status(rt, "outage:1") != OutboxStatus.sent:  # noqa: ASYNC110 - marked right after
                    await asyncio.sleep(0.05)
            assert sum(text_of(m) == NOTE for m in await user.bot_messages()) == 1
            loggers = sorted({line.split(":")[0] for line in errors.lines})
            print(f"\nRedis away: the update refused with 503 and delivered again after, the message queued "
                  f"meanwhile sent once after; logged at ERROR by {loggers}")


async def _status(rt, key: str) -> OutboxStatus | None:
    async with rt.sessions() as s:
        return await s.scalar(select(OutboxMessage.status).where(OutboxMessage.idempotency_key == key))


async def test_messages_a_sender_holds_while_redis_is_away_are_not_sent_twice_by_another(engine, tmp_path):
    """Two senders on one database and one Redis, Redis away longer than a lease: the first claimed
    every message and cannot send; the second, with nothing in hand, finds the lease run out and claims
    them too. Once Redis is back each message goes once: the chat spacing kept in Redis lets one of the
    two write to a chat, and the other hands the message back (already sent, it stays sent)."""
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    from bot.db import session_factory
    from notifications.ratelimit import RedisRate
    from notifications.sender import OutboxSender
    from tests.harness import TOKEN, start_sandbox

    redis = await fresh_redis()
    await redis.aclose()
    target = make_url(os.environ["TEST_REDIS_URL"].replace("redis://", "postgresql://"))
    runner, url, sandbox = await start_sandbox()
    sessions = session_factory(engine)
    chats = [sandbox.create_user(f"居民 {i}").id for i in range(5)]
    async with sessions() as s:
        await outbox.enqueue_many(s, [outbox.OutboxItem(f"held:{chat}", chat, outbox.make_payload(NOTE))
                                      for chat in chats], now=datetime.now(UTC))
        await s.commit()
    bots, tasks = [], []
    stop = asyncio.Event()
    async with TcpProxy(target.host or "127.0.0.1", target.port or 6379) as proxy:

        def sender(name: str) -> OutboxSender:
            bot = Bot(token=TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(url)))
            bots.append(bot)
            shared = RedisRate(Redis(host="127.0.0.1", port=proxy.port, db=int(target.database or "0")),
                               bot_id=bot.id, rate=20, per_chat_rate=1, owns_client=True)
            return OutboxSender(bot, sessions, rate=20, worker_id=name, shared_rate=shared, batch=5,
                                lease=timedelta(seconds=1), reclaim_every=0.2, poll_interval=0.05)

        def failed(name: str) -> int:
            return sum(f"outbox sender {name}: the shared rate (Redis) did not answer" in line for line in errors.lines)

        try:
            with ErrorLog() as errors:
                await proxy.cut()
                tasks.append(asyncio.create_task(sender("first").run(stop)))
                async with asyncio.timeout(60):
                    while not failed("first"):  # noqa: ASYNC110 - a log line is no event anyone announces
                        await asyncio.sleep(0.05)
                # The second starts with nothing in hand; it fails only once it holds some of them.
                tasks.append(asyncio.create_task(sender("second").run(stop)))
                async with asyncio.timeout(60):
                    while not failed("second"):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                await proxy.restore()
                assert await sandbox.wait_until(lambda: all(sandbox.messages(c) for c in chats), 60)
                async with asyncio.timeout(60):
                    while await _pending(sessions):  # noqa: ASYNC110 - marked right after each send
                        await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for bot in bots:
                await bot.session.close()
            await runner.cleanup()
    copies = Counter(len([m for m in sandbox.messages(c) if m["from_bot"]]) for c in chats)
    assert copies == {1: 5}, copies


async def _pending(sessions) -> int:
    async with sessions() as s:
        return await s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.status != OutboxStatus.sent)) or 0
