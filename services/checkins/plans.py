"""Who is asked, when: enrolment (one resident or a segment), the elder's own time and pauses.

Values typed or carried by buttons (a minute, a weekday mask, a date) are checked here, whatever
keyboard offered them; a refusal raises :class:`CheckinError` before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import BigInteger, String, and_, case, cast, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services import audit
from services.checkins.alerts import duty_staff
from services.checkins.common import (
    REF_PLAN,
    REF_ROUND,
    CheckinError,
    account_name,
    insert_into,
    locale_sql,
    message_payload_sql,
    record_event,
    room_of,
)
from services.checkins.config import CheckinConfig
from services.models import (
    Account,
    AnswerMode,
    CheckinPlan,
    CheckinRound,
    OutboxMessage,
    OutboxStatus,
    Region,
    Resident,
    ResidentStatus,
    RoundStatus,
    UTCDateTime,
)
from services.models.checkins import EVERY_DAY, OPEN_ROUND_STATUSES
from services.notify import tell
from services.outbox import Priority
from services.outbox import cancel as cancel_messages
from services.sql import rowcount

DEFAULT_MINUTE = 9 * 60
MINUTES_PER_DAY = 24 * 60
MAX_PAUSE_DAYS = 180
WEEKDAYS = 0b0011111
WEEKENDS = 0b1100000


# --- parsing and checking values -------------------------------------------------------------

_TIME = re.compile(r"^\s*([01]?\d|2[0-3])\s*[:：.]\s*([0-5]\d)\s*$")
_DAY_NAMES = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_DATE = re.compile(r"^\s*(?:(\d{4})\s*[-/.年]\s*)?(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\s*$")


def parse_time(text: str | None) -> int | None:
    """``"9:00"``, ``"09:30"``, ``"18：00"`` → minutes after local midnight; None if not a time."""
    m = _TIME.match(text or "")
    return int(m[1]) * 60 + int(m[2]) if m else None


def format_minute(minute: int) -> str:
    """Minutes after midnight as ``HH:MM``."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_days(text: str | None) -> int | None:
    """Days as a weekday bit mask: ``daily``, ``weekdays``, ``1-5``, ``1,3,5`` (1 = Monday) or
    ``mon-fri``. None if it cannot be read."""
    t = (text or "").strip().lower().removeprefix("days=")
    if t in ("", "daily", "every", "all", "每天"):
        return EVERY_DAY
    if t in ("weekdays", "工作日"):
        return WEEKDAYS
    if t in ("weekends", "周末"):
        return WEEKENDS
    mask = 0
    for part in t.split(","):
        ends = [p.strip() for p in part.split("-")]
        if len(ends) > 2:
            return None
        nums = []
        for end in ends:
            if end.isdigit() and 1 <= int(end) <= 7:
                nums.append(int(end) - 1)
            elif end[:3] in _DAY_NAMES:
                nums.append(_DAY_NAMES[end[:3]])
            else:
                return None
        lo, hi = nums[0], nums[-1]
        if hi < lo:
            return None
        for d in range(lo, hi + 1):
            mask |= 1 << d
    return mask or None


def parse_date(text: str | None, today: date) -> date | None:
    """``2026-12-05``, ``12-05``, ``12/5``, ``12月5日``; without a year, the next such date. None if
    it is not a date (or not a real one, like 02-30)."""
    m = _DATE.match(text or "")
    if not m:
        return None
    try:
        if m[1]:
            return date(int(m[1]), int(m[2]), int(m[3]))
        day = date(today.year, int(m[2]), int(m[3]))
        return day if day >= today else date(today.year + 1, day.month, day.day)
    except ValueError:
        return None


def check_minute(minute: int) -> int:
    """``minute`` if it is a time of day (0 … 1439), else ``CheckinError("bad_time")``."""
    if not isinstance(minute, int) or not 0 <= minute < MINUTES_PER_DAY:
        raise CheckinError("bad_time", minute=minute)
    return minute


def check_days(days: int) -> int:
    """``days`` if it is a non-empty weekday mask (1 … 127), else ``CheckinError("bad_days")``."""
    if not isinstance(days, int) or not 1 <= days <= EVERY_DAY:
        raise CheckinError("bad_days", days=days)
    return days


def _starts_on(cfg: CheckinConfig, minute: int, now: datetime) -> date:
    """Today if today's check-in time is still ahead, else tomorrow (no surprise prompt at once)."""
    local = cfg.local(now)
    today = local.date()
    return today if minute >= local.hour * 60 + local.minute else today + timedelta(days=1)


def _plan_data(plan: CheckinPlan) -> dict:
    return {"minute": plan.minute_of_day, "days": plan.days, "starts_on": plan.starts_on.isoformat()}


