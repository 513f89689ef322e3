"""/mydata and /forget: a resident's rights over their personal data."""

from __future__ import annotations

import json
from datetime import datetime
from html import escape

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.keyboards import REMOVE, inline
from services import privacy
from services.i18n import _
from services.labels import label
from services.scope import Actor


class ForgetCb(CallbackData, prefix="forget"):
    confirm: bool


def router() -> Router:
    r = Router(name="privacy")
    r.message.register(mydata, Command("mydata"))
    r.message.register(forget, Command("forget"))
    r.callback_query.register(forget_confirmed, ForgetCb.filter(F.confirm))
    r.callback_query.register(forget_cancelled, ForgetCb.filter(~F.confirm))
    return r


async def mydata(message: Message, actor: Actor, session: AsyncSession) -> None:
    data = await privacy.my_data(session, actor)
    lines = [_("<b>What we hold about you</b>")]
    lines += [f"{label(k)}: {escape(v)}" for k, v in privacy.summary_lines(data)]
    if data["resident"] is None:
        lines.append(_("You are not linked to a registry entry."))
    await message.answer("\n".join(lines))
    doc = json.dumps(data, ensure_ascii=False, indent=2).encode()
    await message.answer_document(BufferedInputFile(doc, filename="my-data.json"),
                                  caption=_("The full record as a file."))


async def forget(message: Message) -> None:
    await message.answer(
        _("This unlinks your account and erases your personal data here. Your committee keeps its registry "
          "entry, marked that you withdrew. You can join again later. Continue?"),
        reply_markup=inline([[(_("Yes, delete my data"), ForgetCb(confirm=True).pack()),
                              (_("No, keep it"), ForgetCb(confirm=False).pack())]]))


async def forget_confirmed(query: CallbackQuery, actor: Actor, session: AsyncSession, state: FSMContext,
                           now: datetime) -> None:
    if actor.account is None:
        await query.answer()
        return
    await privacy.forget(session, actor, now)
    await state.clear()
    await query.answer()
    await query.message.edit_text(_("Your data has been deleted. Goodbye, and thank you."), reply_markup=None)
    await query.message.answer(_("Send /start if you want to join again."), reply_markup=REMOVE)


async def forget_cancelled(query: CallbackQuery) -> None:
    await query.answer(_("Nothing was deleted."))
    await query.message.edit_reply_markup(reply_markup=None)
