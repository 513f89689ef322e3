"""Small typed helpers over SQLAlchemy results."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, Result

__all__ = ["rowcount"]


def rowcount(result: Result[Any]) -> int:
    """How many rows an ``INSERT``/``UPDATE``/``DELETE`` run through ``session.execute`` touched.

    ``AsyncSession.execute`` is typed as returning a ``Result``; for a DML statement it is the
    driver's ``CursorResult``, the one that knows ``rowcount``. Anything else is a programming error.
    """
    if not isinstance(result, CursorResult):
        raise TypeError(f"rowcount needs the result of an INSERT, UPDATE or DELETE, not {type(result).__name__}")
    return result.rowcount
