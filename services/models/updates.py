"""Updates already handled: one row per (bot, update id), written in the update's own transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base


class ProcessedUpdate(Base):
    """The marker that bot ``bot_id`` has handled Telegram update ``update_id``.

    It is inserted as the first statement of the update's transaction, so it commits (or rolls back)
    with the update's effects: a redelivered update finds it and is acknowledged without being handled
    again; an update whose transaction failed left none and is handled when it comes back.
    """

    __tablename__ = "processed_updates"
    __table_args__ = (Index("ix_processed_updates_seen_at", "seen_at"),)

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seen_at: Mapped[datetime]
