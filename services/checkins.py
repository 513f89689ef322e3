"""Daily check-ins for elderly residents living alone, with escalation (PRODUCT.md part 5).

The state machine lives in the database and moves only when :func:`tick` (or an answer, or a staff
button) runs with an explicit ``now``:

    plan ──tick──▶ round pending ──reminder_after──▶ reminded ──escalate_after──▶ alerted
                      │  "I'm fine" → ok             (or the elder blocked the bot → alerted)
                      └─ "I need help" → help + alert at once

    alert open ──ack_timeout──▶ next level (committee on duty → street staff → family)
          │ "I'm on it" → acknowledged ──resolve_timeout──▶ remind the acknowledger
          └ Safe / Needed help / Not reachable → resolved;  a late "I'm fine" → resolved, all clear

Every step is idempotent and safe in several processes: rounds are UNIQUE per plan and local date
and opened with ``INSERT … SELECT … ON CONFLICT DO NOTHING``; alerts are UNIQUE per round; rows a
step works on are claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite has one writer);
every message goes through the outbox with an idempotency key. Services never import aiogram:
the buttons are neutral payloads whose callback data the handlers parse (``ci:…``, ``al:…``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import io
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import audit
from services import outbox as outbox_service
from services.accounts import account_locale
from services.i18n import LOCALES, N_, _, use_locale
from services.models import (
    Account,
    Alert,
    AlertLevel,
    AlertOutcome,
    AlertReason,
    AlertStatus,
    CheckinPlan,
    CheckinRound,
    EmergencyContact,
    FamilyInvite,
    OutboxMessage,
    OutboxStatus,
    Region,
    RegionLevel,
    Resident,
    ResidentStatus,
    RoundEvent,
    RoundStatus,
    Staff,
    StaffRole,
    UTCDateTime,
    WeeklyReportClaim,
)
from services.models.checkins import EVERY_DAY, OPEN_ROUND_STATUSES
from services.notify import committee_staff, notify
from services.outbox import Priority, button, make_payload
from services.scope import Actor, committee_ids_in_scope

REF_ROUND = "checkin"  # outbox ref_type of prompts and reminders (ref_id = round id)
REF_ALERT = "checkin_alert"  # outbox ref_type of alert messages (ref_id = alert id)
REF_REPORT = "checkin_report"
DEFAULT_MINUTE = 9 * 60
BATCH = 500  # alerts / escalations handled per step and tick (each needs its own messages)
FAMILY_INVITE_TTL = timedelta(days=7)
MAX_PAUSE_DAYS = 180
_PLACEHOLDER = "@@ROUND@@"

__all__ = [
    "REF_ALERT",
    "REF_ROUND",
    "AnswerResult",
    "Board",
    "CheckinConfig",
    "CheckinError",
    "TickReport",
    "WeeklyReport",
    "acknowledge",
    "answer",
    "board",
    "create_family_invite",
    "enrol_resident",
    "enrol_segment",
    "format_days",
    "format_minute",
    "list_contacts",
    "list_plans",
    "my_plan",
    "on_round_unreachable",
    "open_alerts",
    "parse_days",
    "parse_time",
    "pause",
    "redeem_family_invite",
    "remove_contact",
    "resolve",
    "resume",
    "round_history",
    "send_weekly_reports",
    "set_duty",
    "set_time",
    "tick",
    "weekly_report",
]


class CheckinError(Exception):
    """A refusal with a machine-readable reason (handlers turn it into a polite sentence)."""

    def __init__(self, reason: str, **info: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.info = info


@dataclass(frozen=True, slots=True)
class CheckinConfig:
    """The durations and the clock's time zone (from ``bot.settings.Settings``)."""

    reminder_after: timedelta = timedelta(minutes=30)
    escalate_after: timedelta = timedelta(minutes=90)
    ack_timeout: timedelta = timedelta(minutes=30)
    resolve_timeout: timedelta = timedelta(hours=4)
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    default_locale: str = "zh_Hans"

    @classmethod
    def of(cls, settings: Any) -> CheckinConfig:
        if isinstance(settings, CheckinConfig):
            return settings
        return cls(settings.checkin_reminder_after, settings.checkin_escalate_after, settings.alert_ack_timeout,
                   settings.alert_resolve_timeout, ZoneInfo(settings.timezone), settings.default_locale)

    def local(self, now: datetime) -> datetime:
        return now.astimezone(self.tz)

    def today(self, now: datetime) -> date:
        return self.local(now).date()


# ---------------------------------------------------------------------------------------------
# Small parsers and formatters

_TIME = re.compile(r"^\s*([01]?\d|2[0-3])\s*[:：.]\s*([0-5]\d)\s*$")
_DAY_NAMES = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def parse_time(text: str) -> int | None:
    """``"9:00"``, ``"09:30"``, ``"18：00"`` → minutes after local midnight; None if not a time."""
    m = _TIME.match(text or "")
    return int(m[1]) * 60 + int(m[2]) if m else None


def format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_days(text: str) -> int | None:
    """Days as a weekday bit mask: ``daily``, ``weekdays``, ``1-5``, ``1,3,5`` (1 = Monday) or
    ``mon-fri``. None if it cannot be read."""
    t = (text or "").strip().lower().removeprefix("days=")
    if t in ("", "daily", "every", "all", "每天"):
        return EVERY_DAY
    if t in ("weekdays", "工作日"):
        return 0b0011111
    if t in ("weekends", "周末"):
        return 0b1100000
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


def format_days(mask: int) -> str:
    if mask == EVERY_DAY:
        return _("every day")
    names = [_("Mon"), _("Tue"), _("Wed"), _("Thu"), _("Fri"), _("Sat"), _("Sun")]
    return ", ".join(n for i, n in enumerate(names) if mask & (1 << i))


def room_of(resident: Resident) -> str:
    parts = [p for p in (resident.building, resident.unit, resident.room) if p]
    place = "-".join(parts) if parts else "—"
    return f"{resident.compound} {place}" if resident.compound else place


def _fmt(cfg: CheckinConfig, when: datetime | None) -> str:
    return cfg.local(when).strftime("%m-%d %H:%M") if when else "—"


def _e(text: str | None) -> str:
    return html.escape(text or "", quote=False)


def _starts_on(cfg: CheckinConfig, minute: int, now: datetime) -> date:
    """Today if today's check-in time is still ahead, else tomorrow (no surprise prompt at once)."""
    local = cfg.local(now)
    today = local.date()
    return today if minute >= local.hour * 60 + local.minute else today + timedelta(days=1)


def _event(session: AsyncSession, round_id: int, kind: str, now: datetime, *, alert_id: int | None = None,
           actor: int | None = None, target: int | None = None, detail: dict | None = None) -> None:
    session.add(RoundEvent(round_id=round_id, alert_id=alert_id, at=now, kind=kind, actor_account_id=actor,
                           target_account_id=target, detail=detail))


def _insert(session: AsyncSession, table):
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)


# ---------------------------------------------------------------------------------------------
# Enrolment


async def enrol_resident(session: AsyncSession, resident: Resident, *, now: datetime, cfg: CheckinConfig,
                         minute: int | None = None, days: int | None = None,
                         by_account_id: int | None = None) -> tuple[CheckinPlan, bool]:
    """Enrol one resident (the caller has checked scope). Re-enrolling updates time and days and
    re-activates; returns (plan, created)."""
    if resident.status != ResidentStatus.active:
        raise CheckinError("not_active")
    plan = await session.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == resident.id))
    created = plan is None
    if plan is None:
        m = DEFAULT_MINUTE if minute is None else minute
        plan = CheckinPlan(resident_id=resident.id, committee_id=resident.committee_id, minute_of_day=m,
                           days=days or EVERY_DAY, starts_on=_starts_on(cfg, m, now), active=True,
                           created_by_account_id=by_account_id, created_at=now, updated_at=now)
        session.add(plan)
    else:
        if minute is not None:
            plan.minute_of_day = minute
        if days:
            plan.days = days
        if not plan.active:
            plan.active = True
            plan.starts_on = _starts_on(cfg, plan.minute_of_day, now)
        plan.updated_at = now
    await session.flush()
    audit.record(session, "checkin.enrol", now=now, actor_account_id=by_account_id, target_type="resident",
                 target_id=resident.id, region_id=resident.committee_id,
                 detail={"time": format_minute(plan.minute_of_day), "days": plan.days, "created": created})
    return plan, created


