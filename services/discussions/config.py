"""The typed configuration of discussions, built once at start-up by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.clock import local_time, parse_local_time


@dataclass(frozen=True, slots=True)
class DiscussionConfig:
    """How often a subscriber hears of a topic, how many reports hide a comment, and the limits of
    what one resident may write. ``bot.app.discussion_config(settings)`` makes a process's instance."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    default_locale: str = "zh_Hans"
    digest_interval: timedelta = timedelta(minutes=30)  # at most one digest per topic and subscriber
    reports_to_hide: int = 3  # distinct residents' reports that hide a comment pending review
    max_title: int = 120
    max_body: int = 2000  # of a topic and of a comment
    max_reason: int = 200
    comment_window: timedelta = timedelta(minutes=10)
    comments_per_window: int = 5  # per resident
    topics_per_day: int = 3  # per resident (staff are not limited)
    topics_page: int = 5  # topics per page of /topics
    comments_page: int = 5  # top-level comments per page of a topic (with their replies)
    digest_comments: int = 10  # comments quoted in one digest; the rest are counted
    max_mute: timedelta = timedelta(days=366)

    def __post_init__(self) -> None:
        if self.reports_to_hide < 1 or self.digest_interval < timedelta(0):
            raise ValueError("reports_to_hide must be at least 1 and digest_interval not negative")

    def local(self, when: datetime) -> datetime:
        return local_time(when, self.tz)

    def parse_local(self, text: str) -> datetime | None:
        """``YYYY-MM-DD HH:MM`` on the committees' wall clock, as an aware instant; None if not one."""
        return parse_local_time(text, self.tz)
