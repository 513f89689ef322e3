"""Conversations in progress (aiogram's FSM state and data) when there is no Redis to keep them:
one row per chat and user, so a restart of the one process carries on where each person was
(``bot.conversations.DatabaseStorage``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base


class Conversation(Base):
    """The step a person is at (``state``) and what they have given so far (``data``).

    ``key`` is aiogram's storage key as its Redis storage spells it (``fsm:<bot>:<chat>:<user>``), so
    two bots on one database never read each other's. A row left for FSM_TTL is forgotten.
    """

    __tablename__ = "conversations"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(index=True)
