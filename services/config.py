"""Typed configuration the core use cases need, built once at start-up from the settings.

``bot`` (the composition root) builds these from ``bot.settings.Settings`` and hands them to the
dispatcher (handler data), the sender and the ticks; services and handlers never read settings.
Each feature with settings of its own has its config next to it (``services.checkins.config``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class AppConfig:
    """What every feature may need: the committee's clock zone, locale, keys and invite lifetime."""

    tz: ZoneInfo
    default_locale: str
    secret_key: str
    invite_ttl: timedelta


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """The sender's share of Telegram's rate (per bot token, split across sender processes)."""

    rate: float
    per_chat_rate: float
    senders: int = 1

    @property
    def rate_per_sender(self) -> float:
        return self.rate / self.senders
