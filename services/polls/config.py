"""The typed configuration of polls, built once at start-up by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


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
        return when.astimezone(self.tz)

    def parse_local(self, text: str) -> datetime | None:
        """``YYYY-MM-DD HH:MM`` on the committees' wall clock, as an aware instant; None if not one."""
        try:
            naive = datetime.strptime(" ".join((text or "").split()), "%Y-%m-%d %H:%M")
        except ValueError:
            return None
        return naive.replace(tzinfo=self.tz)
