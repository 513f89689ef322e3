"""The daily round: the tick that opens rounds, reminds and alerts, and the elder's answer.

    plan ──tick──▶ round pending ──reminder_after──▶ reminded ──escalate_after──▶ alerted
                      │  "I'm fine" → ok             (or the elder blocked the bot → alerted)
                      └─ "I need help" → help + alert at once

A plan a helper answers for (``AnswerMode.proxy``) opens straight into ``helper``, and an elder who
answers first (``self_then_helper``) goes to ``helper`` instead of ``alerted``: the helper's steps
are in ``services.checkins.helpers`` and run in the same tick.

Every step is idempotent and safe in several processes: rounds are UNIQUE per plan and local date
and opened with ``INSERT … SELECT … ON CONFLICT DO NOTHING``; rows a step works on are claimed
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite has one writer); prompts and reminders are
outbox message payloads (``checkins.prompt``) queued set-based with idempotency keys.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, and_, bindparam, cast, literal, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.checkins.alerts import all_clear, escalate_alerts, raise_alert, remind_resolvers
from services.checkins.common import (
    BATCH,
    REF_ROUND,
    CheckinError,
    insert_into,
    is_postgres,
    locale_sql,
    message_payload_sql,
    plans_due,
    record_event,
)
from services.checkins.config import CheckinConfig
from services.checkins.helpers import (
    alert_silent_helpers,
    alert_unreachable_helpers,
    ask_helper_now,
    ask_helpers,
    refresh_round_lists,
    remind_helpers,
)
from services.models import (
    Account,
    Alert,
    AlertReason,
    AlertStatus,
    AnswerMode,
    CheckinPlan,
    CheckinRound,
    OutboxMessage,
    OutboxStatus,
    Resident,
    RoundStatus,
    UTCDateTime,
)
from services.models.checkins import ELDER_OPEN_STATUSES
from services.outbox import Priority
from services.outbox import cancel as cancel_messages
from services.sql import rowcount


@dataclass(slots=True)
class TickReport:
    """How much one tick did, step by step."""

    opened: int = 0
    helpers_asked: int = 0  # rounds whose helper was asked (proxy, or the elder stayed silent)
    reminded: int = 0
    helpers_reminded: int = 0
    unreachable: int = 0
    helpers_unreachable: int = 0  # alerts because the helper's list came back "blocked"
    alerted: int = 0
    helpers_silent: int = 0  # alerts because the helper did not answer either
    escalated: int = 0
    resolve_reminded: int = 0

    def __bool__(self) -> bool:
        return any((self.opened, self.helpers_asked, self.reminded, self.helpers_reminded, self.unreachable,
                    self.helpers_unreachable, self.alerted, self.helpers_silent, self.escalated, self.resolve_reminded))


async def _queue_elder_messages(session: AsyncSession, cfg: CheckinConfig, kind: str, rounds,
                                now: datetime) -> int:
    """Queue the prompt (or reminder) of the rounds a tick step just touched, in one statement.

    The round's ``opened_at`` / ``reminded_at`` and these outbox rows (with their delivery status)
    are the history of these two bulk steps: no event row per elder is written for them."""
    payload = message_payload_sql(session, "checkins.prompt", {"round_id": CheckinRound.id, "kind": kind},
                                  locale_sql(cfg.default_locale))
    src = (
        select(literal("ci:", String) + cast(CheckinRound.id, String) + literal(f":{kind}", String),
               Account.chat_id, Account.id, literal(int(Priority.checkin)), payload,
               literal(OutboxStatus.pending.value), literal(now, UTCDateTime()), literal(0), literal(REF_ROUND),
               CheckinRound.id, literal(now, UTCDateTime()))
        .join(Account, Account.id == CheckinRound.account_id)
        .where(rounds)
    )
    stmt = insert_into(session, OutboxMessage).from_select(
        ["idempotency_key", "chat_id", "account_id", "priority", "payload", "status", "not_before", "attempts",
         "ref_type", "ref_id", "created_at"], src).on_conflict_do_nothing(index_elements=["idempotency_key"])
    return rowcount(await session.execute(stmt))


async def open_rounds(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Tick step: open today's round of every due plan and queue its prompt, set-based. Idempotent:
    the UNIQUE (plan, local date) key makes a second tick (or a second process) open nothing."""
    local = cfg.local(now)
    today, minute = local.date(), local.hour * 60 + local.minute
    token = uuid.uuid4().hex
    exists = select(CheckinRound.id).where(CheckinRound.plan_id == CheckinPlan.id, CheckinRound.local_date == today)
    due = [*plans_due(today), CheckinPlan.minute_of_day <= minute, ~exists.exists()]
    columns = ["plan_id", "resident_id", "committee_id", "account_id", "local_date", "status", "opened_at",
               "tick_token", "mode"]
    src = (
        select(CheckinPlan.id, CheckinPlan.resident_id, CheckinPlan.committee_id, Account.id, literal(today),
               literal(RoundStatus.pending.value), literal(now, UTCDateTime()), literal(token), CheckinPlan.mode)
        .join(Resident, Resident.id == CheckinPlan.resident_id)
        .join(Account, Account.resident_id == CheckinPlan.resident_id)
        .where(*due, CheckinPlan.mode != AnswerMode.proxy)
    )
    # A helper answers (proxy, or an elder who answers first but is not on the bot): the round opens
    # waiting for the helper, who is asked by the next step (helpers.ask_helpers); no prompt.
    helper_src = (
        select(CheckinPlan.id, CheckinPlan.resident_id, CheckinPlan.committee_id, Account.id, literal(today),
               literal(RoundStatus.helper.value), literal(now, UTCDateTime()), literal(token),
               literal(AnswerMode.proxy.value))
        .join(Resident, Resident.id == CheckinPlan.resident_id)
        .outerjoin(Account, Account.resident_id == CheckinPlan.resident_id)
        .where(*due, or_(CheckinPlan.mode == AnswerMode.proxy,
                         and_(CheckinPlan.mode == AnswerMode.self_then_helper, Account.id.is_(None))))
    )
    # The anti-join keeps later ticks of the day cheap; the UNIQUE key (ON CONFLICT DO NOTHING) is
    # what makes concurrent ticks safe.
    stmt = insert_into(session, CheckinRound).from_select(columns, src).on_conflict_do_nothing(
        index_elements=["plan_id", "local_date"])
    helper_stmt = insert_into(session, CheckinRound).from_select(columns, helper_src).on_conflict_do_nothing(
        index_elements=["plan_id", "local_date"])
    postgres = is_postgres(session)
    if postgres:
        # When PostgreSQL believes checkin_rounds is (nearly) empty — a first big day — it answers
        # the anti-join by re-scanning the table once per plan, a table this very statement is
        # filling: quadratic (minutes for 100,000 plans). Without sequential scans it probes the
        # UNIQUE (plan_id, local_date) index instead. SET LOCAL ends with the transaction.
        await session.execute(text("SET LOCAL enable_seqscan = off"))
    opened = rowcount(await session.execute(stmt))
    opened_for_helpers = rowcount(await session.execute(helper_stmt))
    if postgres:
        await session.execute(text("SET LOCAL enable_seqscan = on"))
    if opened:
        # (status, opened_at) is indexed; the token tells this tick's rows from another's at the same now.
        mine = and_(CheckinRound.status == RoundStatus.pending, CheckinRound.opened_at == now,
                    CheckinRound.tick_token == token)
        await _queue_elder_messages(session, cfg, "prompt", mine, now)
    return opened + opened_for_helpers


