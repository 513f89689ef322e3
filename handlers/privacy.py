"""/mydata and /forget: a resident's rights over their personal data."""

from __future__ import annotations

import json
from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.keyboards import REMOVE, inline
from notifications.callbacks import ForgetCb
from notifications.format import field_value, role_name
from notifications.messages.checkins import handover_lines, mode_name
from notifications.render import render_template, t
from services import privacy
from services.config import AppConfig
from services.i18n import _
from services.labels import label
from services.scope import Actor
from services.tags import tag_name


class Forget(StatesGroup):
    confirm = State()  # /forget was asked and not answered yet: only then does "Yes" delete anything


def router() -> Router:
    r = Router(name="privacy")
    r.message.register(mydata, Command("mydata"))
    r.message.register(forget, Command("forget"))
    r.callback_query.register(forget_confirmed, Forget.confirm, ForgetCb.filter(F.confirm))
    r.callback_query.register(forget_cancelled, ForgetCb.filter(~F.confirm))
    return r


def mydata_text(summary: privacy.HeldSummary, locale: str, config: AppConfig):
    def rows(fields: list[privacy.HeldField]) -> list[tuple[str, str]]:
        return [(label(f.field), field_value(f.field, f.value, config.tz)) for f in fields]

    return render_template(
        "privacy/mydata.html", account=rows(summary.account),
        resident=rows(summary.resident) if summary.resident is not None else None,
        tags=[tag_name(tag, locale) for tag in summary.tags], separator=_(", "),
        roles=[(role_name(role), region) for role, region in summary.staff_roles],
        helping=[(e.name, e.room, e.committee, mode_name(e.mode)) for e in summary.helping],
        handovers=handover_lines(summary.handovers))


async def mydata(message: Message, actor: Actor, session: AsyncSession, config: AppConfig, now: datetime) -> None:
    data = await privacy.my_data(session, actor, today=now.astimezone(config.tz).date())
    await message.answer(mydata_text(privacy.summary(data), actor.locale, config))
    doc = json.dumps(data, ensure_ascii=False, indent=2).encode()
    await message.answer_document(BufferedInputFile(doc, filename="my-data.json"),
                                  caption=t("The full record as a file."))


async def forget(message: Message, state: FSMContext) -> None:
    await state.set_state(Forget.confirm)
    await message.answer(
        t("This unlinks your account and erases your personal data here. Your committee keeps its registry "
          "entry, marked that you withdrew. Failed verification attempts of the last 24 hours stay, without "
          "your account (the registry entry tried and a keyed hash of the phone number), so that deleting "
          "does not lift the lock on wrong answers. You can join again later. Continue?"),
        reply_markup=inline([[(_("Yes, delete my data"), ForgetCb(confirm=True).pack()),
                              (_("No, keep it"), ForgetCb(confirm=False).pack())]]))


async def forget_confirmed(query: CallbackQuery, actor: Actor, session: AsyncSession, state: FSMContext,
                           now: datetime, config: AppConfig) -> None:
    if actor.account is None:
        await query.answer()
        return
    await privacy.forget(session, actor, now, today=now.astimezone(config.tz).date())
    await state.clear()
    await query.answer()
    await query.message.edit_text(t("Your data has been deleted. Goodbye, and thank you."), reply_markup=None)
    await query.message.answer(t("Send /start if you want to join again."), reply_markup=REMOVE)


async def forget_cancelled(query: CallbackQuery, state: FSMContext) -> None:
    if await state.get_state() == Forget.confirm.state:
        await state.clear()
    await query.answer(_("Nothing was deleted."))
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)
