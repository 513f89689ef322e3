"""What staff look at: today's board, the open alerts, and an alert's history (scoped, as data)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.checkins.alerts import AlertCard, alert_card, alert_in_reach
from services.checkins.common import account_name, local_iso, room_of
from services.checkins.config import CheckinConfig
from services.checkins.helpers import HelperStats, helper_stats
from services.models import (
    Account,
    Alert,
    AlertOutcome,
    AlertStatus,
    AnswerMode,
    CheckinPlan,
    CheckinRound,
    Region,
    Resident,
    RoundEvent,
    RoundStatus,
)
from services.models.checkins import HELPER_OPEN_STATUSES
from services.scope import Actor, committee_ids_in_scope


@dataclass(frozen=True, slots=True)
class BoardLine:
    """One elder on the board (plain text; rendering escapes it)."""

    name: str
    room: str
    at: str | None = None  # answered at (local ISO time)
    minute: int | None = None  # today's time, not reached yet
    until: str | None = None  # paused until (ISO date)
    outcome: str | None = None  # a closed alert's outcome
    by: str | None = None  # who closed it
    via: str | None = None  # the helper who answered for the elder (None: the elder, or nobody yet)
    helper: str | None = None  # the helper asked, or to be asked, for a helper mode ("" : on-duty staff)
    late: bool = False  # the helper was reminded


@dataclass(slots=True)
class CommitteeBoard:
    committee: str
    answered: list[BoardLine] = field(default_factory=list)
    helper_wait: list[BoardLine] = field(default_factory=list)  # a helper is asked, no answer yet
    help: list[BoardLine] = field(default_factory=list)  # asked for help, alert still open
    alerted: list[BoardLine] = field(default_factory=list)  # no answer / unreachable, alert still open
    handled: list[BoardLine] = field(default_factory=list)  # alert closed by staff or family
    reminded: list[BoardLine] = field(default_factory=list)
    pending: list[BoardLine] = field(default_factory=list)
    paused: list[BoardLine] = field(default_factory=list)
    later: list[BoardLine] = field(default_factory=list)
    not_on_bot: list[BoardLine] = field(default_factory=list)
    helpers: list[HelperStats] = field(default_factory=list)  # today, per helper (one committee shown)
    committee_id: int = 0

    @property
    def waiting(self) -> int:
        return len(self.pending) + len(self.reminded) + len(self.helper_wait)


@dataclass(slots=True)
class Board:
    day: date
    committees: list[CommitteeBoard]


async def board(session: AsyncSession, actor: Actor, *, now: datetime, cfg: CheckinConfig,
                committee_id: int | None = None) -> Board:
    """Today's check-ins (local date) of every committee in the actor's staff scope (or of the one
    ``committee_id`` of it); empty for anyone else. An elder whose alert was closed is listed as
    handled (with the outcome), not as alerted."""
    today = cfg.today(now)
    scope = committee_ids_in_scope(actor)
    if scope is None or not actor.is_staff:
        return Board(today, [])
    rows = (await session.execute(
        select(CheckinPlan, Resident, Region.id, Region.name, CheckinRound, Alert, Account.id)
        .join(Resident, Resident.id == CheckinPlan.resident_id)
        .join(Region, Region.id == CheckinPlan.committee_id)
        .outerjoin(CheckinRound, and_(CheckinRound.plan_id == CheckinPlan.id, CheckinRound.local_date == today))
        .outerjoin(Alert, Alert.round_id == CheckinRound.id)
        .outerjoin(Account, Account.resident_id == Resident.id)
        .where(CheckinPlan.active.is_(True), CheckinPlan.committee_id.in_(scope),
               *([CheckinPlan.committee_id == committee_id] if committee_id is not None else []))
        .order_by(Region.name, Resident.building, Resident.unit, Resident.room, Resident.name))).all()
    alerts = [row[5] for row in rows if row[5] is not None]
    people = {alert.resolved_by_account_id for alert in alerts if alert.resolved_by_account_id}
    for plan, _resident, _cid, _cname, rnd, _alert, _account in rows:
        people |= {i for i in (plan.helper_account_id, rnd.helper_account_id if rnd else None,
                               rnd.answered_by_account_id if rnd else None) if i}
    names: dict[int | None, str] = {
        a.id: account_name(a) for a in await session.scalars(select(Account).where(Account.id.in_(people)))}
    boards: dict[int, CommitteeBoard] = {}
    for plan, resident, committee_id, committee_name, rnd, alert, account_id in rows:
        b = boards.setdefault(committee_id, CommitteeBoard(committee_name, committee_id=committee_id))
        line = BoardLine(resident.name, room_of(resident))
        if plan.mode != AnswerMode.self:  # who answers for them ("": the on-duty staff)
            asked = rnd.helper_account_id if rnd is not None and rnd.helper_asked_at else plan.helper_account_id
            line = replace(line, helper=names.get(asked, "") if asked else "")
        if rnd is not None and rnd.answer_via == "helper":
            line = replace(line, via=names.get(rnd.answered_by_account_id, "?"))
        if rnd is not None:
            if rnd.status == RoundStatus.ok:
                b.answered.append(replace(line, at=local_iso(rnd.answered_at, cfg.tz)))
            elif rnd.status in HELPER_OPEN_STATUSES:
                b.helper_wait.append(replace(line, late=rnd.status == RoundStatus.helper_reminded))
            elif (alert is not None and alert.status == AlertStatus.resolved and alert.outcome is not None
                  and alert.outcome != AlertOutcome.all_clear):
                b.handled.append(replace(line, outcome=alert.outcome.value, by=names.get(alert.resolved_by_account_id)))
            elif rnd.status == RoundStatus.help:
                b.help.append(line)
            elif rnd.status == RoundStatus.alerted:
                b.alerted.append(line)
            elif rnd.status == RoundStatus.reminded:
                b.reminded.append(line)
            elif rnd.status == RoundStatus.paused:
                b.paused.append(replace(line, until=plan.paused_until.isoformat() if plan.paused_until else None))
            else:
                b.pending.append(line)
        elif plan.paused_until is not None and plan.paused_until >= today:
            b.paused.append(replace(line, until=plan.paused_until.isoformat()))
        elif account_id is None and plan.mode != AnswerMode.proxy:
            b.not_on_bot.append(line)
        else:
            b.later.append(replace(line, minute=plan.minute_of_day))
    if len(boards) == 1:  # one committee in detail: how its helpers did today
        (committee_id,) = boards
        boards[committee_id].helpers = await helper_stats(session, committee_id, today, today)
    return Board(today, list(boards.values()))


async def open_alerts(session: AsyncSession, actor: Actor, *, cfg: CheckinConfig, limit: int = 20,
                      committee_id: int | None = None) -> list[AlertCard]:
    """Open and acknowledged alerts in the actor's staff scope (or in the one ``committee_id`` of it),
    oldest first (empty for non-staff)."""
    scope = committee_ids_in_scope(actor)
    if scope is None or not actor.is_staff:
        return []
    alerts = (await session.scalars(
        select(Alert).where(Alert.status != AlertStatus.resolved, Alert.committee_id.in_(scope),
                            *([Alert.committee_id == committee_id] if committee_id is not None else []))
        .order_by(Alert.opened_at, Alert.id).limit(limit))).all()
    return [await alert_card(session, cfg, alert) for alert in alerts]


async def count_open_alerts(session: AsyncSession, actor: Actor) -> int:
    """How many alerts are open or acknowledged (not resolved) in the actor's staff scope (0 for others)."""
    scope = committee_ids_in_scope(actor)
    if scope is None or not actor.is_staff:
        return 0
    return await session.scalar(select(func.count()).select_from(Alert).where(
        Alert.status != AlertStatus.resolved, Alert.committee_id.in_(scope))) or 0


