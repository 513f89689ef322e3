"""The elder's side of check-ins: answering a round, and the /checkin menu (time, pause, resume)."""

from __future__ import annotations

from datetime import date, datetime

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.checkins.common import refusal, refusal_html
from handlers.checkins.family import show_family
from notifications.callbacks import CheckinCb, CheckinMenuCb
from notifications.messages import checkins as views
from notifications.render import t, to_reply_markup
from services import checkins as cs
from services.checkins import CheckinConfig, CheckinError
from services.models import CheckinPlan
from services.scope import Actor

TIME_CHOICES = (7 * 60, 8 * 60, 9 * 60, 10 * 60, 11 * 60, 18 * 60)
PAUSE_CHOICES = (3, 7, 14, 30)


class CheckinForm(StatesGroup):
    time = State()
    pause_until = State()


def router() -> Router:
    r = Router(name="checkins.elder")
    not_command = ~F.text.startswith("/")
    r.callback_query.register(answered, CheckinCb.filter(F.a.in_(set(cs.ANSWERS))))
    r.message.register(checkin_menu, Command("checkin"))
    r.callback_query.register(menu_pressed, CheckinMenuCb.filter())
    r.message.register(time_typed, CheckinForm.time, F.text, not_command)
    r.message.register(pause_typed, CheckinForm.pause_until, F.text, not_command)
    return r


# --- the answer --------------------------------------------------------------------------------

async def answered(query: CallbackQuery, callback_data: CheckinCb, actor: Actor, session: AsyncSession,
                   checkin_config: CheckinConfig, now: datetime) -> None:
    need_help = callback_data.a == "help"
    try:
        await cs.answer(session, actor.account, callback_data.id, need_help=need_help, now=now, cfg=checkin_config)
    except CheckinError as err:
        await query.answer(refusal(err), show_alert=True)
        return
    if need_help:
        text = t("🆘 Help is on the way. The committee staff have been told.")
        buttons = views.answer_buttons(callback_data.id, "ok_now")
    else:
        text = t("😊 Thank you! Have a good day.")
        buttons = views.answer_buttons(callback_data.id, "help")
    await query.answer(str(text))
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=to_reply_markup(buttons))


# --- the /checkin menu ---------------------------------------------------------------------------

def _plan_reply(plan: CheckinPlan, today: date):
    paused = cs.is_paused(plan, today)
    text = views.plan_text(plan.minute_of_day, plan.days, plan.paused_until.isoformat() if paused else None)
    return text, to_reply_markup(views.menu_buttons(paused=paused))


async def checkin_menu(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                       checkin_config: CheckinConfig, now: datetime) -> None:
    await state.clear()
    plan = await cs.my_plan(session, actor.account) if actor.is_verified else None
    if plan is None:
        await message.answer(refusal_html(CheckinError("not_enrolled")))
        return
    text, markup = _plan_reply(plan, checkin_config.today(now))
    await message.answer(text, reply_markup=markup)


async def menu_pressed(query: CallbackQuery, callback_data: CheckinMenuCb, actor: Actor, session: AsyncSession,
                       state: FSMContext, checkin_config: CheckinConfig, now: datetime) -> None:
    """Every branch answers the button exactly once: with a refusal, or before replying."""
    plan = await cs.my_plan(session, actor.account) if actor.is_verified else None
    message = query.message if isinstance(query.message, Message) else None
    if plan is None or message is None:
        await query.answer(refusal(CheckinError("not_enrolled")), show_alert=True)
        return
    today = checkin_config.today(now)
    action, value = callback_data.a, callback_data.v
    if action == "t":
        try:
            plan = await cs.set_time(session, actor.account, value, now=now)
        except CheckinError as err:
            await query.answer(refusal(err), show_alert=True)
            return
        await query.answer(views.format_minute(plan.minute_of_day))
        text, markup = _plan_reply(plan, today)
        await message.edit_text(text, reply_markup=markup)
    elif action == "p":
        try:
            plan = await cs.pause_for_days(session, actor.account, value, now=now, cfg=checkin_config)
        except CheckinError as err:
            await query.answer(refusal(err), show_alert=True)
            return
        await query.answer()
        await message.answer(views.paused_text(plan.paused_until.isoformat()))
    elif action == "resume":
        plan = await cs.resume(session, actor.account, now=now)
        await query.answer()
        text, markup = _plan_reply(plan, today)
        await message.answer(t("Welcome back! Daily check-ins are on again.") + "\n" + text, reply_markup=markup)
    elif action == "time":
        await query.answer()
        await message.answer(t("When should I ask you each day?"),
                             reply_markup=to_reply_markup(views.time_buttons(TIME_CHOICES)))
    elif action == "tt":
        await query.answer()
        await state.set_state(CheckinForm.time)
        await message.answer(t("Please type the time, for example 08:30."))
    elif action == "pause":
        await query.answer()
        await message.answer(t("Going away or in hospital? For how long should I not ask?"),
                             reply_markup=to_reply_markup(views.pause_buttons(PAUSE_CHOICES)))
    elif action == "pd":
        await query.answer()
        await state.set_state(CheckinForm.pause_until)
        await message.answer(t("Until which date (inclusive)? For example 2026-12-05 or 12-05."))
    elif action == "family":
        await query.answer()
        await show_family(message, actor, session, checkin_config, now)
    else:
        await query.answer(refusal(CheckinError("not_yours")), show_alert=True)


async def time_typed(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                     checkin_config: CheckinConfig, now: datetime) -> None:
    minute = cs.parse_time(message.text)
    if minute is None:
        await message.answer(refusal_html(CheckinError("bad_time")))
        return
    try:
        plan = await cs.set_time(session, actor.account, minute, now=now)
    except CheckinError as err:
        await message.answer(refusal_html(err))
        return
    await state.clear()
    text, markup = _plan_reply(plan, checkin_config.today(now))
    await message.answer(text, reply_markup=markup)


async def pause_typed(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                      checkin_config: CheckinConfig, now: datetime) -> None:
    until = cs.parse_date(message.text, checkin_config.today(now))
    if until is None:
        await message.answer(t("Please type a date like 2026-12-05 or 12-05."))
        return
    try:
        plan = await cs.pause(session, actor.account, until, now=now, cfg=checkin_config)
    except CheckinError as err:  # still waiting for a date: the elder may type another one
        await message.answer(refusal_html(err))
        return
    await state.clear()
    await message.answer(views.paused_text(plan.paused_until.isoformat()))
