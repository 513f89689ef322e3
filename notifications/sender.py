"""The only code that sends messages: it drains the outbox under Telegram's limits.

Loop: claim a small batch of due rows (highest priority first) → send each through the token
bucket → mark each row in its own transaction. Claiming only a quarter second's worth at a time
means the priority order is re-read four times a second, so an alert enqueued behind 100,000
broadcasts goes out within about 0.25 s (plus the poll interval when another process enqueued it).

Crash safety and the in-flight window
-------------------------------------
A row is ``sending`` (with a lease) from its claim until it is marked. If the process dies in
between, the lease expires and another sender (or this one, restarted) sends the row again, so
nothing is lost. A duplicate is possible only for a row that Telegram accepted but that was not
yet marked: at most ``max_in_flight`` rows (default = ``batch`` = ceil(rate / 4), i.e. 7 at
25 msg/s, 8 at 29 msg/s) per sender process that is killed. Rows claimed but not yet started are
re-sent without duplicates. A sender starts a row's request only while the lease still covers it
(half the lease at most, the request's timeout): a row it held longer, say while the shared rate was
away, may be another sender's by then, so it leaves that row to the lease's end.

Limits
------
With ``shared_rate`` (a :class:`notifications.ratelimit.RedisRate`, when REDIS_URL is set) every
sender of the bot token books its slots on one schedule in Redis: together they send at ``rate``
overall and ``per_chat_rate`` per chat, however many workers run. A slot is kept only if the sender
wakes within one slot interval of it (20 ms at least; otherwise it books again), so the sends follow
the booked spacing even when the event loop was busy; a chat that another worker just wrote to goes back to the
outbox until the chat is free. A 429 pauses every worker (``RedisRate.pause``).

Without it the token bucket and the per-chat spacing are per process: with N sender processes on
one bot token, give each ``rate / N``. Chats are also spaced across processes as far as the database
shows it (a claim takes at most one row per chat), but two processes may each send to one chat
within the same second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNotFound,
    TelegramRetryAfter,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifications.ratelimit import RedisRate
from notifications.render import resolve_payload, send_payload
from services import outbox
from services.clock import Clock, system_clock
from services.models.outbox import OutboxMessage

log = logging.getLogger(__name__)

Listener = Callable[[AsyncSession, OutboxMessage, datetime], Awaitable[None]]

# A shared slot is given up (and another booked) by a sender that wakes later than one slot interval
# after it, or than this at high rates: its sends stay within rate × (window + this) + 1.
LATE_FOR_SLOT = 0.02

# Requests Telegram rejected as malformed fail the same way every time: no point retrying them.
PERMANENT_ERRORS = (TelegramBadRequest, TelegramNotFound, TelegramEntityTooLarge)


def default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


class OutboxSender:
    """Drains the outbox through one ``Bot``. One instance per process; see the module docstring."""

    def __init__(
        self,
        bot: Bot,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        rate: float = 25.0,
        per_chat_rate: float = 1.0,
        worker_id: str | None = None,
        batch: int | None = None,
        lease: timedelta = timedelta(seconds=60),
        max_in_flight: int | None = None,
        max_attempts: int = 5,
        retry_base_delay: timedelta = timedelta(seconds=2),
        poll_interval: float = 0.25,
        reclaim_every: float = 5.0,
        clock: Clock = system_clock,
        shared_rate: RedisRate | None = None,
    ) -> None:
        if rate <= 0 or per_chat_rate <= 0:
            raise ValueError("rates must be positive")
        self.bot = bot
        self.clock = clock  # leases, not-before and retry times follow the process's one clock
        self.session_factory = session_factory
        self.rate = rate
        self.per_chat_rate = per_chat_rate
        # The bot's schedule shared with the other workers (the sender closes it when it stops).
        self.shared_rate = shared_rate
        self.worker_id = worker_id or default_worker_id()
        self.batch = batch or max(1, math.ceil(rate / 4))
        self.lease = lease
        self.max_in_flight = max_in_flight or self.batch
        self.max_attempts = max_attempts
        self.retry_base_delay = retry_base_delay
        self.poll_interval = poll_interval
        self.reclaim_every = reclaim_every
        # A request must end well inside the lease, or another sender could take the row meanwhile.
        self.request_timeout = max(1, int(lease.total_seconds() / 2))
        # So a send starts early enough in the lease for its request to end within it: a row held
        # longer (the shared rate away, a long wait) may be another sender's by now and is left alone.
        self._send_margin = min(timedelta(seconds=self.request_timeout), lease / 2)
        self._start_by: dict[int, datetime] = {}  # row id -> the last moment to start sending it

        self._interval = 1.0 / rate
        # A little over 1/per_chat_rate: requests leave in order but may arrive a few ms apart.
        self._chat_interval = timedelta(seconds=1.05 / per_chat_rate)
        self._next_at = 0.0  # monotonic time of the next token
        # Telegram (and the sandbox) count requests in a sliding 1 s window: whatever the bucket's
        # catching-up, never more than ceil(rate) requests leave in any 1 s (configure the rate a
        # little under the limit, e.g. 29 for 30, so that network jitter has room).
        self._recent: deque[float] = deque()
        self._window_cap = max(1, math.ceil(rate))
        self._paused_until = 0.0  # monotonic; set by RetryAfter
        self._last_reclaim = -math.inf
        self._chat_sent: dict[int, datetime] = {}
        self._chat_order: deque[tuple[datetime, int]] = deque()
        self._queue: deque[OutboxMessage] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.max_in_flight)
        # SQLite has one writer: taking turns here is cheaper than its busy-wait on the file lock.
        self._db_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._writes: list[tuple[Callable[[AsyncSession], Awaitable[None]], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._on_sent: dict[str | None, list[Listener]] = {}
        self._on_unreachable: dict[str | None, list[Listener]] = {}
        self._on_failed: dict[str | None, list[Listener]] = {}
        self.counters = {"sent": 0, "unreachable": 0, "failed": 0, "retried": 0, "flood_waits": 0}

    # ------------------------------------------------------------------ listeners

    def on_sent(self, ref_type: str | None, callback: Listener) -> None:
        """Call ``callback(session, row, now)`` when a row of ``ref_type`` is sent (None: any row).

        It runs in the marking transaction, under a savepoint: a listener that raises is logged
        and rolled back, and the mark still stands (otherwise the row would be sent again)."""
        self._on_sent.setdefault(ref_type, []).append(callback)

    def on_unreachable(self, ref_type: str | None, callback: Listener) -> None:
        """Like :meth:`on_sent`, when the user blocked the bot (the account is already marked)."""
        self._on_unreachable.setdefault(ref_type, []).append(callback)

    def on_failed(self, ref_type: str | None, callback: Listener) -> None:
        """Like :meth:`on_sent`, when a row is given up (permanent error or too many attempts)."""
        self._on_failed.setdefault(ref_type, []).append(callback)

    def wake(self) -> None:
        """Look at the outbox now instead of at the next poll (for enqueuers in this process)."""
        self._wakeup.set()

    # ------------------------------------------------------------------ loop

    async def run(self, stop_event: asyncio.Event) -> None:
        """Send until ``stop_event`` is set; then finish what is in flight and hand back the rest."""
        log.info("outbox sender %s: %.1f msg/s, %.2f msg/s per chat (%s), batch %d", self.worker_id,
                 self.shared_rate.rate if self.shared_rate else self.rate,
                 self.shared_rate.per_chat_rate if self.shared_rate else self.per_chat_rate,
                 "shared by the workers in Redis" if self.shared_rate else "this process", self.batch)
        try:
            while not stop_event.is_set():
                try:
                    if not self._queue:
                        await self._fill(self.clock())
                    if not self._queue:
                        await self._idle(stop_event, self.poll_interval)
                        continue
                    await self._send_next(stop_event)
                except Exception:
                    # The database went away, most likely: wait and carry on, nothing is lost.
                    log.exception("outbox sender %s: loop error", self.worker_id)
                    await self._idle(stop_event, 2.0)
        finally:
            await self._shutdown()

    async def drain_once(self, now: datetime | None = None) -> int:
        """Claim one batch due at ``now`` and send all of it (for tests). Returns rows handled."""
        now = now or self.clock()
        self._last_reclaim = -math.inf
        await self._fill(now)
        handled = len(self._queue)
        while self._queue:
            await self._send_next(None, now)
        await self._wait_in_flight()
        return handled

    async def _idle(self, stop_event: asyncio.Event, seconds: float) -> None:
        self._wakeup.clear()
        waits = [asyncio.ensure_future(stop_event.wait()), asyncio.ensure_future(self._wakeup.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _fill(self, now: datetime) -> None:
        loop = asyncio.get_running_loop()
        async with self._db_lock, self.session_factory() as session, session.begin():
            if loop.time() - self._last_reclaim >= self.reclaim_every:
                self._last_reclaim = loop.time()
                if n := await outbox.reclaim_expired(session, now=now):
                    log.warning("outbox: %d rows had an expired lease and are queued again", n)
            rows = await outbox.claim(session, worker_id=self.worker_id, limit=self.batch, lease=self.lease,
                                      now=now, skip_chats=self._cooling_chats(now))
        self._queue.extend(rows)
        for row in rows:
            self._start_by[row.id] = now + self.lease - self._send_margin

    def _still_ours(self, row: OutboxMessage, now: datetime | None = None) -> bool:
        """Whether the row's lease still covers a send by this sender (see ``_send_margin``)."""
        start_by = self._start_by.get(row.id)
        return start_by is None or (now or self.clock()) <= start_by

    def _cooling_chats(self, now: datetime) -> list[int]:
        horizon = now - self._chat_interval
        while self._chat_order and self._chat_order[0][0] <= horizon:
            at, chat = self._chat_order.popleft()
            if self._chat_sent.get(chat) == at:
                del self._chat_sent[chat]
        return [chat for chat, at in self._chat_sent.items() if at > horizon]

    async def _send_next(self, stop_event: asyncio.Event | None, now: datetime | None = None) -> None:
        await self._slots.acquire()
        try:
            # False: no row to send now (the shared schedule gave a busy chat's row back).
            ready = await self._take_token(stop_event) if self.shared_rate is None else \
                await self._take_shared_slot(stop_event)
        except BaseException:
            self._slots.release()
            raise
        if (stop_event is not None and stop_event.is_set()) or not self._queue or not ready:
            # Stopping, or a flood wait handed the queue back while we waited for the token.
            self._slots.release()
            return
        row = self._queue.popleft()
        ours = self._still_ours(row, now)
        self._start_by.pop(row.id, None)
        if not ours:
            # Its lease no longer covers a send, and another sender may have taken it: the lease's end
            # puts it back (reclaim_expired) unless that sender sends it.
            self._slots.release()
            return
        at = now or self.clock()
        self._chat_sent[row.chat_id] = at
        self._chat_order.append((at, row.chat_id))
        task = asyncio.create_task(self._deliver(row, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _take_token(self, stop_event: asyncio.Event | None) -> bool:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            if self._paused_until > t:
                self._next_at = self._paused_until
                await self._sleep(self._paused_until - t, stop_event)
            elif self._next_at > t:
                await self._sleep(self._next_at - t, stop_event)
            else:
                while self._recent and self._recent[0] <= t - 1.0:
                    self._recent.popleft()
                if len(self._recent) >= self._window_cap:
                    await self._sleep(self._recent[0] + 1.0 - t, stop_event)
                else:
                    # Half a token of slack makes up for timer lateness; the 1 s window above keeps
                    # that catching-up from ever becoming a burst over the rate.
                    self._next_at = max(self._next_at, t - self._interval / 2) + self._interval
                    self._recent.append(t)
                    return True
            if stop_event is not None and stop_event.is_set():
                return False

    async def _take_shared_slot(self, stop_event: asyncio.Event | None) -> bool:
        """Book a slot on the shared schedule for the row at the head of the queue and wait for it.
        True: send the head row now. False: stopping, the queue was handed back, the limiter did not
        answer, or a busy chat's row went back to the outbox (the caller then takes the next one)."""
        assert self.shared_rate is not None
        loop = asyncio.get_running_loop()
        while self._queue and not (stop_event is not None and stop_event.is_set()):
            t = loop.time()
            if self._paused_until > t:
                await self._sleep(self._paused_until - t, stop_event)
                continue
            row = self._queue[0]
            try:
                slot = await self.shared_rate.reserve(row.chat_id)
            except Exception as err:
                log.error("outbox sender %s: the shared rate (Redis) did not answer (%s); nothing is sent "
                          "until it does", self.worker_id, type(err).__name__)
                await self._sleep(2.0, stop_event)
                return False
            if slot.chat_busy:
                # Another worker wrote to this chat a moment ago: back to the outbox until it is free.
                self._queue.popleft()
                if self._still_ours(row):
                    not_before = self.clock() + timedelta(seconds=slot.wait)
                    await self._write(partial(outbox.release, message_ids=[row.id], not_before=not_before))
                self._start_by.pop(row.id, None)
                return False
            if not slot.granted:
                await self._sleep(slot.wait, stop_event)
                continue
            due = t + slot.wait
            if slot.wait > 0:
                await self._sleep(slot.wait, stop_event)
            if loop.time() - due > max(self.shared_rate.interval, LATE_FOR_SLOT):
                continue  # woke too late for this slot: sending now could crowd the next ones
            return bool(self._queue) and self._queue[0] is row
        return False

    @staticmethod
    async def _sleep(seconds: float, stop_event: asyncio.Event | None) -> None:
        if stop_event is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=seconds)

    async def _wait_in_flight(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _shutdown(self) -> None:
        await self._wait_in_flight()
        if self.shared_rate is not None:
            try:
                await self.shared_rate.close()
            except Exception:
                log.warning("outbox sender %s: could not close the shared rate's connection", self.worker_id)
        if self._queue:
            ids = [row.id for row in self._queue if self._still_ours(row)]
            self._queue.clear()
            self._start_by.clear()
            try:
                await self._write(lambda s: outbox.release(s, ids))
            except Exception:
                log.exception("outbox sender %s: could not release %d rows (their lease will expire)",
                              self.worker_id, len(ids))

    # ------------------------------------------------------------------ one row

    async def _deliver(self, row: OutboxMessage, now: datetime | None) -> None:
        try:
            await self._deliver_unguarded(row, now)
        except Exception:
            log.exception("outbox: could not record the outcome of row %d (its lease will expire)", row.id)
        finally:
            self._slots.release()

    async def _deliver_unguarded(self, row: OutboxMessage, now: datetime | None) -> None:
        try:
            payload = resolve_payload(row.payload)
        except Exception as err:
            # A message that cannot be rendered will not render on a retry either.
            log.exception("outbox: row %d could not be rendered", row.id)
            self.counters["failed"] += 1
            await self._finish(outbox.mark_failed, row, self._on_failed, now, error=f"render: {type(err).__name__}")
            return
        try:
            message = await send_payload(self.bot, row.chat_id, payload, request_timeout=self.request_timeout)
        except TelegramRetryAfter as err:
            # Flood control is per bot: everything waits, and this row goes again (not a failure).
            self.counters["flood_waits"] += 1
            self._pause(err.retry_after)
            if self.shared_rate is not None:
                try:
                    await self.shared_rate.pause(err.retry_after)  # every worker waits, not only this one
                except Exception:
                    log.warning("outbox: could not tell the other workers to pause (shared rate unreachable)")
            log.warning("outbox: flood control, pausing %ss", err.retry_after)
            # Hand back the rows waiting here too: the pause may outlast their lease, and after it
            # the next claim re-reads the priorities anyway.
            ids = [row.id, *(queued.id for queued in self._queue if self._still_ours(queued, now))]
            self._queue.clear()
            self._start_by.clear()
            self._chat_sent.pop(row.chat_id, None)  # nothing reached that chat
            await self._write(lambda s: outbox.release(s, ids))
        except TelegramForbiddenError as err:
            self.counters["unreachable"] += 1
            await self._finish(outbox.mark_unreachable, row, self._on_unreachable, now, error=err.message)
        except TelegramMigrateToChat as err:
            # A group became a supergroup: same conversation, new id; send there.
            new_chat = err.migrate_to_chat_id
            await self._write(lambda s: outbox.release(s, [row.id], chat_id=new_chat))
        except PERMANENT_ERRORS as err:
            self.counters["failed"] += 1
            await self._finish(outbox.mark_failed, row, self._on_failed, now, error=err.message)
        except Exception as err:
            # Server errors, network errors, timeouts: retry later with backoff, then give up visibly.
            reason = f"{type(err).__name__}: {err}"
            done = await self._finish(
                outbox.mark_retry, row, self._on_failed, now, error=reason[:500],
                max_attempts=self.max_attempts, base_delay=self.retry_base_delay, final_only=True)
            self.counters["failed" if done else "retried"] += 1
        else:
            self.counters["sent"] += 1
            await self._finish(outbox.mark_sent, row, self._on_sent, now,
                               telegram_message_id=message.message_id)

    def _pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)

    async def _finish(
        self,
        mark: Callable[..., Awaitable[Any]],
        row: OutboxMessage,
        listeners: dict[str | None, list[Listener]],
        now: datetime | None,
        *,
        final_only: bool = False,
        **kwargs: Any,
    ) -> bool:
        """Mark the row and run its listeners in one transaction. Returns True if the row is final."""
        at = now or self.clock()
        final = False

        async def work(session: AsyncSession) -> None:
            nonlocal final
            marked = await mark(session, row.id, now=at, **kwargs)
            if marked is None:
                return
            final = marked.status != outbox.OutboxStatus.pending
            if final_only and not final:
                return
            callbacks = listeners.get(marked.ref_type, [])
            if marked.ref_type is not None:
                callbacks = callbacks + listeners.get(None, [])
            if not callbacks:
                return
            loaded = await session.get(OutboxMessage, marked.id)
            if loaded is None:  # just marked under its row lock, so never; no row, nothing to tell
                return
            for callback in callbacks:
                try:
                    async with session.begin_nested():
                        await callback(session, loaded, at)
                except Exception:
                    log.exception("outbox listener %r failed for row %d", callback, marked.id)

        await self._write_grouped(work)
        return final

    async def _write_grouped(self, work: Callable[[AsyncSession], Awaitable[None]]) -> None:
        """Run ``work`` in a transaction shared with the other marks that are ready (group commit).

        One commit per message caps SQLite near a couple of hundred messages a second; grouping the
        marks that finish while the previous commit runs removes that cap. The caller's send slot
        is held until its mark is committed, so the in-flight window stays ``max_in_flight``.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writes.append((work, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._flush_writes())
        await future

    async def _flush_writes(self) -> None:
        while self._writes:
            group, self._writes = self._writes, []
            try:
                async with self._db_lock, self.session_factory() as session, session.begin():
                    for work, _ in group:
                        await work(session)
            except Exception:
                # Redo them one by one, so that one bad row does not hold back the others.
                for work, future in group:
                    try:
                        await self._write(work, retries=3)
                    except Exception as err:
                        if not future.done():
                            future.set_exception(err)
                    else:
                        if not future.done():
                            future.set_result(None)
            else:
                for _, future in group:
                    if not future.done():
                        future.set_result(None)

    async def _write(self, work: Callable[[AsyncSession], Awaitable[Any]], *, retries: int = 1) -> None:
        for attempt in range(retries):
            try:
                async with self._db_lock, self.session_factory() as session, session.begin():
                    await work(session)
                return
            except Exception:
                if attempt == retries - 1:
                    raise
                await asyncio.sleep(0.5 * 2 ** attempt)
