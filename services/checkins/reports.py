"""Weekly check-in statistics as data, and the claim that makes each week's report go out once.

Services count; ``notifications.reports`` draws the chart and writes the XLSX sheet, and the bot
(``bot.checkin_jobs``) writes the files and queues them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.checkins.common import REF_REPORT, insert_into
from services.checkins.config import CheckinConfig
from services.checkins.helpers import HelperStats, helper_stats
from services.models import (
    Account,
    CheckinPlan,
    CheckinRound,
    Region,
    RegionLevel,
    UTCDateTime,
    WeeklyReportClaim,
)
from services.notify import committee_staff
from services.outbox import Priority, enqueue, message_payload

WEEK = 7


@dataclass(frozen=True, slots=True)
class DayStats:
    day: date
    rounds: int
    ok: int
    help: int
    alerted: int
    by_helper: int = 0  # answers a helper gave for the elder (of ok + help + "could not reach")

    @property
    def answered(self) -> int:
        return self.ok + self.help

    @property
    def rate(self) -> float | None:
        return self.answered / self.rounds if self.rounds else None


@dataclass(frozen=True, slots=True)
class WeeklyReport:
    """Seven days of one committee's check-ins, counted (no text, no files)."""

    committee_id: int
    committee: str  # the committee's name
    code: str
    start: date
    end: date
    days: list[DayStats]
    helpers: list[HelperStats] = field(default_factory=list)  # who answered for elders, how often late

    @property
    def rounds(self) -> int:
        return sum(d.rounds for d in self.days)

    @property
    def answered(self) -> int:
        return sum(d.answered for d in self.days)

    @property
    def rate(self) -> float | None:
        return self.answered / self.rounds if self.rounds else None

    def data(self) -> dict:
        """As outbox message data (``checkins.weekly``): dates as ISO text."""
        return {"committee": self.committee, "code": self.code, "start": self.start.isoformat(),
                "end": self.end.isoformat(),
                "days": [{**asdict(d), "day": d.day.isoformat()} for d in self.days],
                "helpers": [h.data() for h in self.helpers]}


async def weekly_stats(session: AsyncSession, committee_id: int, start: date, end: date) -> list[DayStats]:
    """Rounds, answers and alerts per local date from ``start`` to ``end`` (inclusive), zeros included."""
    rows = await session.execute(
        select(CheckinRound.local_date, func.count(),
               func.sum(case((CheckinRound.answer == "ok", 1), else_=0)),
               func.sum(case((CheckinRound.answer == "help", 1), else_=0)),
               func.sum(case((CheckinRound.alerted_at.is_not(None), 1), else_=0)),
               func.sum(case((CheckinRound.answer_via == "helper", 1), else_=0)))
        .where(CheckinRound.plan_id.in_(select(CheckinPlan.id).where(CheckinPlan.committee_id == committee_id)),
               CheckinRound.local_date.between(start, end))
        .group_by(CheckinRound.local_date))
    found = {d: DayStats(d, n, int(ok or 0), int(hlp or 0), int(al or 0), int(by or 0))
             for d, n, ok, hlp, al, by in rows}
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return [found.get(d, DayStats(d, 0, 0, 0, 0)) for d in days]


async def weekly_report(session: AsyncSession, committee: Region, end: date) -> WeeklyReport:
    """The seven local days ending with ``end`` (inclusive: pass today to include today)."""
    start = end - timedelta(days=WEEK - 1)
    days = await weekly_stats(session, committee.id, start, end)
    helpers = await helper_stats(session, committee.id, start, end)
    return WeeklyReport(committee.id, committee.name, committee.code, start, end, days, helpers)


def weekly_reports_due(now: datetime, cfg: CheckinConfig) -> bool:
    """Monday from ``cfg.weekly_report_hour`` local time on: the previous week's reports may go out."""
    local = cfg.local(now)
    return local.weekday() == 0 and local.hour >= cfg.weekly_report_hour


def last_week_end(now: datetime, cfg: CheckinConfig) -> date:
    """The Sunday before ``now``'s local date (the end of the week a Monday report covers)."""
    return cfg.today(now) - timedelta(days=1)


async def claim_weekly_reports(session: AsyncSession, week_start: date, now: datetime) -> list[Region]:
    """Committees with active plans whose report of the week from ``week_start`` nobody sent yet,
    claimed in the caller's transaction (a UNIQUE claim row: once across all processes)."""
    committees = select(CheckinPlan.committee_id).where(CheckinPlan.active.is_(True)).distinct()
    claimed = (await session.execute(
        insert_into(session, WeeklyReportClaim).from_select(
            ["committee_id", "week_start", "created_at", "recipients"],
            select(Region.id, literal(week_start), literal(now, UTCDateTime()), literal(0))
            .where(Region.id.in_(committees), Region.level == RegionLevel.committee))
        .on_conflict_do_nothing(index_elements=["committee_id", "week_start"])
        .returning(WeeklyReportClaim.committee_id))).scalars().all()
    return [await session.get_one(Region, committee_id) for committee_id in claimed]  # just selected


async def report_recipients(session: AsyncSession, committee: Region) -> list[Account]:
    """Who receives a committee's weekly report: its committee staff (and staff above it)."""
    return await committee_staff(session, committee)


async def queue_weekly_report(session: AsyncSession, report: WeeklyReport, account: Account, locale: str, *,
                              chart: str, sheet: str, now: datetime) -> None:
    """Queue the report for one staff member: the chart with the week as its caption, then the
    sheet (``chart``/``sheet``: paths of files already written). Idempotent per week and account."""
    key = f"ciweek:{report.committee_id}:{report.start.isoformat()}:{account.id}"
    data = report.data()
    for suffix, payload in ((":chart", message_payload("checkins.weekly", data, locale=locale,
                                                       photo={"path": chart})),
                            (":xlsx", message_payload("checkins.weekly_sheet", data, locale=locale,
                                                      document={"path": sheet}))):
        await enqueue(session, key=key + suffix, chat_id=account.chat_id, account_id=account.id, payload=payload,
                      priority=Priority.reply, ref_type=REF_REPORT, ref_id=report.committee_id, now=now)


async def record_report_sent(session: AsyncSession, committee: Region, week_start: date, recipients: int) -> None:
    """Note on the claim how many staff the report was queued for."""
    await session.execute(update(WeeklyReportClaim).where(
        WeeklyReportClaim.committee_id == committee.id, WeeklyReportClaim.week_start == week_start)
        .values(recipients=recipients))
