"""Family members: the elder's /family list and invite link, removing a contact, and the
``/start fam_<code>`` deep link that makes its opener an emergency contact."""

from __future__ import annotations

from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.checkins.common import refusal, refusal_html
from notifications.callbacks import ContactCb
from notifications.messages import checkins as views
from notifications.render import t, to_reply_markup
from services import checkins as cs
from services.checkins import CheckinConfig, CheckinError
from services.scope import Actor

MAX_CHOICES = 10


def router() -> Router:
    r = Router(name="checkins.family")
    r.message.register(family_start, CommandStart(deep_link=True, magic=F.args.startswith(cs.INVITE_PREFIX)))
    r.message.register(family, Command("family"))
    r.callback_query.register(contact_remove, ContactCb.filter())
    return r


async def invite_link(bot: Bot, code: str) -> str:
    """The deep link a family member opens (``https://t.me/<bot>?start=fam_<code>``)."""
    me = await bot.me()
    return f"https://t.me/{me.username}?start={cs.INVITE_PREFIX}{code}"


async def show_family(message: Message, actor: Actor, session: AsyncSession, checkin_config: CheckinConfig,
                      now: datetime) -> None:
    """The elder's contacts with a remove button each, and a fresh one-time invite link."""
    contacts = await cs.list_contacts(session, actor.resident.id)
    code = await cs.create_family_invite(session, actor.resident.id, issued_by="elder", cfg=checkin_config, now=now,
                                         by_account_id=actor.account_id)
    text = views.family_text([c.name for c in contacts], await invite_link(message.bot, code),
                             checkin_config.family_invite_ttl.days)
    buttons = views.contact_buttons([(c.id, c.name) for c in contacts[:MAX_CHOICES]])
    await message.answer(text, reply_markup=to_reply_markup(buttons))


async def family(message: Message, actor: Actor, session: AsyncSession, checkin_config: CheckinConfig,
                 now: datetime) -> None:
    if not actor.is_verified:
        await message.answer(t("Only verified residents can add emergency contacts. Send /start to join."))
        return
    await show_family(message, actor, session, checkin_config, now)


async def contact_remove(query: CallbackQuery, callback_data: ContactCb, actor: Actor, session: AsyncSession,
                         now: datetime) -> None:
    if not await cs.remove_contact(session, actor.account, callback_data.id, now=now):
        await query.answer(refusal(CheckinError("not_yours")), show_alert=True)
        return
    await query.answer(str(t("Removed.")))
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)


async def family_start(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                       state: FSMContext, checkin_config: CheckinConfig, now: datetime) -> None:
    await state.clear()
    code = (command.args or "").removeprefix(cs.INVITE_PREFIX)
    try:
        resident = await cs.redeem_family_invite(session, actor.account, code, cfg=checkin_config, now=now)
    except CheckinError as err:
        await message.answer(refusal_html(err))
        return
    await message.answer(t(
        "You are now an emergency contact of {name}. I will tell you if they do not answer their daily "
        "check-in or ask for help.\nWe keep only your Telegram name and id for this; send /forget to stop.",
        name=resident.name))
