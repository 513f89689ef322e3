"""/start without a known payload, /help, /lang, /menu."""

from __future__ import annotations

import inspect
from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.commands import commands_for
from notifications.callbacks import LangCb, MenuCb
from services.accounts import set_account_locale
from services.i18n import N_, _, set_locale
from services.scope import Actor

LANGUAGE_NAMES = {"zh_Hans": "简体中文", "en": "English"}


def router() -> Router:
    r = Router(name="common")
    r.message.register(help_command, Command("help"))
    r.message.register(lang_command, Command("lang"))
    r.callback_query.register(lang_chosen, LangCb.filter())
    r.message.register(menu_command, Command("menu"))
    r.callback_query.register(menu_chosen, MenuCb.filter())
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


# (command, label, who sees it): a menu button does exactly what its command does.
MENU = (
    ("help", N_("❓ Help"), "all"),
    ("lang", N_("🌐 Language"), "all"),
    ("checkin", N_("☀️ My daily check-in"), "resident"),
    ("family", N_("👪 Family contacts"), "resident"),
    ("mydata", N_("📄 My data"), "all"),
    ("pending", N_("🗂 Verification queue"), "staff"),
    ("notice", N_("📢 New notice"), "staff"),
    ("checkins", N_("📋 Today's check-ins"), "staff"),
    ("alerts", N_("🔔 Open alerts"), "staff"),
)


def _menu_items(actor: Actor) -> list[tuple[str, str]]:
    allowed = {"all", *(("resident",) if actor.is_verified else ()), *(("staff",) if actor.is_staff else ())}
    return [(cmd, label) for cmd, label, who in MENU if who in allowed]


def menu_keyboard(actor: Actor) -> InlineKeyboardMarkup:
    items = [InlineKeyboardButton(text=_(label), callback_data=MenuCb(item=cmd).pack())
             for cmd, label in _menu_items(actor)]
    return InlineKeyboardMarkup(inline_keyboard=[items[i:i + 2] for i in range(0, len(items), 2)])


async def menu_command(message: Message, actor: Actor) -> None:
    await message.answer(_("Main menu"), reply_markup=menu_keyboard(actor))


def _menu_targets() -> dict[str, object]:
    from handlers import checkins, notices, privacy, staff

    return {"help": help_command, "lang": lang_menu, "checkin": checkins.checkin_menu, "family": checkins.family,
            "mydata": privacy.mydata, "pending": staff.pending, "notice": notices.start_compose,
            "checkins": checkins.show_board, "alerts": checkins.show_alerts}


async def lang_menu(message: Message, actor: Actor) -> None:
    await message.answer(_("Choose your language:"), reply_markup=lang_keyboard(actor.locale))


async def menu_chosen(query: CallbackQuery, callback_data: MenuCb, actor: Actor, **data) -> None:
    """Run the command behind a menu button, re-checking that this actor may use it."""
    allowed = dict(_menu_items(actor))
    target = _menu_targets().get(callback_data.item)
    if target is None or callback_data.item not in allowed or query.message is None:
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    await query.answer()
    kwargs = {"actor": actor, **data}
    params = inspect.signature(target).parameters
    await target(query.message, **{k: v for k, v in kwargs.items() if k in params})
