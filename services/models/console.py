"""The staff console's sign-in links and sessions (only hashes of their tokens are stored)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, BigId


class ConsoleLink(Base):
    """A one-time sign-in link sent by ``/console``: valid once, until ``expires_at``."""

    __tablename__ = "console_links"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the token
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """A signed-in browser (or Mini App): ends on logout, or after ``CONSOLE_SESSION_IDLE`` without a request."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the cookie's token
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    via: Mapped[str] = mapped_column(String(16))  # "link" or "mini_app"
    locale: Mapped[str | None] = mapped_column(String(16))  # the console's language switch; None: the account's
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
