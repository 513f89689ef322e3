"""Edits Telegram refuses for what the message already is, done the way the handler meant them.

- An edit that changes nothing is done, not a failure. Telegram refuses to edit a message into what it
  already is ("Bad Request: message is not modified"). That is what a second tap does: two presses of
  a button whose handler takes the buttons away (or sets the text the first press already set) both
  arrive before the first edit is seen, and the second edit finds the message as it wants it. The
  handler then carries on as after any edit (answers the press, says what it says) instead of failing
  into "something went wrong". The outbox's edits follow the same rule (``notifications.render``).
- A new text for a message that has none (a photo, a file: only forged callback data lands on one,
  "there is no text in the message to edit") is sent as a new message with the same buttons.
"""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import EditMessageCaption, EditMessageReplyMarkup, EditMessageText, SendMessage, TelegramMethod

EDITS = (EditMessageText, EditMessageReplyMarkup, EditMessageCaption)
NOT_MODIFIED = "message is not modified"
NO_TEXT = "there is no text in the message to edit"


class EditsThatChangeNothing(BaseRequestMiddleware):
    """A request middleware of the bot's session: "message is not modified" answers an edit with True
    (what the Bot API returns for an edit it has made without returning the message); a text edit of a
    message without text becomes a new message."""

    async def __call__(self, make_request: NextRequestMiddlewareType[Any], bot: Bot,
                       method: TelegramMethod[Any]) -> Any:
        try:
            return await make_request(bot, method)
        except TelegramBadRequest as err:
            if isinstance(method, EDITS) and NOT_MODIFIED in err.message:
                return True
            if isinstance(method, EditMessageText) and NO_TEXT in err.message and method.chat_id is not None:
                return await bot(SendMessage(chat_id=method.chat_id, text=method.text, parse_mode=method.parse_mode,
                                             entities=method.entities, reply_markup=method.reply_markup,
                                             link_preview_options=method.link_preview_options))
            raise
