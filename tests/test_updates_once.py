"""Exactly once, at the service level (SQLite file and PostgreSQL): the processed-update marker, a
notice draft sent once however often "Send now" arrives, and "last seen" written only when stale."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from bot.db import session_factory
from services import notices as ns
from services.accounts import LAST_SEEN_RESOLUTION, TelegramUser, touch_account
from services.models import Notice, NoticeStatus, OutboxMessage, ProcessedUpdate
from services.updates import RETENTION, first_delivery, forget_processed
from tests.conftest import NOW
from tests.helpers import make_account, make_world

BOT = 42


async def test_an_update_is_marked_once_per_bot(session):
    assert await first_delivery(session, BOT, 1001, NOW) is True
    assert await first_delivery(session, BOT, 1001, NOW) is False  # the same update again
    assert await first_delivery(session, BOT + 1, 1001, NOW) is True  # another bot's update 1001
    await session.commit()
    assert await first_delivery(session, BOT, 1001, NOW + timedelta(hours=1)) is False
    assert await session.scalar(select(func.count()).select_from(ProcessedUpdate)) == 2


async def test_a_marker_rolled_back_with_its_update_lets_the_redelivery_through(session):
    assert await first_delivery(session, BOT, 7, NOW) is True
    await session.rollback()  # the update failed: neither its effects nor its marker stay
    assert await first_delivery(session, BOT, 7, NOW) is True


async def test_old_markers_are_pruned_recent_ones_kept(session):
    await first_delivery(session, BOT, 1, NOW - RETENTION - timedelta(minutes=1))
    await first_delivery(session, BOT, 2, NOW - RETENTION + timedelta(minutes=1))
    await first_delivery(session, BOT, 3, NOW)
    await session.commit()
    assert await forget_processed(session, NOW) == 1
    await session.commit()
    assert set(await session.scalars(select(ProcessedUpdate.update_id))) == {2, 3}
    assert await forget_processed(session, NOW) == 0


async def test_a_concurrent_duplicate_waits_for_the_first_and_skips(engine):
    """Two workers got the same update: the second's marker waits on the first's uncommitted row."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite write transactions are serial (BEGIN IMMEDIATE): nothing runs concurrently")
    sessions = session_factory(engine)
    async with sessions() as first, sessions() as second:
        assert await first_delivery(first, BOT, 55, NOW) is True
        duplicate = asyncio.create_task(first_delivery(second, BOT, 55, NOW))
        await asyncio.sleep(0.2)  # not a timing assertion: only gives the duplicate time to block
        assert not duplicate.done()  # it waits on the first worker's uncommitted marker
        await first.commit()
        assert await duplicate is False
    async with sessions() as first, sessions() as second:
        assert await first_delivery(first, BOT, 56, NOW) is True
        redelivery = asyncio.create_task(first_delivery(second, BOT, 56, NOW))
        await asyncio.sleep(0.2)
        await first.rollback()  # the first worker failed: the redelivery is handled
        assert await redelivery is True
        await second.commit()


async def test_last_seen_is_written_only_when_stale(engine):
    sessions = session_factory(engine)
    user = TelegramUser(5001, "Mei", None, "mei", "en")
    async with sessions() as s:
        await touch_account(s, user, NOW)
        await s.commit()
    updates: list[str] = []

    def count_updates(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count_updates)
    try:
        async with sessions() as s:
            account = await touch_account(s, user, NOW + LAST_SEEN_RESOLUTION - timedelta(seconds=1))
            await s.commit()
        assert updates == []  # same names, seen moments ago: the update writes nothing to the account
        assert account.last_seen_at == NOW
        async with sessions() as s:
            account = await touch_account(s, user, NOW + LAST_SEEN_RESOLUTION)
            await s.commit()
        assert len(updates) == 1 and account.last_seen_at == NOW + LAST_SEEN_RESOLUTION
        async with sessions() as s:
            account = await touch_account(s, TelegramUser(5001, "Mei Ling", None, "mei", "en"),
                                          NOW + LAST_SEEN_RESOLUTION)
            await s.commit()
        assert len(updates) == 2 and account.first_name == "Mei Ling"  # a new name is written at once
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count_updates)


