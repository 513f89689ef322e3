"""The typed configuration of daily check-ins, built once at start-up by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class CheckinConfig:
    """Durations of the ladder, the committees' clock zone, and the key family links are hashed with.

    ``bot.checkin_jobs.checkin_config(settings)`` makes the one instance a process uses; handlers get
    it as ``checkin_config``, ticks and the sender's listener are given it. Services never read
    settings.
    """

    reminder_after: timedelta = timedelta(minutes=30)
    escalate_after: timedelta = timedelta(minutes=90)
    ack_timeout: timedelta = timedelta(minutes=30)
    resolve_timeout: timedelta = timedelta(hours=4)
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    default_locale: str = "zh_Hans"
    secret_key: str = ""  # family invite codes are stored as HMACs under this key
    family_invite_ttl: timedelta = timedelta(days=7)
    weekly_report_hour: int = 8  # Monday, local time: last week's reports go out from this hour

    def __post_init__(self) -> None:
        if not timedelta(0) < self.reminder_after < self.escalate_after:
            raise ValueError("the reminder must come after the prompt and before the alert")
        if self.ack_timeout <= timedelta(0) or self.resolve_timeout <= timedelta(0):
            raise ValueError("the alert timeouts must be positive")

    def local(self, now: datetime) -> datetime:
        """``now`` on the committees' wall clock."""
        return now.astimezone(self.tz)

    def today(self, now: datetime) -> date:
        """The local date at ``now`` (rounds belong to local dates, not UTC ones)."""
        return self.local(now).date()
