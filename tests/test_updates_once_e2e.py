"""One update: in its chat's order, once, committed before it is answered — end to end, through the
sandbox and the real dispatcher running as in production (every update in its own task, the events
isolation of `run`).

The adversarial findings of issue 14, each replayed: a double tap on "Send now" (one notice), a
knowledge-check answer delivered twice or typed twice (one attempt counted), a contact shared the
moment the contact button appears after "I agree" (no second consent question). And the rules under
them: per-chat order with other chats in parallel (also across two workers on Redis), a redelivered
update acknowledged and not handled again, a reply that never goes out before the commit, and a
failed commit answered with "it did not work" instead of what was not saved.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from aiogram import Bot, F, Router
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import Chat, Message, Update, User
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import build_dispatcher
from services.models import Account, Notice, NoticeStatus, OutboxMessage, ProcessedUpdate, VerificationAttempt
from services.notices import REF as NOTICE_REF
from tests.harness import running_stack
from tests.helpers import body, consent, make_staff, texts, tr, verify
from tests.seed import ID_LI, ID_WANG, seed_registry

# --- probes: handlers that show how the dispatcher schedules updates ---------------------------------


class Probe:
    """A router that logs when its handlers start and end: "hold" answers, then waits until "release"
    (another chat) has been handled; "n …" answers between its start and its end."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    def router(self) -> Router:
        r = Router(name="probe")

        @r.message(F.text == "hold")
        async def hold(message: Message) -> None:
            self.log.append("hold:start")
            # Answering commits the update's transaction first (bot.middlewares), so the wait below holds
            # no database connection, as a handler waiting on Telegram holds none.
            await message.answer("holding")
            self.holding.set()
            await self.release.wait()
            self.log.append("hold:end")
            await message.answer("held")

        @r.message(F.text == "release")
        async def release(message: Message) -> None:
            self.log.append("release")
            self.release.set()
            await message.answer("released")

        @r.message(F.text.startswith("n "))
        async def numbered(message: Message) -> None:
            self.log.append(f"{message.text}:start")
            await message.answer(str(message.text))
            # Every chance for another update of the chat to start meanwhile: until one does, or 0.2 s.
            started = len(self.log)
            for _ in range(20):
                if len(self.log) > started:
                    break
                await asyncio.sleep(0.01)
            self.log.append(f"{message.text}:end")

        return r


async def test_updates_of_one_chat_are_handled_in_order_one_at_a_time(tmp_path):
    probe = Probe()
    async with running_stack(tmp_path, extra_routers=[probe.router()]) as stack:
        user = await stack.client.create_user("Order", language_code="en")
        for i in range(1, 6):
            stack.sandbox.user_text(user.id, f"n {i}")  # five messages at once, nobody waits
        await stack.settled()
        assert probe.log == [f"n {i}:{edge}" for i in range(1, 6) for edge in ("start", "end")]
        assert [m["text"] for m in await user.bot_messages()] == [f"n {i}" for i in range(1, 6)]


async def test_a_chat_waiting_on_its_own_update_does_not_hold_up_other_chats(tmp_path):
    """Chat A: "hold", then "n 2", which waits for it; chat B: "release", which does not wait for A."""
    probe = Probe()
    async with running_stack(tmp_path, extra_routers=[probe.router()]) as stack:
        first = await stack.client.create_user("A", language_code="en")
        second = await stack.client.create_user("B", language_code="en")
        stack.sandbox.user_text(first.id, "hold")
        stack.sandbox.user_text(first.id, "n 2")
        await asyncio.wait_for(probe.holding.wait(), 30)
        stack.sandbox.user_text(second.id, "release")
        await stack.settled()
        assert probe.log == ["hold:start", "release", "hold:end", "n 2:start", "n 2:end"]
        assert [m["text"] for m in await first.bot_messages()] == ["holding", "held", "n 2"]


def _redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but TEST_REDIS_URL is not set")
        pytest.skip("Redis not configured (set TEST_REDIS_URL)")
    return url


