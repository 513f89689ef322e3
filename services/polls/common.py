"""What every poll module shares: the refusal type and the outbox references."""

from __future__ import annotations

from typing import Any

REF_POLL = "poll"  # outbox ref_type of announcements, reminders and results (ref_id = poll id)


class PollError(Exception):
    """A refusal with a machine-readable reason; nothing was changed (handlers word it politely).

    Reasons of a vote: ``no_poll``, ``not_verified``, ``not_eligible`` (``eligible`` = the expression),
    ``not_owner``, ``no_household``, ``not_open``, ``closed``, ``bad_option``, ``household_voted``,
    ``final``, ``too_many`` (``limit``); of a ballot list: ``secret``. Of a new poll: ``bad_question``,
    ``bad_options``, ``bad_option_text``, ``bad_multiple``, ``bad_rule``, ``bad_fraction``,
    ``bad_expression`` (``error``), ``bad_times``, ``bad_combination`` (``what``), ``not_committee``, ``not_staff``.
    """

    def __init__(self, reason: str, **info: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.info = info
