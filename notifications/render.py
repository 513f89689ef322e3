"""Turn a neutral outbox payload (see ``services.outbox``) into an aiogram call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiogram import Bot
from aiogram.types import FSInputFile, InlineKeyboardButton, InlineKeyboardMarkup, Message


def to_reply_markup(buttons: Sequence[Sequence[dict[str, str]]] | None) -> InlineKeyboardMarkup | None:
    """``[[{"text", "callback_data" | "url"}, …], …]`` → an inline keyboard, or None for no buttons."""
    if not buttons:
        return None
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=b["text"], callback_data=b.get("callback_data"), url=b.get("url"))
         for b in row]
        for row in buttons
    ])


def _input_file(ref: dict[str, str]) -> str | FSInputFile:
    # A file_id is reused as is (Telegram keeps the file); a path is uploaded.
    return ref["file_id"] if ref.get("file_id") else FSInputFile(ref["path"])


async def send_payload(
    bot: Bot, chat_id: int, payload: dict[str, Any], *, request_timeout: int | None = None
) -> Message:
    """Send one payload: a photo or document (text as caption) or a text message."""
    markup = to_reply_markup(payload.get("buttons"))
    parse_mode = payload.get("parse_mode")
    text = payload.get("text") or ""
    if payload.get("photo"):
        return await bot.send_photo(
            chat_id, _input_file(payload["photo"]), caption=text or None, parse_mode=parse_mode,
            reply_markup=markup, request_timeout=request_timeout)
    if payload.get("document"):
        return await bot.send_document(
            chat_id, _input_file(payload["document"]), caption=text or None, parse_mode=parse_mode,
            reply_markup=markup, request_timeout=request_timeout)
    return await bot.send_message(
        chat_id, text, parse_mode=parse_mode, reply_markup=markup, request_timeout=request_timeout)
