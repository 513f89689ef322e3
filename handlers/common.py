"""/help, /lang, /menu, the welcome text, and noting a person who blocks the bot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from aiogram import F, Router
from aiogram.filters import KICKED, ChatMemberUpdatedFilter, Command, CommandObject
from aiogram.types import CallbackQuery, ChatMemberUpdated, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.commands import (
    ALL,
    ELDER,
    HELPER,
    RESIDENT,
    STAFF,
    audiences,
    audiences_of,
    commands_for,
    publish_for_actor,
)
from notifications.callbacks import LangCb, MenuCb
from notifications.format import LANGUAGE_NAMES, person_name
from notifications.render import Markup, render_template, t
from services.accounts import note_blocked, set_account_locale
from services.i18n import N_, _, set_locale
from services.scope import Actor


def router() -> Router:
    r = Router(name="common")
    r.message.register(help_command, Command("help"))
    r.message.register(lang_command, Command("lang"))
    r.callback_query.register(lang_chosen, LangCb.filter())
    r.message.register(menu_command, Command("menu"))
    r.callback_query.register(menu_chosen, MenuCb.filter())
    r.my_chat_member.register(blocked, ChatMemberUpdatedFilter(member_status_changed=KICKED),
                              F.chat.type == "private")
    return r


async def blocked(event: ChatMemberUpdated, actor: Actor, session: AsyncSession, now: datetime) -> None:
    """The person blocked the bot: nothing can reach them until they write again (any update of
    theirs, unblocking included, clears it: ``services.accounts.touch_actor``), so notices, digests and
    policy offers leave them out and their audience counts say so at once, not after a failed send.
    Check-ins still send (the prompt comes back "blocked" and raises the alert, as before)."""
    if actor.account is not None:
        await note_blocked(session, actor.account, now)


def welcome_text(actor: Actor, first_name: str | None, last_name: str | None = None) -> Markup:
    """The greeting of /start, with the person's whole name (escaped)."""
    name = person_name(first_name, last_name, fallback=_("neighbour"))
    if actor.is_verified:
        return t("Welcome back, {name}! You are a verified resident of your community.", name=name)
    return t("Welcome to Community Cloud, {name}!\n"
             "I connect residents with their neighbourhood committee: notices from the committee, and "
             "daily check-ins for elderly neighbours who live alone.\n"
             "Send /help to see what I can do.", name=name)


def help_text(roles: frozenset[str]) -> Markup:
    return render_template("common/help.html", commands=[(c.name, _(c.description)) for c in commands_for(roles)],
                           verified=RESIDENT in roles, staff=STAFF in roles)


async def help_command(message: Message, actor: Actor, session: AsyncSession,
                       roles: frozenset[str] | None = None) -> None:
    """/help: the commands of the person's audiences (``roles``: already looked up by a menu button)."""
    await message.answer(help_text(roles if roles is not None else await audiences_of(session, actor, as_read=True)))


def lang_keyboard(current: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=("✓ " if code == current else "") + name, callback_data=LangCb(code=code).pack())
        for code, name in LANGUAGE_NAMES.items()
    ]])


LANG_WORDS = {"zh": "zh_Hans", "zh_hans": "zh_Hans", "zh-hans": "zh_Hans", "中文": "zh_Hans", "en": "en",
              "english": "en"}


async def lang_command(message: Message, actor: Actor, session: AsyncSession, command: CommandObject) -> None:
    wanted = (command.args or "").strip().lower()
    if not wanted:
        await message.answer(t("Choose your language:"), reply_markup=lang_keyboard(actor.locale))
        return
    code = LANG_WORDS.get(wanted)
    if code is None:
        await message.answer(t("I know two languages: /lang zh or /lang en."))
        return
    roles = await _switch(message, session, actor, code)
    await message.answer(t("Language set to English."), reply_markup=menu_keyboard(roles))


async def _switch(message: Message, session: AsyncSession, actor: Actor, code: str) -> frozenset[str]:
    actor.locale = await set_account_locale(session, actor.account, code)
    set_locale(actor.locale)
    await publish_for_actor(message.bot, session, actor)  # the "/" list follows the language
    return await audiences_of(session, actor)


async def lang_chosen(query: CallbackQuery, callback_data: LangCb, actor: Actor, session: AsyncSession) -> None:
    if callback_data.code not in LANGUAGE_NAMES or not isinstance(query.message, Message):
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    roles = await _switch(query.message, session, actor, callback_data.code)
    await query.answer(_("Language set to English."))
    await query.message.edit_text(t("Language set to English."), reply_markup=None)
    await query.message.answer(help_text(roles), reply_markup=menu_keyboard(roles))


# --- the main menu: a button does exactly what its command does --------------------------------

