"""Helpers who answer for elders (proxy check-in): who may help, the daily list, the helper's
answer, hand-overs and invite links.

A plan's answering mode (``AnswerMode``) says who answers its rounds:

    self               the elder (``rounds``)
    proxy              opens ─▶ helper ─reminder_after─▶ helper_reminded ─escalate_after─▶ alerted
    self_then_helper   opens ─▶ pending ▶ reminded ─escalate_after─▶ helper ▶ helper_reminded ─▶ alerted

The helper's ladder counts from when they were asked (``helper_asked_at``) with the same durations as
the elder's. The one asked for a round (its :class:`Cover`) is the plan's helper; for a hand-over
period the substitute, or the committee's on-duty staff when there is none; the on-duty staff too
when a plan has lost its helper: never nobody. A helper gets one list a day — the earliest of their
proxy elders' times opens the rounds of all of them due that day — with "Seen / spoke — all well",
"Could not reach" and "Needs help" per elder, and every list they were sent that day is edited in
place as they answer (``refresh_lists``). "Could not reach" and "Needs help" raise the alert at once,
naming the helper.

Tick steps claim their rows with ``FOR UPDATE SKIP LOCKED``; every message is an outbox payload with
an idempotency key, so a second process or a restart at any point repeats and loses nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.checkins.alerts import all_clear, duty_staff, raise_alert
from services.checkins.common import (
    BATCH,
    REF_HELPER,
    REF_LIST,
    REF_LIST_EDIT,
    REF_ROUND,
    CheckinError,
    account_name,
    elder_phone,
    insert_into,
    local_iso,
    plans_due,
    record_event,
    room_of,
)
from services.checkins.config import CheckinConfig
from services.checkins.plans import enrol_resident, format_minute
from services.ids import is_db_id
from services.models import (
    Account,
    Alert,
    AlertReason,
    AlertStatus,
    AnswerMode,
    CheckinPlan,
    CheckinRound,
    EmergencyContact,
    HelperHandover,
    HelperInvite,
    HelperRole,
    OutboxMessage,
    OutboxStatus,
    Region,
    Resident,
    ResidentStatus,
    RoundStatus,
    Staff,
)
from services.models.checkins import ELDER_OPEN_STATUSES, HELPER_MODES, HELPER_OPEN_STATUSES
from services.notify import tell
from services.outbox import Priority, enqueue, message_payload
from services.outbox import cancel as cancel_messages
from services.residents import find_residents
from services.scope import Actor, CheckinRoles
from services.sql import rowcount

HELPER_ANSWERS = ("ok", "noreach", "help")  # Seen / spoke — all well · Could not reach · Needs help
MAX_ELDERS_PER_HELPER = 25  # one list message: 3 buttons an elder, under Telegram's 100
MAX_HANDOVER_DAYS = 90
HELPER_INVITE_PREFIX = "hlp_"  # ``/start hlp_<code>``
HELPER_INVITE_TTL = timedelta(days=7)


# --- who answers a round -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Cover:
    """Who answers a plan's round on a given day: an account, or (``account_id`` None) the on-duty
    staff of ``committee_id``."""

    account_id: int | None
    role: HelperRole
    committee_id: int

    @property
    def key(self) -> str:
        """One helper's lists (whatever their committees), or one committee's on-duty staff's."""
        return f"a{self.account_id}" if self.account_id is not None else f"d{self.committee_id}"


def _live_on(day: date):
    return and_(HelperHandover.cancelled_at.is_(None), HelperHandover.starts_on <= day, HelperHandover.ends_on >= day)


async def _handovers_on(session: AsyncSession, day: date) -> dict[tuple[int, int], HelperHandover]:
    """Hand-overs live on ``day`` by (helper, committee); a new hand-over cancels the ones it overlaps."""
    rows = await session.scalars(select(HelperHandover).where(_live_on(day)).order_by(HelperHandover.id))
    return {(h.helper_account_id, h.committee_id): h for h in rows}


def cover_of(plan: CheckinPlan, handovers: dict[tuple[int, int], HelperHandover]) -> Cover:
    """The cover of ``plan`` given the day's live hand-overs."""
    if plan.helper_account_id is None:
        return Cover(None, HelperRole.duty, plan.committee_id)
    handover = handovers.get((plan.helper_account_id, plan.committee_id))
    if handover is None:
        return Cover(plan.helper_account_id, HelperRole.helper, plan.committee_id)
    if handover.substitute_account_id is None:
        return Cover(None, HelperRole.duty, plan.committee_id)
    return Cover(handover.substitute_account_id, HelperRole.substitute, plan.committee_id)


def _cover_of_round(rnd: CheckinRound) -> Cover:
    return Cover(rnd.helper_account_id, HelperRole(rnd.helper_role or HelperRole.duty), rnd.committee_id)


def _cover_rounds(cover: Cover, day: date):
    """The rounds a cover was asked about on ``day``."""
    if cover.account_id is not None:
        who = CheckinRound.helper_account_id == cover.account_id
    else:
        who = and_(CheckinRound.helper_account_id.is_(None), CheckinRound.helper_role == HelperRole.duty.value,
                   CheckinRound.committee_id == cover.committee_id)
    return and_(who, CheckinRound.local_date == day, CheckinRound.helper_asked_at.is_not(None))


async def _recipients(session: AsyncSession, cover: Cover) -> list[Account]:
    if cover.account_id is not None:
        account = await session.get(Account, cover.account_id)
        return [account] if account is not None else []
    return await duty_staff(session, await session.get_one(Region, cover.committee_id))


# --- the list a helper sees --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HelperLine:
    """One elder on a helper's list: only what the helper needs (plain text; escaped when rendered)."""

    round_id: int
    name: str
    room: str
    phone: str | None
    note: str | None
    state: str  # waiting, alerted (no answer in time), ok, noreach, help, paused
    at: str | None = None  # answered at (local ISO time)
    by: str | None = None  # "self" (the elder answered) or "helper"


@dataclass(frozen=True, slots=True)
class HelperList:
    """A cover's elders of one day, as the list message shows them."""

    day: date
    role: str  # HelperRole of the cover
    lines: list[HelperLine]
    covering: list[str] = field(default_factory=list)  # helpers a substitute stands in for
    more: int = 0  # lines beyond MAX_ELDERS_PER_HELPER (only after hand-overs)

    @property
    def waiting(self) -> list[HelperLine]:
        return [line for line in self.lines if line.state in ("waiting", "alerted", "noreach")]

    def data(self, kind: str = "daily", names: list[str] | None = None) -> dict:
        """As outbox message data (``checkins.helper_list``): ``kind`` is daily, fallback (the elders
        in ``names`` did not answer themselves) or remind."""
        return {"kind": kind, "day": self.day.isoformat(), "role": self.role, "covering": self.covering,
                "names": names or [], "more": self.more, "lines": [asdict(line) for line in self.lines]}


def _state(rnd: CheckinRound) -> str:
    if rnd.answer in HELPER_ANSWERS:
        return rnd.answer
    if rnd.status == RoundStatus.paused:
        return "paused"
    return "alerted" if rnd.status == RoundStatus.alerted else "waiting"


