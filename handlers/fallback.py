"""Last router: anything no feature claimed gets a polite pointer, never silence."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from handlers.commands import COMMANDS, STAFF
from notifications.render import t
from services.i18n import _


def router() -> Router:
    r = Router(name="fallback")
    staff_commands = [c.name for c in COMMANDS if c.audience == STAFF]
    r.message.register(staff_only, Command(*staff_commands))
    r.message.register(unknown_command, F.text.startswith("/"))
    r.message.register(anything_else)
    r.callback_query.register(stale_button)
    return r


async def staff_only(message: Message) -> None:
    await message.answer(t("This command is for committee staff only."))


async def unknown_command(message: Message) -> None:
    await message.answer(t("Sorry, I don't know that command. Send /help to see what I can do."))


async def anything_else(message: Message) -> None:
    await message.answer(t("I didn't understand that. Use /menu or send /help to see what I can do."))


async def stale_button(query: CallbackQuery) -> None:
    await query.answer(_("This button is no longer valid."), show_alert=True)
