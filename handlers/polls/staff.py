"""Staff: /poll_new (question, options, unit, rule, who may vote, closing time, preview, publish),
/poll_results ID and /poll_close ID. Every step is checked by the service's draft checks."""

from __future__ import annotations

from datetime import datetime, timedelta

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.keyboards import inline
from handlers.staff import StaffOnly
from notifications.callbacks import PollNewCb
from notifications.messages import polls as views
from notifications.poll_chart import chart_writer
from notifications.render import t
from services import polls
from services.i18n import _
from services.ids import parse_db_id
from services.scope import Actor

UNITS = ("resident", "household", "owner")
RULES = ("majority", "fraction:2/3", "plurality", "civil-code-ordinary", "civil-code-major")
# Button values (":" separates callback data fields): short code → rule.
RULE_CODES = {"m": "majority", "f23": "fraction:2/3", "p": "plurality", "cco": "civil-code-ordinary",
              "ccm": "civil-code-major"}
CODE_OF = {rule: code for code, rule in RULE_CODES.items()}


class NewPoll(StatesGroup):
    question = State()
    options = State()
    unit = State()
    rule = State()
    eligible = State()
    closes = State()
    preview = State()


def router() -> Router:
    r = Router(name="polls.staff")
    only = StaffOnly()
    r.message.register(start, Command("poll_new"), only)
    r.message.register(got_question, NewPoll.question, F.text, ~F.text.startswith("/"))
    r.message.register(got_options, NewPoll.options, F.text, ~F.text.startswith("/"))
    r.callback_query.register(got_unit, NewPoll.unit, PollNewCb.filter(F.a == "unit"), only)
    r.callback_query.register(got_rule, NewPoll.rule, PollNewCb.filter(F.a == "rule"), only)
    r.message.register(got_eligible, NewPoll.eligible, F.text, ~F.text.startswith("/"))
    r.callback_query.register(whole_committee, NewPoll.eligible, PollNewCb.filter(F.a == "all"), only)
    r.message.register(got_closes, NewPoll.closes, F.text, ~F.text.startswith("/"))
    r.callback_query.register(closes_in_days, NewPoll.closes, PollNewCb.filter(F.a == "days"), only)
    r.callback_query.register(toggle_secret, NewPoll.preview, PollNewCb.filter(F.a == "secret"), only)
    r.callback_query.register(publish, NewPoll.preview, PollNewCb.filter(F.a == "publish"), only)
    r.callback_query.register(cancel, PollNewCb.filter(F.a == "cancel"))
    r.callback_query.register(stale, PollNewCb.filter())
    r.message.register(results, Command("poll_results"), only)
    r.message.register(close, Command("poll_close"), only)
    return r


def _cancel_row() -> list[tuple[str, str]]:
    return [(_("Cancel"), PollNewCb(a="cancel").pack())]


async def start(message: Message, actor: Actor, session: AsyncSession, state: FSMContext) -> None:
    try:
        committee = await polls.staff_committee(session, actor)
    except polls.PollError as err:
        await message.answer(views.refusal(err))
        return
    await state.clear()
    await state.set_state(NewPoll.question)
    await state.update_data(committee=committee.code)
    await message.answer(t("New poll for {committee}. Send the question (up to 300 characters), or /cancel.",
                           committee=committee.name))


async def got_question(message: Message, state: FSMContext) -> None:
    try:
        question = polls.check_question(message.text or "")
    except polls.PollError as err:
        await message.answer(views.refusal(err))
        return
    await state.update_data(question=question)
    await state.set_state(NewPoll.options)
    await message.answer(t("Send the options, one per line (2 to 10). For a decision, the first is “agree” "
                           "and the second “reject”, e.g.\n同意\n反对\n弃权"))


async def got_options(message: Message, state: FSMContext) -> None:
    try:
        options = polls.check_options((message.text or "").splitlines())
    except polls.PollError as err:
        await message.answer(views.refusal(err))
        return
    await state.update_data(options=options)
    await state.set_state(NewPoll.unit)
    labels = {"resident": _("Each resident"), "household": _("Each household"), "owner": _("Each owner household")}
    await message.answer(t("Who has one vote?"), reply_markup=inline(
        [[(labels[u], PollNewCb(a="unit", v=u).pack())] for u in UNITS] + [_cancel_row()]))