async def test_with_redis_a_chat_is_one_at_a_time_across_workers(tmp_path):
    """Two workers on one Redis: while worker 1 handles chat A, worker 2's update of chat A waits for
    it (aiogram's RedisEventIsolation), and chat B still goes through."""
    url = _redis_url()
    probe = Probe()
    # Worker 1 takes its chats' turns in Redis, as a webhook worker does (polling takes them in the process).
    async with running_stack(tmp_path, redis_url=url, extra_routers=[probe.router()], redis_turns=True) as stack:
        redis = stack.dp.storage.redis  # type: ignore[attr-defined]
        try:
            await redis.flushdb()
        except OSError as exc:
            if os.environ.get("REQUIRE_REDIS") == "1":
                pytest.fail(f"Redis required but unreachable: {exc}")
            pytest.skip(f"Redis unreachable: {exc}")
        # Worker 2: another dispatcher as `run` builds it, on the same database and Redis.
        other = build_dispatcher(stack.settings, stack.sessions, extra_routers=[probe.router()])
        try:
            first = await stack.client.create_user("A", language_code="en")
            second = await stack.client.create_user("B", language_code="en")
            stack.sandbox.user_text(first.id, "hold")
            await asyncio.wait_for(probe.holding.wait(), 30)
            assert [key async for key in redis.scan_iter("*lock*")]  # worker 1 holds chat A in Redis
            update = Update(update_id=900_000, message=Message(
                message_id=900_000, date=0, chat=Chat(id=first.id, type="private"), text="n 3",
                from_user=User(id=first.id, is_bot=False, first_name="A", language_code="en")))
            fed = asyncio.create_task(other.feed_update(stack.bot, update))
            await asyncio.sleep(0.3)  # not a timing assertion: gives worker 2 the chance to jump the queue
            assert "n 3:start" not in probe.log
            stack.sandbox.user_text(second.id, "release")
            await stack.settled()
            await asyncio.wait_for(fed, 30)
            assert probe.log == ["hold:start", "release", "hold:end", "n 3:start", "n 3:end"]
            assert [m["text"] for m in await first.bot_messages()] == ["holding", "held", "n 3"]
        finally:
            await other.storage.close()


async def test_with_redis_a_polling_bot_keeps_its_chats_turns_in_the_process(tmp_path):
    """Polling is one process (Telegram has one getUpdates caller): chat A's second update still waits for
    its first, and no turn is taken in Redis (two round trips an update saved). Conversations stay in
    Redis (tests/test_redis_storage.py)."""
    url = _redis_url()
    probe = Probe()
    async with running_stack(tmp_path, redis_url=url, extra_routers=[probe.router()]) as stack:
        redis = stack.dp.storage.redis  # type: ignore[attr-defined]
        await redis.flushdb()
        first = await stack.client.create_user("A", language_code="en")
        second = await stack.client.create_user("B", language_code="en")
        stack.sandbox.user_text(first.id, "hold")
        stack.sandbox.user_text(first.id, "n 2")
        await asyncio.wait_for(probe.holding.wait(), 30)
        assert [key async for key in redis.scan_iter("*lock*")] == []
        stack.sandbox.user_text(second.id, "release")
        await stack.settled()
        assert probe.log == ["hold:start", "release", "hold:end", "n 2:start", "n 2:end"]


# --- exactly once ------------------------------------------------------------------------------------


async def _count(sessions: async_sessionmaker[AsyncSession], model, *where) -> int:
    async with sessions() as s:
        return await s.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def _failures(stack) -> int:
    return await _count(stack.sessions, VerificationAttempt, VerificationAttempt.method == "knowledge",
                        VerificationAttempt.success.is_(False))


async def _successes(stack) -> int:
    return await _count(stack.sessions, VerificationAttempt, VerificationAttempt.method == "knowledge",
                        VerificationAttempt.success.is_(True))