# --- enrolment -------------------------------------------------------------------------------


async def _elder_account(session: AsyncSession, resident_id: int) -> Account | None:
    return await session.scalar(select(Account).where(Account.resident_id == resident_id))


async def enrol_resident(session: AsyncSession, resident: Resident, *, now: datetime, cfg: CheckinConfig,
                         minute: int | None = None, days: int | None = None,
                         by_account_id: int | None = None, mode: AnswerMode | None = None
                         ) -> tuple[CheckinPlan, bool]:
    """Enrol one resident (the caller has checked scope); returns (plan, created).

    Re-enrolling updates time and days and re-activates. Minute and days are validated first (a
    refusal writes nothing); the same enrolment again changes nothing and is not audited again. The
    elder, if on the bot, is told when they will be asked and how to change or pause it (outbox, once
    per change) — unless a helper answers for them (``proxy``: the elder is never asked). ``mode`` is
    a new plan's answering mode (``services.checkins.helpers`` sets modes and helpers)."""
    if minute is not None:
        check_minute(minute)
    if days is not None:
        check_days(days)
    if resident.status != ResidentStatus.active:
        raise CheckinError("not_active")
    plan = await session.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == resident.id))
    created = plan is None
    if plan is None:
        m = DEFAULT_MINUTE if minute is None else minute
        plan = CheckinPlan(resident_id=resident.id, committee_id=resident.committee_id, minute_of_day=m,
                           days=days or EVERY_DAY, starts_on=_starts_on(cfg, m, now), active=True,
                           mode=mode or AnswerMode.self, created_by_account_id=by_account_id, created_at=now,
                           updated_at=now)
        session.add(plan)
        changed = True
    else:
        before = (plan.minute_of_day, plan.days, plan.active)
        if minute is not None:
            plan.minute_of_day = minute
        if days is not None:
            plan.days = days
        if not plan.active:
            plan.active = True
            plan.starts_on = _starts_on(cfg, plan.minute_of_day, now)
        changed = before != (plan.minute_of_day, plan.days, plan.active)
        plan.updated_at = now
    await session.flush()
    if changed:  # the same enrolment again (a second tap of the same choice) changes nothing, records nothing
        audit.record(session, "checkin.enrol", now=now, actor_account_id=by_account_id, target_type="resident",
                     target_id=resident.id, region_id=resident.committee_id,
                     detail={"time": format_minute(plan.minute_of_day), "days": plan.days, "created": created})
    elder = await _elder_account(session, resident.id)
    if changed and elder is not None and plan.mode != AnswerMode.proxy:
        await tell(session, elder, f"cienrol:{plan.id}:{now.isoformat()}", "checkins.enrolled", _plan_data(plan),
                   now=now, ref_type=REF_PLAN, ref_id=plan.id)
    return plan, created


@dataclass(frozen=True, slots=True)
class SegmentEnrolment:
    matched: int
    enrolled: int  # new plans
    already: int  # matched residents who already had an active plan


async def enrol_segment(session: AsyncSession, committee: Region, expression: str, *, now: datetime,
                        cfg: CheckinConfig, minute: int | None = None, days: int | None = None,
                        by_account_id: int | None = None) -> SegmentEnrolment:
    """Enrol every active resident of ``committee`` matching a segment expression, set-based.

    Residents already enrolled keep their own time (the elder may have changed it); inactive plans
    are re-activated. Every elder newly enrolled or re-activated who is on the bot is told (one
    ``INSERT … SELECT``). Raises ``services.expressions.ExpressionError`` for a bad expression."""
    from services.expressions import compile_sql

    if minute is not None:
        check_minute(minute)
    if days is not None:
        check_days(days)
    today = cfg.today(now)
    m = DEFAULT_MINUTE if minute is None else minute
    where = and_(Resident.committee_id == committee.id, Resident.status == ResidentStatus.active,
                 compile_sql(expression, today=today, few_residents=True))
    active_plans = (select(func.count()).select_from(CheckinPlan)
                    .join(Resident, Resident.id == CheckinPlan.resident_id).where(where, CheckinPlan.active.is_(True)))
    matched = await session.scalar(select(func.count()).select_from(Resident).where(where)) or 0
    already = await session.scalar(active_plans) or 0
    local = cfg.local(now)
    await session.execute(
        update(CheckinPlan).where(CheckinPlan.active.is_(False),
                                  CheckinPlan.resident_id.in_(select(Resident.id).where(where)))
        # Each keeps its own time, so each starts today or tomorrow by its own time.
        .values(active=True, updated_at=now, starts_on=case(
            (CheckinPlan.minute_of_day >= local.hour * 60 + local.minute, local.date()),
            else_=local.date() + timedelta(days=1)))
        .execution_options(synchronize_session=False))
    src = select(
        Resident.id, Resident.committee_id, literal(m), literal(days or EVERY_DAY),
        literal(_starts_on(cfg, m, now)), literal(True), literal(by_account_id, BigInteger()),
        literal(now, UTCDateTime()), literal(now, UTCDateTime()),
    ).where(where)
    await session.execute(insert_into(session, CheckinPlan).from_select(
        ["resident_id", "committee_id", "minute_of_day", "days", "starts_on", "active", "created_by_account_id",
         "created_at", "updated_at"], src).on_conflict_do_nothing(index_elements=["resident_id"]))
    enrolled = (await session.scalar(active_plans) or 0) - already
    await _tell_enrolled(session, cfg, where, now)
    audit.record(session, "checkin.enrol_segment", now=now, actor_account_id=by_account_id, target_type="region",
                 target_id=committee.id, region_id=committee.id,
                 detail={"expression": expression[:500], "matched": matched, "enrolled": enrolled})
    return SegmentEnrolment(matched, enrolled, already)


