"""Alerts: raised when an elder is silent, unreachable or asks for help; the ladder of who is told
(committee on duty → street staff → family), "I'm on it", and closing with an outcome.

Every message is an outbox *message payload* (``checkins.alert`` and friends, rendered and escaped
in ``notifications.messages.checkins``) with an idempotency key per alert generation, level and
recipient, so a step run twice tells nobody twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.checkins.common import (
    BATCH,
    REF_ALERT,
    CheckinError,
    account_name,
    elder_phone,
    insert_into,
    local_iso,
    record_event,
    room_of,
)
from services.checkins.config import CheckinConfig
from services.models import (
    Account,
    Alert,
    AlertLevel,
    AlertOutcome,
    AlertReason,
    AlertStatus,
    CheckinRound,
    EmergencyContact,
    Region,
    Resident,
    RoundEvent,
    RoundStatus,
    Staff,
    StaffRole,
)
from services.models.checkins import OPEN_ROUND_STATUSES
from services.notify import committee_staff, tell
from services.outbox import Priority
from services.scope import Actor
from services.sql import rowcount

ALERT_LEVELS = len(AlertLevel)  # the top of the ladder: "level 2 of 3"
CLOSING_OUTCOMES = (AlertOutcome.safe, AlertOutcome.needed_help, AlertOutcome.not_reachable)


# --- who is told -----------------------------------------------------------------------------


async def duty_staff(session: AsyncSession, committee: Region) -> list[Account]:
    """The committee's on-duty staff, or all its committee staff if nobody is on duty."""
    rows = (await session.scalars(
        select(Account).join(Staff, Staff.account_id == Account.id)
        .where(Staff.region_id == committee.id, Staff.role == StaffRole.committee, Staff.active.is_(True),
               Staff.on_duty.is_(True)).order_by(Account.id))).unique().all()
    return list(rows) or await committee_staff(session, committee)


async def contact_accounts(session: AsyncSession, resident_id: int) -> list[Account]:
    """The elder's emergency contacts on the bot, in the order they were added."""
    return list((await session.scalars(
        select(Account).join(EmergencyContact, EmergencyContact.account_id == Account.id)
        .where(EmergencyContact.resident_id == resident_id).order_by(EmergencyContact.id))).all())


async def _recipients(session: AsyncSession, alert: Alert, committee: Region, level: int) -> list[Account]:
    if level == AlertLevel.committee:
        return await duty_staff(session, committee)
    if level == AlertLevel.street:
        return await committee_staff(session, committee, role=StaffRole.street)
    return await contact_accounts(session, alert.resident_id)


async def _alerted_accounts(session: AsyncSession, alert: Alert, exclude: int | None = None) -> list[Account]:
    ids = select(RoundEvent.target_account_id).where(
        RoundEvent.alert_id == alert.id, RoundEvent.kind.in_(("alert_sent", "help_sent", "family_told")))
    stmt = select(Account).where(Account.id.in_(ids)).order_by(Account.id)
    if exclude is not None:
        stmt = stmt.where(Account.id != exclude)
    return list((await session.scalars(stmt)).all())


# --- what they are told ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertCard:
    """What an alert says about the elder, as plain data (worded and escaped when rendered)."""

    alert_id: int
    reason: str  # AlertReason
    status: str  # AlertStatus
    level: int
    levels: int
    name: str
    room: str
    committee: str
    phone: str | None
    phone_source: str | None  # "registry", or "telegram": the number the elder's account shared
    last_answer: str | None  # "ok" / "help"
    last_answer_at: str | None  # local ISO time
    contacts: list[str]
    opened_at: str  # local ISO time
    acknowledged_by: str | None
    mode: str = "self"  # AnswerMode of the round: who was to answer
    helper: str | None = None  # the helper asked for this round (name), for a helper mode
    helper_role: str | None = None  # HelperRole: "duty" when the committee's on-duty staff were asked
    reported_by: str | None = None  # the helper whose answer raised it ("Could not reach", "Needs help")

    def data(self, **extra) -> dict:
        """The card as outbox message data (``checkins.alert``)."""
        return {**asdict(self), **extra}


