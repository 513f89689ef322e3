"""Background work of a running bot: the outbox sender and the scheduler's ticks.

APScheduler only says *when* to look; every tick reads its work from the database and is
idempotent, so every worker process may run every job (ARCHITECTURE.md "One clock").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text

from bot.app import Runtime, outbox_config
from bot.checkin_jobs import checkin_tick, config_of, register_sender_listeners
from notifications.sender import OutboxSender

log = logging.getLogger("bot.runtime")
Tick = Callable[[Runtime, datetime], Awaitable[object]]


def build_sender(rt: Runtime, **overrides) -> OutboxSender:
    """The process's sender, with every feature's delivery listeners registered."""
    cfg = outbox_config(rt.settings)
    sender = OutboxSender(rt.bot, rt.sessions, rate=overrides.pop("rate", cfg.rate_per_sender),
                          per_chat_rate=overrides.pop("per_chat_rate", cfg.per_chat_rate),
                          clock=overrides.pop("clock", rt.clock), **overrides)
    register_sender_listeners(sender, config_of(rt))
    return sender


def scheduled_ticks(rt: Runtime) -> list[tuple[str, Tick, dict]]:
    """(name, tick, APScheduler trigger arguments) of every periodic job."""
    seconds = max(0.1, rt.settings.tick_interval.total_seconds())
    return [
        ("notices", notices_tick, {"trigger": "interval", "seconds": seconds}),
        ("checkins", checkin_tick, {"trigger": "interval", "seconds": seconds}),
        ("rule_tags", rule_tags_tick, {"trigger": "cron", "hour": 3, "minute": 10}),
        ("outbox_redact", outbox_redact_tick, {"trigger": "interval", "seconds": 3600}),
        ("polls", polls_tick, {"trigger": "interval", "seconds": seconds}),
        ("discussions", discussions_tick, {"trigger": "interval", "seconds": seconds}),
        ("policies", policies_tick, {"trigger": "interval", "seconds": seconds}),
    ]


async def policies_tick(rt: Runtime, now: datetime) -> int:
    """The one follow-up POLICY_FOLLOWUP_AFTER after a policy push, to residents who have not applied."""
    from services import policies

    return await policies.followups_tick(rt.sessions, rt.dp["policy_config"], now)


async def discussions_tick(rt: Runtime, now: datetime):
    """Digests of new comments to topic subscribers (at most one per topic every DISCUSSION_DIGEST_INTERVAL)."""
    from services import discussions

    return await discussions.tick(rt.sessions, rt.dp["discussion_config"], now)


async def polls_tick(rt: Runtime, now: datetime):
    """Open, announce, remind and close polls (the results go out with their bar chart)."""
    from bot.poll_jobs import polls_tick as tick

    return await tick(rt, now)


async def notices_tick(rt: Runtime, now: datetime) -> int:
    from services import notices

    async with rt.sessions() as session:
        return await notices.tick(session, now)


async def outbox_redact_tick(rt: Runtime, now: datetime) -> int:
    """Hourly: finished messages older than OUTBOX_PII_RETENTION lose their payload (an alert's phone
    numbers and names); the delivery record stays."""
    from services.outbox import redact_finished

    async with rt.sessions() as session:
        done = await redact_finished(session, older_than=rt.settings.outbox_pii_retention, now=now)
        await session.commit()
        return done


async def rule_tags_tick(rt: Runtime, now: datetime) -> None:
    """Nightly: ages change, so "aged 80+" and friends are recomputed for everyone."""
    from services.tags import recompute_rule_tags

    async with rt.sessions() as session:
        await recompute_rule_tags(session, now)
        await session.commit()
        if session.bind.dialect.name == "sqlite":
            # Planner statistics that follow the registry (PostgreSQL's autovacuum keeps its own): the
            # segment plans measured in bench segments assume them.
            await session.execute(text("ANALYZE"))
            await session.commit()


async def _run_tick(rt: Runtime, name: str, tick: Tick) -> None:
    try:
        await tick(rt, rt.clock())
    except Exception:
        log.exception("tick %s failed; the next one carries on", name)


async def scheduler_job(rt: Runtime, stop: asyncio.Event) -> None:
    scheduler = AsyncIOScheduler(timezone=rt.settings.timezone)
    for name, tick, trigger in scheduled_ticks(rt):
        first = {"next_run_time": datetime.now(UTC)} if trigger["trigger"] == "interval" else {}
        scheduler.add_job(_run_tick, args=(rt, name, tick), id=name, name=name, max_instances=1, coalesce=True,
                          misfire_grace_time=None, **first, **trigger)
    scheduler.start()
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)


def add_background_jobs(rt: Runtime, **sender_options) -> OutboxSender:
    """Give ``rt`` the production background work: the outbox sender and the scheduler's ticks."""
    sender = build_sender(rt, **sender_options)

    async def sender_job(rt: Runtime, stop: asyncio.Event) -> None:
        await sender.run(stop)

    rt.background += [sender_job, scheduler_job]
    return sender
