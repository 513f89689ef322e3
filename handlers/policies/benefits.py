"""/benefits: what a resident may qualify for, asking only what can still change a result.

Answers of this run live in the conversation state; a verified resident who agreed has them kept
(services.policies); an unverified user is checked anonymously and nothing is stored for them.
"""

from __future__ import annotations

from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.callbacks import BenefitCb, PolicyCaseCb
from notifications.messages import policies as views
from notifications.render import t, to_reply_markup
from services import policies as pol
from services.config import AppConfig
from services.scope import Actor
from services.tags import local_today


class Benefits(StatesGroup):
    asking = State()


def router() -> Router:
    r = Router(name="policies.benefits")
    r.message.register(start, Command("benefits"))
    r.message.register(typed_answer, Benefits.asking, F.text, ~F.text.startswith("/"))
    r.callback_query.register(applied, BenefitCb.filter(F.a == "applied"))
    r.callback_query.register(button, BenefitCb.filter())
    r.callback_query.register(case_button, PolicyCaseCb.filter())
    return r


async def _data(state: FSMContext) -> dict:
    data = await state.get_data()
    return {"answers": data.get("answers") or {}, "skipped": data.get("skipped") or [],
            "keep": data.get("keep"), "asking": data.get("asking")}


async def _step(message: Message, actor: Actor, session: AsyncSession, state: FSMContext, now: datetime,
                config: AppConfig, *, stop: bool = False) -> None:
    """Ask the next question worth asking, or show the results (and end the run)."""
    data = await _data(state)
    check = await pol.check_benefits(session, actor, local_today(now, config.tz),
                                     answers=data["answers"] if not data["keep"] else {}, skipped=data["skipped"])
    question = check.assessment.next_question
    if not stop and question is not None:
        if check.needs_consent and data["keep"] is None:
            await state.set_state(Benefits.asking)
            await state.update_data(asking=None)
            rendered = views.consent_question()
            await message.answer(rendered.text, reply_markup=to_reply_markup(rendered.buttons))
            return
        await state.set_state(Benefits.asking)
        await state.update_data(asking=question.name)
        rendered = views.question(question, remaining=check.assessment.asked_about.get(question.name, 0))
        await message.answer(rendered.text, reply_markup=to_reply_markup(rendered.buttons))
        return
    await state.clear()
    if not check.assessment.results:
        await message.answer(t("No programmes are in the catalogue yet. Please ask your committee."))
        return
    for rendered in views.results(check.assessment, anonymous=check.anonymous, cases=check.cases):
        await message.answer(rendered.text, reply_markup=to_reply_markup(rendered.buttons))


async def start(message: Message, actor: Actor, session: AsyncSession, state: FSMContext, now: datetime,
                config: AppConfig) -> None:
    await state.clear()
    if actor.is_staff and not actor.is_verified:
        await message.answer(t("This checks programmes for you as a resident. Staff: /policy_match CODE."))
    await _step(message, actor, session, state, now, config)


async def _take(message: Message, actor: Actor, session: AsyncSession, state: FSMContext, now: datetime,
                config: AppConfig, field: str, *, choice: int | None = None, text: str | None = None) -> None:
    data = await _data(state)
    if field != data["asking"]:
        await message.answer(t("That question is no longer open. Send /benefits to start again."))
        return
    try:
        name, value, kept = await pol.answer_question(session, actor, field, now=now, keep=bool(data["keep"]),
                                                      choice=choice, text=text)
    except pol.AnswerError as err:
        await message.answer(t("{reason}", reason=str(err)))
        return
    if not kept:
        await state.update_data(answers={**data["answers"], name: value})
    await _step(message, actor, session, state, now, config)


async def typed_answer(message: Message, actor: Actor, session: AsyncSession, state: FSMContext, now: datetime,
                       config: AppConfig) -> None:
    data = await _data(state)
    if data["asking"] is None:
        await message.answer(t("Please choose one of the buttons above."))
        return
    await _take(message, actor, session, state, now, config, data["asking"], text=message.text)


async def button(query: CallbackQuery, callback_data: BenefitCb, actor: Actor, session: AsyncSession,
                 state: FSMContext, now: datetime, config: AppConfig) -> None:
    await query.answer()
    message = query.message
    if message is None:
        return
    if message.reply_markup:
        await message.edit_reply_markup(reply_markup=None)
    data = await _data(state)
    if await state.get_state() != Benefits.asking.state:
        await message.answer(t("That question is no longer open. Send /benefits to start again."))
        return
    match callback_data.a:
        case "ans":
            await _take(message, actor, session, state, now, config, callback_data.f, choice=callback_data.v)
        case "skip":
            if callback_data.f == data["asking"]:
                await state.update_data(skipped=[*data["skipped"], callback_data.f])
            await _step(message, actor, session, state, now, config)
        case "keep":
            if await pol.consent_to_keep(session, actor, data["answers"], now=now):
                await state.update_data(keep=True, answers={})
                await message.answer(t("Thank you. Your answers will be kept; /mydata shows them, "
                                       "/forget deletes them."))
            await _step(message, actor, session, state, now, config)
        case "once":
            await state.update_data(keep=False)
            await _step(message, actor, session, state, now, config)
        case _:
            await _step(message, actor, session, state, now, config, stop=True)


async def applied(query: CallbackQuery, callback_data: BenefitCb, actor: Actor, session: AsyncSession,
                  now: datetime) -> None:
    try:
        _policy, changed = await pol.mark_applied(session, actor, now=now, policy_id=callback_data.p)
    except pol.CaseError as err:
        await query.answer(str(err), show_alert=True)
        return
    await query.answer()
    if query.message:
        if changed:
            await query.message.answer(t("Noted: you have applied. The committee can see it and will follow up."))
        else:
            await query.message.answer(t("You had already told us that you applied."))


async def case_button(query: CallbackQuery, callback_data: PolicyCaseCb, actor: Actor, session: AsyncSession,
                      now: datetime) -> None:
    try:
        if callback_data.a == "applied":
            await pol.mark_applied(session, actor, now=now, case_id=callback_data.id)
            text = t("Thank you! We have noted that you applied. The committee will follow up.")
        elif callback_data.a == "no":
            await pol.mark_not_interested(session, actor, now=now, case_id=callback_data.id)
            text = t("Understood. We will not remind you about this programme again.")
        else:
            raise pol.CaseError(str(t("This button is no longer valid.")))
    except pol.CaseError as err:
        await query.answer(str(err), show_alert=True)
        return
    await query.answer()
    if query.message:
        if query.message.reply_markup:
            await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(text)
