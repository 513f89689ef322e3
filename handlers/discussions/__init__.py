"""Discussions (议事厅) in the bot: /topics, a topic's comments, replies, reports, subscriptions and
/topic_new for residents and staff; moderation commands and proposal buttons for staff."""

from __future__ import annotations

from aiogram import Router

from handlers.discussions import residents, staff


def router() -> Router:
    r = Router(name="discussions")
    r.include_routers(staff.router(), residents.router())
    return r