async def send_reminders(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Tick step: one reminder for each round unanswered after ``reminder_after`` (none if its alert
    is due too)."""
    token = uuid.uuid4().hex
    window = and_(CheckinRound.opened_at <= now - cfg.reminder_after, CheckinRound.opened_at > now - cfg.escalate_after)
    stmt = (update(CheckinRound).where(CheckinRound.status == RoundStatus.pending, window)
            .values(status=RoundStatus.reminded, reminded_at=now, tick_token=token)
            .execution_options(synchronize_session=False))
    reminded = rowcount(await session.execute(stmt))
    if reminded:
        mine = and_(CheckinRound.status == RoundStatus.reminded, window, CheckinRound.tick_token == token)
        await _queue_elder_messages(session, cfg, "remind", mine, now)
    return reminded


async def alert_unreachable(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Tick step: alert for open rounds whose prompt or reminder came back "blocked" (a safety net
    behind the sender's listener, which does the same at once)."""
    ids = (await session.scalars(
        select(CheckinRound.id).join(OutboxMessage, and_(OutboxMessage.ref_type == REF_ROUND,
                                                         OutboxMessage.ref_id == CheckinRound.id))
        .where(CheckinRound.status.in_(ELDER_OPEN_STATUSES), OutboxMessage.status == OutboxStatus.unreachable)
        .order_by(CheckinRound.id).limit(BATCH))).all()
    count = 0
    for round_id in dict.fromkeys(ids):
        rnd = await session.scalar(select(CheckinRound).where(
            CheckinRound.id == round_id, CheckinRound.status.in_(ELDER_OPEN_STATUSES))
            .with_for_update(skip_locked=True))
        if rnd is not None:
            await _elder_unreachable(session, cfg, rnd, now)
            count += 1
    return count


async def _elder_unreachable(session: AsyncSession, cfg: CheckinConfig, rnd: CheckinRound, now: datetime) -> None:
    """The elder's prompt came back "blocked": alert, or for an elder who answers first, ask the helper."""
    if rnd.mode == AnswerMode.self_then_helper:
        await ask_helper_now(session, cfg, rnd, now)
        return
    record_event(session, rnd.id, "unreachable", now, target=rnd.account_id)
    await raise_alert(session, cfg, rnd, AlertReason.unreachable, now)


async def alert_unanswered(session: AsyncSession, cfg: CheckinConfig, now: datetime) -> int:
    """Tick step: alert for rounds still unanswered ``escalate_after`` after their prompt (an elder
    who answers first goes to their helper instead: ``helpers.ask_helpers``)."""
    rounds = (await session.scalars(
        select(CheckinRound).where(CheckinRound.status.in_(ELDER_OPEN_STATUSES),
                                   CheckinRound.mode != AnswerMode.self_then_helper,
                                   CheckinRound.opened_at <= now - cfg.escalate_after)
        .order_by(CheckinRound.opened_at, CheckinRound.id).limit(BATCH).with_for_update(skip_locked=True))).all()
    for rnd in rounds:
        await raise_alert(session, cfg, rnd, AlertReason.no_answer, now)
    return len(rounds)


TICK_STEPS = (("opened", open_rounds), ("helpers_asked", ask_helpers), ("reminded", send_reminders),
              ("helpers_reminded", remind_helpers), ("unreachable", alert_unreachable),
              ("helpers_unreachable", alert_unreachable_helpers),
              ("alerted", alert_unanswered), ("helpers_silent", alert_silent_helpers),
              ("escalated", escalate_alerts), ("resolve_reminded", remind_resolvers))


async def tick(session_factory: async_sessionmaker[AsyncSession], cfg: CheckinConfig, now: datetime) -> TickReport:
    """Run every due step once at ``now``, each in its own transaction. Idempotent; safe to run
    twice, concurrently, or after a crash at any point."""
    report = TickReport()
    for name, step in TICK_STEPS:
        async with session_factory() as session, session.begin():
            setattr(report, name, await step(session, cfg, now))
    return report


async def on_round_unreachable(session: AsyncSession, row: OutboxMessage, now: datetime, *, cfg: CheckinConfig) -> None:
    """Outbox sender listener (``on_unreachable("checkin", …)``): the elder blocked the bot → alert
    now (once: a round already alerted or answered is left alone)."""
    if row.ref_id is None:
        return
    rnd = await session.scalar(select(CheckinRound).where(
        CheckinRound.id == row.ref_id, CheckinRound.status.in_(ELDER_OPEN_STATUSES)).with_for_update())
    if rnd is None:
        return
    await _elder_unreachable(session, cfg, rnd, now)


# --- the elder's answer ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerResult:
    round: CheckinRound
    alert: Alert | None
    already: bool = False  # the same answer had been given before
    all_clear: bool = False  # an open alert was closed by this "I'm fine"


ANSWERS = ("ok", "help")


_ROUND_FOR_UPDATE = select(CheckinRound).where(CheckinRound.id == bindparam("id")).with_for_update()  # every answer


async def answer(session: AsyncSession, account: Account | None, round_id: int, *, need_help: bool, now: datetime,
                 cfg: CheckinConfig) -> AnswerResult:
    """The elder answers a round of their own (anyone else: ``not_yours``, nothing changes).

    "I'm fine" closes the round, cancels a reminder not yet sent, and turns an open alert into an
    all clear for everyone who was alerted. "I need help" alerts at once (or re-opens the alert).
    The same answer twice is reported as ``already`` and does nothing more."""
    rnd = await session.scalar(_ROUND_FOR_UPDATE, {"id": round_id})
    if rnd is None or account is None or account.resident_id is None or rnd.resident_id != account.resident_id:
        raise CheckinError("not_yours")
    # A round still waiting for the elder has never been alerted (an alert moves it on, and nothing
    # moves a round back to pending or reminded), so only a round that has moved on may have one.
    alert = (None if rnd.status in ELDER_OPEN_STATUSES else
             await session.scalar(select(Alert).where(Alert.round_id == rnd.id).with_for_update()))
    if not need_help:
        if rnd.answer == "ok":
            return AnswerResult(rnd, alert, already=True)
        rnd.answer, rnd.answered_at, rnd.status = "ok", now, RoundStatus.ok
        rnd.answered_by_account_id, rnd.answer_via = account.id, "self"
        record_event(session, rnd.id, "answered", now, actor=account.id, detail={"answer": "ok"})
        await cancel_messages(session, REF_ROUND, [rnd.id])
        cleared = False
        if alert is not None and alert.status != AlertStatus.resolved:
            await all_clear(session, cfg, alert, account, now)
            cleared = True
        await session.flush()
        await refresh_round_lists(session, cfg, rnd, now)  # the helper asked meanwhile sees it
        return AnswerResult(rnd, alert, all_clear=cleared)
    if rnd.answer == "help" and alert is not None and alert.status != AlertStatus.resolved:
        return AnswerResult(rnd, alert, already=True)
    rnd.answer, rnd.answered_at, rnd.status = "help", now, RoundStatus.help
    rnd.answered_by_account_id, rnd.answer_via = account.id, "self"
    record_event(session, rnd.id, "answered", now, actor=account.id, detail={"answer": "help"})
    await cancel_messages(session, REF_ROUND, [rnd.id])
    alert = await raise_alert(session, cfg, rnd, AlertReason.help, now)
    await refresh_round_lists(session, cfg, rnd, now)
    return AnswerResult(rnd, alert)