async def alert_card(session: AsyncSession, cfg: CheckinConfig, alert: Alert) -> AlertCard:
    """The alert's card: who, where, phone, last answer, emergency contacts, level, who is on it."""
    # Foreign keys (CASCADE / RESTRICT) keep these rows while the alert exists.
    resident = await session.get_one(Resident, alert.resident_id)
    committee = await session.get_one(Region, alert.committee_id)
    rnd = await session.get_one(CheckinRound, alert.round_id)
    last = (await session.execute(
        select(CheckinRound.answer, CheckinRound.answered_at)
        .where(CheckinRound.plan_id == rnd.plan_id, CheckinRound.answered_at.is_not(None))
        .order_by(CheckinRound.answered_at.desc()).limit(1))).first()
    contacts = [account_name(a) for a in await contact_accounts(session, alert.resident_id)]
    if resident.emergency_contact_phone:
        contacts.append(resident.emergency_contact_phone)
    ack = await session.get(Account, alert.acknowledged_by_account_id) if alert.acknowledged_by_account_id else None
    phone, phone_source = await elder_phone(session, resident)
    helper = await session.get(Account, rnd.helper_account_id) if rnd.helper_account_id else None
    reporter = await session.get(Account, rnd.answered_by_account_id) \
        if rnd.answer_via == "helper" and rnd.answered_by_account_id else None
    return AlertCard(
        alert_id=alert.id, reason=alert.reason.value, status=alert.status.value, level=int(alert.level),
        levels=ALERT_LEVELS, name=resident.name, room=room_of(resident), committee=committee.name,
        phone=phone, phone_source=phone_source, last_answer=last[0] if last else None,
        last_answer_at=local_iso(last[1], cfg.tz) if last else None, contacts=contacts,
        opened_at=local_iso(alert.opened_at, cfg.tz), acknowledged_by=account_name(ack) if ack else None,
        mode=rnd.mode.value, helper=account_name(helper) if helper else None, helper_role=rnd.helper_role,
        reported_by=account_name(reporter) if reporter else None)


async def _tell_level(session: AsyncSession, cfg: CheckinConfig, alert: Alert, level: int, now: datetime) -> int:
    """Tell the first level from ``level`` up that has anyone; records the level even if nobody."""
    told = 0
    committee = await session.get_one(Region, alert.committee_id)
    while level <= AlertLevel.family:
        accounts = await _recipients(session, alert, committee, level)
        alert.level, alert.level_at = level, now
        card = await alert_card(session, cfg, alert)
        for account in accounts:
            await tell(session, account, f"al:{alert.id}:g{alert.generation}:L{level}:{account.id}", "checkins.alert",
                       card.data(family=level == AlertLevel.family), now=now, priority=Priority.alert,
                       ref_type=REF_ALERT, ref_id=alert.id)
            record_event(session, alert.round_id, "alert_sent", now, alert_id=alert.id, target=account.id,
                         detail={"level": level, "reason": alert.reason.value})
            told += 1
        if accounts:
            break
        record_event(session, alert.round_id, "level_empty", now, alert_id=alert.id, detail={"level": level})
        level += 1
    alert.level = min(alert.level, AlertLevel.family)
    await session.flush()
    return told


async def _tell_alerted(session: AsyncSession, alert: Alert, what: str, message: str, data: dict, now: datetime,
                        *, exclude: int | None = None, priority: int = Priority.reply) -> int:
    told = 0
    for account in await _alerted_accounts(session, alert, exclude):
        await tell(session, account, f"al:{alert.id}:g{alert.generation}:{what}:{account.id}", message, data,
                   now=now, priority=priority, ref_type=REF_ALERT, ref_id=alert.id)
        record_event(session, alert.round_id, f"{what}_sent", now, alert_id=alert.id, target=account.id)
        told += 1
    return told


# --- raising and escalating ------------------------------------------------------------------