@dataclass(frozen=True, slots=True)
class SegmentEnrolment:
    matched: int
    enrolled: int  # new plans
    already: int  # matched residents who already had an active plan


async def enrol_segment(session: AsyncSession, committee: Region, expression: str, *, now: datetime,
                        cfg: CheckinConfig, minute: int | None = None, days: int | None = None,
                        by_account_id: int | None = None) -> SegmentEnrolment:
    """Enrol every active resident of ``committee`` matching a segment expression, in one statement.

    Residents already enrolled keep their own time (the elder may have changed it); inactive plans
    are re-activated. Raises ``services.expressions.ExpressionError`` for a bad expression."""
    from services.expressions import compile_sql

    today = cfg.today(now)
    m = DEFAULT_MINUTE if minute is None else minute
    where = and_(Resident.committee_id == committee.id, Resident.status == ResidentStatus.active,
                 compile_sql(expression, today=today, few_residents=True))
    matched = await session.scalar(select(func.count()).select_from(Resident).where(where)) or 0
    already = await session.scalar(
        select(func.count()).select_from(CheckinPlan).join(Resident, Resident.id == CheckinPlan.resident_id)
        .where(where, CheckinPlan.active.is_(True))) or 0
    await session.execute(
        update(CheckinPlan).where(CheckinPlan.active.is_(False),
                                  CheckinPlan.resident_id.in_(select(Resident.id).where(where)))
        .values(active=True, starts_on=_starts_on(cfg, m, now), updated_at=now)
        .execution_options(synchronize_session=False))
    src = select(
        Resident.id, Resident.committee_id, literal(m), literal(days or EVERY_DAY),
        literal(_starts_on(cfg, m, now)), literal(True), literal(by_account_id, BigInteger()),
        literal(now, UTCDateTime()), literal(now, UTCDateTime()),
    ).where(where)
    stmt = _insert(session, CheckinPlan).from_select(
        ["resident_id", "committee_id", "minute_of_day", "days", "starts_on", "active", "created_by_account_id",
         "created_at", "updated_at"], src).on_conflict_do_nothing(index_elements=["resident_id"])
    await session.execute(stmt)
    enrolled = (await session.scalar(
        select(func.count()).select_from(CheckinPlan).join(Resident, Resident.id == CheckinPlan.resident_id)
        .where(where, CheckinPlan.active.is_(True))) or 0) - already
    audit.record(session, "checkin.enrol_segment", now=now, actor_account_id=by_account_id, target_type="region",
                 target_id=committee.id, region_id=committee.id,
                 detail={"expression": expression[:500], "matched": matched, "enrolled": enrolled})
    return SegmentEnrolment(matched, enrolled, already)


async def unenrol(session: AsyncSession, resident: Resident, *, now: datetime, by_account_id: int | None) -> bool:
    """Stop check-ins for a resident (the caller has checked scope). True if a plan was active."""
    result = await session.execute(
        update(CheckinPlan).where(CheckinPlan.resident_id == resident.id, CheckinPlan.active.is_(True))
        .values(active=False, updated_at=now))
    if result.rowcount:
        audit.record(session, "checkin.unenrol", now=now, actor_account_id=by_account_id, target_type="resident",
                     target_id=resident.id, region_id=resident.committee_id)
    return bool(result.rowcount)


@dataclass(frozen=True, slots=True)
class PlanLine:
    plan: CheckinPlan
    resident: Resident
    on_bot: bool


async def list_plans(session: AsyncSession, committee_id: int) -> list[PlanLine]:
    """Active plans of one committee (for the CLI and the console), by room."""
    rows = await session.execute(
        select(CheckinPlan, Resident, Account.id).join(Resident, Resident.id == CheckinPlan.resident_id)
        .outerjoin(Account, Account.resident_id == Resident.id)
        .where(CheckinPlan.committee_id == committee_id, CheckinPlan.active.is_(True))
        .order_by(Resident.building, Resident.unit, Resident.room, Resident.name))
    return [PlanLine(plan, resident, account_id is not None) for plan, resident, account_id in rows]


# ---------------------------------------------------------------------------------------------
# The elder's own settings


async def my_plan(session: AsyncSession, account: Account) -> CheckinPlan | None:
    """The active plan of the account's own resident, if any."""
    if account.resident_id is None:
        return None
    return await session.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == account.resident_id,
                                                          CheckinPlan.active.is_(True)))


async def _own_plan(session: AsyncSession, account: Account) -> CheckinPlan:
    plan = await my_plan(session, account)
    if plan is None:
        raise CheckinError("not_enrolled")
    return plan


async def set_time(session: AsyncSession, account: Account, minute: int, *, now: datetime) -> CheckinPlan:
    """The elder moves their daily time. Today's round, once opened, is not opened again."""
    if not 0 <= minute < 24 * 60:
        raise CheckinError("bad_time")
    plan = await _own_plan(session, account)
    plan.minute_of_day = minute
    plan.updated_at = now
    await session.flush()
    return plan


async def pause(session: AsyncSession, account: Account, until: date, *, now: datetime, cfg: CheckinConfig,
                note: str | None = None) -> CheckinPlan:
    """No check-ins up to and including ``until`` (a local date). Today's unanswered round closes
    quietly; the committee's duty staff are told."""
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
        await outbox_service.cancel(session, REF_ROUND, [rnd.id])
        _event(session, rnd.id, "paused", now, actor=account.id, detail={"until": until.isoformat()})
    await session.flush()
    resident = await session.get(Resident, plan.resident_id)
    committee = await session.get(Region, plan.committee_id)
    for staff in await duty_staff(session, committee):
        def render(resident=resident, until=until, note=plan.pause_note):
            text = _("{name} ({room}) paused daily check-ins until {date}.").format(
                name=_e(resident.name), room=_e(room_of(resident)), date=until.isoformat())
            if note:
                text += "\n" + _("Note: {note}").format(note=_e(note))
            return text, None
        await notify(session, staff, f"cipause:{plan.id}:{until.isoformat()}:{now.timestamp():.0f}:{staff.id}",
                     render, now=now, priority=Priority.reply)
    return plan


async def resume(session: AsyncSession, account: Account, *, now: datetime) -> CheckinPlan:
    """Check-ins start again (today's, if its time has come and it was not asked yet)."""
    plan = await _own_plan(session, account)
    plan.paused_until = None
    plan.pause_note = None
    plan.updated_at = now
    await session.flush()
    return plan


# ---------------------------------------------------------------------------------------------
# The elder's answer


@dataclass(frozen=True, slots=True)
class AnswerResult:
    round: CheckinRound
    alert: Alert | None
    already: bool = False  # the same answer had been given before
    all_clear: bool = False  # an open alert was closed by this "I'm fine"


