"""Typed callback data of every button, one module so prefixes cannot collide.

Callback data carries ids, never authority: handlers re-check the actor, services validate values.
Keyboards are built from these in handlers and in ``notifications.messages``, never from strings.
"""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class LangCb(CallbackData, prefix="lang"):
    code: str


class MenuCb(CallbackData, prefix="menu"):
    item: str