async def got_unit(query: CallbackQuery, callback_data: PollNewCb, state: FSMContext) -> None:
    if callback_data.v not in UNITS:
        await query.answer(t("That button is no longer valid.").striptags(), show_alert=True)
        return
    await state.update_data(unit=callback_data.v)
    await state.set_state(NewPoll.rule)
    await query.answer()
    rules = RULES if callback_data.v == "owner" else RULES[:3]
    labels = {"majority": _("More agree than reject"), "fraction:2/3": _("Agree from 2/3 of all who may vote"),
              "plurality": _("Most votes (no decision)"),
              "civil-code-ordinary": _("Civil Code: ordinary matter (1/2 of area and owners)"),
              "civil-code-major": _("Civil Code: major matter, e.g. an elevator (3/4 of area and owners)")}
    if query.message:
        await query.message.answer(t("How is it decided?"), reply_markup=inline(
            [[(labels[r], PollNewCb(a="rule", v=CODE_OF[r]).pack())] for r in rules] + [_cancel_row()]))


async def got_rule(query: CallbackQuery, callback_data: PollNewCb, state: FSMContext) -> None:
    data = await state.get_data()
    try:
        if callback_data.v not in RULE_CODES:
            raise polls.PollError("bad_option")
        rule = polls.parse_rule(RULE_CODES[callback_data.v])
        if rule.civil_code and data.get("unit") != "owner":
            raise polls.PollError("bad_combination", what="civil_owner")
    except polls.PollError as err:
        await query.answer(views.refusal(err).striptags(), show_alert=True)
        return
    await state.update_data(rule=rule.text)
    await state.set_state(NewPoll.eligible)
    await query.answer()
    if query.message:
        await query.message.answer(
            t("Who may vote? Send an expression, e.g. building == \"3\", or press “Whole committee”."),
            reply_markup=inline([[(_("Whole committee"), PollNewCb(a="all").pack())], _cancel_row()]))


async def _ask_closes(target: Message, state: FSMContext) -> None:
    await state.set_state(NewPoll.closes)
    await target.answer(t("When does it close? Send a local time as YYYY-MM-DD HH:MM, or press a button."),
                        reply_markup=inline([[(_("In 3 days"), PollNewCb(a="days", v="3").pack()),
                                              (_("In 7 days"), PollNewCb(a="days", v="7").pack()),
                                              (_("In 14 days"), PollNewCb(a="days", v="14").pack())],
                                             _cancel_row()]))


async def got_eligible(message: Message, state: FSMContext, now: datetime, poll_config: polls.PollConfig) -> None:
    try:
        eligible = polls.check_eligible(message.text or "", poll_config.local(now).date())
    except polls.PollError as err:
        await message.answer(views.refusal(err))
        return
    await state.update_data(eligible=eligible)
    await _ask_closes(message, state)


async def whole_committee(query: CallbackQuery, state: FSMContext) -> None:
    await state.update_data(eligible=None)
    await query.answer()
    if query.message:
        await _ask_closes(query.message, state)


def _draft(data: dict) -> polls.PollDraft:
    return polls.PollDraft(question=data.get("question", ""), options=list(data.get("options", [])),
                           eligible=data.get("eligible"), unit=data.get("unit", "resident"),
                           rule=data.get("rule", "majority"), secret=bool(data.get("secret")),
                           allow_change=not data.get("secret"),
                           closes_at=datetime.fromisoformat(data["closes"]) if data.get("closes") else None)