async def helper_list(session: AsyncSession, cfg: CheckinConfig, cover: Cover, day: date) -> HelperList:
    """The elders ``cover`` was asked about on ``day``, by room, with their state."""
    rows = (await session.execute(
        select(CheckinRound, Resident, CheckinPlan)
        .join(Resident, Resident.id == CheckinRound.resident_id)
        .join(CheckinPlan, CheckinPlan.id == CheckinRound.plan_id)
        .where(_cover_rounds(cover, day))
        .order_by(Resident.building, Resident.unit, Resident.room, Resident.name, CheckinRound.id))).all()
    lines = []
    for rnd, resident, plan in rows[:MAX_ELDERS_PER_HELPER]:
        phone, _source = await elder_phone(session, resident)
        lines.append(HelperLine(rnd.id, resident.name, room_of(resident), phone, plan.note, _state(rnd),
                                local_iso(rnd.answered_at, cfg.tz), rnd.answer_via))
    helpers = {plan.helper_account_id for rnd, _r, plan in rows
               if rnd.helper_role == HelperRole.substitute and plan.helper_account_id}
    covering = [account_name(a) for a in await session.scalars(
        select(Account).where(Account.id.in_(helpers)).order_by(Account.id))] if helpers else []
    return HelperList(day, cover.role.value, lines, covering, max(0, len(rows) - MAX_ELDERS_PER_HELPER))


async def _queue_list(session: AsyncSession, cfg: CheckinConfig, cover: Cover, day: date, kind: str, first: int,
                      now: datetime, names: list[str] | None = None) -> int:
    """Send the cover's list (of the whole day) to its recipients: one message each, idempotent."""
    view = await helper_list(session, cfg, cover, day)
    told = 0
    for account in await _recipients(session, cover):
        key = f"hl:{cover.key}:{day.isoformat()}:{kind}:{first}:{account.id}"
        if kind == "daily" and not await _has_list(session, account.id, f"hl:{cover.key}:{day.isoformat()}:daily:"):
            # The day's first list has one key whatever opened it: two processes asking at once
            # (rounds opened by both) send it once; later additions get a list of their own.
            key = f"hl:{cover.key}:{day.isoformat()}:daily:{account.id}"
        if await tell(session, account, key, "checkins.helper_list", view.data(kind, names), now=now,
                      priority=Priority.checkin, ref_type=REF_LIST, ref_id=account.id):
            told += 1
    return told


async def _has_list(session: AsyncSession, account_id: int, prefix: str) -> bool:
    return await session.scalar(select(OutboxMessage.id).where(
        OutboxMessage.ref_type == REF_LIST, OutboxMessage.ref_id == account_id,
        OutboxMessage.idempotency_key.startswith(prefix, autoescape=True)).limit(1)) is not None


async def refresh_lists(session: AsyncSession, cfg: CheckinConfig, cover: Cover, day: date, now: datetime, *,
                        skip_message_id: int | None = None) -> int:
    """Bring every list ``cover`` was sent for ``day`` up to date: one not sent yet is rewritten, a
    sent one is edited in place through the outbox (``skip_message_id``: the message the handler
    edits itself). Returns how many were touched."""
    view = await helper_list(session, cfg, cover, day)
    prefix = f"hl:{cover.key}:{day.isoformat()}:"
    touched = 0
    for account in await _recipients(session, cover):
        # A list being sent (claimed, its message id not known yet) is left to on_list_sent, which the
        # sender runs when it marks the row sent and which edits it if it no longer shows the day.
        rows = (await session.scalars(
            select(OutboxMessage).where(OutboxMessage.ref_type == REF_LIST, OutboxMessage.ref_id == account.id,
                                        OutboxMessage.idempotency_key.startswith(prefix, autoescape=True))
            .order_by(OutboxMessage.id).execution_options(populate_existing=True))).all()
        for row in rows:
            old, locale = _stored_list(row, cfg)
            data = view.data(old.get("kind", "daily"), old.get("names"))
            if row.status == OutboxStatus.pending:
                # Not sent yet: it goes out as it is now (the sender claims pending rows only).
                result = await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == row.id, OutboxMessage.status == OutboxStatus.pending)
                    .values(payload=message_payload("checkins.helper_list", data, locale=locale))
                    .execution_options(synchronize_session=False))
                touched += rowcount(result)
            elif (row.status == OutboxStatus.sent and row.telegram_message_id
                  and row.telegram_message_id != skip_message_id
                  and await _queue_edit(session, row, data, locale, now)):
                touched += 1
    return touched


def _stored_list(row: OutboxMessage, cfg: CheckinConfig) -> tuple[dict, str]:
    """The data a list row was rendered from, and its locale."""
    stored = row.payload if isinstance(row.payload, dict) else {}
    data = stored["data"] if isinstance(stored.get("data"), dict) else {}
    return data, stored.get("locale") or cfg.default_locale


async def _queue_edit(session: AsyncSession, row: OutboxMessage, data: dict, locale: str, now: datetime) -> bool:
    payload = message_payload("checkins.helper_list", data, locale=locale, edit_message_id=row.telegram_message_id)
    return await enqueue(session, key=f"hle:{row.id}:{now.isoformat()}", chat_id=row.chat_id,
                         account_id=row.ref_id, payload=payload, priority=Priority.checkin,
                         ref_type=REF_LIST_EDIT, ref_id=row.ref_id, now=now)


async def on_list_sent(session: AsyncSession, row: OutboxMessage, now: datetime, *, cfg: CheckinConfig) -> None:
    """Outbox sender listener (``on_sent`` of lists): a list answered in while it was on its way (it
    was rendered before the answer, and :func:`refresh_lists` cannot edit a message whose id is not
    known yet) is edited now to what it shows today. Nothing when it went out as it is."""
    parts = (row.idempotency_key or "").split(":")
    old, locale = _stored_list(row, cfg)
    if len(parts) < 3 or not row.telegram_message_id or row.ref_id is None or parts[1][:1] not in ("a", "d"):
        return
    try:
        day, cover_id, role = date.fromisoformat(parts[2]), int(parts[1][1:]), HelperRole(str(old.get("role")))
    except ValueError:
        return
    cover = Cover(cover_id, role, 0) if parts[1][0] == "a" else Cover(None, role, cover_id)
    data = (await helper_list(session, cfg, cover, day)).data(old.get("kind", "daily"), old.get("names"))
    if json.loads(json.dumps(data)) != old:
        await _queue_edit(session, row, data, locale, now)


async def refresh_round_lists(session: AsyncSession, cfg: CheckinConfig, rnd: CheckinRound, now: datetime) -> int:
    """:func:`refresh_lists` for the cover a round was asked of (nothing if no helper was asked)."""
    if rnd.helper_asked_at is None:
        return 0
    return await refresh_lists(session, cfg, _cover_of_round(rnd), rnd.local_date, now)


# --- tick steps ----------------------------------------------------------------------------------

