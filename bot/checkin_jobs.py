"""Background work of daily check-ins: the tick loop and the outbox sender's hooks.

Wiring (``bot.runtime``): the scheduler calls ``checkin_tick(rt, now)`` every TICK_INTERVAL (or
``checkin_job`` runs as a background task where there is no scheduler), and the sender is built
with ``register_sender_listeners(sender, settings)``.

Every process may run ``checkin_job``: each tick claims its work from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from services import checkins

if TYPE_CHECKING:
    from bot.app import Runtime
    from bot.settings import Settings
    from notifications.sender import OutboxSender

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


async def checkin_tick(rt: Runtime, now: datetime) -> checkins.TickReport:
    """One check-in tick at ``now`` (for the scheduler); on Mondays from 08:00 local time it also
    sends last week's reports (once per committee and week, across processes)."""
    report = await checkins.tick(rt.sessions, rt.settings, now)
    if report:
        log.info("check-in tick: %s", report)
    due = checkins.weekly_reports_due(now, checkins.CheckinConfig.of(rt.settings))
    if due and (sent := await checkins.send_weekly_reports(rt.sessions, rt.settings, now)):
        log.info("weekly check-in reports queued for %d committees", sent)
    return report


async def checkin_job(rt: Runtime, stop_event: asyncio.Event) -> None:
    """Run :func:`checkin_tick` every ``settings.tick_interval`` until ``stop_event`` is set (a
    background task for processes without the scheduler, e.g. ``tests/checkin_worker.py``)."""
    interval = max(rt.settings.tick_interval.total_seconds(), 0.05)
    loop = asyncio.get_running_loop()
    log.info("check-in ticks every %.1fs", interval)
    next_at = loop.time()
    while not stop_event.is_set():
        try:
            await checkin_tick(rt, utcnow())
        except Exception:
            # The database went away, most likely: the next tick carries on from the database.
            log.exception("check-in tick failed")
        # Fixed rate, not fixed delay: a slow tick does not push every later one back.
        next_at = max(next_at + interval, loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=next_at - loop.time())


def register_sender_listeners(sender: OutboxSender, settings: Settings) -> None:
    """An elder who blocked the bot is an escalation: alert as soon as the prompt comes back 403."""
    cfg = checkins.CheckinConfig.of(settings)
    sender.on_unreachable(checkins.REF_ROUND, partial(checkins.on_round_unreachable, cfg=cfg))
