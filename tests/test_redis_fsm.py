"""Conversation state in Redis, as several workers share it: a conversation begun on one worker
goes on on another, two bots on one Redis never see each other's state, and an abandoned
conversation expires after FSM_TTL."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from aiogram import Bot, Dispatcher
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from redis.asyncio import Redis

from bot.app import build_bot, build_dispatcher, build_storage
from bot.db import create_engine, session_factory
from bot.sandbox.client import SandboxClient
from bot.settings import Settings
from services.models import Base
from tests.harness import TOKEN, start_sandbox
from tests.helpers import fresh_redis, texts
from tests.seed import ID_WANG, seed_registry

BOT_ID = int(TOKEN.split(":")[0])


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = await fresh_redis()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@dataclass
class Workers:
    """Two dispatchers (each with its own Redis storage, as two processes have) taking turns on the
    updates of one sandbox: update 1 goes to worker 0, update 2 to worker 1, …"""

    settings: Settings
    client: SandboxClient
    bot: Bot
    dispatchers: list[Dispatcher]
    handled: Counter[int] = field(default_factory=Counter)

    def key(self, user_id: int, bot_id: int = BOT_ID) -> StorageKey:
        return StorageKey(bot_id=bot_id, chat_id=user_id, user_id=user_id)

    async def feed(self, stop: asyncio.Event) -> None:
        offset, turn = 0, 0
        while not stop.is_set():
            for update in await self.bot.get_updates(offset=offset, timeout=1):
                worker = turn % len(self.dispatchers)
                await self.dispatchers[worker].feed_update(self.bot, update)
                self.handled[worker] += 1
                turn += 1
                offset = update.update_id + 1


@contextlib.asynccontextmanager
async def two_workers(tmp: Path, url: str, **overrides) -> AsyncIterator[Workers]:
    runner, base_url, _sandbox = await start_sandbox()
    settings = Settings(_env_file=None, bot_token=TOKEN, telegram_api_base=base_url, data_dir=tmp,
                        database_url=f"sqlite+aiosqlite:///{tmp / 'fsm.sqlite3'}", secret_key="test-secret-key",
                        redis_url=url, **overrides)
    engine = create_engine(settings.db_url, data_keys=settings.data_keys())
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = session_factory(engine)
    await seed_registry(sessions)
    bot = build_bot(settings)
    dispatchers = [build_dispatcher(settings, sessions) for _ in range(2)]
    client = SandboxClient(base_url)
    workers = Workers(settings, client, bot, dispatchers)
    stop = asyncio.Event()
    feeding = asyncio.create_task(workers.feed(stop))
    try:
        yield workers
    finally:
        stop.set()
        await asyncio.wait_for(feeding, 10)
        for dp in dispatchers:
            await dp.storage.close()
        await client.close()
        await bot.session.close()
        await engine.dispose()
        await runner.cleanup()


def test_redis_storage_keys_carry_the_bot_id_and_expire(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/3", fsm_ttl="2h")
    storage = build_storage(settings)
    assert isinstance(storage, RedisStorage)
    assert storage.key_builder.build(StorageKey(bot_id=7, chat_id=1, user_id=2), "state") == "fsm:7:1:2:state"
    assert storage.state_ttl == storage.data_ttl == timedelta(hours=2)
    assert Settings(_env_file=None, data_dir=tmp_path).fsm_ttl == timedelta(days=1)


async def test_a_verification_begun_on_one_worker_completes_on_the_other(tmp_path, redis):
    async with two_workers(tmp_path, redis_url_of(redis)) as workers:
        probe = build_storage(workers.settings)  # a third process looking at the shared state
        try:
            user = await workers.client.create_user("秀英", language_code="en", phone_number="+8613800138001")
            await user.send("/start")  # worker 0
            await user.press("I agree")  # worker 1
            await user.share_contact()  # worker 0
            key = workers.key(user.id)
            assert await probe.get_state(key) == "Verify:full_name"
            assert "resident_id" in await probe.get_data(key)
            # Both records expire a day after the last step (FSM_TTL's default), not never.
            day_ms = 86_400_000
            for part in ("state", "data"):
                ttl = await redis.pttl(f"fsm:{BOT_ID}:{user.id}:{user.id}:{part}")
                assert day_ms - 60_000 < ttl <= day_ms, part
            # Another bot sharing this Redis sees nothing of it.
            assert await probe.get_state(workers.key(user.id, bot_id=BOT_ID + 1)) is None
            await user.send("王秀英")  # worker 1
            assert await probe.get_state(key) == "Verify:id_last4"
            await user.send(ID_WANG[-4:])  # worker 0
            assert "You are verified" in await texts(user)
            assert await probe.get_state(key) is None
            assert workers.handled == {0: 3, 1: 2}
        finally:
            await probe.close()


async def test_an_abandoned_conversation_expires_after_fsm_ttl(tmp_path, redis):
    async with two_workers(tmp_path, redis_url_of(redis), fsm_ttl="1s") as workers:
        user = await workers.client.create_user("秀英", language_code="en", phone_number="+8613800138001")
        await user.send("/start")
        await user.press("I agree")
        await user.share_contact()
        state = f"fsm:{BOT_ID}:{user.id}:{user.id}:state"
        assert 0 < await redis.pttl(state) <= 1000
        for _ in range(200):  # Redis drops the key by itself, within 10 s at the very most
            if not await redis.exists(state):
                break
            await asyncio.sleep(0.05)
        assert not await redis.exists(state)
        assert not await redis.exists(f"fsm:{BOT_ID}:{user.id}:{user.id}:data")
        # The name typed now is no longer read as an answer: that conversation is gone.
        await user.send("王秀英")
        assert "last 4 characters of your ID number" not in await texts(user)
        assert await workers.dispatchers[0].storage.get_state(workers.key(user.id)) is None


def redis_url_of(client: Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