async def _open_rest_of_day(session: AsyncSession, cover: Cover, day: date, handovers, now: datetime
                            ) -> list[CheckinRound]:
    """Open (asked at once) the rounds of the cover's other proxy elders due on ``day`` whose own
    time has not come yet: one list a day, at the earliest of their times."""
    no_round = ~select(CheckinRound.id).where(CheckinRound.plan_id == CheckinPlan.id,
                                              CheckinRound.local_date == day).exists()
    query = (select(CheckinPlan, Account.id).join(Resident, Resident.id == CheckinPlan.resident_id)
             .outerjoin(Account, Account.resident_id == CheckinPlan.resident_id)
             .where(*plans_due(day), CheckinPlan.mode == AnswerMode.proxy, no_round))
    if cover.account_id is not None:
        away = [h.helper_account_id for h in handovers.values() if h.substitute_account_id == cover.account_id]
        query = query.where(CheckinPlan.helper_account_id.in_([cover.account_id, *away]))
    else:
        query = query.where(CheckinPlan.committee_id == cover.committee_id)
    opened = []
    for plan, account_id in (await session.execute(query.order_by(CheckinPlan.id))).all():
        mine = cover_of(plan, handovers)
        if mine.key != cover.key:
            continue
        new_id = (await session.execute(insert_into(session, CheckinRound).values(
            plan_id=plan.id, resident_id=plan.resident_id, committee_id=plan.committee_id, account_id=account_id,
            local_date=day, status=RoundStatus.helper, opened_at=now, mode=AnswerMode.proxy,
            helper_account_id=mine.account_id, helper_role=mine.role.value, helper_asked_at=now,
        ).on_conflict_do_nothing(index_elements=["plan_id", "local_date"]).returning(CheckinRound.id))).scalar()
        if new_id is not None:
            opened.append(await session.get_one(CheckinRound, new_id))
    return opened


async def _ask(session: AsyncSession, cfg: CheckinConfig, rounds: list[CheckinRound], now: datetime) -> int:
    """Ask the cover of each round (locked by the caller), one list message per cover and kind;
    returns how many rounds were asked (with those opened early for a proxy helper's day)."""
    plans = {p.id: p for p in await session.scalars(
        select(CheckinPlan).where(CheckinPlan.id.in_({r.plan_id for r in rounds})))}
    handovers: dict[date, dict] = {}
    groups: dict[tuple[str, date, str], tuple[Cover, list[CheckinRound]]] = {}
    for rnd in rounds:
        day = rnd.local_date
        if day not in handovers:
            handovers[day] = await _handovers_on(session, day)
        cover = cover_of(plans[rnd.plan_id], handovers[day])
        fallback = rnd.mode == AnswerMode.self_then_helper and rnd.status in ELDER_OPEN_STATUSES
        rnd.status, rnd.helper_asked_at = RoundStatus.helper, now
        rnd.helper_account_id, rnd.helper_role = cover.account_id, cover.role.value
        if fallback:
            await cancel_messages(session, REF_ROUND, [rnd.id])  # the elder's reminder, if still queued
        kind = "fallback" if fallback else "daily"
        groups.setdefault((cover.key, day, kind), (cover, []))[1].append(rnd)
    await session.flush()
    asked = len(rounds)
    for (_key, day, kind), (cover, members) in groups.items():
        names = None
        if kind == "daily" and day == cfg.today(now):
            early = await _open_rest_of_day(session, cover, day, handovers[day], now)
            members += early
            asked += len(early)
        if kind == "fallback":
            residents = await session.scalars(select(Resident.name).where(
                Resident.id.in_([r.resident_id for r in members])).order_by(Resident.name))
            names = list(residents)
        await _queue_list(session, cfg, cover, day, kind, min(r.id for r in members), now, names)
    return asked