async def answer(session: AsyncSession, account: Account, round_id: int, *, need_help: bool, now: datetime,
                 cfg: CheckinConfig) -> AnswerResult:
    """The elder answers a round of their own (anyone else: ``not_yours``).

    "I'm fine" closes the round, cancels a reminder not yet sent, and turns an open alert into an
    all clear for everyone who was alerted. "I need help" alerts at once (or re-opens the alert)."""
    rnd = await session.scalar(select(CheckinRound).where(CheckinRound.id == round_id).with_for_update())
    if rnd is None or account.resident_id is None or rnd.resident_id != account.resident_id:
        raise CheckinError("not_yours")
    alert = await session.scalar(select(Alert).where(Alert.round_id == rnd.id).with_for_update())
    if not need_help:
        if rnd.answer == "ok":
            return AnswerResult(rnd, alert, already=True)
        rnd.answer, rnd.answered_at, rnd.status = "ok", now, RoundStatus.ok
        _event(session, rnd.id, "answered", now, actor=account.id, detail={"answer": "ok"})
        await outbox_service.cancel(session, REF_ROUND, [rnd.id])
        cleared = False
        if alert is not None and alert.status != AlertStatus.resolved:
            await _all_clear(session, cfg, alert, account, now)
            cleared = True
        await session.flush()
        return AnswerResult(rnd, alert, all_clear=cleared)
    if rnd.answer == "help" and alert is not None and alert.status != AlertStatus.resolved:
        return AnswerResult(rnd, alert, already=True)
    rnd.answer, rnd.answered_at, rnd.status = "help", now, RoundStatus.help
    _event(session, rnd.id, "answered", now, actor=account.id, detail={"answer": "help"})
    await outbox_service.cancel(session, REF_ROUND, [rnd.id])
    alert = await raise_alert(session, cfg, rnd, AlertReason.help, now)
    return AnswerResult(rnd, alert)


# ---------------------------------------------------------------------------------------------
# Alerts: who is told, and what


async def duty_staff(session: AsyncSession, committee: Region) -> list[Account]:
    """The committee's on-duty staff, or all its committee staff if nobody is on duty."""
    rows = (await session.scalars(
        select(Account).join(Staff, Staff.account_id == Account.id)
        .where(Staff.region_id == committee.id, Staff.role == StaffRole.committee, Staff.active.is_(True),
               Staff.on_duty.is_(True)).order_by(Account.id))).unique().all()
    return list(rows) or await committee_staff(session, committee)


async def contact_accounts(session: AsyncSession, resident_id: int) -> list[Account]:
    return list((await session.scalars(
        select(Account).join(EmergencyContact, EmergencyContact.account_id == Account.id)
        .where(EmergencyContact.resident_id == resident_id).order_by(EmergencyContact.id))).all())


async def _recipients(session: AsyncSession, alert: Alert, committee: Region, level: int) -> list[Account]:
    if level == AlertLevel.committee:
        return await duty_staff(session, committee)
    if level == AlertLevel.street:
        return await committee_staff(session, committee, role=StaffRole.street)
    return await contact_accounts(session, alert.resident_id)


def _account_name(account: Account | None) -> str:
    if account is None:
        return "—"
    name = " ".join(p for p in (account.first_name, account.last_name) if p) or "?"
    return f"{name} (@{account.username})" if account.username else name


@dataclass(slots=True)
class _AlertInfo:
    alert: Alert
    resident: Resident
    committee: Region
    last_answer: tuple[str, datetime] | None
    contacts: list[str]


async def _info(session: AsyncSession, alert: Alert) -> _AlertInfo:
    resident = await session.get(Resident, alert.resident_id)
    committee = await session.get(Region, alert.committee_id)
    rnd = await session.get(CheckinRound, alert.round_id)
    last = (await session.execute(
        select(CheckinRound.answer, CheckinRound.answered_at)
        .where(CheckinRound.plan_id == rnd.plan_id, CheckinRound.answered_at.is_not(None))
        .order_by(CheckinRound.answered_at.desc()).limit(1))).first()
    contacts = [_account_name(a) for a in await contact_accounts(session, alert.resident_id)]
    if resident.emergency_contact_phone:
        contacts.append(resident.emergency_contact_phone)
    return _AlertInfo(alert, resident, committee, (last[0], last[1]) if last else None, contacts)


HEADLINES = {
    AlertReason.no_answer: N_("🔔 Check-in alert: {name} has not answered today's check-in."),
    AlertReason.unreachable: N_("🔔 Check-in alert: {name} cannot be reached (the bot is blocked)."),
    AlertReason.help: N_("🆘 {name} pressed \"I need help\"!"),
}
OUTCOME_NAMES = {
    AlertOutcome.safe: N_("safe"),
    AlertOutcome.needed_help: N_("needed help"),
    AlertOutcome.not_reachable: N_("not reachable"),
    AlertOutcome.all_clear: N_("all clear: answered \"I'm fine\""),
}
ANSWER_NAMES = {"ok": N_("I'm fine"), "help": N_("I need help")}


def alert_text(info: _AlertInfo, cfg: CheckinConfig, level: int) -> str:
    """The alert in the current locale: who, where, phone, last answer, emergency contacts."""
    r = info.resident
    if info.last_answer:
        last = _("{answer}, {time}").format(answer=_(ANSWER_NAMES.get(info.last_answer[0], "?")),
                                            time=_fmt(cfg, info.last_answer[1]))
    else:
        last = _("never")
    lines = [
        _(HEADLINES[info.alert.reason]).format(name=f"<b>{_e(r.name)}</b>"),
        _("Committee: {committee}").format(committee=_e(info.committee.name)),
        _("Room: {room}").format(room=_e(room_of(r))),
        _("Phone: {phone}").format(phone=_e(r.phone) or "—"),
        _("Last answer: {answer}").format(answer=_e(last)),
        _("Emergency contacts: {contacts}").format(contacts=_e(", ".join(info.contacts)) or "—"),
    ]
    if level == AlertLevel.street:
        lines.append(_("Escalated to street staff: the committee did not respond in time."))
    elif level == AlertLevel.family:
        lines.append(_("You are an emergency contact of {name}. Please check on them.").format(name=_e(r.name)))
    lines.append(_("Please press \"I'm on it\" if you are handling this."))
    return "\n".join(lines)


def alert_buttons(alert_id: int, acknowledged: bool = False) -> list[list[dict[str, str]]]:
    rows = [] if acknowledged else [[button(_("🙋 I'm on it"), callback_data=f"al:{alert_id}:ack")]]
    rows.append([button(_("✅ Safe"), callback_data=f"al:{alert_id}:safe"),
                 button(_("🚑 Needed help"), callback_data=f"al:{alert_id}:help")])
    rows.append([button(_("📵 Not reachable"), callback_data=f"al:{alert_id}:unr")])
    return rows


async def _notify_level(session: AsyncSession, cfg: CheckinConfig, alert: Alert, level: int, now: datetime) -> int:
    """Tell the first level from ``level`` up that has anyone; records the level even if nobody."""
    info = await _info(session, alert)
    told = 0
    while level <= AlertLevel.family:
        accounts = await _recipients(session, alert, info.committee, level)
        alert.level, alert.level_at = level, now
        for account in accounts:
            def render(level=level):
                return alert_text(info, cfg, level), alert_buttons(alert.id)
            await notify(session, account, f"al:{alert.id}:g{alert.generation}:L{level}:{account.id}", render,
                         now=now, priority=Priority.alert, ref_type=REF_ALERT, ref_id=alert.id)
            _event(session, alert.round_id, "alert_sent", now, alert_id=alert.id, target=account.id,
                   detail={"level": level, "reason": alert.reason.value})
            told += 1
        if accounts:
            break
        _event(session, alert.round_id, "level_empty", now, alert_id=alert.id, detail={"level": level})
        level += 1
    alert.level = min(alert.level, AlertLevel.family)
    await session.flush()
    return told


