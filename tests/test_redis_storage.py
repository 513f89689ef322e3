"""With REDIS_URL set, conversation state lives in Redis, so a restarted worker (or another one)
continues a half-finished verification."""

from __future__ import annotations

import os

import pytest
from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey
from aiogram.fsm.storage.redis import RedisStorage

from tests.harness import running_stack
from tests.seed import ID_WANG, seed_registry

REDIS_URL = os.environ.get("TEST_REDIS_URL")


def redis_url() -> str:
    if not REDIS_URL:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but TEST_REDIS_URL is not set")
        pytest.skip("Redis not configured (set TEST_REDIS_URL)")
    return REDIS_URL


async def test_verification_state_is_kept_in_redis(tmp_path):
    url = redis_url()
    probe = RedisStorage.from_url(url, key_builder=DefaultKeyBuilder(with_bot_id=True))  # as build_storage
    try:
        await probe.redis.flushdb()
    except OSError as exc:
        await probe.close()
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis required but unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    try:
        async with running_stack(tmp_path, redis_url=url) as stack:
            await seed_registry(stack.sessions)
            user = await stack.client.create_user("秀英", language_code="en", phone_number="+8613800138001")
            await user.send("/start")
            await user.press("I agree")
            await user.share_contact()
            key = StorageKey(bot_id=42, chat_id=user.id, user_id=user.id)
            assert await probe.get_state(key) == "Verify:full_name"
            assert "resident_id" in await probe.get_data(key)
            await user.send("王秀英")
            assert await probe.get_state(key) == "Verify:id_last4"
            await user.send(ID_WANG[-4:])
            assert "You are verified" in "\n".join(m["text"] for m in await user.bot_messages_since_last_action())
            assert await probe.get_state(key) is None
    finally:
        await probe.redis.flushdb()
        await probe.close()
