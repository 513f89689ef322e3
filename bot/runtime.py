"""Background work of a running bot: the outbox sender and the scheduler's ticks.

APScheduler only says *when* to look; every tick reads its work from the database and is
idempotent, so every worker process may run every job (ARCHITECTURE.md "One clock").

Interval ticks claim their work row by row. A job that must happen once per period (the nightly
rule tags) claims the period itself in ``job_runs`` inside its own transaction (``services.jobs``):
every worker fires it, one does the work. Every job also fires once when the scheduler starts, so a
night missed while every worker was down is made up by the first one back (the record says whether
that night is done); a run that is late because the loop was busy still runs (no misfire limit).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text

from bot.app import Runtime, outbox_config
from bot.checkin_jobs import checkin_tick, config_of, register_sender_listeners
from bot.metrics import metrics_of
from notifications.sender import OutboxSender, default_worker_id

log = logging.getLogger("bot.runtime")
Tick = Callable[[Runtime, datetime], Awaitable[object]]


def build_sender(rt: Runtime, **overrides) -> OutboxSender:
    """The process's sender, with every feature's delivery listeners registered. With REDIS_URL every
    worker's sender books its sends on one schedule in Redis (OUTBOX_RATE overall, whatever the
    number of workers); without it each process takes OUTBOX_RATE / OUTBOX_SENDERS."""
    cfg = outbox_config(rt.settings)
    rate = overrides.pop("rate", None)
    per_chat_rate = overrides.pop("per_chat_rate", cfg.per_chat_rate)
    if rt.settings.redis_url and "shared_rate" not in overrides:
        from notifications.ratelimit import RedisRate

        rate = rate or cfg.rate
        overrides["shared_rate"] = RedisRate.from_url(rt.settings.redis_url, bot_id=rt.bot.id, rate=rate,
                                                      per_chat_rate=per_chat_rate)
        # Each worker claims about its share of a quarter second, so priorities are re-read as often.
        overrides.setdefault("batch", max(1, math.ceil(rate / cfg.senders / 4)))
    sender = OutboxSender(rt.bot, rt.sessions, rate=rate or cfg.rate_per_sender, per_chat_rate=per_chat_rate,
                          clock=overrides.pop("clock", rt.clock), **overrides)
    register_sender_listeners(sender, config_of(rt))
    sender.counters = metrics_of(rt.dp).sender_counters(sender.counters)  # 429s and outcomes on /metrics
    return sender


@dataclass(frozen=True)
class Daily:
    """A once-a-day job at a local wall-clock time; its period is the local date of the latest such
    time at or before ``now`` (a run at 02:00 still belongs to yesterday's 03:10)."""

    hour: int
    minute: int = 0

    def trigger(self) -> dict:
        return {"trigger": "cron", "hour": self.hour, "minute": self.minute}

    def period(self, now: datetime, tz: tzinfo) -> str:
        return (now.astimezone(tz) - timedelta(hours=self.hour, minutes=self.minute)).date().isoformat()


RULE_TAGS_AT = Daily(3, 10)


def scheduled_ticks(rt: Runtime) -> list[tuple[str, Tick, dict]]:
    """(name, tick, APScheduler trigger arguments) of every periodic job."""
    seconds = max(0.1, rt.settings.tick_interval.total_seconds())
    return [
        ("notices", notices_tick, {"trigger": "interval", "seconds": seconds}),
        ("checkins", checkin_tick, {"trigger": "interval", "seconds": seconds}),
        ("rule_tags", nightly_rule_tags, RULE_TAGS_AT.trigger()),
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
    numbers and names); the delivery record stays. Markers of updates Telegram no longer redelivers go,
    and so do conversations left alone for FSM_TTL (bot.conversations; Redis forgets its own), console
    links and sessions a day after they ended, and records of once-a-period jobs after 90 days."""
    from bot.conversations import DatabaseStorage, forget_conversations
    from services import console_auth, jobs
    from services.outbox import redact_finished
    from services.updates import forget_processed

    async with rt.sessions() as session:
        done = await redact_finished(session, older_than=rt.settings.outbox_pii_retention, now=now)
        await forget_processed(session, now)
        await forget_conversations(session, now, rt.settings.fsm_ttl)
        await console_auth.forget_stale(session, now=now, cfg=rt.dp["console_config"])
        await jobs.forget_runs(session, now)
        await session.commit()
    if isinstance(rt.dp.storage, DatabaseStorage):
        rt.dp.storage.forget_idle(now)
    return done


async def nightly_rule_tags(rt: Runtime, now: datetime) -> bool:
    """The scheduler's nightly rule tags: once per night across all workers (True if this one ran)."""
    return await rule_tags_tick(rt, now, period=RULE_TAGS_AT.period(now, rt.settings.tz))


async def rule_tags_tick(rt: Runtime, now: datetime, *, period: str | None = None) -> bool:
    """Nightly: ages change, so "aged 80+" and friends are recomputed for everyone. With ``period``,
    only if no worker has done that period yet (claimed in the same transaction as the work)."""
    from services import jobs
    from services.tags import recompute_rule_tags

    async with rt.sessions() as session:
        if period is not None and not await jobs.claim_run(session, "rule_tags", period,
                                                           worker=default_worker_id(), now=now):
            await session.rollback()
            return False
        await recompute_rule_tags(session, now)
        if period is not None:
            await jobs.finish_run(session, "rule_tags", period, now=rt.clock())
        await session.commit()
        if session.bind.dialect.name == "sqlite":
            # Planner statistics that follow the registry (PostgreSQL's autovacuum keeps its own): the
            # segment plans measured in bench segments assume them.
            await session.execute(text("ANALYZE"))
            await session.commit()
    return True


async def _run_tick(rt: Runtime, name: str, tick: Tick) -> None:
    try:
        with metrics_of(rt.dp).tick(name):  # duration, failures, last run (/metrics, /healthz)
            await tick(rt, rt.clock())
    except Exception:
        log.exception("tick %s failed; the next one carries on", name)


async def scheduler_job(rt: Runtime, stop: asyncio.Event) -> None:
    scheduler = AsyncIOScheduler(timezone=rt.settings.timezone)
    for name, tick, trigger in scheduled_ticks(rt):
        # Every job also runs at start: interval ticks catch up at once, and a once-per-period job
        # makes up a period missed while no worker ran (its record says whether it is done).
        scheduler.add_job(_run_tick, args=(rt, name, tick), id=name, name=name, max_instances=1, coalesce=True,
                          misfire_grace_time=None, next_run_time=datetime.now(UTC), **trigger)
    scheduler.start()
    metrics_of(rt.dp).scheduler_started()
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
