"""One clock for the whole process: the middleware, the sender and every tick ask it for ``now``.

Production uses :func:`system_clock`; tests and the demo inject a :class:`ManualClock` and move
time forward instead of sleeping or rewriting rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

Clock = Callable[[], datetime]

WALL_CLOCK_FORMAT = "%Y-%m-%d %H:%M"


def local_time(when: datetime, tz: tzinfo) -> datetime:
    """``when`` on the wall clock of zone ``tz``."""
    return when.astimezone(tz)


def parse_local_time(text: str, tz: tzinfo) -> datetime | None:
    """``YYYY-MM-DD HH:MM`` (spaces collapsed) on the wall clock of ``tz``, as an aware instant;
    None if the text is not one."""
    try:
        naive = datetime.strptime(" ".join((text or "").split()), WALL_CLOCK_FORMAT)
    except ValueError:
        return None
    return naive.replace(tzinfo=tz)


def system_clock() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until told to move (``advance``/``set``)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or system_clock()

    def __call__(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` and return the new time."""
        self._now += delta
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (aware)."""
        if when.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = when
