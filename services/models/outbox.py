"""The outbox: every message that leaves the process is first a row here (see ARCHITECTURE.md)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Enum, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, BigId


class OutboxStatus(enum.StrEnum):
    pending = "pending"  # waiting for its not_before and a sender
    sending = "sending"  # claimed by a sender until claimed_until (a lease; expired → claimable again)
    sent = "sent"
    failed = "failed"  # gave up after retries, or a permanent error; last_error says why
    unreachable = "unreachable"  # 403: the user blocked the bot
    cancelled = "cancelled"


FINAL_STATUSES = (OutboxStatus.sent, OutboxStatus.failed, OutboxStatus.unreachable, OutboxStatus.cancelled)


class OutboxMessage(Base):
    """One message to one chat, with a neutral payload (no aiogram types; see services.outbox)."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The claim query: WHERE status='pending' AND not_before <= now ORDER BY priority, not_before, id.
        Index("ix_outbox_claim", "status", "priority", "not_before", "id"),
        Index("ix_outbox_ref", "ref_type", "ref_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    # No foreign key: its per-row check was a third of a 100,000-prompt tick on PostgreSQL. An erased
    # account's rows are detached and cancelled by services.privacy.forget instead.
    account_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    priority: Mapped[int] = mapped_column(SmallInteger)  # services.outbox.Priority: 0 alert … 3 broadcast
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[OutboxStatus] = mapped_column(
        Enum(OutboxStatus, native_enum=False, length=16), default=OutboxStatus.pending)
    not_before: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    # When the payload (text, names, phone numbers of an alert) was blanked, the retention period
    # after the message was made (services.outbox.redact_finished); the delivery record stays.
    redacted_at: Mapped[datetime | None]
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    ref_type: Mapped[str | None] = mapped_column(String(32))
    ref_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
