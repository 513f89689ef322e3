"""The outbox table and its queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.db import session_factory
from services import outbox
from services.models import Account, OutboxMessage, OutboxStatus
from services.outbox import OutboxItem, Priority
from tests.conftest import NOW

LEASE = timedelta(seconds=60)


def hello(text: str = "hello") -> dict:
    return outbox.make_payload(text, buttons=[[outbox.button("OK", callback_data="ok:1")]])


async def test_enqueue_same_key_twice_inserts_once(session):
    first = await outbox.enqueue(session, key="notice:1:7", chat_id=7, payload=hello(),
                                 priority=Priority.broadcast, now=NOW)
    second = await outbox.enqueue(session, key="notice:1:7", chat_id=7, payload=hello("again"),
                                  priority=Priority.broadcast, now=NOW)
    await session.commit()
    rows = (await session.scalars(select(OutboxMessage))).all()
    assert (first, second) == (True, False)
    assert len(rows) == 1 and rows[0].payload["text"] == "hello"
    assert rows[0].status == OutboxStatus.pending and rows[0].not_before == NOW


async def test_enqueue_does_not_commit(engine):
    async with session_factory(engine)() as s:
        await outbox.enqueue(s, key="k", chat_id=1, payload=hello(), priority=Priority.reply, now=NOW)
        await s.rollback()
    async with session_factory(engine)() as s:
        assert (await s.scalars(select(OutboxMessage))).all() == []


async def test_enqueue_many_is_idempotent_and_counts_new_rows(session):
    items = [OutboxItem(f"b:{i}", 1000 + i, hello(), Priority.broadcast, ref_type="notice_recipient",
                        ref_id=i) for i in range(500)]
    assert await outbox.enqueue_many(session, items, now=NOW) == 500
    assert await outbox.enqueue_many(session, [*items[:10], OutboxItem("b:new", 1, hello())], now=NOW) == 1
    await session.commit()
    counts = await outbox.delivery_counts(session, "notice_recipient", range(500))
    assert counts[OutboxStatus.pending] == 500 and counts[OutboxStatus.sent] == 0


async def test_bad_payload_is_refused_at_enqueue(session):
    with pytest.raises(ValueError, match="callback_data or url"):
        await outbox.enqueue(session, key="x", chat_id=1, now=NOW, priority=Priority.reply,
                             payload={"text": "hi", "buttons": [[{"text": "?"}]]})
    with pytest.raises(ValueError, match="file_id or path"):
        outbox.make_payload("caption", photo={})


async def test_claim_takes_alerts_first_then_checkins_replies_broadcasts(session):
    order = [Priority.broadcast, Priority.reply, Priority.alert, Priority.broadcast, Priority.checkin,
             Priority.alert]
    for i, prio in enumerate(order):
        await outbox.enqueue(session, key=f"k{i}", chat_id=100 + i, payload=hello(f"m{i}"), priority=prio,
                             now=NOW)
    await session.commit()
    got = []
    while batch := await outbox.claim(session, worker_id="w", limit=2, lease=LEASE, now=NOW):
        got += [(row.priority, row.payload["text"]) for row in batch]
        await session.commit()
    assert got == [(0, "m2"), (0, "m5"), (1, "m4"), (2, "m1"), (3, "m0"), (3, "m3")]
    rows = (await session.scalars(select(OutboxMessage))).all()
    assert {(r.status, r.claimed_by, r.claimed_until) for r in rows} == {
        (OutboxStatus.sending, "w", NOW + LEASE)}


async def test_claim_skips_rows_not_yet_due_and_takes_one_per_chat(session):
    await outbox.enqueue(session, key="later", chat_id=1, payload=hello(), priority=Priority.alert,
                         not_before=NOW + timedelta(minutes=5), now=NOW)
    await outbox.enqueue(session, key="a", chat_id=2, payload=hello("a"), priority=Priority.reply, now=NOW)
    await outbox.enqueue(session, key="b", chat_id=2, payload=hello("b"), priority=Priority.reply, now=NOW)
    await outbox.enqueue(session, key="c", chat_id=3, payload=hello("c"), priority=Priority.reply, now=NOW)
    await session.commit()

    batch = await outbox.claim(session, worker_id="w", limit=10, lease=LEASE, now=NOW)
    assert [r.payload["text"] for r in batch] == ["a", "c"]
    await session.commit()
    # Chat 2 sent a moment ago: the caller says skip it.
    assert await outbox.claim(session, worker_id="w", limit=10, lease=LEASE, now=NOW, skip_chats=[2]) == []
    batch = await outbox.claim(session, worker_id="w", limit=10, lease=LEASE, now=NOW + timedelta(minutes=5))
    assert sorted(r.payload["text"] for r in batch) == ["b", "hello"]


async def test_expired_lease_makes_row_claimable_again(session):
    await outbox.enqueue(session, key="k", chat_id=1, payload=hello(), priority=Priority.checkin, now=NOW)
    await session.commit()
    [row] = await outbox.claim(session, worker_id="dead", limit=5, lease=LEASE, now=NOW)
    await session.commit()

    assert await outbox.reclaim_expired(session, now=NOW + LEASE - timedelta(seconds=1)) == 0
    assert await outbox.claim(session, worker_id="w2", limit=5, lease=LEASE, now=NOW + LEASE) == []
    assert await outbox.reclaim_expired(session, now=NOW + LEASE + timedelta(seconds=1)) == 1
    await session.commit()
    [again] = await outbox.claim(session, worker_id="w2", limit=5, lease=LEASE, now=NOW + LEASE)
    await session.commit()
    assert again.id == row.id and again.claimed_by == "w2" and again.attempts == 0


async def test_mark_outcomes_report_once(engine):
    factory = session_factory(engine)
    async with factory() as s:
        s.add(Account(telegram_id=9, chat_id=9, first_name="Li", created_at=NOW))
        for key, chat in (("ok", 1), ("blocked", 9), ("flaky", 3)):
            await outbox.enqueue(s, key=key, chat_id=chat, payload=hello(key), priority=Priority.reply, now=NOW)
        await s.commit()
        ids = {r.idempotency_key: r.id for r in await outbox.claim(s, worker_id="w", limit=5, lease=LEASE,
                                                                    now=NOW)}
        await s.commit()

    async with factory() as s:
        sent = await outbox.mark_sent(s, ids["ok"], telegram_message_id=55, now=NOW)
        assert sent is not None and sent.status == OutboxStatus.sent and sent.telegram_message_id == 55
        assert await outbox.mark_sent(s, ids["ok"], telegram_message_id=56, now=NOW) is None
        assert (await outbox.mark_unreachable(s, ids["blocked"], error="Forbidden", now=NOW)) is not None
        retry = await outbox.mark_retry(s, ids["flaky"], error="boom", now=NOW, max_attempts=3)
        assert retry.status == OutboxStatus.pending and retry.not_before == NOW + timedelta(seconds=2)
        await s.commit()

    async with factory() as s:
        account = await s.scalar(select(Account).where(Account.chat_id == 9))
        assert account.unreachable_at == NOW
        for attempt in (2, 3):
            later = NOW + timedelta(hours=attempt)
            assert [r.id for r in await outbox.claim(s, worker_id="w", limit=5, lease=LEASE, now=later)] == [
                ids["flaky"]]
            row = await outbox.mark_retry(s, ids["flaky"], error="boom", now=later, max_attempts=3)
            await s.commit()
        assert row.status == OutboxStatus.failed and row.attempts == 3
        assert row.last_error == "gave up after 3 attempts: boom"
        counts = await outbox.delivery_counts(s, "none", [1])
        assert set(counts.values()) == {0}


async def test_cancel_stops_pending_rows_and_reports_per_ref(session):
    items = [OutboxItem(f"n:{i}", i, hello(), ref_type="notice_recipient", ref_id=i) for i in range(1, 5)]
    await outbox.enqueue_many(session, items, now=NOW)
    await session.commit()
    [first] = await outbox.claim(session, worker_id="w", limit=1, lease=LEASE, now=NOW)
    await outbox.mark_sent(session, first.id, telegram_message_id=1, now=NOW)
    assert await outbox.cancel(session, "notice_recipient", [1, 2, 3]) == 2
    await session.commit()
    assert await outbox.delivery_statuses(session, "notice_recipient", [1, 2, 3, 4, 5]) == {
        1: OutboxStatus.sent, 2: OutboxStatus.cancelled, 3: OutboxStatus.cancelled, 4: OutboxStatus.pending}


async def test_purge_forgets_only_old_finished_rows(session):
    await outbox.enqueue_many(session, [OutboxItem("old", 1, hello()), OutboxItem("waiting", 2, hello())],
                              now=NOW)
    await session.commit()
    [row] = await outbox.claim(session, worker_id="w", limit=1, lease=LEASE, now=NOW)
    await outbox.mark_sent(session, row.id, telegram_message_id=1, now=NOW)
    await session.commit()
    assert await outbox.purge_finished(session, older_than=timedelta(days=30), now=NOW) == 0
    assert await outbox.purge_finished(session, older_than=timedelta(days=30), now=NOW + timedelta(days=31)) == 1
    await session.commit()
    assert [r.idempotency_key for r in await session.scalars(select(OutboxMessage))] == ["waiting"]


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)  # SKIP LOCKED; SQLite has one writer
async def test_concurrent_claimers_never_get_the_same_row(engine):
    factory = session_factory(engine)
    async with factory() as s:
        await outbox.enqueue_many(s, [OutboxItem(f"k{i}", i, hello(), priority=i % 4) for i in range(200)],
                                  now=NOW)
        await s.commit()

    # Two sessions hold their claims open at the same moment: the second must skip the first's rows.
    async with factory() as a, factory() as b:
        rows_a = await outbox.claim(a, worker_id="a", limit=30, lease=LEASE, now=NOW)
        rows_b = await outbox.claim(b, worker_id="b", limit=30, lease=LEASE, now=NOW)
        assert len(rows_a) == len(rows_b) == 30
        assert not {r.id for r in rows_a} & {r.id for r in rows_b}
        await a.commit()
        await b.commit()

    claimed: dict[str, list[int]] = {}

    async def drain(worker: str) -> None:
        async with factory() as s:
            while batch := await outbox.claim(s, worker_id=worker, limit=7, lease=LEASE, now=NOW):
                claimed.setdefault(worker, []).extend(r.id for r in batch)
                await s.commit()
                await asyncio.sleep(0)

    await asyncio.gather(*(drain(f"w{i}") for i in range(4)))
    everything = [i for ids in claimed.values() for i in ids]
    assert len(everything) == len(set(everything)) == 140
