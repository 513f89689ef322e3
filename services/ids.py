"""Database ids that arrive from outside (callback data, typed commands) are bounded here.

Every primary key is a signed 64-bit integer (BIGINT; SQLite's INTEGER). A larger number from a
forged button or a typed command would not fail politely: the drivers raise ``OverflowError`` when
it is bound. So a value from outside is checked with :func:`is_db_id` / :func:`parse_db_id` in the
service before any query, and typed callback data declares its ids as :data:`DbId`, so a forged
one does not even unpack (aiogram then treats the button as not ours: "no longer valid").
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MAX_DB_ID = 2**63 - 1
MAX_ID_DIGITS = len(str(MAX_DB_ID))  # 19

# ``0`` means "none" in callback data defaults (``VerifyCb.id``); a real id is at least 1.
DbId = Annotated[int, Field(ge=0, le=MAX_DB_ID)]

__all__ = ["MAX_DB_ID", "MAX_ID_DIGITS", "DbId", "is_db_id", "parse_db_id"]


def is_db_id(value: object) -> bool:
    """Whether ``value`` can be the primary key of a row (an int in 1 … 2⁶³−1, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_DB_ID


def parse_db_id(text: str | None) -> int | None:
    """An id typed by a person (``#12``, ``12``), or None when it is not one (too long, not digits)."""
    value = (text or "").strip().removeprefix("#")
    if not value.isascii() or not value.isdigit() or len(value) > MAX_ID_DIGITS:
        return None
    number = int(value)
    return number if is_db_id(number) else None
