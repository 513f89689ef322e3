"""/start without a known payload, /help, /lang, /menu."""

from __future__ import annotations

from html import escape

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.callbacks import LangCb, MenuCb
from handlers.commands import commands_for
from services.accounts import set_account_locale
from services.i18n import _, set_locale
from services.scope import Actor

LANGUAGE_NAMES = {"zh_Hans": "简体中文", "en": "English"}


def router() -> Router:
    r = Router(name="common")
    r.message.register(help_command, Command("help"))
    r.message.register(lang_command, Command("lang"))
    r.callback_query.register(lang_chosen, LangCb.filter())
    r.message.register(menu_command, Command("menu"))
    r.callback_query.register(menu_chosen, MenuCb.filter(F.item == "help"))
    return r


def welcome_text(actor: Actor, first_name: str) -> str:
    name = escape(first_name) if first_name else _("neighbour")
    if actor.is_verified:
        return _("Welcome back, {name}! You are a verified resident of your community.").format(name=name)
    return _(
        "Welcome to Community Cloud, {name}!\n"
        "I connect residents with their neighbourhood committee: notices, discussions and polls, "
        "benefits you may qualify for, and daily check-ins for elderly neighbours.\n"
        "Send /help to see what I can do."
    ).format(name=name)


def help_text(actor: Actor) -> str:
    lines = [_("<b>Commands</b>")]
    lines += [f"/{c.name} — {_(c.description)}" for c in commands_for(actor)]
    return "\n".join(lines)


async def help_command(message: Message, actor: Actor) -> None:
    await message.answer(help_text(actor))


def lang_keyboard(current: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=("✓ " if code == current else "") + name,
                             callback_data=LangCb(code=code).pack())
        for code, name in LANGUAGE_NAMES.items()
    ]])


async def lang_command(message: Message, actor: Actor, session: AsyncSession, command: CommandObject) -> None:
    wanted = (command.args or "").strip().lower()
    if wanted:
        code = {"zh": "zh_Hans", "zh_hans": "zh_Hans", "中文": "zh_Hans", "en": "en", "english": "en"}.get(wanted)
        if code is None:
            await message.answer(_("I know two languages: /lang zh or /lang en."))
            return
        await _switch(session, actor, code)
        await message.answer(_("Language set to English."), reply_markup=menu_keyboard(actor))
        return
    await message.answer(_("Choose your language:"), reply_markup=lang_keyboard(actor.locale))


async def _switch(session: AsyncSession, actor: Actor, code: str) -> None:
    actor.locale = await set_account_locale(session, actor.account, code)
    set_locale(actor.locale)


async def lang_chosen(query: CallbackQuery, callback_data: LangCb, actor: Actor, session: AsyncSession) -> None:
    if callback_data.code not in LANGUAGE_NAMES:
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    await _switch(session, actor, callback_data.code)
    await query.answer(_("Language set to English."))
    if query.message:
        await query.message.edit_text(_("Language set to English."), reply_markup=None)
        await query.message.answer(help_text(actor), reply_markup=menu_keyboard(actor))


def menu_keyboard(actor: Actor) -> InlineKeyboardMarkup:
    rows = [[InlineKeyboardButton(text=_("Help"), callback_data=MenuCb(item="help").pack())]]
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def menu_command(message: Message, actor: Actor) -> None:
    await message.answer(_("Main menu"), reply_markup=menu_keyboard(actor))


async def menu_chosen(query: CallbackQuery, actor: Actor) -> None:
    await query.answer()
    if query.message:
        await query.message.answer(help_text(actor))
