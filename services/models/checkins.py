"""Daily check-ins (每日问安): plans, one round per plan and local date, alerts, history, family.

Everything the state machine needs lives here, so a restart at any moment loses nothing: the tick
(``services.checkins.tick``) reads what is due from these rows and the outbox.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, BigId

EVERY_DAY = 0b1111111  # bit 0 = Monday … bit 6 = Sunday (date.weekday())


class AnswerMode(enum.StrEnum):
    """Who answers a plan's daily check-in."""

    self = "self"  # the elder, on their own Telegram
    proxy = "proxy"  # a named helper, after a visit or a call (the elder is never asked)
    self_then_helper = "self_then_helper"  # the elder; when the reminder goes unanswered, the helper


HELPER_MODES = (AnswerMode.proxy, AnswerMode.self_then_helper)  # the modes in which a helper answers

class HelperRole(enum.StrEnum):
    """Who the helper asked for a round is, for that day (``CheckinRound.helper_role``)."""

    helper = "helper"  # the plan's own helper
    substitute = "substitute"  # standing in for a helper who handed over for a period
    duty = "duty"  # nobody named: the committee's on-duty staff answer (hand-over, or no helper)


class RoundStatus(enum.StrEnum):
    pending = "pending"  # the prompt went out, no answer yet
    reminded = "reminded"  # … and the one reminder too
    helper = "helper"  # the helper is asked (proxy: from the start; self then helper: the elder was silent)
    helper_reminded = "helper_reminded"  # … and the helper's one reminder too
    alerted = "alerted"  # no answer in time (or unreachable): an alert is open or was handled
    ok = "ok"  # "I'm fine" (possibly late, after an alert)
    help = "help"  # "I need help"
    paused = "paused"  # the elder paused check-ins while this round was open


ELDER_OPEN_STATUSES = (RoundStatus.pending, RoundStatus.reminded)  # waiting for the elder
HELPER_OPEN_STATUSES = (RoundStatus.helper, RoundStatus.helper_reminded)  # waiting for the helper
OPEN_ROUND_STATUSES = ELDER_OPEN_STATUSES + HELPER_OPEN_STATUSES


class AlertStatus(enum.StrEnum):
    open = "open"  # nobody has said "I'm on it" yet; escalates after the ack timeout
    acknowledged = "acknowledged"  # someone is on it; reminded after the resolve timeout
    resolved = "resolved"


class AlertReason(enum.StrEnum):
    no_answer = "no_answer"
    unreachable = "unreachable"  # the elder blocked the bot
    help = "help"  # the elder pressed "I need help" (or their helper "Needs help")
    unreached = "unreached"  # the elder's helper reported "Could not reach"
    helper_blocked = "helper_blocked"  # the helper asked for the round blocked the bot (their list came back)


class AlertOutcome(enum.StrEnum):
    safe = "safe"
    needed_help = "needed_help"
    not_reachable = "not_reachable"
    all_clear = "all_clear"  # the elder answered "I'm fine" after the alert


class AlertLevel(enum.IntEnum):
    committee = 1  # on-duty committee staff (all committee staff if nobody is on duty)
    street = 2  # street staff above the committee
    family = 3  # the elder's emergency contacts


