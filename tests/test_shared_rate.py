"""One Telegram rate for every worker of a bot token (notifications.ratelimit.RedisRate): the
limiter's bookings driven by a fake clock from two "workers", then two real outbox senders sharing
one Redis and one database deliver into the sandbox within the rate, each message once."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from redis.asyncio import Redis
from sqlalchemy import select

from bot.app import Runtime
from bot.db import session_factory
from bot.runtime import build_sender
from bot.settings import Settings
from notifications.ratelimit import CHAT_SPACING, RedisRate, Slot
from notifications.sender import OutboxSender
from services import outbox
from services.models import OutboxMessage, OutboxStatus
from services.outbox import OutboxItem
from tests.conftest import NOW
from tests.harness import TOKEN, start_sandbox
from tests.helpers import fresh_redis

T0 = 1_800_000_000.0  # the fake clock's start, in seconds (Redis's own clock is not used)
BOT = 901


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = await fresh_redis()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
async def two_clients(redis) -> AsyncIterator[list[Redis]]:
    """Two connections to the test Redis, as two worker processes have."""
    kw = redis.connection_pool.connection_kwargs
    clients = [Redis(host=kw["host"], port=kw["port"], db=kw["db"]) for _ in range(2)]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


def most_in_any_window(times: list[float], seconds: float = 1.0) -> int:
    """The largest number of ``times`` in any half-open window [t, t + seconds)."""
    times = sorted(times)
    most, j = 0, 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + seconds:
            j += 1
        most = max(most, j - i)
    return most


async def test_two_workers_booking_on_one_redis_get_the_rate_between_them(two_clients):
    rate = 25
    limiters = [RedisRate(c, bot_id=BOT, rate=rate, per_chat_rate=1) for c in two_clients]
    # Each worker books a slot, sleeps until it, sends and books the next: a fresh chat each time,
    # so only the bot's rate binds. Ten seconds of the fake clock, events in time order.
    next_ask = [T0, T0 + 0.0001]
    grants: list[tuple[int, float]] = []
    chat = 0
    while min(next_ask) < T0 + 10:
        worker = next_ask.index(min(next_ask))
        now = next_ask[worker]
        chat += 1
        slot = await limiters[worker].reserve(chat, now=now)
        if slot.granted:
            assert slot.at == pytest.approx(now + slot.wait, abs=1e-6)
            grants.append((worker, slot.at))
            next_ask[worker] = max(slot.at, now + 1e-6)
        else:
            next_ask[worker] = now + slot.wait
    times = [at for _, at in grants if at < T0 + 10]
    assert rate * 10 - 1 <= len(times) <= rate * 10  # the whole rate is used, and no more
    assert most_in_any_window(times) == rate  # never more than 25 in any second, whoever booked
    assert min(b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False)) >= 1 / rate - 1e-6
    per_worker = [sum(1 for w, _ in grants if w == i) for i in (0, 1)]
    assert min(per_worker) >= 100  # both shared it (neither starved), not 25 each


async def test_a_burst_books_no_further_ahead_than_the_horizon(two_clients):
    a, b = (RedisRate(c, bot_id=BOT, rate=20, per_chat_rate=1, horizon=1.0) for c in two_clients)
    slots = [await (a if i % 2 else b).reserve(1000 + i, now=T0) for i in range(60)]
    granted = [s for s in slots if s.granted]
    assert len(granted) == 21  # now, and every 50 ms up to one second ahead
    assert [s.wait for s in granted] == pytest.approx([i * 0.05 for i in range(21)], abs=1e-6)
    refused = slots[21]
    assert not refused.granted and not refused.chat_busy and refused.wait == pytest.approx(0.05, abs=1e-6)


async def test_a_chat_is_spaced_across_workers_and_a_busy_chat_costs_no_slot(two_clients):
    a, b = (RedisRate(c, bot_id=BOT, rate=20, per_chat_rate=1) for c in two_clients)
    first = await a.reserve(7, now=T0)
    assert first == Slot(True, 0.0, False, T0)
    busy = await b.reserve(7, now=T0)  # the other worker has a message for the same chat
    assert not busy.granted and busy.chat_busy and busy.wait == pytest.approx(CHAT_SPACING, abs=1e-6)
    other = await b.reserve(8, now=T0)
    assert other.granted and other.at == pytest.approx(T0 + 0.05, abs=1e-6)  # the busy ask took nothing
    assert (await b.reserve(7, now=T0 + CHAT_SPACING - 0.01)).chat_busy
    assert (await b.reserve(7, now=T0 + CHAT_SPACING)).granted


async def test_flood_control_pauses_every_worker_and_bots_do_not_share_a_rate(two_clients):
    a, b = (RedisRate(c, bot_id=BOT, rate=20, per_chat_rate=1) for c in two_clients)
    await a.pause(5, now=T0)  # Telegram told worker A: retry after 5 s
    waiting = await b.reserve(1, now=T0 + 1)
    assert not waiting.granted and not waiting.chat_busy and waiting.wait == pytest.approx(3.0, abs=1e-6)
    slot = await b.reserve(1, now=T0 + 4)
    assert slot.granted and slot.at == pytest.approx(T0 + 5, abs=1e-6)
    other_bot = RedisRate(two_clients[0], bot_id=BOT + 1, rate=20, per_chat_rate=1)
    assert await other_bot.reserve(1, now=T0 + 1) == Slot(True, 0.0, False, T0 + 1)


class RecordingRate(RedisRate):
    """The real limiter on Redis's clock, noting the slots it grants (for the assertions)."""

    def __init__(self, *args, grants: list[tuple[int, float]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.grants = grants

    async def reserve(self, chat_id: int, now: float | None = None) -> Slot:
        slot = await super().reserve(chat_id, now)
        if slot.granted:
            self.grants.append((chat_id, slot.at))
        return slot


async def test_two_senders_on_one_redis_deliver_within_the_shared_rate_each_message_once(engine, redis):
    runner, url, sandbox = await start_sandbox()
    sandbox.set_rate_limits(30, None)  # Telegram's overall limit; two senders at 20 each would break it
    sessions = session_factory(engine)
    kw = redis.connection_pool.connection_kwargs
    grants: list[tuple[int, float]] = []
    senders: list[OutboxSender] = []
    bots = []
    try:
        chats = [sandbox.create_user(f"居民 {i}").id for i in range(15)]
        async with sessions() as session:
            await outbox.enqueue_many(session, [
                OutboxItem(f"shared:{chat}:{n}", chat, outbox.make_payload(f"第 {n} 条"))
                for chat in chats for n in (1, 2)], now=NOW)
            await session.commit()
        for name in ("a", "b"):
            bot = Bot(token=TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(url)))
            bots.append(bot)
            shared = RecordingRate(Redis(host=kw["host"], port=kw["port"], db=kw["db"]), bot_id=bot.id, rate=20,
                                   per_chat_rate=1, grants=grants, owns_client=True)
            senders.append(OutboxSender(bot, sessions, rate=20, worker_id=name, shared_rate=shared, batch=5,
                                        poll_interval=0.02))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(s.run(stop)) for s in senders]
        try:
            for _ in range(600):
                if sum(s.counters["sent"] for s in senders) >= 30:
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        async with sessions() as session:
            statuses = list(await session.scalars(select(OutboxMessage.status)))
        assert statuses == [OutboxStatus.sent] * 30
        assert all(len([m for m in sandbox.messages(chat) if m["from_bot"]]) == 2 for chat in chats)
        assert all(s.counters["sent"] > 0 for s in senders)  # both worked, on one schedule
        # The slots handed out (Redis's clock): 20 a second between them, and each chat's 1.05 s apart.
        assert most_in_any_window([at for _, at in grants]) <= 20
        by_chat = defaultdict(list)
        for chat, at in grants:
            by_chat[chat].append(at)
        assert all(b - a >= CHAT_SPACING - 1e-6 for ats in by_chat.values()
                   for a, b in zip(sorted(ats), sorted(ats)[1:], strict=False))
        assert sandbox.stats()["too_many_requests"] == 0  # Telegram (the sandbox) never said 429
    finally:
        for bot in bots:
            await bot.session.close()
        await runner.cleanup()


def test_workers_share_one_schedule_with_redis_and_split_the_rate_without(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, outbox_rate=24, outbox_senders=3,
                        redis_url="redis://127.0.0.1:6379/3")
    rt = Runtime(settings, None, None, Bot(TOKEN), None)
    sender = build_sender(rt)
    assert isinstance(sender.shared_rate, RedisRate)
    assert (sender.shared_rate.rate, sender.shared_rate.per_chat_rate, sender.batch) == (24, 1, 2)
    assert sender.shared_rate._key == "communitybot:outbox:{42}"
    alone = build_sender(Runtime(settings.model_copy(update={"redis_url": None}), None, None, Bot(TOKEN), None))
    assert alone.shared_rate is None and alone.rate == 8

