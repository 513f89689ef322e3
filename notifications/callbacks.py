"""Typed callback data. Callback data carries ids, never authority: handlers re-check the actor."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class LangCb(CallbackData, prefix="lang"):
    code: str


class MenuCb(CallbackData, prefix="menu"):
    item: str
