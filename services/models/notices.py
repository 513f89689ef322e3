"""Notices (通知公告): what a cadre broadcasts, and who received and confirmed it."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, BigId


class NoticeStatus(enum.StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    sent = "sent"  # released to the outbox; delivery is tracked per recipient there
    cancelled = "cancelled"


class Notice(Base):
    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_status_send_at", "status", "send_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"), index=True)
    author_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    media_kind: Mapped[str | None] = mapped_column(String(16))  # photo / document
    media_file_id: Mapped[str | None] = mapped_column(String(200))
    audience_kind: Mapped[str] = mapped_column(String(16))  # committee / tag / segment
    audience_ref: Mapped[str | None] = mapped_column(String(100))  # tag code or segment id
    audience_expression: Mapped[str | None] = mapped_column(Text)  # frozen at release
    status: Mapped[NoticeStatus] = mapped_column(Enum(NoticeStatus, native_enum=False, length=16),
                                                 default=NoticeStatus.draft)
    send_at: Mapped[datetime | None]
    released_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    recipients: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]


class NoticeRecipient(Base):
    __tablename__ = "notice_recipients"
    __table_args__ = (UniqueConstraint("notice_id", "account_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    received_at: Mapped[datetime | None]
