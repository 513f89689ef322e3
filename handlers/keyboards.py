"""Small keyboard builders shared by handlers.

Button texts are plain text (Telegram never parses them as HTML): pass ``_()`` strings and raw names
here, never ``t()`` output, or a name like ``A & B`` would show as ``A &amp; B``.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)


def inline(rows: Sequence[Sequence[tuple[str, str]]]) -> InlineKeyboardMarkup:
    """Rows of (text, callback_data); build callback data with ``notifications.callbacks``."""
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=text, callback_data=data) for text, data in row] for row in rows
    ])


def contact_keyboard(text: str) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text=text, request_contact=True)]],
                               resize_keyboard=True, one_time_keyboard=True)


REMOVE = ReplyKeyboardRemove()
