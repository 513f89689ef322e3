"""The error handler: log with the update id, answer politely in the user's language, carry on."""

from __future__ import annotations

import logging
import traceback

from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent

from notifications.render import plain
from services.config import AppConfig
from services.i18n import DEFAULT_LOCALE, _, normalize_locale, set_locale
from services.scope import Actor
from services.updates import UpdateNotSaved

log = logging.getLogger("bot.errors")


def router() -> Router:
    r = Router(name="errors")
    r.errors.register(on_error)
    return r


async def on_error(event: ErrorEvent, actor: Actor | None = None, config: AppConfig | None = None) -> bool:
    update = event.update
    if actor is None:
        # It failed before the account was read (the database away): answer in the user's Telegram
        # language, not in whatever the process was last set to.
        user = update.callback_query.from_user if update.callback_query else (
            update.message.from_user if update.message else None)
        default = config.default_locale if config is not None else DEFAULT_LOCALE
        set_locale(normalize_locale(user.language_code if user else None, default))
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