async def test_a_wrong_knowledge_check_answer_counts_once_redelivered_or_typed_twice(stack):
    await seed_registry(stack.sessions)
    user = await stack.client.create_user("秀英", language_code="en", phone_number="+8613800138001")
    await consent(user, "en")
    await user.share_contact()
    await user.send("王秀英")
    wrong = await user.send("0000")
    assert "does not match" in await texts(user)
    assert await _failures(stack) == 1
    seen = len(await user.bot_messages())

    # Telegram delivers the same update again (it got no answer in time): acknowledged, nothing more.
    await stack.client.redeliver(wrong["update_id"])
    assert await _failures(stack) == 1
    assert len(await user.bot_messages()) == seen

    # The same wrong answer typed twice at once: the first is the answer, the second the next step's
    # input (the name asked for again), so one more failure, not two.
    await user.send("王秀英")
    stack.sandbox.user_text(user.id, "0000")
    stack.sandbox.user_text(user.id, "0000")
    await stack.settled()
    assert await _failures(stack) == 2
    replies = [body(m) for m in await user.bot_messages()][-2:]
    assert "does not match" in replies[0] and "last 4 characters" in replies[1]



async def test_a_right_knowledge_check_answer_delivered_twice_verifies_once(stack):
    await seed_registry(stack.sessions)
    user = await stack.client.create_user("建国", language_code="en", phone_number="+8613800138002")
    await consent(user, "en")
    await user.share_contact()
    await user.send("李建国")
    right = await user.send(ID_LI[-4:])
    assert "You are verified" in await texts(user)
    seen = len(await user.bot_messages())
    await stack.client.redeliver(right["update_id"])
    assert len(await user.bot_messages()) == seen  # not even "I didn't understand that"
    assert await _successes(stack) == 1
    assert sum("You are verified" in body(m) for m in await user.bot_messages()) == 1
    async with stack.session() as s:
        assert await s.scalar(select(func.count()).select_from(ProcessedUpdate).where(
            ProcessedUpdate.update_id == right["update_id"])) == 1


async def _compose(stack, staff) -> dict:
    """/notice → text → no media → everyone: the preview with its Send now button."""
    await staff.send("/notice")
    await staff.send("Water off on Tuesday 9:00–12:00")
    await staff.press(tr("en", "Skip"))
    await staff.press(tr("en", "Everyone in my area"))
    [preview] = [m for m in await staff.bot_messages_since_last_action() if "Audience:" in body(m)]
    return preview


def _button(message: dict, text: str) -> str:
    return next(b["callback_data"] for row in message["reply_markup"]["inline_keyboard"] for b in row
                if b["text"] == text)


async def _verified_residents(stack) -> list:
    await seed_registry(stack.sessions)
    users = []
    for name, phone, id_number in (("王秀英", "+8613800138001", ID_WANG), ("李建国", "+8613800138002", ID_LI)):
        user = await stack.client.create_user(name, language_code="en", phone_number=phone)
        await verify(user, name, id_number, "en")
        users.append(user)
    return users


async def test_a_double_tap_on_send_now_sends_the_notice_once(stack):
    residents = await _verified_residents(stack)
    staff = await make_staff(stack, lang="en")
    preview = await _compose(stack, staff)
    send_now = _button(preview, "Send now")

    # Two taps, two callback updates, both queued before the bot handles either.
    first = stack.sandbox.user_callback(staff.id, preview["message_id"], send_now)
    stack.sandbox.user_callback(staff.id, preview["message_id"], send_now)
    await stack.settled()
    async with stack.session() as s:
        notices = (await s.scalars(select(Notice))).all()
        assert [(n.status, n.recipients) for n in notices] == [(NoticeStatus.sent, 2)]
    assert await _count(stack.sessions, OutboxMessage, OutboxMessage.ref_type == NOTICE_REF) == 2
    said = [body(m) for m in await staff.bot_messages()]
    assert sum("is on its way to 2 people" in t for t in said) == 1
    assert sum(f"Notice #{notices[0].id} has already been sent." in t for t in said) == 1

    # And the first tap redelivered: nothing more.
    await stack.client.redeliver(first["update_id"])
    assert await _count(stack.sessions, OutboxMessage, OutboxMessage.ref_type == NOTICE_REF) == 2
    for user in residents:
        await user.wait_for_message(lambda m: "Water off" in body(m))
        assert sum("Water off" in body(m) for m in await user.bot_messages()) == 1


