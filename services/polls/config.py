"""The typed configuration of polls, built once at start-up by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.clock import local_time, parse_local_time


@dataclass(frozen=True, slots=True)
class PollConfig:
    """The committees' clock zone (times are typed and shown in it), the reminder's lead time, and
    the bounds of a poll. ``bot.app.poll_config(settings)`` makes the one instance of a process."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    default_locale: str = "zh_Hans"
    reminder_before: timedelta = timedelta(hours=24)  # one reminder this long before closing
    max_duration: timedelta = timedelta(days=366)
    reports_dir: str = ""  # where results charts are drawn (DATA_DIR/reports); "" draws none

    def local(self, when: datetime) -> datetime:
        return local_time(when, self.tz)

    def parse_local(self, text: str) -> datetime | None:
        """``YYYY-MM-DD HH:MM`` on the committees' wall clock, as an aware instant; None if not one."""
        return parse_local_time(text, self.tz)