async def raise_alert(session: AsyncSession, cfg: CheckinConfig, rnd: CheckinRound, reason: AlertReason,
                      now: datetime) -> Alert:
    """Open the round's alert (at most one per round) and tell level 1. Idempotent: an open alert is
    only upgraded when the elder now asks for help; a resolved one is re-opened only for help."""
    stmt = _insert(session, Alert).values(
        round_id=rnd.id, resident_id=rnd.resident_id, committee_id=rnd.committee_id, reason=reason,
        status=AlertStatus.open, level=AlertLevel.committee, generation=1, opened_at=now, level_at=now,
        resolve_reminders=0,
    ).on_conflict_do_nothing(index_elements=["round_id"]).returning(Alert.id)
    new_id = (await session.execute(stmt)).scalar()
    if rnd.status in OPEN_ROUND_STATUSES:
        rnd.status = RoundStatus.alerted
    if rnd.alerted_at is None:
        rnd.alerted_at = now
    if new_id is not None:
        alert = await session.get(Alert, new_id)
        _event(session, rnd.id, "alert_opened", now, alert_id=alert.id, detail={"reason": reason.value})
        await _notify_level(session, cfg, alert, AlertLevel.committee, now)
        return alert
    alert = await session.scalar(select(Alert).where(Alert.round_id == rnd.id).with_for_update())
    if reason != AlertReason.help or (alert.reason == AlertReason.help and alert.status != AlertStatus.resolved):
        return alert
    if alert.status == AlertStatus.resolved:
        alert.generation += 1
        alert.status, alert.reason, alert.outcome = AlertStatus.open, AlertReason.help, None
        alert.acknowledged_at = alert.acknowledged_by_account_id = None
        alert.resolved_at = alert.resolved_by_account_id = None
        alert.resolve_reminded_at, alert.resolve_reminders, alert.opened_at = None, 0, now
        _event(session, rnd.id, "alert_reopened", now, alert_id=alert.id, detail={"reason": "help"})
        await _notify_level(session, cfg, alert, AlertLevel.committee, now)
        return alert
    # Open or acknowledged: everyone told so far hears that it is now a call for help.
    alert.reason = AlertReason.help
    info = await _info(session, alert)
    for account in await _alerted_accounts(session, alert):
        def render():
            return alert_text(info, cfg, AlertLevel.committee), alert_buttons(
                alert.id, acknowledged=alert.status == AlertStatus.acknowledged)
        await notify(session, account, f"al:{alert.id}:g{alert.generation}:help:{account.id}", render, now=now,
                     priority=Priority.alert, ref_type=REF_ALERT, ref_id=alert.id)
        _event(session, rnd.id, "help_sent", now, alert_id=alert.id, target=account.id)
    await session.flush()
    return alert


async def _alerted_accounts(session: AsyncSession, alert: Alert, exclude: int | None = None) -> list[Account]:
    ids = select(RoundEvent.target_account_id).where(
        RoundEvent.alert_id == alert.id, RoundEvent.kind.in_(("alert_sent", "help_sent", "family_told")))
    stmt = select(Account).where(Account.id.in_(ids)).order_by(Account.id)
    if exclude is not None:
        stmt = stmt.where(Account.id != exclude)
    return list((await session.scalars(stmt)).all())


async def _tell_alerted(session: AsyncSession, alert: Alert, what: str, render, now: datetime, *,
                        exclude: int | None = None, priority: int = Priority.reply) -> int:
    told = 0
    for account in await _alerted_accounts(session, alert, exclude):
        await notify(session, account, f"al:{alert.id}:g{alert.generation}:{what}:{account.id}", render, now=now,
                     priority=priority, ref_type=REF_ALERT, ref_id=alert.id)
        _event(session, alert.round_id, f"{what}_sent", now, alert_id=alert.id, target=account.id)
        told += 1
    return told


async def _all_clear(session: AsyncSession, cfg: CheckinConfig, alert: Alert, elder: Account, now: datetime) -> None:
    alert.status, alert.outcome = AlertStatus.resolved, AlertOutcome.all_clear
    alert.resolved_at, alert.resolved_by_account_id = now, elder.id
    _event(session, alert.round_id, "all_clear", now, alert_id=alert.id, actor=elder.id)
    resident = await session.get(Resident, alert.resident_id)

    def render():
        return _("✅ All clear: {name} ({room}) answered \"I'm fine\" at {time}.").format(
            name=_e(resident.name), room=_e(room_of(resident)), time=_fmt(cfg, now)), None
    await _tell_alerted(session, alert, "clear", render, now, priority=Priority.alert)


async def _alert_in_reach(session: AsyncSession, actor: Actor, alert_id: int) -> Alert:
    """The alert if the actor may act on it: staff whose region covers its committee, or an
    emergency contact of that elder. Anything else looks like a missing alert."""
    alert = await session.scalar(select(Alert).where(Alert.id == alert_id).with_for_update())
    if alert is None or actor.account is None:
        raise CheckinError("not_found")
    if actor.is_staff:
        path = await session.scalar(select(Region.path).where(Region.id == alert.committee_id))
        if path is not None and actor.covers_path(path):
            return alert
    is_contact = await session.scalar(select(EmergencyContact.id).where(
        EmergencyContact.resident_id == alert.resident_id, EmergencyContact.account_id == actor.account_id))
    if is_contact is None:
        raise CheckinError("not_found")
    return alert


async def acknowledge(session: AsyncSession, actor: Actor, alert_id: int, *, now: datetime) -> Alert:
    """"I'm on it": stops the escalation; the others who were alerted hear who took it."""
    alert = await _alert_in_reach(session, actor, alert_id)
    if alert.status == AlertStatus.resolved:
        raise CheckinError("closed", outcome=alert.outcome)
    if alert.status == AlertStatus.acknowledged:
        if alert.acknowledged_by_account_id == actor.account_id:
            return alert
        raise CheckinError("taken", by=_account_name(await session.get(Account, alert.acknowledged_by_account_id)))
    alert.status = AlertStatus.acknowledged
    alert.acknowledged_at, alert.acknowledged_by_account_id = now, actor.account_id
    _event(session, alert.round_id, "acknowledged", now, alert_id=alert.id, actor=actor.account_id)
    audit.record(session, "checkin.alert_ack", now=now, actor_account_id=actor.account_id, target_type="alert",
                 target_id=alert.id, region_id=alert.committee_id)
    resident = await session.get(Resident, alert.resident_id)
    who = _account_name(actor.account)

    def render():
        return _("🙋 {who} is on it: {name} ({room}).").format(
            who=_e(who), name=_e(resident.name), room=_e(room_of(resident))), None
    await _tell_alerted(session, alert, "ack", render, now, exclude=actor.account_id)
    await session.flush()
    return alert


async def resolve(session: AsyncSession, actor: Actor, alert_id: int, outcome: AlertOutcome, *, now: datetime,
                  cfg: CheckinConfig) -> Alert:
    """Close the alert with an outcome. "Not reachable" also tells the emergency contacts who were
    not alerted yet; everyone alerted hears the outcome."""
    if outcome == AlertOutcome.all_clear:
        raise CheckinError("bad_outcome")
    alert = await _alert_in_reach(session, actor, alert_id)
    if alert.status == AlertStatus.resolved:
        raise CheckinError("closed", outcome=alert.outcome)
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by_account_id = now, actor.account_id
    alert.status, alert.outcome = AlertStatus.resolved, outcome
    alert.resolved_at, alert.resolved_by_account_id = now, actor.account_id
    _event(session, alert.round_id, "resolved", now, alert_id=alert.id, actor=actor.account_id,
           detail={"outcome": outcome.value})
    audit.record(session, "checkin.alert_resolve", now=now, actor_account_id=actor.account_id, target_type="alert",
                 target_id=alert.id, region_id=alert.committee_id, detail={"outcome": outcome.value})
    resident = await session.get(Resident, alert.resident_id)
    who = _account_name(actor.account)

    def render():
        return _("{name} ({room}): closed by {who} — {outcome}.").format(
            name=_e(resident.name), room=_e(room_of(resident)), who=_e(who), outcome=_(OUTCOME_NAMES[outcome])), None
    await _tell_alerted(session, alert, "resolved", render, now, exclude=actor.account_id)
    if outcome == AlertOutcome.not_reachable:
        told = {a.id for a in await _alerted_accounts(session, alert)} | {actor.account_id}
        for account in await contact_accounts(session, alert.resident_id):
            if account.id in told:
                continue

            def family_render():
                return _("The committee could not reach {name} today. Please check on them.").format(
                    name=_e(resident.name)), None
            await notify(session, account, f"al:{alert.id}:g{alert.generation}:family:{account.id}", family_render,
                         now=now, priority=Priority.alert, ref_type=REF_ALERT, ref_id=alert.id)
            _event(session, alert.round_id, "family_told", now, alert_id=alert.id, target=account.id)
    await session.flush()
    return alert