async def _preview(target: Message, state: FSMContext, now: datetime, cfg: polls.PollConfig) -> None:
    data = await state.get_data()
    try:
        draft = polls.check_draft(_draft(data), now, cfg)
    except polls.PollError as err:
        await target.answer(views.refusal(err))
        if err.reason == "bad_times":
            await _ask_closes(target, state)
        return
    await state.set_state(NewPoll.preview)
    card = {"id": 0, "question": draft.question, "options": draft.options, "multiple": draft.multiple,
            "unit": draft.unit, "rule": draft.rule, "secret": draft.secret, "allow_change": draft.allow_change,
            "closes": cfg.local(draft.closes_at).isoformat() if draft.closes_at else None}
    who = data.get("eligible") or _("the whole committee")
    text = views.card_text(card, header=t("Preview — who may vote: {who}", who=who))
    secret_label = _("Secret ballot: on") if draft.secret else _("Secret ballot: off")
    await target.answer(text, reply_markup=inline([
        [(_("Publish"), PollNewCb(a="publish").pack())],
        [(secret_label, PollNewCb(a="secret").pack())],
        _cancel_row()]))


async def got_closes(message: Message, state: FSMContext, now: datetime, poll_config: polls.PollConfig) -> None:
    when = poll_config.parse_local(message.text or "")
    if when is None or when <= now:
        await message.answer(t("Please send a future local time as YYYY-MM-DD HH:MM, e.g. 2026-12-20 18:00."))
        return
    await state.update_data(closes=when.isoformat())
    await _preview(message, state, now, poll_config)


async def closes_in_days(query: CallbackQuery, callback_data: PollNewCb, state: FSMContext, now: datetime,
                         poll_config: polls.PollConfig) -> None:
    if callback_data.v not in ("3", "7", "14"):
        await query.answer(t("That button is no longer valid.").striptags(), show_alert=True)
        return
    local = poll_config.local(now + timedelta(days=int(callback_data.v)))
    closes = local.replace(hour=20, minute=0, second=0, microsecond=0)  # that evening, 20:00 local
    await state.update_data(closes=closes.isoformat())
    await query.answer()
    if query.message:
        await _preview(query.message, state, now, poll_config)


async def toggle_secret(query: CallbackQuery, state: FSMContext, now: datetime, poll_config: polls.PollConfig) -> None:
    data = await state.get_data()
    await state.update_data(secret=not data.get("secret"))
    await query.answer()
    if query.message:
        await _preview(query.message, state, now, poll_config)


async def publish(query: CallbackQuery, actor: Actor, session: AsyncSession, state: FSMContext, now: datetime,
                  poll_config: polls.PollConfig) -> None:
    data = await state.get_data()
    try:
        committee = await polls.staff_committee(session, actor, data.get("committee"))
        poll = await polls.create_poll(session, actor, committee, _draft(data), now=now, cfg=poll_config)
    except polls.PollError as err:
        await query.answer(views.refusal(err).striptags(), show_alert=True)
        return
    await state.clear()
    await query.answer()
    if query.message:
        await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(t("Poll #{id} is published. Everyone who may vote is told now; /poll_results "
                                     "{id} shows the count.", id=poll.id))


async def cancel(query: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await query.answer()
    if query.message:
        await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(t("Cancelled. Nothing was published."))


async def stale(query: CallbackQuery) -> None:
    await query.answer(t("That button is no longer valid.").striptags(), show_alert=True)


async def results(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, now: datetime,
                  poll_config: polls.PollConfig) -> None:
    poll_id = parse_db_id(command.args)
    if poll_id is None:
        await message.answer(t("Usage: /poll_results ID (see /polls)"))
        return
    try:
        res = await polls.poll_results(session, actor, poll_id, now=now, cfg=poll_config)
    except polls.PollError as err:
        await message.answer(views.refusal(err))
        return
    await message.answer(views.results_text(res))


async def close(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, now: datetime,
                poll_config: polls.PollConfig) -> None:
    poll_id = parse_db_id(command.args)
    if poll_id is None:
        await message.answer(t("Usage: /poll_close ID (see /polls)"))
        return
    try:
        await polls.close_now(session, actor, poll_id, now=now, cfg=poll_config,
                              chart=chart_writer(poll_config))
    except polls.PollError as err:
        await message.answer(views.refusal(err))
        return
    await message.answer(t("Poll #{id} is closed; the results go to its voters and to staff.", id=poll_id))
