"""Wiring of daily check-ins into a running process: the config, the scheduler's tick, the Monday
reports (files written here) and the outbox sender's listener.

``bot.app.build_dispatcher`` puts :func:`checkin_config` into the dispatcher data as
``checkin_config`` (handlers take it as a parameter); ``bot.runtime.scheduled_ticks`` runs
:func:`checkin_tick` and ``bot.runtime.build_sender`` calls :func:`register_sender_listeners`.
Every process may run every tick: each claims its work from the database. The weekly reports are
also recorded per week in ``job_runs`` (``services.jobs``), which lets a Monday missed while every
worker was down be made up later that week.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from notifications.reports import write_weekly_files
from notifications.sender import default_worker_id
from services import checkins, jobs
from services.accounts import account_locale
from services.i18n import use_locale

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from bot.app import Runtime
    from bot.settings import Settings
    from notifications.sender import OutboxSender

log = logging.getLogger(__name__)

WEEKLY_REPORTS_JOB = "checkin_weekly_reports"


def checkin_config(settings: Settings) -> checkins.CheckinConfig:
    """The one typed check-in configuration of a process, from its settings."""
    return checkins.CheckinConfig(
        reminder_after=settings.checkin_reminder_after, escalate_after=settings.checkin_escalate_after,
        ack_timeout=settings.alert_ack_timeout, resolve_timeout=settings.alert_resolve_timeout, tz=settings.tz,
        default_locale=settings.default_locale, secret_key=settings.ensure_secret_key())


def config_of(rt: Runtime) -> checkins.CheckinConfig:
    """The configuration the composition root gave the runtime's dispatcher (a runtime without a
    dispatcher, e.g. a sender-only process, builds it from its settings)."""
    if rt.dp is not None and "checkin_config" in rt.dp.workflow_data:
        return rt.dp["checkin_config"]
    return checkin_config(rt.settings)


async def checkin_tick(rt: Runtime, now: datetime) -> checkins.TickReport:
    """One check-in tick at ``now`` (for the scheduler); on Mondays from the report hour (local
    time) it also queues last week's reports (once per committee and week, across processes)."""
    cfg = config_of(rt)
    report = await checkins.tick(rt.sessions, cfg, now)
    if report:
        log.info("check-in tick: %s", report)
    week_end = await weekly_reports_owed(rt.sessions, cfg, now)
    if week_end is not None:
        sent = await send_weekly_reports(rt.sessions, cfg, Path(rt.settings.data_dir) / "reports", now,
                                         week_end=week_end)
        if sent:
            log.info("weekly check-in reports queued for %d committees", sent)
    return report


def due_week_end(now: datetime, cfg: checkins.CheckinConfig) -> date:
    """The Sunday ending the latest week whose reports fell due at or before ``now`` (Monday from
    the report hour, local time)."""
    local = cfg.local(now)
    days = local.weekday() or (7 if local.hour < cfg.weekly_report_hour else 0)
    return local.date() - timedelta(days=days + 1)


async def weekly_reports_owed(sessions: async_sessionmaker[AsyncSession], cfg: checkins.CheckinConfig,
                              now: datetime) -> date | None:
    """The week (its Sunday) whose reports should go out at ``now``, or None. On the Monday, as
    always; later in the week only if the week before was reported (this deployment was running
    then, so the Monday was missed), never a week from before a new deployment's first Monday."""
    end = due_week_end(now, cfg)
    start = end - timedelta(days=6)
    async with sessions() as session:
        if await session.get(jobs.JobRun, (WEEKLY_REPORTS_JOB, start.isoformat())) is not None:
            return None
        if checkins.weekly_reports_due(now, cfg):
            return end
        before = (start - timedelta(days=7)).isoformat()
        return end if await session.get(jobs.JobRun, (WEEKLY_REPORTS_JOB, before)) is not None else None


async def send_weekly_reports(sessions: async_sessionmaker[AsyncSession], cfg: checkins.CheckinConfig,
                              folder: Path, now: datetime, *, week_end: date | None = None) -> int:
    """Queue the report of the week ending ``week_end`` (default: last week) — chart with the week as
    caption, then the XLSX sheet — for each committee's staff, in their language; files go under
    ``folder``. Once per week across all processes (the week's ``job_runs`` row and a row per
    committee, claimed in the same transaction). Returns how many committees."""
    end = week_end or checkins.last_week_end(now, cfg)
    async with sessions() as session, session.begin():
        if not await jobs.claim_run(session, WEEKLY_REPORTS_JOB, (end - timedelta(days=6)).isoformat(),
                                    worker=default_worker_id(), now=now):
            return 0
        committees = await checkins.claim_weekly_reports(session, end - timedelta(days=6), now)
        for committee in committees:
            report = await checkins.weekly_report(session, committee, end)
            staff = await checkins.report_recipients(session, committee)
            files: dict[str, tuple[str, str]] = {}
            for account in staff:
                locale = account_locale(account, cfg.default_locale)
                if locale not in files:
                    with use_locale(locale):
                        stem = f"checkins-{committee.code}-{report.start.isoformat()}-{locale}"
                        files[locale] = await asyncio.to_thread(write_weekly_files, folder, stem, report)
                chart, sheet = files[locale]
                await checkins.queue_weekly_report(session, report, account, locale, chart=chart, sheet=sheet,
                                                   now=now)
            await checkins.record_report_sent(session, committee, report.start, len(staff))
        await jobs.finish_run(session, WEEKLY_REPORTS_JOB, (end - timedelta(days=6)).isoformat(), now=now)
    return len(committees)


def register_sender_listeners(sender: OutboxSender, cfg: checkins.CheckinConfig) -> None:
    """An elder who blocked the bot is an escalation: alert as soon as the prompt comes back 403;
    so is a helper whose list (or its edit) comes back 403, for the elders waiting for them. A list
    answered in while it was on its way is edited once it is sent."""
    sender.on_unreachable(checkins.REF_ROUND, partial(checkins.on_round_unreachable, cfg=cfg))
    sender.on_sent(checkins.REF_LIST, partial(checkins.on_list_sent, cfg=cfg))
    for ref_type in (checkins.REF_LIST, checkins.REF_LIST_EDIT):
        sender.on_unreachable(ref_type, partial(checkins.on_list_unreachable, cfg=cfg))