async def set_duty(session: AsyncSession, actor: Actor, on: bool) -> int:
    """Put the actor's committee-level staff grants on or off duty; returns how many changed."""
    if actor.account is None:
        return 0
    result = await session.execute(
        update(Staff).where(Staff.account_id == actor.account_id, Staff.role == StaffRole.committee,
                            Staff.active.is_(True)).values(on_duty=on))
    return result.rowcount


# ---------------------------------------------------------------------------------------------
# The tick


@dataclass(slots=True)
class TickReport:
    opened: int = 0
    reminded: int = 0
    unreachable: int = 0
    alerted: int = 0
    escalated: int = 0
    resolve_reminded: int = 0

    def __bool__(self) -> bool:
        return any((self.opened, self.reminded, self.unreachable, self.alerted, self.escalated,
                    self.resolve_reminded))


def _locale_of_account(default: str) -> ColumnElement[str]:
    """SQL twin of ``services.accounts.account_locale``: chosen language, else Telegram's, else default."""
    lang = func.lower(func.coalesce(Account.language_code, ""))
    return case((Account.locale.in_(LOCALES), Account.locale), (lang.like("zh%"), "zh_Hans"),
                (lang.like("en%"), "en"), else_=default)


def _elder_payload(kind: str) -> dict[str, Any]:
    """The prompt or the reminder in the current locale, with a placeholder for the round id."""
    if kind == "prompt":
        text = _("☀️ Good day! How are you today?\nPlease tap one button.")
    else:
        text = _("⏰ Reminder: we have not heard from you today.\nPlease tap one button.")
    return make_payload(text, buttons=[
        [button(_("😊 I'm fine"), callback_data=f"ci:{_PLACEHOLDER}:ok")],
        [button(_("🆘 I need help"), callback_data=f"ci:{_PLACEHOLDER}:help")],
    ])


def _payload_sql(session: AsyncSession, payload: dict[str, Any], id_text: ColumnElement[str]):
    """The payload as JSON text built by the database, the round id spliced into the callback data."""
    parts = json.dumps(payload, ensure_ascii=False).split(_PLACEHOLDER)
    expr: ColumnElement[str] = literal(parts[0], String)
    for part in parts[1:]:
        expr = expr + id_text + literal(part, String)
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy import JSON

        return cast(expr, JSON)
    return expr  # SQLite keeps JSON as text


async def _enqueue_elder_messages(session: AsyncSession, cfg: CheckinConfig, kind: str, rounds: ColumnElement[bool],
                                  now: datetime) -> int:
    """Queue the prompt (or reminder) of the rounds a tick step just touched, in one statement.

    The round's ``opened_at`` / ``reminded_at`` and these outbox rows (with their delivery status)
    are the history of these two bulk steps: no event row per elder is written for them."""
    id_text = cast(CheckinRound.id, String)
    payloads = {}
    for locale in LOCALES:
        with use_locale(locale):
            payloads[locale] = _payload_sql(session, _elder_payload(kind), id_text)
    locale_of = _locale_of_account(cfg.default_locale)
    payload = case(*((locale_of == locale, sql) for locale, sql in payloads.items() if locale != LOCALES[0]),
                   else_=payloads[LOCALES[0]])
    src = (
        select(literal("ci:", String) + id_text + literal(f":{kind}", String), Account.chat_id, Account.id,
               literal(int(Priority.checkin)), payload, literal(OutboxStatus.pending.value),
               literal(now, UTCDateTime()), literal(0), literal(REF_ROUND), CheckinRound.id,
               literal(now, UTCDateTime()))
        .join(Account, Account.id == CheckinRound.account_id)
        .where(rounds)
    )
    stmt = _insert(session, OutboxMessage).from_select(
        ["idempotency_key", "chat_id", "account_id", "priority", "payload", "status", "not_before", "attempts",
         "ref_type", "ref_id", "created_at"], src).on_conflict_do_nothing(index_elements=["idempotency_key"])
    total = (await session.execute(stmt)).rowcount or 0
    return total