async def ask_helpers(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Tick step: ask the helper of every round waiting for one — proxy rounds just opened, and the
    rounds of elders who answer first but stayed silent ``escalate_after`` after the prompt (their
    reminder unanswered) — one list message per helper."""
    rounds = list((await session.scalars(
        select(CheckinRound).where(or_(
            and_(CheckinRound.status == RoundStatus.helper, CheckinRound.helper_asked_at.is_(None)),
            and_(CheckinRound.mode == AnswerMode.self_then_helper, CheckinRound.status.in_(ELDER_OPEN_STATUSES),
                 CheckinRound.opened_at <= now - cfg.escalate_after)))
        .order_by(CheckinRound.id).limit(BATCH).with_for_update(skip_locked=True))).all())
    return await _ask(session, cfg, rounds, now) if rounds else 0


async def ask_helper_now(session: AsyncSession, cfg: CheckinConfig, rnd: CheckinRound, now: datetime) -> None:
    """An elder who answers first cannot be reached (blocked the bot): their helper is asked now."""
    record_event(session, rnd.id, "unreachable", now, target=rnd.account_id)
    await _ask(session, cfg, [rnd], now)


async def remind_helpers(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Tick step: one reminder per helper for their rounds unanswered ``reminder_after`` after they
    were asked (none if the alert is due too)."""
    rounds = list((await session.scalars(
        select(CheckinRound).where(CheckinRound.status == RoundStatus.helper,
                                   CheckinRound.helper_asked_at <= now - cfg.reminder_after,
                                   CheckinRound.helper_asked_at > now - cfg.escalate_after)
        .order_by(CheckinRound.id).limit(BATCH).with_for_update(skip_locked=True))).all())
    groups: dict[tuple[str, date], tuple[Cover, list[int]]] = {}
    for rnd in rounds:
        rnd.status, rnd.helper_reminded_at = RoundStatus.helper_reminded, now
        cover = _cover_of_round(rnd)
        groups.setdefault((cover.key, rnd.local_date), (cover, []))[1].append(rnd.id)
    await session.flush()
    for (_key, day), (cover, ids) in groups.items():
        await _queue_list(session, cfg, cover, day, "remind", min(ids), now)
    return len(rounds)


async def alert_silent_helpers(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Tick step: alert for rounds whose helper did not answer ``escalate_after`` after being asked
    (the alert says so; for an elder who answers first, that both were silent)."""
    rounds = (await session.scalars(
        select(CheckinRound).where(CheckinRound.status.in_(HELPER_OPEN_STATUSES),
                                   CheckinRound.helper_asked_at <= now - cfg.escalate_after)
        .order_by(CheckinRound.helper_asked_at, CheckinRound.id).limit(BATCH)
        .with_for_update(skip_locked=True))).all()
    for rnd in rounds:
        record_event(session, rnd.id, "helper_silent", now, target=rnd.helper_account_id)
        await raise_alert(session, cfg, rnd, AlertReason.no_answer, now)
    return len(rounds)


async def _alert_blocked_helper(session: AsyncSession, cfg: CheckinConfig, rounds, now: datetime) -> int:
    for rnd in rounds:
        record_event(session, rnd.id, "helper_unreachable", now, target=rnd.helper_account_id)
        await raise_alert(session, cfg, rnd, AlertReason.helper_blocked, now)
    return len(rounds)


async def on_list_unreachable(session: AsyncSession, row: OutboxMessage, now: datetime, *,
                              cfg: CheckinConfig) -> None:
    """Outbox sender listener (``on_unreachable`` of lists and their edits): the helper blocked the
    bot, so every elder still waiting for them that the list came back with (asked before it was
    made) is an alert now, naming the helper, as an unreachable elder is. Once: a round answered or
    alerted is left alone; a round another transaction holds is left to the tick's safety net."""
    if row.ref_id is None:
        return
    rounds = (await session.scalars(
        select(CheckinRound).where(CheckinRound.helper_account_id == row.ref_id,
                                   CheckinRound.status.in_(HELPER_OPEN_STATUSES),
                                   CheckinRound.helper_asked_at <= row.created_at)
        .order_by(CheckinRound.id).with_for_update(skip_locked=True))).all()
    await _alert_blocked_helper(session, cfg, rounds, now)


async def alert_unreachable_helpers(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Tick step: the same for rounds whose helper's list (or its edit) came back "blocked" and were
    not alerted by the listener (a safety net behind it, as for elders)."""
    bounced = select(OutboxMessage.id).where(
        OutboxMessage.ref_type.in_((REF_LIST, REF_LIST_EDIT)), OutboxMessage.ref_id == CheckinRound.helper_account_id,
        OutboxMessage.status == OutboxStatus.unreachable, OutboxMessage.created_at >= CheckinRound.helper_asked_at)
    rounds = (await session.scalars(
        select(CheckinRound).where(CheckinRound.status.in_(HELPER_OPEN_STATUSES),
                                   CheckinRound.helper_account_id.is_not(None), bounced.exists())
        .order_by(CheckinRound.id).limit(BATCH).with_for_update(skip_locked=True))).all()
    return await _alert_blocked_helper(session, cfg, rounds, now)


# --- the helper's answer -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HelperAnswerResult:
    round: CheckinRound
    alert: Alert | None
    view: HelperList  # the helper's list as it is now (the handler edits the pressed message with it)
    already: bool = False


async def _covers(session: AsyncSession, actor: Actor, rnd: CheckinRound, today: date) -> bool:
    """Whether the actor answers this round today: the helper asked for it, or, for a round the
    on-duty staff answer, committee staff in reach."""
    if rnd.mode == AnswerMode.self or rnd.helper_asked_at is None or rnd.local_date != today:
        return False
    if rnd.helper_account_id is not None:
        return actor.account_id == rnd.helper_account_id
    if not actor.is_staff:
        return False
    path = await session.scalar(select(Region.path).where(Region.id == rnd.committee_id))
    return path is not None and actor.covers_path(path)


async def helper_answer(session: AsyncSession, actor: Actor, round_id: int, answer: str, *, now: datetime,
                        cfg: CheckinConfig, message_id: int | None = None) -> HelperAnswerResult:
    """The helper answers for one elder they cover today (anyone else, another day, a forged id or
    answer: ``not_yours``, nothing changes). "All well" closes the round (and turns an open alert into
    an all clear); "Could not reach" and "Needs help" raise the alert at once, naming the helper. The
    same answer twice is ``already``. Every list the helper was sent today is brought up to date."""
    if answer not in HELPER_ANSWERS or not is_db_id(round_id) or actor.account is None:
        raise CheckinError("not_yours")
    rnd = await session.scalar(select(CheckinRound).where(CheckinRound.id == round_id).with_for_update())
    if rnd is None or not await _covers(session, actor, rnd, cfg.today(now)):
        raise CheckinError("not_yours")
    if rnd.status == RoundStatus.paused:
        raise CheckinError("not_yours")
    alert = await session.scalar(select(Alert).where(Alert.round_id == rnd.id).with_for_update())
    cover = _cover_of_round(rnd)
    alert_open = alert is not None and alert.status != AlertStatus.resolved
    if rnd.answer == answer and (answer == "ok" or alert_open):
        return HelperAnswerResult(rnd, alert, await helper_list(session, cfg, cover, rnd.local_date), already=True)
    if answer == "noreach" and rnd.answer in ("ok", "help"):
        raise CheckinError("answered", answer=rnd.answer)
    rnd.answer, rnd.answered_at = answer, now
    rnd.answered_by_account_id, rnd.answer_via = actor.account_id, "helper"
    record_event(session, rnd.id, "answered", now, actor=actor.account_id, detail={"answer": answer, "via": "helper"})
    if answer == "ok":
        rnd.status = RoundStatus.ok
        if alert is not None and alert_open:
            await all_clear(session, cfg, alert, actor.account, now, helper=True)
    else:
        rnd.status = RoundStatus.help if answer == "help" else RoundStatus.alerted
        alert = await raise_alert(session, cfg, rnd, AlertReason.help if answer == "help" else AlertReason.unreached,
                                  now)
    await session.flush()
    await refresh_lists(session, cfg, cover, rnd.local_date, now, skip_message_id=message_id)
    return HelperAnswerResult(rnd, alert, await helper_list(session, cfg, cover, rnd.local_date))


async def my_list(session: AsyncSession, actor: Actor, *, now: datetime, cfg: CheckinConfig) -> HelperList:
    """Today's list of the elders the actor was asked to answer for (empty if none)."""
    return await helper_list(session, cfg, Cover(actor.account_id, HelperRole.helper, 0), cfg.today(now)) \
        if actor.account_id is not None else HelperList(cfg.today(now), HelperRole.helper.value, [])


# --- who may help, and assigning them ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Candidate:
    """Someone staff may make a helper (plain text; escaped when rendered)."""

    account_id: int
    name: str
    detail: str  # a resident's room, or what else they are ("staff", "family")


async def _check_helper(session: AsyncSession, committee: Region, elder_id: int, account: Account) -> str:
    """What ``account`` is to the elder (``resident``, ``family``, ``staff``), or ``not_a_helper``:
    a verified resident of the committee, one of the elder's emergency contacts, or staff covering
    the committee; never the elder."""
    if account.resident_id == elder_id:
        raise CheckinError("own_helper")
    grants = await session.scalars(select(Region.path).join(Staff, Staff.region_id == Region.id).where(
        Staff.account_id == account.id, Staff.active.is_(True)))
    if any(committee.path.startswith(path) for path in grants):
        return "staff"
    contact = await session.scalar(select(EmergencyContact.id).where(
        EmergencyContact.resident_id == elder_id, EmergencyContact.account_id == account.id))
    if contact is not None:
        return "family"
    if account.resident_id is not None and account.verified_at is not None:
        resident = await session.get(Resident, account.resident_id)
        if resident is not None and resident.committee_id == committee.id and resident.status == ResidentStatus.active:
            return "resident"
    raise CheckinError("not_a_helper")


async def helper_candidates(session: AsyncSession, actor: Actor, query: str, *, limit: int = 10,
                            exclude: int | None = None) -> list[Candidate]:
    """Verified residents on the bot in the actor's scope matching a name or room (as /whois finds
    them), but the elder ``exclude`` (a resident id)."""
    found = [r for r in await find_residents(session, actor, query, limit=limit * 2) if r.id != exclude]
    if not found:
        return []
    by_resident = {r.id: r for r in found}
    accounts = await session.scalars(select(Account).where(
        Account.resident_id.in_(list(by_resident)), Account.verified_at.is_not(None)))
    candidates = {a.resident_id: Candidate(a.id, by_resident[a.resident_id].name, room_of(by_resident[a.resident_id]))
                  for a in accounts if a.resident_id is not None}
    return [candidates[r.id] for r in found if r.id in candidates][:limit]


async def known_helpers(session: AsyncSession, committee_id: int, *, exclude: int | None = None,
                        limit: int = 10) -> list[Candidate]:
    """The accounts answering for elders of a committee now (its helpers), by name."""
    ids = select(CheckinPlan.helper_account_id).where(
        CheckinPlan.committee_id == committee_id, CheckinPlan.active.is_(True),
        CheckinPlan.mode.in_(HELPER_MODES), CheckinPlan.helper_account_id.is_not(None))
    if exclude is not None:
        ids = ids.where(CheckinPlan.helper_account_id != exclude)
    rows = await session.scalars(select(Account).where(Account.id.in_(ids)).order_by(Account.first_name, Account.id)
                                 .limit(limit))
    return [Candidate(a.id, account_name(a), "helper") for a in rows]


async def family_candidates(session: AsyncSession, resident_id: int) -> list[Candidate]:
    """The elder's emergency contacts, who may be made their helper."""
    rows = await session.scalars(select(Account).join(EmergencyContact, EmergencyContact.account_id == Account.id)
                                 .where(EmergencyContact.resident_id == resident_id).order_by(EmergencyContact.id))
    return [Candidate(a.id, account_name(a), "family") for a in rows]


@dataclass(frozen=True, slots=True)
class HelperAssignment:
    plan: CheckinPlan
    resident: Resident
    helper: Account | None
    changed: bool


def _assigned_data(plan: CheckinPlan, resident: Resident, by: str | None) -> dict:
    return {"name": resident.name, "room": room_of(resident), "mode": plan.mode.value,
            "time": format_minute(plan.minute_of_day), "days": plan.days, "note": plan.note, "by": by}


async def _set_helper(session: AsyncSession, plan: CheckinPlan, resident: Resident, helper: Account | None,
                      mode: AnswerMode, *, now: datetime, by: Account | None) -> bool:
    """Give the plan its mode and helper; the new helper hears whom they answer for, a replaced
    one that they no longer do. Returns whether anything changed."""
    before = (plan.helper_account_id, plan.mode)
    plan.helper_account_id = helper.id if helper is not None else None
    plan.mode, plan.updated_at = mode, now
    changed = before != (plan.helper_account_id, plan.mode)
    await session.flush()
    if not changed:
        return False
    who = account_name(by) if by is not None else None
    if helper is not None:
        await tell(session, helper, f"chas:{plan.id}:{helper.id}:{now.isoformat()}", "checkins.helper_assigned",
                   _assigned_data(plan, resident, who), now=now, ref_type=REF_HELPER, ref_id=plan.id)
    if before[0] is not None and before[0] != plan.helper_account_id:
        old = await session.get(Account, before[0])
        if old is not None:
            await tell(session, old, f"chrm:{plan.id}:{old.id}:{now.isoformat()}", "checkins.helper_removed",
                       {"name": resident.name, "room": room_of(resident)}, now=now, ref_type=REF_HELPER,
                       ref_id=plan.id)
    return True


async def _helped_count(session: AsyncSession, account_id: int, *, other_than: int) -> int:
    return await session.scalar(select(func.count()).select_from(CheckinPlan).where(
        CheckinPlan.helper_account_id == account_id, CheckinPlan.active.is_(True),
        CheckinPlan.mode.in_(HELPER_MODES), CheckinPlan.resident_id != other_than)) or 0


async def assign_helper(session: AsyncSession, actor: Actor, resident: Resident, helper_account_id: int,
                        mode: AnswerMode | str, *, now: datetime, cfg: CheckinConfig) -> HelperAssignment:
    """Make an account answer for an elder (the caller found the elder through the actor's scope):
    ``proxy`` (the helper every day) or ``self_then_helper``. The elder is enrolled if they were not.
    Values from buttons are checked here: the mode, the account (``not_a_helper``, ``own_helper``)
    and the helper's load (``too_many``); a refusal writes nothing."""
    try:
        mode = AnswerMode(mode)
    except ValueError:
        raise CheckinError("bad_mode") from None
    if mode not in HELPER_MODES:
        raise CheckinError("bad_mode")
    helper = await session.get(Account, helper_account_id) if is_db_id(helper_account_id) else None
    if helper is None:
        raise CheckinError("not_a_helper")
    if resident.status != ResidentStatus.active:
        raise CheckinError("not_active")
    committee = await session.get_one(Region, resident.committee_id)
    kind = await _check_helper(session, committee, resident.id, helper)
    if await _helped_count(session, helper.id, other_than=resident.id) >= MAX_ELDERS_PER_HELPER:
        raise CheckinError("too_many", n=MAX_ELDERS_PER_HELPER)
    plan = await session.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == resident.id))
    if plan is None or not plan.active:
        plan, _created = await enrol_resident(session, resident, now=now, cfg=cfg, by_account_id=actor.account_id,
                                              mode=mode)
    changed = await _set_helper(session, plan, resident, helper, mode, now=now, by=actor.account)
    audit.record(session, "checkin.helper", now=now, actor_account_id=actor.account_id, target_type="resident",
                 target_id=resident.id, region_id=resident.committee_id,
                 detail={"mode": mode.value, "helper_account_id": helper.id, "as": kind})
    return HelperAssignment(plan, resident, helper, changed)


async def answer_alone(session: AsyncSession, actor: Actor, resident: Resident, *, now: datetime) -> bool:
    """The elder answers on their own again (mode ``self``, no helper); the helper is told. False if
    the elder has no plan or already answers alone."""
    plan = await session.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == resident.id,
                                                          CheckinPlan.active.is_(True)))
    if plan is None or (plan.mode == AnswerMode.self and plan.helper_account_id is None):
        return False
    await _set_helper(session, plan, resident, None, AnswerMode.self, now=now, by=actor.account)
    audit.record(session, "checkin.helper", now=now, actor_account_id=actor.account_id, target_type="resident",
                 target_id=resident.id, region_id=resident.committee_id, detail={"mode": "self"})
    return True