async def _tell_enrolled(session: AsyncSession, cfg: CheckinConfig, where, now: datetime) -> int:
    """Queue "you are enrolled" for the plans this statement created or re-activated (``updated_at``
    is exactly ``now``), each with its own time and days."""
    stamp = now.isoformat()
    payload = message_payload_sql(session, "checkins.enrolled", {
        "minute": CheckinPlan.minute_of_day, "days": CheckinPlan.days, "starts_on": CheckinPlan.starts_on,
    }, locale_sql(cfg.default_locale))
    src = (
        select(literal("cienrol:", String) + cast(CheckinPlan.id, String) + literal(f":{stamp}", String),
               Account.chat_id, Account.id, literal(int(Priority.reply)), payload,
               literal(OutboxStatus.pending.value), literal(now, UTCDateTime()), literal(0), literal(REF_PLAN),
               CheckinPlan.id, literal(now, UTCDateTime()))
        .join(Resident, Resident.id == CheckinPlan.resident_id)
        .join(Account, Account.resident_id == CheckinPlan.resident_id)
        .where(where, CheckinPlan.active.is_(True), CheckinPlan.updated_at == now,
               CheckinPlan.mode != AnswerMode.proxy)  # a helper answers: the elder is never asked
    )
    stmt = insert_into(session, OutboxMessage).from_select(
        ["idempotency_key", "chat_id", "account_id", "priority", "payload", "status", "not_before", "attempts",
         "ref_type", "ref_id", "created_at"], src).on_conflict_do_nothing(index_elements=["idempotency_key"])
    return rowcount(await session.execute(stmt))


async def unenrol(session: AsyncSession, resident: Resident, *, now: datetime, by_account_id: int | None) -> bool:
    """Stop check-ins for a resident (the caller has checked scope). True if a plan was active; the
    elder is told, and today's unanswered round closes quietly (no reminder, no alert)."""
    plan = await session.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == resident.id,
                                                          CheckinPlan.active.is_(True)).with_for_update())
    if plan is None:
        return False
    plan.active, plan.updated_at = False, now
    # An open round closes quietly (as a pause does): no reminder, no alert for a stopped plan.
    for rnd in (await session.scalars(select(CheckinRound).where(
            CheckinRound.plan_id == plan.id, CheckinRound.status.in_(OPEN_ROUND_STATUSES)).with_for_update())).all():
        rnd.status = RoundStatus.paused
        await cancel_messages(session, REF_ROUND, [rnd.id])
        record_event(session, rnd.id, "stopped", now, actor=by_account_id)
    audit.record(session, "checkin.unenrol", now=now, actor_account_id=by_account_id, target_type="resident",
                 target_id=resident.id, region_id=resident.committee_id)
    elder = await _elder_account(session, resident.id)
    if elder is not None:
        await tell(session, elder, f"cistop:{plan.id}:{now.isoformat()}", "checkins.stopped", {}, now=now,
                   ref_type=REF_PLAN, ref_id=plan.id)
    await session.flush()
    return True


@dataclass(frozen=True, slots=True)
class PlanLine:
    plan: CheckinPlan
    resident: Resident
    on_bot: bool
    helper: str | None = None  # who answers for the elder (a helper mode), by name