MenuRun = Callable[[Message, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MenuItem:
    item: str
    label: str  # an untranslated msgid
    audience: str
    run: MenuRun  # (message, handler data) → runs the command's handler with exactly its arguments


@cache  # built on first use (the handlers it runs import this module)
def _menu() -> tuple[MenuItem, ...]:
    from handlers import checkins, discussions, notices, policies, privacy, staff, tags

    return (
        MenuItem("help", N_("❓ Help"), ALL, lambda m, d: help_command(m, d["actor"], d["session"], d["roles"])),
        MenuItem("lang", N_("🌐 Language"), ALL, lambda m, d: lang_menu(m, d["actor"])),
        MenuItem("checkin", N_("☀️ My daily check-in"), ELDER, lambda m, d: checkins.checkin_menu(
            m, actor=d["actor"], session=d["session"], state=d["state"], checkin_config=d["checkin_config"],
            now=d["now"])),
        MenuItem("family", N_("👪 Family contacts"), ELDER, lambda m, d: checkins.family_command(
            m, actor=d["actor"], session=d["session"], checkin_config=d["checkin_config"], now=d["now"])),
        MenuItem("helping", N_("🧑‍🤝‍🧑 Elders I answer for"), HELPER, lambda m, d: checkins.helping(
            m, actor=d["actor"], session=d["session"], checkin_config=d["checkin_config"], now=d["now"])),
        MenuItem("mydata", N_("📄 My data"), ALL, lambda m, d: privacy.mydata(
            m, actor=d["actor"], session=d["session"], config=d["config"], now=d["now"])),
        MenuItem("pending", N_("🗂 Verification queue"), STAFF, lambda m, d: staff.pending(m, d["actor"], d["session"])),
        MenuItem("whois", N_("🔎 Find a resident"), STAFF, lambda m, d: staff.ask_whois(m, d["state"])),
        MenuItem("notice", N_("📢 New notice"), STAFF, lambda m, d: notices.start_compose(m, d["state"])),
        MenuItem("notices", N_("🗞 Recent notices"), STAFF, lambda m, d: notices.list_command(
            m, d["actor"], d["session"])),
        MenuItem("tags", N_("🏷 Tag dictionary"), STAFF, lambda m, d: tags.list_tags(m, d["actor"], d["session"])),
        MenuItem("segments", N_("👥 Saved segments"), STAFF, lambda m, d: tags.segments_list(
            m, d["actor"], d["session"], d["now"])),
        MenuItem("checkins", N_("📋 Today's check-ins"), STAFF, lambda m, d: checkins.show_board(
            m, actor=d["actor"], session=d["session"], checkin_config=d["checkin_config"], now=d["now"])),
        MenuItem("alerts", N_("🔔 Open alerts"), STAFF, lambda m, d: checkins.show_alerts(
            m, actor=d["actor"], session=d["session"], checkin_config=d["checkin_config"])),
        MenuItem("enrol", N_("➕ Enrol in check-ins"), STAFF, lambda m, d: checkins.enrol(
            m, command=CommandObject(prefix="/", command="checkin_enrol"), actor=d["actor"], session=d["session"],
            bot=d["bot"], checkin_config=d["checkin_config"], config=d["config"], now=d["now"])),
        MenuItem("benefits", N_("🎁 Benefits for me"), ALL, lambda m, d: policies.benefits.start(
            m, actor=d["actor"], session=d["session"], state=d["state"], now=d["now"], config=d["config"])),
        MenuItem("topics", N_("🗣 Discussions"), ALL, lambda m, d: discussions.residents.list_command(
            m, actor=d["actor"], session=d["session"], discussion_config=d["discussion_config"])),
        MenuItem("topics_review", N_("🧐 Discussions to review"), STAFF, lambda m, d: discussions.staff.review(
            m, actor=d["actor"], session=d["session"], discussion_config=d["discussion_config"])),
        MenuItem("policies", N_("📑 Policy matching"), STAFF, lambda m, d: policies.staff.match(
            m, command=CommandObject(prefix="/", command="policy_match"), actor=d["actor"], session=d["session"],
            now=d["now"], config=d["config"], policy_config=d["policy_config"])),
    )


def menu_items(roles: frozenset[str]) -> list[MenuItem]:
    return [i for i in _menu() if i.audience in roles]


def menu_keyboard(roles: frozenset[str] | Actor) -> InlineKeyboardMarkup:
    if not isinstance(roles, frozenset):
        roles = audiences(roles)
    buttons = [InlineKeyboardButton(text=_(i.label), callback_data=MenuCb(item=i.item).pack())
               for i in menu_items(roles)]
    return InlineKeyboardMarkup(inline_keyboard=[buttons[i:i + 2] for i in range(0, len(buttons), 2)])


async def menu_command(message: Message, actor: Actor, session: AsyncSession) -> None:
    await message.answer(t("Main menu"), reply_markup=menu_keyboard(await audiences_of(session, actor, as_read=True)))


async def lang_menu(message: Message, actor: Actor) -> None:
    await message.answer(t("Choose your language:"), reply_markup=lang_keyboard(actor.locale))


async def menu_chosen(query: CallbackQuery, callback_data: MenuCb, actor: Actor, session: AsyncSession,
                      **data: Any) -> None:
    """Run the command behind a menu button, re-checking that this actor may use it now."""
    roles = await audiences_of(session, actor, as_read=True)
    allowed = {i.item: i for i in menu_items(roles)}
    item = allowed.get(callback_data.item)
    if item is None or not isinstance(query.message, Message):
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    await query.answer()
    await item.run(query.message, {**data, "actor": actor, "session": session, "roles": roles})