async def set_note(session: AsyncSession, resident: Resident, note: str | None, *, now: datetime) -> CheckinPlan:
    """The elder's note for whoever looks in (≤ 200 characters; empty clears it). ``not_enrolled``
    without a plan. The caller has checked scope."""
    plan = await session.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == resident.id,
                                                          CheckinPlan.active.is_(True)))
    if plan is None:
        raise CheckinError("not_enrolled")
    plan.note = (note or "").strip()[:200] or None
    plan.updated_at = now
    await session.flush()
    return plan


@dataclass(frozen=True, slots=True)
class PlanHelper:
    """An enrolled elder's answering arrangement, as staff see it."""

    mode: str
    helper: str | None  # name
    note: str | None


async def plan_helper(session: AsyncSession, resident_id: int) -> PlanHelper | None:
    """The elder's mode, helper and note (None if not enrolled)."""
    plan = await session.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == resident_id,
                                                          CheckinPlan.active.is_(True)))
    if plan is None:
        return None
    helper = await session.get(Account, plan.helper_account_id) if plan.helper_account_id else None
    return PlanHelper(plan.mode.value, account_name(helper) if helper else None, plan.note)


# --- invite links --------------------------------------------------------------------------------

def _code_hash(code: str, secret_key: str) -> str:
    if not secret_key:
        raise ValueError("CheckinConfig.secret_key is empty: helper codes cannot be hashed")
    return hmac.new(secret_key.encode(), b"helper:" + code.strip().encode(), hashlib.sha256).hexdigest()


