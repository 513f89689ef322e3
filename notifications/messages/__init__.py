"""Outbox messages that need more than a template: text *and* keyboards, by message name.

Each feature module exposes ``MESSAGES: dict[str, MessageBuilder]``; a builder takes the data a
service stored (plain JSON) and returns :class:`notifications.render.Rendered`. Keyboards are made
from the typed ``CallbackData`` in ``notifications.callbacks``, never from strings in services.
"""

from __future__ import annotations

from notifications.messages import checkins, discussions, notices, policies, polls, verification
from notifications.render import MessageBuilder

MESSAGES: dict[str, MessageBuilder] = {**checkins.MESSAGES, **notices.MESSAGES, **verification.MESSAGES,
                                     **policies.MESSAGES, **polls.MESSAGES, **discussions.MESSAGES}