async def open_rounds(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Open today's round of every due plan and queue its prompt, set-based. Idempotent: the UNIQUE
    (plan, local date) key makes a second tick (or a second process) open nothing. No commit."""
    local = cfg.local(now)
    today, minute, bit = local.date(), local.hour * 60 + local.minute, 1 << local.weekday()
    token = uuid.uuid4().hex
    exists = select(CheckinRound.id).where(CheckinRound.plan_id == CheckinPlan.id, CheckinRound.local_date == today)
    src = (
        select(CheckinPlan.id, CheckinPlan.resident_id, CheckinPlan.committee_id, Account.id, literal(today),
               literal(RoundStatus.pending.value), literal(now, UTCDateTime()), literal(token))
        .join(Resident, Resident.id == CheckinPlan.resident_id)
        .join(Account, Account.resident_id == CheckinPlan.resident_id)
        .where(CheckinPlan.active.is_(True), CheckinPlan.minute_of_day <= minute,
               CheckinPlan.days.op("&")(bit) != 0, CheckinPlan.starts_on <= today,
               or_(CheckinPlan.paused_until.is_(None), CheckinPlan.paused_until < today),
               Resident.status == ResidentStatus.active, ~exists.exists())
    )
    # The anti-join keeps later ticks of the day cheap; the UNIQUE key (ON CONFLICT DO NOTHING) is
    # what makes concurrent ticks safe.
    stmt = _insert(session, CheckinRound).from_select(
        ["plan_id", "resident_id", "committee_id", "account_id", "local_date", "status", "opened_at", "tick_token"],
        src).on_conflict_do_nothing(index_elements=["plan_id", "local_date"])
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        # When PostgreSQL believes checkin_rounds is (nearly) empty — a first big day — it answers
        # the anti-join by re-scanning the table once per plan, a table this very statement is
        # filling: quadratic (minutes for 100,000 plans). Without sequential scans it probes the
        # UNIQUE (plan_id, local_date) index instead. SET LOCAL ends with the transaction.
        await session.execute(text("SET LOCAL enable_seqscan = off"))
    opened = (await session.execute(stmt)).rowcount or 0
    if postgres:
        await session.execute(text("SET LOCAL enable_seqscan = on"))
    if opened:
        # (status, opened_at) is indexed; the token tells this tick's rows from another's at the same now.
        mine = and_(CheckinRound.status == RoundStatus.pending, CheckinRound.opened_at == now,
                    CheckinRound.tick_token == token)
        await _enqueue_elder_messages(session, cfg, "prompt", mine, now)
    return opened


async def send_reminders(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """One reminder for each round unanswered after ``reminder_after`` (not if the alert is due too)."""
    token = uuid.uuid4().hex
    window = and_(CheckinRound.opened_at <= now - cfg.reminder_after, CheckinRound.opened_at > now - cfg.escalate_after)
    stmt = (update(CheckinRound).where(CheckinRound.status == RoundStatus.pending, window)
            .values(status=RoundStatus.reminded, reminded_at=now, tick_token=token)
            .execution_options(synchronize_session=False))
    reminded = (await session.execute(stmt)).rowcount or 0
    if reminded:
        mine = and_(CheckinRound.status == RoundStatus.reminded, window, CheckinRound.tick_token == token)
        await _enqueue_elder_messages(session, cfg, "remind", mine, now)
    return reminded


async def alert_unreachable(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Alert for open rounds whose prompt or reminder came back "blocked" (a safety net behind the
    sender's listener, which does the same at once)."""
    ids = (await session.scalars(
        select(CheckinRound.id).join(OutboxMessage, and_(OutboxMessage.ref_type == REF_ROUND,
                                                         OutboxMessage.ref_id == CheckinRound.id))
        .where(CheckinRound.status.in_(OPEN_ROUND_STATUSES), OutboxMessage.status == OutboxStatus.unreachable)
        .order_by(CheckinRound.id).limit(BATCH))).all()
    count = 0
    for round_id in dict.fromkeys(ids):
        rnd = await session.scalar(select(CheckinRound).where(
            CheckinRound.id == round_id, CheckinRound.status.in_(OPEN_ROUND_STATUSES))
            .with_for_update(skip_locked=True))
        if rnd is not None:
            _event(session, rnd.id, "unreachable", now, target=rnd.account_id)
            await raise_alert(session, cfg, rnd, AlertReason.unreachable, now)
            count += 1
    return count


async def alert_unanswered(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Alert for rounds still unanswered ``escalate_after`` after their prompt."""
    rounds = (await session.scalars(
        select(CheckinRound).where(CheckinRound.status.in_(OPEN_ROUND_STATUSES),
                                   CheckinRound.opened_at <= now - cfg.escalate_after)
        .order_by(CheckinRound.opened_at, CheckinRound.id).limit(BATCH).with_for_update(skip_locked=True))).all()
    for rnd in rounds:
        await raise_alert(session, cfg, rnd, AlertReason.no_answer, now)
    return len(rounds)


async def escalate_alerts(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Alerts nobody acknowledged within ``ack_timeout`` go to the next level."""
    alerts = (await session.scalars(
        select(Alert).where(Alert.status == AlertStatus.open, Alert.level < AlertLevel.family,
                            Alert.level_at <= now - cfg.ack_timeout)
        .order_by(Alert.level_at, Alert.id).limit(BATCH).with_for_update(skip_locked=True))).all()
    for alert in alerts:
        _event(session, alert.round_id, "escalated", now, alert_id=alert.id, detail={"from": alert.level})
        await _notify_level(session, cfg, alert, alert.level + 1, now)
    return len(alerts)


async def remind_resolvers(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Acknowledged alerts not resolved within ``resolve_timeout``: remind the acknowledger (again
    every ``resolve_timeout``)."""
    cutoff = now - cfg.resolve_timeout
    alerts = (await session.scalars(
        select(Alert).where(Alert.status == AlertStatus.acknowledged, or_(
            and_(Alert.resolve_reminded_at.is_(None), Alert.acknowledged_at <= cutoff),
            Alert.resolve_reminded_at <= cutoff))
        .order_by(Alert.id).limit(BATCH).with_for_update(skip_locked=True))).all()
    for alert in alerts:
        alert.resolve_reminders += 1
        alert.resolve_reminded_at = now
        account = await session.get(Account, alert.acknowledged_by_account_id) \
            if alert.acknowledged_by_account_id else None
        if account is None:
            continue
        info = await _info(session, alert)

        def render(info=info, alert=alert):
            text = _("⏳ Still open: you said you are on it for {name} ({room}) at {time}. "
                     "Please close it with a button.").format(
                name=_e(info.resident.name), room=_e(room_of(info.resident)), time=_fmt(cfg, alert.acknowledged_at))
            return text, alert_buttons(alert.id, acknowledged=True)
        await notify(session, account, f"al:{alert.id}:g{alert.generation}:rr{alert.resolve_reminders}:{account.id}",
                     render, now=now, priority=Priority.alert, ref_type=REF_ALERT, ref_id=alert.id)
        _event(session, alert.round_id, "resolve_reminder_sent", now, alert_id=alert.id, target=account.id)
    return len(alerts)


async def tick(session_factory: async_sessionmaker[AsyncSession], settings: Any, now: datetime) -> TickReport:
    """Run every due step once at ``now``, each in its own transaction. Idempotent; safe to run
    twice, concurrently, or after a crash at any point."""
    cfg = CheckinConfig.of(settings)
    report = TickReport()
    steps = (("opened", open_rounds), ("reminded", send_reminders), ("unreachable", alert_unreachable),
             ("alerted", alert_unanswered), ("escalated", escalate_alerts), ("resolve_reminded", remind_resolvers))
    for name, step in steps:
        async with session_factory() as session, session.begin():
            setattr(report, name, await step(session, cfg, now))
    return report


async def on_round_unreachable(session: AsyncSession, row: OutboxMessage, now: datetime, *, cfg: CheckinConfig) -> None:
    """Outbox sender listener (``on_unreachable("checkin", …)``): the elder blocked the bot → alert now."""
    if row.ref_id is None:
        return
    rnd = await session.scalar(select(CheckinRound).where(
        CheckinRound.id == row.ref_id, CheckinRound.status.in_(OPEN_ROUND_STATUSES)).with_for_update())
    if rnd is None:
        return
    _event(session, rnd.id, "unreachable", now, target=rnd.account_id)
    await raise_alert(session, cfg, rnd, AlertReason.unreachable, now)


# ---------------------------------------------------------------------------------------------
# Family (emergency contacts)


def _code_hash(code: str, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), b"family:" + code.strip().encode(), hashlib.sha256).hexdigest()


async def create_family_invite(session: AsyncSession, resident_id: int, *, issued_by: str, secret_key: str,
                               now: datetime, by_account_id: int | None = None) -> str:
    """A one-time code for ``?start=fam_<code>`` (stored hashed, valid 7 days)."""
    code = secrets.token_urlsafe(12)
    session.add(FamilyInvite(resident_id=resident_id, code_hash=_code_hash(code, secret_key), issued_by=issued_by,
                             created_by_account_id=by_account_id, created_at=now, expires_at=now + FAMILY_INVITE_TTL))
    await session.flush()
    return code


async def redeem_family_invite(session: AsyncSession, account: Account, code: str, *, secret_key: str,
                               now: datetime) -> Resident:
    """Make ``account`` an emergency contact of the invite's elder; the invite is used up."""
    invite = await session.scalar(select(FamilyInvite).where(
        FamilyInvite.code_hash == _code_hash(code, secret_key)).with_for_update())
    if invite is None:
        raise CheckinError("unknown_code")
    if invite.used_at is not None:
        raise CheckinError("used_code")
    if invite.expires_at <= now:
        raise CheckinError("expired_code")
    if account.resident_id == invite.resident_id:
        raise CheckinError("own_code")
    invite.used_at, invite.used_by_account_id = now, account.id
    await session.execute(_insert(session, EmergencyContact).values(
        resident_id=invite.resident_id, account_id=account.id, added_via=invite.issued_by, created_at=now,
    ).on_conflict_do_nothing(index_elements=["resident_id", "account_id"]))
    resident = await session.get(Resident, invite.resident_id)
    audit.record(session, "checkin.contact_added", now=now, actor_account_id=account.id, target_type="resident",
                 target_id=resident.id, region_id=resident.committee_id, detail={"via": invite.issued_by})
    elder = await session.scalar(select(Account).where(Account.resident_id == resident.id))
    if elder is not None:
        who = _account_name(account)

        def render():
            return _("{who} is now one of your emergency contacts. Send /family to see or change them.").format(
                who=_e(who)), None
        await notify(session, elder, f"famjoin:{invite.id}", render, now=now)
    await session.flush()
    return resident


@dataclass(frozen=True, slots=True)
class ContactLine:
    id: int
    name: str


async def list_contacts(session: AsyncSession, resident_id: int) -> list[ContactLine]:
    rows = await session.execute(
        select(EmergencyContact.id, Account).join(Account, Account.id == EmergencyContact.account_id)
        .where(EmergencyContact.resident_id == resident_id).order_by(EmergencyContact.id))
    return [ContactLine(cid, _account_name(account)) for cid, account in rows]


async def remove_contact(session: AsyncSession, account: Account, contact_id: int, *, now: datetime) -> bool:
    """The elder removes one of their own emergency contacts."""
    if account.resident_id is None:
        return False
    contact = await session.scalar(select(EmergencyContact).where(
        EmergencyContact.id == contact_id, EmergencyContact.resident_id == account.resident_id))
    if contact is None:
        return False
    await session.delete(contact)
    audit.record(session, "checkin.contact_removed", now=now, actor_account_id=account.id, target_type="resident",
                 target_id=account.resident_id)
    await session.flush()
    return True


# ---------------------------------------------------------------------------------------------
# Staff views


@dataclass(frozen=True, slots=True)
class AlertView:
    alert: Alert
    resident: Resident
    committee: str
    acknowledged_by: str | None


async def open_alerts(session: AsyncSession, actor: Actor, limit: int = 20) -> list[AlertView]:
    """Open and acknowledged alerts in the actor's staff scope, oldest first."""
    scope = committee_ids_in_scope(actor)
    if scope is None or not actor.is_staff:
        return []
    rows = await session.execute(
        select(Alert, Resident, Region.name).join(Resident, Resident.id == Alert.resident_id)
        .join(Region, Region.id == Alert.committee_id)
        .where(Alert.status != AlertStatus.resolved, Alert.committee_id.in_(scope))
        .order_by(Alert.opened_at, Alert.id).limit(limit))
    out = []
    for alert, resident, committee in rows:
        ack = await session.get(Account, alert.acknowledged_by_account_id) if alert.acknowledged_by_account_id else None
        out.append(AlertView(alert, resident, committee, _account_name(ack) if ack else None))
    return out


@dataclass(slots=True)
class CommitteeBoard:
    committee: Region
    answered: list[tuple[str, datetime | None]] = field(default_factory=list)
    help: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    reminded: list[str] = field(default_factory=list)
    alerted: list[str] = field(default_factory=list)
    paused: list[tuple[str, date | None]] = field(default_factory=list)
    later: list[tuple[str, int]] = field(default_factory=list)  # today's time not reached yet
    not_on_bot: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Board:
    day: date
    committees: list[CommitteeBoard]


async def board(session: AsyncSession, actor: Actor, *, now: datetime, cfg: CheckinConfig) -> Board:
    """Today's check-ins (local date) of every committee in the actor's scope."""
    today = cfg.today(now)
    scope = committee_ids_in_scope(actor)
    if scope is None or not actor.is_staff:
        return Board(today, [])
    rows = await session.execute(
        select(CheckinPlan, Resident, Region, CheckinRound, Account.id)
        .join(Resident, Resident.id == CheckinPlan.resident_id)
        .join(Region, Region.id == CheckinPlan.committee_id)
        .outerjoin(CheckinRound, and_(CheckinRound.plan_id == CheckinPlan.id, CheckinRound.local_date == today))
        .outerjoin(Account, Account.resident_id == Resident.id)
        .where(CheckinPlan.active.is_(True), CheckinPlan.committee_id.in_(scope))
        .order_by(Region.name, Resident.building, Resident.unit, Resident.room, Resident.name))
    boards: dict[int, CommitteeBoard] = {}
    for plan, resident, committee, rnd, account_id in rows:
        b = boards.setdefault(committee.id, CommitteeBoard(committee))
        label = f"{resident.name} ({room_of(resident)})"
        if rnd is not None:
            if rnd.status == RoundStatus.ok:
                b.answered.append((label, rnd.answered_at))
            elif rnd.status == RoundStatus.help:
                b.help.append(label)
            elif rnd.status == RoundStatus.alerted:
                b.alerted.append(label)
            elif rnd.status == RoundStatus.reminded:
                b.reminded.append(label)
            elif rnd.status == RoundStatus.paused:
                b.paused.append((label, plan.paused_until))
            else:
                b.pending.append(label)
        elif plan.paused_until is not None and plan.paused_until >= today:
            b.paused.append((label, plan.paused_until))
        elif account_id is None:
            b.not_on_bot.append(label)
        else:
            b.later.append((label, plan.minute_of_day))
    return Board(today, list(boards.values()))


_EVENT_NAMES = {
    "prompted": N_("asked"), "reminded": N_("reminded"), "answered": N_("answered"), "paused": N_("paused"),
    "unreachable": N_("could not be reached"), "alert_opened": N_("alert opened"),
    "alert_reopened": N_("alert re-opened"), "alert_sent": N_("alert sent to"), "help_sent": N_("help call sent to"),
    "level_empty": N_("nobody at level"), "escalated": N_("escalated"), "acknowledged": N_("on it"),
    "resolved": N_("closed"), "all_clear": N_("all clear"), "clear_sent": N_("all clear sent to"),
    "ack_sent": N_("told who is on it:"), "resolved_sent": N_("told the outcome:"),
    "family_told": N_("family told:"), "resolve_reminder_sent": N_("reminded to close:"),
}


async def round_history(session: AsyncSession, actor: Actor, alert_id: int, *, cfg: CheckinConfig,
                        limit: int = 60) -> list[str]:
    """The history of an alert's round as lines in the current locale (same reach as the buttons)."""
    alert = await _alert_in_reach(session, actor, alert_id)
    rnd = await session.get(CheckinRound, alert.round_id)
    # (at, order, kind, actor, target, detail); the two bulk steps live on the round itself.
    steps: list[tuple[datetime, int, str, int | None, int | None, dict]] = [
        (rnd.opened_at, 0, "prompted", None, rnd.account_id, {})]
    if rnd.reminded_at is not None:
        steps.append((rnd.reminded_at, 0, "reminded", None, rnd.account_id, {}))
    rows = await session.scalars(
        select(RoundEvent).where(RoundEvent.round_id == rnd.id).order_by(RoundEvent.at, RoundEvent.id).limit(limit))
    steps += [(e.at, e.id, e.kind, e.actor_account_id, e.target_account_id, e.detail or {}) for e in rows]
    steps.sort(key=lambda step: (step[0], step[1]))
    ids = {i for step in steps for i in step[3:5] if i}
    names = {a.id: _account_name(a) for a in (await session.scalars(select(Account).where(Account.id.in_(ids))))}
    lines = []
    for at, _order, kind, actor_id, target_id, detail in steps:
        parts = [_fmt(cfg, at), _(_EVENT_NAMES.get(kind, kind))]
        if actor_id:
            parts.append(names.get(actor_id, "?"))
        if target_id:
            parts.append(names.get(target_id, "?"))
        if "answer" in detail:
            parts.append(_(ANSWER_NAMES.get(detail["answer"], detail["answer"])))
        if "outcome" in detail:
            parts.append(_(OUTCOME_NAMES.get(AlertOutcome(detail["outcome"]), detail["outcome"])))
        if "level" in detail:
            parts.append(f"L{detail['level']}")
        lines.append(" · ".join(_e(p) for p in parts))
    return lines


# ---------------------------------------------------------------------------------------------
# Weekly report


@dataclass(frozen=True, slots=True)
class DayStats:
    day: date
    rounds: int
    ok: int
    help: int
    alerted: int

    @property
    def answered(self) -> int:
        return self.ok + self.help

    @property
    def rate(self) -> float | None:
        return self.answered / self.rounds if self.rounds else None


@dataclass(frozen=True, slots=True)
class WeeklyReport:
    committee: Region
    start: date
    end: date
    days: list[DayStats]
    text: str
    xlsx: bytes
    png: bytes


async def weekly_stats(session: AsyncSession, committee_id: int, start: date, end: date) -> list[DayStats]:
    """Rounds, answers and alerts per local date from ``start`` to ``end`` (inclusive), zeros included."""
    rows = await session.execute(
        select(CheckinRound.local_date, func.count(),
               func.sum(case((CheckinRound.answer == "ok", 1), else_=0)),
               func.sum(case((CheckinRound.answer == "help", 1), else_=0)),
               func.sum(case((CheckinRound.alerted_at.is_not(None), 1), else_=0)))
        .where(CheckinRound.plan_id.in_(select(CheckinPlan.id).where(CheckinPlan.committee_id == committee_id)),
               CheckinRound.local_date.between(start, end))
        .group_by(CheckinRound.local_date))
    found = {d: DayStats(d, n, int(ok or 0), int(hlp or 0), int(al or 0)) for d, n, ok, hlp, al in rows}
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return [found.get(d, DayStats(d, 0, 0, 0, 0)) for d in days]


def _xlsx(days: list[DayStats], title: str) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "checkins"
    ws.append([title])
    ws.append([_("Date"), _("Asked"), _("I'm fine"), _("I need help"), _("Alerts"), _("Answer rate")])
    for d in days:
        ws.append([d.day.isoformat(), d.rounds, d.ok, d.help, d.alerted,
                   round(d.rate * 100, 1) if d.rate is not None else None])
    total = sum(d.rounds for d in days)
    answered = sum(d.answered for d in days)
    ws.append([_("Total"), total, sum(d.ok for d in days), sum(d.help for d in days), sum(d.alerted for d in days),
               round(answered * 100 / total, 1) if total else None])
    ws.column_dimensions["A"].width = 14
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _chart(days: list[DayStats]) -> bytes:
    # Figure + Agg canvas directly: no pyplot global state, safe in a worker thread. Labels are dates and
    # numbers only, so no CJK font is needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = [d.day.strftime("%m-%d") for d in days]
    rates = [(d.rate or 0) * 100 for d in days]
    bars = ax.bar(labels, rates, color=["#2e7d32" if (d.rate or 0) >= 0.9 else "#f9a825" for d in days])
    for bar, d in zip(bars, days, strict=True):
        if d.rounds:
            ax.annotate(f"{d.answered}/{d.rounds}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel("%")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _files(days: list[DayStats], title: str) -> tuple[bytes, bytes]:
    return _xlsx(days, title), _chart(days)


async def weekly_report(session: AsyncSession, committee: Region, end: date) -> WeeklyReport:
    """The seven days ending with ``end``: a message, an XLSX sheet and a PNG chart of answer rates
    (in the current locale; files are built in a worker thread)."""
    start = end - timedelta(days=6)
    days = await weekly_stats(session, committee.id, start, end)
    total = sum(d.rounds for d in days)
    answered = sum(d.answered for d in days)
    lines = [_("<b>Check-ins of {committee}, {start} – {end}</b>").format(
        committee=_e(committee.name), start=start.isoformat(), end=end.isoformat())]
    for d in days:
        rate = f"{d.rate * 100:.0f}%" if d.rate is not None else "—"
        lines.append(_("{day}: {answered}/{asked} answered ({rate}), {help} asked for help, {alerts} alerts").format(
            day=d.day.strftime("%m-%d"), answered=d.answered, asked=d.rounds, rate=rate, help=d.help,
            alerts=d.alerted))
    lines.append(_("Week: {answered}/{asked} answered ({rate}).").format(
        answered=answered, asked=total, rate=f"{answered * 100 / total:.0f}%" if total else "—"))
    title = _("Check-ins of {committee}, {start} – {end}").format(
        committee=committee.name, start=start.isoformat(), end=end.isoformat())
    xlsx, png = await asyncio.to_thread(_files, days, title)
    return WeeklyReport(committee, start, end, days, "\n".join(lines), xlsx, png)


def _write_files(stem: Path, report: WeeklyReport) -> tuple[str, str]:
    # Absolute paths: the sender that uploads them may run in another working directory.
    stem = stem.absolute()
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".png").write_bytes(report.png)
    stem.with_suffix(".xlsx").write_bytes(report.xlsx)
    return str(stem.with_suffix(".png")), str(stem.with_suffix(".xlsx"))


def weekly_reports_due(now: datetime, cfg: CheckinConfig, hour: int = 8) -> bool:
    """Monday from ``hour`` local time on: the previous week's reports may go out."""
    local = cfg.local(now)
    return local.weekday() == 0 and local.hour >= hour


async def send_weekly_reports(session_factory: async_sessionmaker[AsyncSession], settings: Any, now: datetime,
                              *, end: date | None = None) -> int:
    """Send last week's report to each committee's staff (message + chart + XLSX via the outbox).

    Once per committee and week across all processes (a claim row). Files are written under
    ``settings.data_dir/reports``. Returns how many committees were sent a report."""
    cfg = CheckinConfig.of(settings)
    end = end or cfg.today(now) - timedelta(days=1)
    week_start = end - timedelta(days=6)
    folder = Path(settings.data_dir) / "reports"
    async with session_factory() as session, session.begin():
        committees = select(CheckinPlan.committee_id).where(CheckinPlan.active.is_(True)).distinct()
        claimed = (await session.execute(
            _insert(session, WeeklyReportClaim).from_select(
                ["committee_id", "week_start", "created_at", "recipients"],
                select(Region.id, literal(week_start), literal(now, UTCDateTime()), literal(0))
                .where(Region.id.in_(committees), Region.level == RegionLevel.committee))
            .on_conflict_do_nothing(index_elements=["committee_id", "week_start"])
            .returning(WeeklyReportClaim.committee_id))).scalars().all()
        for committee_id in claimed:
            committee = await session.get(Region, committee_id)
            reports: dict[str, WeeklyReport] = {}
            staff = await committee_staff(session, committee)
            for account in staff:
                locale = account_locale(account, cfg.default_locale)
                if locale not in reports:
                    with use_locale(locale):
                        reports[locale] = await weekly_report(session, committee, end)
                report = reports[locale]
                png, xlsx = await asyncio.to_thread(
                    _write_files, folder / f"checkins-{committee.code}-{week_start.isoformat()}-{account.id}", report)
                key = f"ciweek:{committee.id}:{week_start.isoformat()}:{account.id}"
                await outbox_service.enqueue(
                    session, key=f"{key}:chart", chat_id=account.chat_id, account_id=account.id,
                    payload=make_payload(report.text[:1024], photo={"path": png}),
                    priority=Priority.reply, ref_type=REF_REPORT, ref_id=committee.id, now=now)
                await outbox_service.enqueue(
                    session, key=f"{key}:xlsx", chat_id=account.chat_id, account_id=account.id,
                    payload=make_payload("XLSX", document={"path": xlsx}),
                    priority=Priority.reply, ref_type=REF_REPORT, ref_id=committee.id, now=now)
            await session.execute(update(WeeklyReportClaim).where(
                WeeklyReportClaim.committee_id == committee.id, WeeklyReportClaim.week_start == week_start)
                .values(recipients=len(staff)))
    return len(claimed)