async def create_helper_invite(session: AsyncSession, actor: Actor, resident: Resident, mode: AnswerMode | str, *,
                               now: datetime, cfg: CheckinConfig) -> str:
    """A one-time code for ``?start=hlp_<code>`` that makes its opener the elder's helper in ``mode``
    (valid a week; only its HMAC is stored). The elder is enrolled if they were not. The caller has
    checked scope."""
    try:
        mode = AnswerMode(mode)
    except ValueError:
        raise CheckinError("bad_mode") from None
    if mode not in HELPER_MODES:
        raise CheckinError("bad_mode")
    if resident.status != ResidentStatus.active:
        raise CheckinError("not_active")
    plan = await session.scalar(select(CheckinPlan).where(CheckinPlan.resident_id == resident.id))
    if plan is None or not plan.active:
        plan, _created = await enrol_resident(session, resident, now=now, cfg=cfg, by_account_id=actor.account_id,
                                              mode=mode)
    code = secrets.token_urlsafe(12)
    session.add(HelperInvite(plan_id=plan.id, mode=mode, code_hash=_code_hash(code, cfg.secret_key),
                             created_by_account_id=actor.account_id, created_at=now,
                             expires_at=now + HELPER_INVITE_TTL))
    await session.flush()
    return code


async def redeem_helper_invite(session: AsyncSession, account: Account, code: str, *, now: datetime,
                               cfg: CheckinConfig) -> HelperAssignment:
    """Make the opener of a helper link the elder's helper and use the link up; whoever made it is
    told. Every refusal (unknown, used, expired, the elder's own, too many elders) is checked first."""
    invite = await session.scalar(select(HelperInvite).where(
        HelperInvite.code_hash == _code_hash(code, cfg.secret_key)).with_for_update())
    if invite is None:
        raise CheckinError("unknown_helper_code")
    if invite.used_at is not None:
        raise CheckinError("used_helper_code")
    if invite.expires_at <= now:
        raise CheckinError("expired_helper_code")
    plan = await session.get_one(CheckinPlan, invite.plan_id)  # a CASCADE foreign key of the invite
    resident = await session.get_one(Resident, plan.resident_id)
    if account.resident_id == resident.id:
        raise CheckinError("own_helper")
    if not plan.active:
        raise CheckinError("not_enrolled")
    if await _helped_count(session, account.id, other_than=resident.id) >= MAX_ELDERS_PER_HELPER:
        raise CheckinError("too_many", n=MAX_ELDERS_PER_HELPER)
    invite.used_at, invite.used_by_account_id = now, account.id
    creator = await session.get(Account, invite.created_by_account_id) if invite.created_by_account_id else None
    changed = await _set_helper(session, plan, resident, account, invite.mode, now=now, by=creator)
    audit.record(session, "checkin.helper", now=now, actor_account_id=account.id, target_type="resident",
                 target_id=resident.id, region_id=resident.committee_id,
                 detail={"mode": invite.mode.value, "helper_account_id": account.id, "as": "invite"})
    if creator is not None:
        await tell(session, creator, f"chjoin:{invite.id}", "checkins.helper_joined",
                   {"who": account_name(account), "name": resident.name, "room": room_of(resident)}, now=now,
                   ref_type=REF_HELPER, ref_id=plan.id)
    return HelperAssignment(plan, resident, account, changed)


# --- hand-overs ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HelpedCommittee:
    committee_id: int
    name: str
    elders: int


async def helped_committees(session: AsyncSession, account_id: int | None) -> list[HelpedCommittee]:
    """The committees whose elders the account answers for, with how many."""
    if account_id is None:
        return []
    rows = await session.execute(
        select(Region.id, Region.name, func.count(CheckinPlan.id))
        .join(CheckinPlan, CheckinPlan.committee_id == Region.id)
        .where(CheckinPlan.helper_account_id == account_id, CheckinPlan.active.is_(True),
               CheckinPlan.mode.in_(HELPER_MODES))
        .group_by(Region.id, Region.name).order_by(Region.name))
    return [HelpedCommittee(cid, name, n) for cid, name, n in rows]


# Both of checkin_roles' questions in one statement, built once: /help, /menu and every menu button ask.
_ROLES = select(
    exists().where(CheckinPlan.resident_id == bindparam("resident_id"), CheckinPlan.active.is_(True)),
    exists().where(CheckinPlan.helper_account_id == bindparam("account_id"), CheckinPlan.active.is_(True),
                   CheckinPlan.mode.in_(HELPER_MODES)))


async def checkin_roles(session: AsyncSession, account: Account | None) -> CheckinRoles:
    """Whether the account is an enrolled elder (``my_plan`` is not None) and whether it helps an elder
    (``helped_committees`` is not empty), in one statement; read-only."""
    if account is None:
        return CheckinRoles(False, False)
    row = (await session.execute(_ROLES, {"resident_id": account.resident_id, "account_id": account.id})).one()
    return CheckinRoles(bool(row[0]) and account.resident_id is not None, bool(row[1]))


async def is_helper(session: AsyncSession, account_id: int | None, today: date) -> bool:
    """Whether the account answers for anyone: their own elders, or standing in for a helper."""
    if account_id is None:
        return False
    own = await session.scalar(select(CheckinPlan.id).where(
        CheckinPlan.helper_account_id == account_id, CheckinPlan.active.is_(True),
        CheckinPlan.mode.in_(HELPER_MODES)).limit(1))
    if own is not None:
        return True
    return await session.scalar(select(HelperHandover.id).where(
        HelperHandover.substitute_account_id == account_id, HelperHandover.cancelled_at.is_(None),
        HelperHandover.ends_on >= today).limit(1)) is not None


async def _handover_in_reach(session: AsyncSession, actor: Actor, helper_account_id: int,
                             committee_id: int) -> Region:
    """The committee, if the actor may hand over this helper's elders there: the helper themselves,
    or staff in reach; and the helper answers for elders there. Else ``not_yours``."""
    if actor.account is None or not is_db_id(helper_account_id) or not is_db_id(committee_id):
        raise CheckinError("not_yours")
    committee = await session.get(Region, committee_id)
    if committee is None:
        raise CheckinError("not_yours")
    if actor.account_id != helper_account_id and not (actor.is_staff and actor.covers_path(committee.path)):
        raise CheckinError("not_yours")
    if not any(c.committee_id == committee_id for c in await helped_committees(session, helper_account_id)):
        raise CheckinError("not_yours")
    return committee


