"""What every discussion module shares: the refusal type, the outbox reference, who wrote something."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REF_TOPIC = "topic"  # outbox ref_type of digests and decisions (ref_id = topic id)


class DiscussionError(Exception):
    """A refusal with a machine-readable reason; nothing was changed (handlers word it politely).

    Reasons: ``not_verified``, ``not_staff``, ``no_topic`` (missing, another committee's, another
    building's, or a forged id), ``no_comment`` (missing, hidden or not of this topic), ``pending``
    (the topic awaits approval), ``locked``, ``closed`` (rejected), ``muted`` (``until``), ``too_long``
    (``limit``), ``empty``, ``too_many_comments`` (``limit``, ``minutes``), ``too_many_topics``
    (``limit``), ``own_comment``, ``reported`` (already, by this resident), ``bad_page``,
    ``not_pending``, ``already`` (hidden / visible / locked / open already), ``bad_reason``
    (``limit``), ``bad_until``, ``bad_scope``, ``not_committee`` (``code``).
    """

    def __init__(self, reason: str, **info: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.info = info


@dataclass(frozen=True, slots=True)
class Author:
    """Who wrote a topic or comment, as a reader may see it: residents by their building only,
    staff by role. ``name`` (the registry's name) is filled only for staff readers."""

    role: str | None  # a staff role when staff wrote it
    building: str | None  # the resident's building when written (neutral name)
    name: str | None = None  # staff readers only
    account_id: int | None = None  # staff readers only

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "building": self.building}