@dataclass(frozen=True, slots=True)
class HistoryStep:
    """One line of a round's history (plain data)."""

    at: str  # local ISO time
    kind: str  # prompted, reminded, answered, alert_sent, acknowledged, resolved, …
    actor: str | None = None
    target: str | None = None
    answer: str | None = None
    outcome: str | None = None
    level: int | None = None


async def round_history(session: AsyncSession, actor: Actor, alert_id: int, *, cfg: CheckinConfig,
                        limit: int = 60) -> list[HistoryStep]:
    """The history of an alert's round, oldest first (same reach as the alert's buttons)."""
    alert = await alert_in_reach(session, actor, alert_id)
    rnd = await session.get_one(CheckinRound, alert.round_id)  # a CASCADE foreign key of the alert
    # (at, order, kind, actor, target, detail); the bulk steps (asking, reminding) live on the round.
    steps: list[tuple[datetime, int, str, int | None, int | None, dict]] = []
    if rnd.mode != AnswerMode.proxy:  # a proxy elder is never asked themselves
        steps.append((rnd.opened_at, 0, "prompted", None, rnd.account_id, {}))
    if rnd.reminded_at is not None:
        steps.append((rnd.reminded_at, 0, "reminded", None, rnd.account_id, {}))
    if rnd.helper_asked_at is not None:
        steps.append((rnd.helper_asked_at, 0, "helper_asked", None, rnd.helper_account_id, {}))
    if rnd.helper_reminded_at is not None:
        steps.append((rnd.helper_reminded_at, 0, "helper_reminded", None, rnd.helper_account_id, {}))
    rows = await session.scalars(
        select(RoundEvent).where(RoundEvent.round_id == rnd.id).order_by(RoundEvent.at, RoundEvent.id).limit(limit))
    steps += [(e.at, e.id, e.kind, e.actor_account_id, e.target_account_id, e.detail or {}) for e in rows]
    steps.sort(key=lambda step: (step[0], step[1]))
    ids = {i for step in steps for i in step[3:5] if i}
    names = {a.id: account_name(a) for a in (await session.scalars(select(Account).where(Account.id.in_(ids))))}
    return [HistoryStep(at=local_iso(at, cfg.tz), kind=kind,
                        actor=names.get(actor_id, "?") if actor_id else None,
                        target=names.get(target_id, "?") if target_id else None,
                        answer=detail.get("answer"), outcome=detail.get("outcome"), level=detail.get("level"))
            for at, _order, kind, actor_id, target_id, detail in steps]