async def substitutes(session: AsyncSession, actor: Actor, helper_account_id: int, committee_id: int
                      ) -> list[Candidate]:
    """Whom the actor may pick to stand in: the committee's other helpers, and for staff themselves."""
    await _handover_in_reach(session, actor, helper_account_id, committee_id)
    out = await known_helpers(session, committee_id, exclude=helper_account_id)
    if actor.is_staff and actor.account is not None and actor.account_id != helper_account_id \
            and all(c.account_id != actor.account_id for c in out):
        out.append(Candidate(actor.account.id, account_name(actor.account), "staff"))
    return out


@dataclass(frozen=True, slots=True)
class HandoverResult:
    handover: HelperHandover
    helper: str
    substitute: str | None  # None: the committee's on-duty staff
    moved: int  # today's unanswered rounds moved to the new cover


async def hand_over(session: AsyncSession, actor: Actor, helper_account_id: int, committee_id: int, days: int,
                    substitute_account_id: int | None, *, now: datetime, cfg: CheckinConfig) -> HandoverResult:
    """Hand a helper's elders of one committee over for ``days`` days from today (1 … 90): to a
    substitute, or (``None``) to the committee's on-duty staff. The helper themselves picks among the
    committee's other helpers; staff also themselves. It replaces hand-overs it overlaps; today's
    unanswered rounds move at once (the new cover gets its list at the next tick). The on-duty staff
    are always told, the substitute and the helper too."""
    committee = await _handover_in_reach(session, actor, helper_account_id, committee_id)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_HANDOVER_DAYS:
        raise CheckinError("bad_days_handover", n=MAX_HANDOVER_DAYS)
    substitute = None
    if substitute_account_id is not None:
        allowed = {c.account_id for c in await substitutes(session, actor, helper_account_id, committee_id)}
        if substitute_account_id not in allowed:
            raise CheckinError("not_a_helper")
        substitute = await session.get_one(Account, substitute_account_id)
    helper = await session.get_one(Account, helper_account_id)
    today = cfg.today(now)
    start, end = today, today + timedelta(days=days - 1)
    await session.execute(
        update(HelperHandover).where(HelperHandover.helper_account_id == helper_account_id,
                                     HelperHandover.committee_id == committee_id,
                                     HelperHandover.cancelled_at.is_(None), HelperHandover.ends_on >= start,
                                     HelperHandover.starts_on <= end)
        .values(cancelled_at=now).execution_options(synchronize_session=False))
    handover = HelperHandover(helper_account_id=helper_account_id, committee_id=committee_id, starts_on=start,
                              ends_on=end, substitute_account_id=substitute.id if substitute else None,
                              created_by_account_id=actor.account_id, created_at=now)
    session.add(handover)
    await session.flush()
    moved = await _move_todays_rounds(session, cfg, helper_account_id, committee_id, today, now)
    audit.record(session, "checkin.handover", now=now, actor_account_id=actor.account_id, target_type="account",
                 target_id=helper_account_id, region_id=committee_id,
                 detail={"until": end.isoformat(), "substitute_account_id": handover.substitute_account_id})
    elders = await session.scalar(select(func.count()).select_from(CheckinPlan).where(
        CheckinPlan.helper_account_id == helper_account_id, CheckinPlan.committee_id == committee_id,
        CheckinPlan.active.is_(True), CheckinPlan.mode.in_(HELPER_MODES))) or 0
    data = {"helper": account_name(helper), "substitute": account_name(substitute) if substitute else None,
            "start": start.isoformat(), "end": end.isoformat(), "elders": elders, "committee": committee.name,
            "by": account_name(actor.account)}
    told: set[int] = set()
    targets: list[tuple[Account, str]] = [(a, "staff") for a in await duty_staff(session, committee)]
    if substitute is not None:
        targets.append((substitute, "substitute"))
    targets.append((helper, "helper"))
    for account, role in targets:
        if account.id in told or (account.id == actor.account_id and role != "staff"):
            continue
        told.add(account.id)
        await tell(session, account, f"cho:{handover.id}:{account.id}", "checkins.handover", {**data, "role": role},
                   now=now, ref_type=REF_HELPER, ref_id=handover.id)
    return HandoverResult(handover, account_name(helper), account_name(substitute) if substitute else None, moved)


async def _move_todays_rounds(session: AsyncSession, cfg: CheckinConfig, helper_account_id: int, committee_id: int,
                              today: date, now: datetime) -> int:
    """Today's rounds the helper was asked and has not answered go to the cover of the day (asked
    again at the next tick); the helper's lists drop them."""
    rounds = (await session.scalars(select(CheckinRound).where(
        CheckinRound.committee_id == committee_id, CheckinRound.local_date == today,
        CheckinRound.helper_account_id == helper_account_id, CheckinRound.status.in_(HELPER_OPEN_STATUSES))
        .with_for_update())).all()
    for rnd in rounds:
        rnd.status, rnd.helper_asked_at, rnd.helper_reminded_at = RoundStatus.helper, None, None
        rnd.helper_account_id = rnd.helper_role = None
        record_event(session, rnd.id, "handed_over", now, target=helper_account_id)
    await session.flush()
    if rounds:
        await refresh_lists(session, cfg, Cover(helper_account_id, HelperRole.helper, committee_id), today, now)
    return len(rounds)


@dataclass(frozen=True, slots=True)
class HandoverLine:
    id: int
    committee: str
    start: str
    end: str
    substitute: str | None  # None: the committee's on-duty staff
    helper: str
    away: bool  # the account asking is the helper away (else: the substitute)


async def my_handovers(session: AsyncSession, account_id: int | None, today: date) -> list[HandoverLine]:
    """The account's hand-overs not over yet: as the helper away, or as the substitute."""
    if account_id is None:
        return []
    rows = (await session.execute(
        select(HelperHandover, Region.name).join(Region, Region.id == HelperHandover.committee_id)
        .where(or_(HelperHandover.helper_account_id == account_id, HelperHandover.substitute_account_id == account_id),
               HelperHandover.cancelled_at.is_(None), HelperHandover.ends_on >= today)
        .order_by(HelperHandover.starts_on, HelperHandover.id))).all()
    ids = {i for h, _n in rows for i in (h.helper_account_id, h.substitute_account_id) if i}
    names = {a.id: account_name(a) for a in await session.scalars(select(Account).where(Account.id.in_(ids)))}
    return [HandoverLine(h.id, name, h.starts_on.isoformat(), h.ends_on.isoformat(),
                         names.get(h.substitute_account_id) if h.substitute_account_id else None,
                         names.get(h.helper_account_id, "?"), h.helper_account_id == account_id)
            for h, name in rows]