async def refusal(send) -> str:
    """The msgid a refused send was refused with (its words, whatever the current language)."""
    with pytest.raises(ns.NoticeError) as refused:
        await send
    return refused.value.msgid


NOT_YOURS = "There is no notice #{id} in your area."
ALREADY_SENT = "Notice #{id} has already been sent."


async def _draft(session):
    world = await make_world(session)
    staff = world.dxyc_staff
    await make_account(session, 9001, world.residents["wang"])
    aud = await ns.audience(session, staff, "committee", None)
    draft = await ns.save_draft(session, staff, text="Water off on Tuesday", aud=aud, now=NOW)
    await session.commit()
    return world, staff, draft


async def test_a_draft_is_sent_once_and_a_second_send_is_refused(session):
    _world, staff, draft = await _draft(session)
    assert draft.status == NoticeStatus.draft
    sent = await ns.send_draft(session, staff, draft.id, now=NOW)
    await session.commit()
    assert (sent.status, sent.recipients) == (NoticeStatus.sent, 1)
    assert await refusal(ns.send_draft(session, staff, draft.id, now=NOW)) == ALREADY_SENT
    later = NOW + timedelta(hours=1)
    assert await refusal(ns.send_draft(session, staff, draft.id, now=NOW, send_at=later)) == ALREADY_SENT
    await session.commit()
    assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    assert await session.scalar(select(func.count()).select_from(Notice)) == 1


async def test_a_draft_is_only_its_authors_and_a_discarded_one_cannot_be_sent(session):
    world, staff, draft = await _draft(session)
    assert await refusal(ns.send_draft(session, world.flsq_staff, draft.id, now=NOW)) == NOT_YOURS
    assert await ns.discard_draft(session, world.flsq_staff, draft.id) is False
    assert (await session.get(Notice, draft.id)).status == NoticeStatus.draft  # untouched by the refusals
    assert await ns.discard_draft(session, staff, draft.id) is True
    await session.commit()
    assert await refusal(ns.send_draft(session, staff, draft.id, now=NOW)) == NOT_YOURS
    assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


async def test_two_workers_sending_one_draft_at_once_send_it_once(engine):
    """Two "Send now" taps handled by two workers at the same moment: the second waits for the first's
    row lock, then finds no draft and is refused."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite write transactions are serial (BEGIN IMMEDIATE): nothing runs concurrently")
    sessions = session_factory(engine)
    async with sessions() as s:
        _world, staff, draft = await _draft(s)
    async with sessions() as first, sessions() as second:
        await ns.send_draft(first, staff, draft.id, now=NOW)
        late = asyncio.create_task(ns.send_draft(second, staff, draft.id, now=NOW))
        await asyncio.sleep(0.2)  # only lets the second tap reach the row lock
        assert not late.done()
        await first.commit()
        assert await refusal(late) == ALREADY_SENT
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(OutboxMessage)) == 1


async def test_chat_order_serves_a_chat_in_arrival_order_and_forgets_idle_chats():
    from aiogram.fsm.storage.base import StorageKey

    from bot.middlewares import ChatOrder

    order = ChatOrder()
    one, other = StorageKey(BOT, 1, 1), StorageKey(BOT, 2, 2)
    seen: list[str] = []
    release = asyncio.Event()

    async def handle(key: StorageKey, name: str, wait: bool = False) -> None:
        async with order.lock(key):
            seen.append(name)
            if wait:
                await release.wait()

    first = asyncio.create_task(handle(one, "a1", wait=True))
    await asyncio.sleep(0)
    later = [asyncio.create_task(handle(one, f"a{i}")) for i in range(2, 5)]
    await handle(other, "b1")  # another chat is not held up by the first one's wait
    assert seen == ["a1", "b1"] and order.chats_in_hand() == 1
    release.set()
    await asyncio.gather(first, *later)
    assert seen == ["a1", "b1", "a2", "a3", "a4"]
    assert order.chats_in_hand() == 0  # no lock is kept for a chat with nothing in hand