async def raise_alert(session: AsyncSession, cfg: CheckinConfig, rnd: CheckinRound, reason: AlertReason,
                      now: datetime) -> Alert:
    """Open the round's alert (at most one per round) and tell level 1. Idempotent: an open alert is
    only upgraded when the elder now asks for help; a resolved one is re-opened only for help."""
    stmt = insert_into(session, Alert).values(
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
        alert = await session.get_one(Alert, new_id)
        record_event(session, rnd.id, "alert_opened", now, alert_id=alert.id, detail={"reason": reason.value})
        await _tell_level(session, cfg, alert, AlertLevel.committee, now)
        return alert
    # The insert met this round's alert (unique round_id), so it is there.
    alert = (await session.scalars(select(Alert).where(Alert.round_id == rnd.id).with_for_update())).one()
    if reason != AlertReason.help or (alert.reason == AlertReason.help and alert.status != AlertStatus.resolved):
        return alert
    if alert.status == AlertStatus.resolved:
        alert.generation += 1
        alert.status, alert.reason, alert.outcome = AlertStatus.open, AlertReason.help, None
        alert.acknowledged_at = alert.acknowledged_by_account_id = None
        alert.resolved_at = alert.resolved_by_account_id = None
        alert.resolve_reminded_at, alert.resolve_reminders, alert.opened_at = None, 0, now
        record_event(session, rnd.id, "alert_reopened", now, alert_id=alert.id, detail={"reason": "help"})
        await _tell_level(session, cfg, alert, AlertLevel.committee, now)
        return alert
    # Open or acknowledged: everyone told so far hears that it is now a call for help.
    alert.reason = AlertReason.help
    card = await alert_card(session, cfg, alert)
    family = {a.id for a in await contact_accounts(session, alert.resident_id)}
    for account in await _alerted_accounts(session, alert):
        await tell(session, account, f"al:{alert.id}:g{alert.generation}:help:{account.id}", "checkins.alert",
                   card.data(family=account.id in family), now=now, priority=Priority.alert, ref_type=REF_ALERT,
                   ref_id=alert.id)
        record_event(session, rnd.id, "help_sent", now, alert_id=alert.id, target=account.id)
    await session.flush()
    return alert


async def escalate_alerts(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Tick step: alerts nobody acknowledged within ``ack_timeout`` go to the next level (claimed
    with SKIP LOCKED, so concurrent ticks escalate each alert once)."""
    alerts = (await session.scalars(
        select(Alert).where(Alert.status == AlertStatus.open, Alert.level < AlertLevel.family,
                            Alert.level_at <= now - cfg.ack_timeout)
        .order_by(Alert.level_at, Alert.id).limit(BATCH).with_for_update(skip_locked=True))).all()
    for alert in alerts:
        record_event(session, alert.round_id, "escalated", now, alert_id=alert.id, detail={"from": alert.level})
        await _tell_level(session, cfg, alert, alert.level + 1, now)
    return len(alerts)


async def remind_resolvers(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Tick step: acknowledged alerts not resolved within ``resolve_timeout`` remind the
    acknowledger (again every ``resolve_timeout``)."""
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
        resident = await session.get_one(Resident, alert.resident_id)
        data = {"alert_id": alert.id, "name": resident.name, "room": room_of(resident),
                "acknowledged_at": local_iso(alert.acknowledged_at, cfg.tz)}
        await tell(session, account, f"al:{alert.id}:g{alert.generation}:rr{alert.resolve_reminders}:{account.id}",
                   "checkins.resolve_reminder", data, now=now, priority=Priority.alert, ref_type=REF_ALERT,
                   ref_id=alert.id)
        record_event(session, alert.round_id, "resolve_reminder_sent", now, alert_id=alert.id, target=account.id)
    return len(alerts)


async def all_clear(session: AsyncSession, cfg: CheckinConfig, alert: Alert, by: Account, now: datetime, *,
                    helper: bool = False) -> None:
    """The elder answered "I'm fine" after all (or, with ``helper``, their helper saw them well): the
    alert closes and everyone alerted hears it."""
    alert.status, alert.outcome = AlertStatus.resolved, AlertOutcome.all_clear
    alert.resolved_at, alert.resolved_by_account_id = now, by.id
    record_event(session, alert.round_id, "all_clear", now, alert_id=alert.id, actor=by.id)
    resident = await session.get_one(Resident, alert.resident_id)
    data = {"name": resident.name, "room": room_of(resident), "at": local_iso(now, cfg.tz),
            "helper": account_name(by) if helper else None}
    await _tell_alerted(session, alert, "clear", "checkins.all_clear", data, now, priority=Priority.alert)


# --- staff and family acting on an alert -----------------------------------------------------


async def alert_in_reach(session: AsyncSession, actor: Actor, alert_id: int) -> Alert:
    """The alert (locked) if the actor may act on it: staff whose region covers its committee, or an
    emergency contact of that elder. Anything else looks like a missing alert (``not_found``)."""
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
    """"I'm on it" (in reach only): stops the escalation; the others who were alerted hear who took
    it. Pressing it again is a no-op; someone else's acknowledgement is a refusal (``taken``)."""
    alert = await alert_in_reach(session, actor, alert_id)
    if alert.status == AlertStatus.resolved:
        raise CheckinError("closed", outcome=alert.outcome)
    if alert.status == AlertStatus.acknowledged:
        if alert.acknowledged_by_account_id == actor.account_id:
            return alert
        raise CheckinError("taken", by=account_name(await session.get(Account, alert.acknowledged_by_account_id)))
    alert.status = AlertStatus.acknowledged
    alert.acknowledged_at, alert.acknowledged_by_account_id = now, actor.account_id
    record_event(session, alert.round_id, "acknowledged", now, alert_id=alert.id, actor=actor.account_id)
    audit.record(session, "checkin.alert_ack", now=now, actor_account_id=actor.account_id, target_type="alert",
                 target_id=alert.id, region_id=alert.committee_id)
    resident = await session.get_one(Resident, alert.resident_id)
    data = {"who": account_name(actor.account), "name": resident.name, "room": room_of(resident)}
    await _tell_alerted(session, alert, "ack", "checkins.alert_taken", data, now, exclude=actor.account_id)
    await session.flush()
    return alert


async def resolve(session: AsyncSession, actor: Actor, alert_id: int, outcome: AlertOutcome, *, now: datetime,
                  cfg: CheckinConfig) -> Alert:
    """Close the alert (in reach only) with an outcome; everyone alerted hears it. "Not reachable"
    also tells the emergency contacts not alerted yet; "safe" and "needed help" tell the elder that
    someone checked on them. A closed alert is a refusal (``closed``)."""
    if outcome not in CLOSING_OUTCOMES:
        raise CheckinError("bad_outcome")
    alert = await alert_in_reach(session, actor, alert_id)
    if alert.status == AlertStatus.resolved:
        raise CheckinError("closed", outcome=alert.outcome)
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by_account_id = now, actor.account_id
    alert.status, alert.outcome = AlertStatus.resolved, outcome
    alert.resolved_at, alert.resolved_by_account_id = now, actor.account_id
    record_event(session, alert.round_id, "resolved", now, alert_id=alert.id, actor=actor.account_id,
                 detail={"outcome": outcome.value})
    audit.record(session, "checkin.alert_resolve", now=now, actor_account_id=actor.account_id, target_type="alert",
                 target_id=alert.id, region_id=alert.committee_id, detail={"outcome": outcome.value})
    resident = await session.get_one(Resident, alert.resident_id)
    who = account_name(actor.account)
    data = {"who": who, "name": resident.name, "room": room_of(resident), "outcome": outcome.value}
    await _tell_alerted(session, alert, "resolved", "checkins.alert_closed", data, now, exclude=actor.account_id)
    if outcome == AlertOutcome.not_reachable:
        told = {a.id for a in await _alerted_accounts(session, alert)} | {actor.account_id}
        for account in await contact_accounts(session, alert.resident_id):
            if account.id in told:
                continue
            await tell(session, account, f"al:{alert.id}:g{alert.generation}:family:{account.id}",
                       "checkins.family_unreachable", {"name": resident.name}, now=now, priority=Priority.alert,
                       ref_type=REF_ALERT, ref_id=alert.id)
            record_event(session, alert.round_id, "family_told", now, alert_id=alert.id, target=account.id)
    else:
        elder = await session.scalar(select(Account).where(Account.resident_id == resident.id))
        if elder is not None and elder.id != actor.account_id:
            await tell(session, elder, f"al:{alert.id}:g{alert.generation}:checked:{elder.id}", "checkins.checked_on",
                       {"who": who, "outcome": outcome.value}, now=now, ref_type=REF_ALERT, ref_id=alert.id)
            record_event(session, alert.round_id, "elder_told", now, alert_id=alert.id, target=elder.id)
    await session.flush()
    return alert


async def set_duty(session: AsyncSession, actor: Actor, on: bool) -> int:
    """Put the actor's active committee-level staff grants on or off duty; returns how many grants
    that covers (0: the actor takes no duty). Idempotent."""
    if actor.account is None:
        return 0
    result = await session.execute(
        update(Staff).where(Staff.account_id == actor.account_id, Staff.role == StaffRole.committee,
                            Staff.active.is_(True)).values(on_duty=on))
    return rowcount(result)