async def end_handover(session: AsyncSession, actor: Actor, handover_id: int, *, now: datetime,
                       cfg: CheckinConfig) -> HelperHandover:
    """The helper is back (or staff end it): from tomorrow the elders are theirs again (today's lists
    stay as they are). The on-duty staff and the substitute are told."""
    handover = await session.get(HelperHandover, handover_id) if is_db_id(handover_id) else None
    if handover is None or handover.cancelled_at is not None:
        raise CheckinError("not_yours")
    committee = await _handover_in_reach(session, actor, handover.helper_account_id, handover.committee_id)
    today = cfg.today(now)
    if handover.starts_on > today or handover.ends_on < today:
        handover.cancelled_at = now
    else:
        handover.ends_on = today
    helper = await session.get_one(Account, handover.helper_account_id)
    data = {"helper": account_name(helper), "committee": committee.name, "end": handover.ends_on.isoformat(),
            "by": account_name(actor.account)}
    targets = list(await duty_staff(session, committee))
    if handover.substitute_account_id:
        substitute = await session.get(Account, handover.substitute_account_id)
        if substitute is not None:
            targets.append(substitute)
    if actor.account_id != helper.id:
        targets.append(helper)
    for account in {a.id: a for a in targets}.values():
        await tell(session, account, f"choend:{handover.id}:{account.id}", "checkins.handover_ended", data, now=now,
                   ref_type=REF_HELPER, ref_id=handover.id)
    audit.record(session, "checkin.handover_end", now=now, actor_account_id=actor.account_id, target_type="account",
                 target_id=handover.helper_account_id, region_id=handover.committee_id)
    await session.flush()
    return handover


# --- a helper's own data, and a helper leaving --------------------------------------------------

@dataclass(frozen=True, slots=True)
class HelpedElder:
    """An elder the account answers for, as their list names them (plain text)."""

    name: str
    room: str
    committee: str
    mode: str  # AnswerMode: proxy, or self_then_helper


async def helped_elders(session: AsyncSession, account_id: int | None) -> list[HelpedElder]:
    """The elders whose check-in the account answers (its own plans, not hand-overs), by committee and room."""
    if account_id is None:
        return []
    rows = (await session.execute(
        select(Resident, Region.name, CheckinPlan.mode).join(CheckinPlan, CheckinPlan.resident_id == Resident.id)
        .join(Region, Region.id == CheckinPlan.committee_id)
        .where(CheckinPlan.helper_account_id == account_id, CheckinPlan.active.is_(True),
               CheckinPlan.mode.in_(HELPER_MODES))
        .order_by(Region.name, Resident.building, Resident.unit, Resident.room, Resident.name))).all()
    return [HelpedElder(r.name, room_of(r), committee, mode.value) for r, committee, mode in rows]


async def helper_leaves(session: AsyncSession, account: Account, *, now: datetime, today: date) -> int:
    """The account is about to be erased (/forget): the elders it answers for, and those it stands
    in for, fall to their committee's on-duty staff, who are told which (one message per committee).
    Its rounds still waiting move to that staff at once (asked at the next tick). Returns how many
    elders were left to the staff."""
    plans = (await session.scalars(select(CheckinPlan).where(
        CheckinPlan.helper_account_id == account.id, CheckinPlan.active.is_(True),
        CheckinPlan.mode.in_(HELPER_MODES)).with_for_update())).all()
    standing_in = (await session.scalars(select(HelperHandover).where(
        HelperHandover.substitute_account_id == account.id, HelperHandover.cancelled_at.is_(None),
        HelperHandover.ends_on >= today).order_by(HelperHandover.starts_on, HelperHandover.id)
        .with_for_update())).all()
    elders: dict[int, list[int]] = defaultdict(list)  # committee → residents left to its staff
    for plan in plans:
        plan.helper_account_id, plan.updated_at = None, now
        elders[plan.committee_id].append(plan.resident_id)
    stood_in: dict[int, list[dict]] = defaultdict(list)  # committee → hand-overs now without a substitute
    away = {h.helper_account_id for h in standing_in}
    names = {a.id: account_name(a) for a in await session.scalars(select(Account).where(Account.id.in_(away)))} \
        if away else {}
    for handover in standing_in:
        handover.substitute_account_id = None
        stood_in[handover.committee_id].append({"helper": names.get(handover.helper_account_id, "?"),
                                                "end": handover.ends_on.isoformat()})
    rounds = (await session.scalars(select(CheckinRound).where(
        CheckinRound.helper_account_id == account.id, CheckinRound.status.in_(HELPER_OPEN_STATUSES))
        .with_for_update())).all()
    for rnd in rounds:
        rnd.status, rnd.helper_asked_at, rnd.helper_reminded_at = RoundStatus.helper, None, None
        rnd.helper_account_id = rnd.helper_role = None
        record_event(session, rnd.id, "handed_over", now, target=account.id)
    await session.flush()
    who = account_name(account)
    for committee_id in sorted(set(elders) | set(stood_in)):
        committee = await session.get_one(Region, committee_id)
        residents = (await session.scalars(select(Resident).where(Resident.id.in_(elders[committee_id]))
                                           .order_by(Resident.building, Resident.unit, Resident.room,
                                                     Resident.name))).all()
        data = {"helper": who, "committee": committee.name,
                "elders": [{"name": r.name, "room": room_of(r)} for r in residents],
                "stood_in": stood_in[committee_id]}
        for staff in await duty_staff(session, committee):
            await tell(session, staff, f"chleft:{account.id}:{committee_id}:{staff.id}:{now.isoformat()}",
                       "checkins.helper_left", data, now=now, priority=Priority.checkin, ref_type=REF_HELPER,
                       ref_id=committee_id)
    return sum(len(v) for v in elders.values())


# --- statistics (board and weekly report) --------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HelperStats:
    """How one helper (None: the on-duty staff) answered over some days."""

    name: str | None
    asked: int  # elder-days they were asked
    answered: int  # … and answered themselves
    late: int  # … for which they needed their reminder
    silent: int  # … and did not answer in time at all (the alert went out, or someone else answered)

    def data(self) -> dict:
        return asdict(self)


async def helper_stats(session: AsyncSession, committee_id: int, start: date, end: date) -> list[HelperStats]:
    """Per helper, the rounds of a committee from ``start`` to ``end`` (inclusive) they were asked:
    how many, how many they answered, after how many reminders, and how many they let pass."""
    rows = (await session.execute(
        select(CheckinRound.helper_account_id, CheckinRound.helper_reminded_at, CheckinRound.answer_via,
               CheckinRound.status)
        .where(CheckinRound.plan_id.in_(select(CheckinPlan.id).where(CheckinPlan.committee_id == committee_id)),
               CheckinRound.local_date.between(start, end), CheckinRound.helper_asked_at.is_not(None)))).all()
    counts: dict[int | None, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for helper_id, reminded_at, via, status in rows:
        c = counts[helper_id]
        theirs = via == "helper"  # a helper answer comes from the cover asked (helper_answer checks it)
        c[0] += 1
        c[1] += theirs
        c[2] += reminded_at is not None
        c[3] += not theirs and status not in HELPER_OPEN_STATUSES  # still waiting is not silent yet
    names = {a.id: account_name(a) for a in await session.scalars(
        select(Account).where(Account.id.in_([k for k in counts if k is not None])))}
    out = [HelperStats(names.get(k, "?") if k is not None else None, *v) for k, v in counts.items()]
    return sorted(out, key=lambda s: (s.name is None, s.name or ""))