class CheckinPlan(Base):
    """One elder enrolled for daily check-ins: at ``minute_of_day`` local time on ``days``."""

    __tablename__ = "checkin_plans"
    __table_args__ = (Index("ix_checkin_plans_due", "active", "minute_of_day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), unique=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"), index=True)
    minute_of_day: Mapped[int] = mapped_column(SmallInteger, default=9 * 60)  # 0 … 1439, local time
    days: Mapped[int] = mapped_column(SmallInteger, default=EVERY_DAY)  # weekday bit mask
    starts_on: Mapped[date] = mapped_column(Date)  # first local date a round may open
    paused_until: Mapped[date | None] = mapped_column(Date)  # no rounds up to and including this date
    pause_note: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    mode: Mapped[AnswerMode] = mapped_column(Enum(AnswerMode, native_enum=False, length=16), default=AnswerMode.self,
                                             server_default=AnswerMode.self.value)
    # Who answers for the elder (proxy, self then helper). NULL with a helper mode: the committee's
    # on-duty staff do (the helper left or was erased); never "nobody".
    helper_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    note: Mapped[str | None] = mapped_column(String(200))  # the elder's own note for whoever looks in
    created_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CheckinRound(Base):
    """One day's check-in of one plan. UNIQUE (plan, local date): a tick run twice opens one round."""

    __tablename__ = "checkin_rounds"
    __table_args__ = (
        # Also the way in for the board and the weekly report (plans of a committee → their rounds).
        UniqueConstraint("plan_id", "local_date"),
        # The tick's "what is waiting for an answer". Kept to these two: a tick may insert 100,000 rows.
        Index("ix_checkin_rounds_status_opened", "status", "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys on this table, deliberately: each costs a lookup per row when a tick opens
    # 100,000 rounds in one statement (~1 s on PostgreSQL). Rounds are an append-mostly log; plans are
    # never deleted (unenrolling deactivates them) and the UNIQUE key ties a round to its plan.
    plan_id: Mapped[int] = mapped_column(BigInteger)
    # Copies of the plan's resident and committee, and the elder's account when the round opened.
    resident_id: Mapped[int] = mapped_column(BigInteger)
    committee_id: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[int | None] = mapped_column(BigInteger)
    local_date: Mapped[date] = mapped_column(Date)
    status: Mapped[RoundStatus] = mapped_column(Enum(RoundStatus, native_enum=False, length=16))
    opened_at: Mapped[datetime]  # when the prompt was queued; the reminder and alert count from here
    reminded_at: Mapped[datetime | None]
    alerted_at: Mapped[datetime | None]
    answer: Mapped[str | None] = mapped_column(String(8))  # "ok" / "help" / "noreach", the latest answer
    answered_at: Mapped[datetime | None]
    # The plan's answering mode when the round opened, and for a helper mode who was asked, as what
    # (HelperRole; NULL account with role "duty": the committee's on-duty staff), when, reminded when.
    mode: Mapped[AnswerMode] = mapped_column(Enum(AnswerMode, native_enum=False, length=16), default=AnswerMode.self,
                                             server_default=AnswerMode.self.value)
    helper_account_id: Mapped[int | None] = mapped_column(BigInteger)
    helper_role: Mapped[str | None] = mapped_column(String(16))
    helper_asked_at: Mapped[datetime | None]
    helper_reminded_at: Mapped[datetime | None]
    # Who gave the latest answer: "self" (the elder) or "helper" (the account answering for them).
    answered_by_account_id: Mapped[int | None] = mapped_column(BigInteger)
    answer_via: Mapped[str | None] = mapped_column(String(8))
    # Which tick call touched the row last: the follow-up statement of a set-based step (queue the
    # prompts or reminders) picks exactly the rows its own step inserted or updated. Not indexed (every
    # index costs when 100,000 rounds open at once): the follow-up finds them by (status, opened_at).
    tick_token: Mapped[str | None] = mapped_column(String(32))


class Alert(Base):
    """An escalation about one round (at most one per round; re-opened if the elder asks for help)."""

    __tablename__ = "checkin_alerts"
    __table_args__ = (Index("ix_checkin_alerts_status_level_at", "status", "level_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("checkin_rounds.id", ondelete="CASCADE"), unique=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"), index=True)
    reason: Mapped[AlertReason] = mapped_column(Enum(AlertReason, native_enum=False, length=16))
    status: Mapped[AlertStatus] = mapped_column(Enum(AlertStatus, native_enum=False, length=16))
    level: Mapped[int] = mapped_column(SmallInteger, default=AlertLevel.committee)
    generation: Mapped[int] = mapped_column(SmallInteger, default=1)  # +1 each time it is re-opened
    opened_at: Mapped[datetime]
    level_at: Mapped[datetime]  # when the current level was told; the ack timeout counts from here
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    resolve_reminded_at: Mapped[datetime | None]
    resolve_reminders: Mapped[int] = mapped_column(SmallInteger, default=0)
    resolved_at: Mapped[datetime | None]
    resolved_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    outcome: Mapped[AlertOutcome | None] = mapped_column(Enum(AlertOutcome, native_enum=False, length=16))


class RoundEvent(Base):
    """The round's history: who was told what, when, and who did what."""

    __tablename__ = "checkin_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("checkin_rounds.id", ondelete="CASCADE"), index=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("checkin_alerts.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    # Account ids as they were (no foreign key: the history outlives a /forget, and the prompts'
    # events are written 100,000 at a time).
    actor_account_id: Mapped[int | None] = mapped_column(BigInteger)
    target_account_id: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[dict | None] = mapped_column(JSON)


class EmergencyContact(Base):
    """A family member's account, an escalation target for this one elder only."""

    __tablename__ = "checkin_contacts"
    __table_args__ = (UniqueConstraint("resident_id", "account_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    added_via: Mapped[str] = mapped_column(String(16))  # "elder" / "staff": who issued the invite
    created_at: Mapped[datetime]


class FamilyInvite(Base):
    """A one-time deep link (``?start=fam_<code>``) that makes its opener an emergency contact."""

    __tablename__ = "checkin_family_invites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)  # HMAC-SHA256 hex; the code is shown once
    issued_by: Mapped[str] = mapped_column(String(16))  # "elder" / "staff"
    created_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))


class HelperHandover(Base):
    """A helper away for a period (local dates, inclusive): their plans of one committee go to a
    substitute, or to the committee's on-duty staff when there is none. Overlapping hand-overs are
    never both live: a new one cancels the ones it overlaps."""

    __tablename__ = "checkin_handovers"
    __table_args__ = (Index("ix_checkin_handovers_helper_ends", "helper_account_id", "ends_on"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    helper_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"), index=True)
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    substitute_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None]


class HelperInvite(Base):
    """A one-time deep link (``?start=hlp_<code>``) that makes its opener the helper of one plan."""

    __tablename__ = "checkin_helper_invites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("checkin_plans.id", ondelete="CASCADE"), index=True)
    mode: Mapped[AnswerMode] = mapped_column(Enum(AnswerMode, native_enum=False, length=16))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)  # HMAC-SHA256 hex; the code is shown once
    created_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))


class WeeklyReportClaim(Base):
    """One row per committee and week: the process that inserts it sends that week's report."""

    __tablename__ = "checkin_weekly_reports"
    __table_args__ = (UniqueConstraint("committee_id", "week_start"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"))
    week_start: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime]
    recipients: Mapped[int] = mapped_column(Integer, default=0)