class ShareAtOnce(BaseRequestMiddleware):
    """The adversary: the moment the bot's "Other ways to join:" goes out (right after the message with
    the contact button, the consent handler's last reply), the user shares their contact, and that
    reply is held until the contact update has been handled, or for a second at most: the window in
    which the consent may not be committed yet."""

    def __init__(self, stack, user) -> None:
        self.stack, self.user = stack, user

    async def __call__(self, make_request: NextRequestMiddlewareType[Any], bot: Bot,
                       method: TelegramMethod[Any]) -> Any:
        if isinstance(method, SendMessage) and str(method.text).startswith(tr("en", "Other ways to join:")):
            tracker = self.stack.tracker
            started = tracker.started
            self.stack.sandbox.user_contact(self.user.id)
            # Handled meanwhile = every update but the consent one (held here) has finished.
            await tracker.wait_until(lambda: tracker.started > started and tracker.finished == tracker.started - 1,
                                     1.0)
        return await make_request(bot, method)


async def test_a_contact_shared_as_soon_as_its_button_appears_after_consent_is_not_asked_for_consent_again(stack):
    await seed_registry(stack.sessions)
    user = await stack.client.create_user("秀英", language_code="en", phone_number="+8613800138001")
    await user.send("/start")
    stack.bot.session.middleware(ShareAtOnce(stack, user))
    await user.press(tr("en", "I agree"))
    said = [body(m) for m in await user.bot_messages()]
    assert sum("Before you join: your privacy" in t for t in said) == 1  # asked once, at /start
    assert "Please type your full name as it is in the registry." in said[-1]
    async with stack.session() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == user.id))
        assert account is not None and account.consent_at is not None


# --- commit, then answer -----------------------------------------------------------------------------


def saving_router() -> Router:
    """"save N": add account N (not flushed), answer "saved N", then look from another session whether
    account N is in the database by the time that answer has gone out."""
    r = Router(name="saving")

    @r.message(F.text.startswith("save "))
    async def save(message: Message, session: AsyncSession, sessions: async_sessionmaker[AsyncSession],
                   now) -> None:
        tid = int(str(message.text).split()[1])
        session.add(Account(telegram_id=tid, chat_id=tid, first_name="saved", created_at=now))
        await message.answer(f"saved {tid}")
        async with sessions() as other:
            found = await other.scalar(select(Account.id).where(Account.telegram_id == tid))
        await message.answer("committed before the answer" if found else "answered before the commit")

    return r


async def test_a_reply_goes_out_only_after_what_it_claims_is_committed(tmp_path):
    async with running_stack(tmp_path, extra_routers=[saving_router()]) as stack:
        user = await stack.client.create_user("Saver", language_code="en")
        await user.send("save 777001")
        assert [body(m) for m in await user.bot_messages()] == ["saved 777001", "committed before the answer"]


async def test_when_the_commit_fails_the_claim_is_not_sent_and_the_user_is_told_it_did_not_work(tmp_path):
    async with running_stack(tmp_path, extra_routers=[saving_router()]) as stack:
        user = await stack.client.create_user("Saver", language_code="en")
        await user.send("/help")  # makes the user's account
        await user.send(f"save {user.id}")  # the user's own Telegram id: that account exists, the insert fails
        assert [body(m) for m in await user.bot_messages_since_last_action()] == [
            tr("en", "Sorry, that did not work: it could not be saved. Please try again in a moment.")]
        assert await _count(stack.sessions, Account, Account.telegram_id == user.id) == 1
