"""The error handler: log with the update id, answer politely in the user's language, carry on."""

from __future__ import annotations

import logging
import traceback

from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent

from notifications.render import plain
from services.i18n import _
from services.updates import UpdateNotSaved

log = logging.getLogger("bot.errors")


def router() -> Router:
    r = Router(name="errors")
    r.errors.register(on_error)
    return r


async def on_error(event: ErrorEvent) -> bool:
    update = event.update
    # The exception's message may quote user input (phones, ID numbers): log its type and frames only.
    exc = event.exception
    log.error("update %s failed: %s\n%s", update.update_id, type(exc).__name__,
              "".join(traceback.format_tb(exc.__traceback__)).rstrip())
    # Nothing claiming the update's changes went out before they failed to commit (bot.middlewares):
    # say plainly that it did not work, so the user tries again rather than trusting half an answer.
    sorry = (_("Sorry, that did not work: it could not be saved. Please try again in a moment.")
             if isinstance(exc, UpdateNotSaved) else
             _("Sorry, something went wrong on our side. Please try again in a moment."))
    try:
        if update.callback_query:  # an alert is plain text: _(), not t()
            await update.callback_query.answer(sorry, show_alert=True)
        elif update.message:
            await update.message.answer(plain(sorry))
    except TelegramAPIError:
        log.warning("could not tell the user about the failure of update %s", update.update_id)
    return True