async def list_plans(session: AsyncSession, committee_id: int) -> list[PlanLine]:
    """Active plans of one committee (for the CLI and the console), by room."""
    helper = aliased(Account)
    rows = await session.execute(
        select(CheckinPlan, Resident, Account.id, helper).join(Resident, Resident.id == CheckinPlan.resident_id)
        .outerjoin(Account, Account.resident_id == Resident.id)
        .outerjoin(helper, helper.id == CheckinPlan.helper_account_id)
        .where(CheckinPlan.committee_id == committee_id, CheckinPlan.active.is_(True))
        .order_by(Resident.building, Resident.unit, Resident.room, Resident.name))
    return [PlanLine(plan, resident, account_id is not None, account_name(h) if h is not None else None)
            for plan, resident, account_id, h in rows]


async def elder_account(session: AsyncSession, resident_id: int) -> Account | None:
    """The Telegram account linked to the resident, if any (check-ins can reach them through it)."""
    return await _elder_account(session, resident_id)


# --- the elder's own settings ------------------------------------------------------------------


async def my_plan(session: AsyncSession, account: Account | None) -> CheckinPlan | None:
    """The active plan of the account's own resident, if any."""
    if account is None or account.resident_id is None:
        return None
    return await session.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == account.resident_id,
                                                          CheckinPlan.active.is_(True)))


async def _own_plan(session: AsyncSession, account: Account | None) -> CheckinPlan:
    plan = await my_plan(session, account)
    if plan is None:
        raise CheckinError("not_enrolled")
    return plan


async def set_time(session: AsyncSession, account: Account | None, minute: int, *, now: datetime) -> CheckinPlan:
    """The elder moves their daily time (validated: 0 … 1439). Today's round, once opened, is not
    opened again."""
    check_minute(minute)
    plan = await _own_plan(session, account)
    plan.minute_of_day = minute
    plan.updated_at = now
    await session.flush()
    return plan


def is_paused(plan: CheckinPlan, today: date) -> bool:
    """Whether no round opens today because of a pause."""
    return plan.paused_until is not None and plan.paused_until >= today


async def pause(session: AsyncSession, account: Account | None, until: date, *, now: datetime, cfg: CheckinConfig,
                note: str | None = None) -> CheckinPlan:
    """No check-ins up to and including ``until`` (a local date within ``MAX_PAUSE_DAYS``). Today's
    unanswered round closes quietly; the committee's duty staff are told."""
    if account is None:  # nobody to have a plan (what _own_plan says too)
        raise CheckinError("not_enrolled")
    plan = await _own_plan(session, account)
    today = cfg.today(now)
    if until < today:
        raise CheckinError("past_date")
    if until > today + timedelta(days=MAX_PAUSE_DAYS):
        raise CheckinError("too_far", days=MAX_PAUSE_DAYS)
    plan.paused_until = until
    plan.pause_note = (note or "").strip()[:200] or None
    plan.updated_at = now
    rnd = await session.scalar(select(CheckinRound).where(
        CheckinRound.plan_id == plan.id, CheckinRound.local_date == today,
        CheckinRound.status.in_(OPEN_ROUND_STATUSES)).with_for_update())
    if rnd is not None:
        rnd.status = RoundStatus.paused
        await cancel_messages(session, REF_ROUND, [rnd.id])
        record_event(session, rnd.id, "paused", now, actor=account.id, detail={"until": until.isoformat()})
    await session.flush()
    # Foreign keys (CASCADE / RESTRICT) keep these rows while the plan exists.
    resident = await session.get_one(Resident, plan.resident_id)
    committee = await session.get_one(Region, plan.committee_id)
    data = {"name": resident.name, "room": room_of(resident), "until": until.isoformat(), "note": plan.pause_note}
    for staff in await duty_staff(session, committee):
        await tell(session, staff, f"cipause:{plan.id}:{until.isoformat()}:{now.isoformat()}:{staff.id}",
                   "checkins.paused", data, now=now, ref_type=REF_PLAN, ref_id=plan.id)
    return plan


async def pause_for_days(session: AsyncSession, account: Account | None, days: int, *, now: datetime,
                         cfg: CheckinConfig) -> CheckinPlan:
    """:func:`pause` for ``days`` days from today (0 … ``MAX_PAUSE_DAYS``; anything else is refused)."""
    if not isinstance(days, int) or days < 0:
        raise CheckinError("past_date")
    if days > MAX_PAUSE_DAYS:
        raise CheckinError("too_far", days=MAX_PAUSE_DAYS)
    return await pause(session, account, cfg.today(now) + timedelta(days=days), now=now, cfg=cfg)


async def resume(session: AsyncSession, account: Account | None, *, now: datetime) -> CheckinPlan:
    """Check-ins start again (today's, if its time has come and it was not asked yet)."""
    plan = await _own_plan(session, account)
    plan.paused_until = None
    plan.pause_note = None
    plan.updated_at = now
    await session.flush()
    return plan
