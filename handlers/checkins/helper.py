"""Helpers who answer for elders without Telegram (proxy check-in), in the bot:

- the helper's buttons on their daily list (the pressed message is edited in place; the service
  edits the other lists of the day through the outbox), /helping, hand-over buttons;
- ``/start hlp_<code>``: an invite link makes its opener an elder's helper;
- staff: /checkin_helper (who answers for an elder: search like /whois, me, family, known helpers,
  an invite link, or the elder alone again) and /checkin_handover.
"""

from __future__ import annotations

from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.checkins.common import refusal, refusal_html
from handlers.commands import publish_for_account
from handlers.staff import StaffOnly
from notifications.callbacks import HandoverCb, HelperCb, HelperPickCb
from notifications.limits import clip
from notifications.messages import checkins as views
from notifications.render import join, t, to_reply_markup
from services import checkins as cs
from services.checkins import CheckinConfig, CheckinError
from services.config import AppConfig
from services.i18n import N_, _
from services.models import Resident
from services.residents import committees_in_scope, find_residents, get_resident
from services.scope import Actor

HANDOVER_DAYS = (3, 7, 14, 30)
MODE_CODES = {"p": "proxy", "s": "self_then_helper", "lp": "proxy", "ls": "self_then_helper"}
MAX_CHOICES = 10


class HelperForm(StatesGroup):
    search = State()  # /checkin_helper: a name or room to find the helper by (data: the elder's id)


def router() -> Router:
    r = Router(name="checkins.helper")
    only = StaffOnly()
    not_command = ~F.text.startswith("/")
    r.message.register(helper_start, CommandStart(deep_link=True, magic=F.args.startswith(cs.HELPER_INVITE_PREFIX)))
    r.callback_query.register(answered, HelperCb.filter(F.a.in_(set(cs.HELPER_ANSWERS))))
    r.message.register(helping, Command("helping"))
    r.callback_query.register(handover_pressed, HandoverCb.filter(F.a.in_({"h", "d", "s", "end"})))
    r.message.register(checkin_helper, Command("checkin_helper"), only)
    r.message.register(helper_search_typed, HelperForm.search, F.text, not_command, only)
    r.callback_query.register(helper_picked, HelperPickCb.filter(), only)
    r.message.register(checkin_handover, Command("checkin_handover"), only)
    return r


# --- the helper's list ---------------------------------------------------------------------------

ANSWERED = {
    "ok": N_("✅ Thank you: {name} is well."),
    "noreach": N_("📵 Thank you: the staff have been told you could not reach {name}."),
    "help": N_("🆘 The staff have been told that {name} needs help."),
}


async def answered(query: CallbackQuery, callback_data: HelperCb, actor: Actor, session: AsyncSession,
                   checkin_config: CheckinConfig, now: datetime) -> None:
    """A helper's button: the service checks they cover that elder today; the pressed list is
    redrawn with everyone's state (the service brings the helper's other lists of the day along)."""
    message = query.message if isinstance(query.message, Message) else None
    try:
        result = await cs.helper_answer(session, actor, callback_data.r, callback_data.a, now=now,
                                        cfg=checkin_config, message_id=message.message_id if message else None)
    except CheckinError as err:
        await query.answer(refusal(err), show_alert=True)
        return
    name = next((line.name for line in result.view.lines if line.round_id == result.round.id), "?")
    if result.already:
        await query.answer(_("Already recorded, thank you."))
        return
    await query.answer(_(ANSWERED[callback_data.a]).format(name=clip(name, 40)))
    if message is not None:
        rendered = views.helper_list(result.view.data())
        await message.edit_text(rendered.text, reply_markup=to_reply_markup(rendered.buttons))


async def helping(message: Message, actor: Actor, session: AsyncSession, checkin_config: CheckinConfig,
                  now: datetime) -> None:
    """/helping: today's list, hand-overs, and the buttons to hand over or end a hand-over."""
    today = checkin_config.today(now)
    view = await cs.my_list(session, actor, now=now, cfg=checkin_config)
    committees = await cs.helped_committees(session, actor.account_id)
    handovers = await cs.my_handovers(session, actor.account_id, today)
    if not view.lines and not committees and not handovers:
        await message.answer(t("You do not answer the daily check-in for anyone. Your committee can ask you to."))
        return
    data = view.data()
    parts = [views.helper_list_text(data), *views.handover_lines(handovers)]
    buttons = views.helping_buttons(data["lines"], [(c.committee_id, c.name) for c in committees],
                                    actor.account_id or 0, [h.id for h in handovers if h.away])
    await message.answer(join(parts, "\n\n"), reply_markup=to_reply_markup(buttons))


async def handover_pressed(query: CallbackQuery, callback_data: HandoverCb, actor: Actor, session: AsyncSession,
                           checkin_config: CheckinConfig, now: datetime) -> None:
    """Hand over step by step (helper, days, substitute) or end one: every value is checked by the
    service (who may, which substitute, how many days); the steps before the last write nothing."""
    message = query.message if isinstance(query.message, Message) else None
    cb = callback_data
    try:
        if cb.a == "end":
            handover = await cs.end_handover(session, actor, cb.e, now=now, cfg=checkin_config)
            await query.answer()
            if message is not None:
                await message.answer(t("Welcome back! From tomorrow your elders are yours again (the hand-over "
                                       "ends {end}).", end=handover.ends_on.isoformat()))
            return
        candidates = await cs.substitutes(session, actor, cb.h, cb.c)  # checks who may, before anything
        if cb.a == "h":
            await query.answer()
            if message is not None:
                await message.answer(t("For how long, from today?"), reply_markup=to_reply_markup(
                    views.handover_days_buttons(cb.h, cb.c, HANDOVER_DAYS)))
        elif cb.a == "d":
            if not 1 <= cb.d <= cs.MAX_HANDOVER_DAYS:
                raise CheckinError("bad_days_handover", n=cs.MAX_HANDOVER_DAYS)
            await query.answer()
            if message is not None:
                await message.answer(t("Who stands in meanwhile?"), reply_markup=to_reply_markup(
                    views.handover_substitute_buttons(cb.h, cb.c, cb.d, [(c.account_id, c.name) for c in candidates])))
        else:
            result = await cs.hand_over(session, actor, cb.h, cb.c, cb.d, cb.s or None, now=now, cfg=checkin_config)
            await query.answer()
            if message is not None:
                await message.edit_text(views.handover_reply(result.helper, result.substitute,
                                                             result.handover.ends_on.isoformat(), result.moved),
                                        reply_markup=None)
    except CheckinError as err:
        await query.answer(refusal(err), show_alert=True)


async def helper_start(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                       state: FSMContext, bot: Bot, checkin_config: CheckinConfig, config: AppConfig,
                       now: datetime) -> None:
    """``/start hlp_<code>``: the opener becomes the elder's helper (refusals change nothing)."""
    await state.clear()
    code = (command.args or "").removeprefix(cs.HELPER_INVITE_PREFIX)
    if actor.account is None:
        await message.answer(refusal_html(CheckinError("unknown_helper_code")))
        return
    try:
        result = await cs.redeem_helper_invite(session, actor.account, code, now=now, cfg=checkin_config)
    except CheckinError as err:
        await message.answer(refusal_html(err))
        return
    await publish_for_account(bot, session, actor.account, default_locale=config.default_locale)
    await message.answer(t("Thank you! You now answer the daily check-in for {name} ({room}). Send /helping to "
                           "see today's list.", name=result.resident.name, room=cs.room_of(result.resident)))


# --- staff: /checkin_helper ----------------------------------------------------------------------

def _usage():
    return t("Usage: /checkin_helper &lt;room or name of the elder&gt; [--note text for whoever looks in], "
             "e.g. /checkin_helper 5-1-102 --note hard of hearing, knock loudly")


async def checkin_helper(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                         state: FSMContext, now: datetime) -> None:
    await state.clear()
    args = (command.args or "").strip()
    query, _sep, note = args.partition("--note")
    query = query.strip()
    if not query:
        await message.answer(_usage())
        return
    found = await find_residents(session, actor, query)
    if len(found) != 1:
        await message.answer(t("Please name exactly one resident ({n} match {query}).", n=len(found),
                               query=clip(query)))
        return
    elder = found[0]
    if _sep:
        try:
            await cs.set_note(session, elder, note, now=now)
        except CheckinError as err:
            await message.answer(refusal_html(err))
            return
    await state.set_state(HelperForm.search)
    await state.update_data(elder=elder.id)
    await _ask_helper(message, actor, session, elder)


async def _ask_helper(message: Message, actor: Actor, session: AsyncSession, elder: Resident) -> None:
    current = await cs.plan_helper(session, elder.id)
    choices = [(c.account_id, f"{c.name} · {views.candidate_detail(c.detail)}")
               for c in await cs.family_candidates(session, elder.id)]
    choices += [(c.account_id, f"{c.name} · {views.candidate_detail(c.detail)}")
                for c in await cs.known_helpers(session, elder.committee_id) if c.account_id not in dict(choices)]
    await message.answer(
        views.pick_helper_text(elder.name, cs.room_of(elder), current),
        reply_markup=to_reply_markup(views.pick_helper_buttons(
            elder.id, choices[:MAX_CHOICES], me=actor.account_id,
            alone=current is not None and current.mode != "self")))


async def helper_search_typed(message: Message, actor: Actor, session: AsyncSession, state: FSMContext) -> None:
    """A name or room typed after /checkin_helper: residents on the bot who match, as buttons."""
    elder_id = (await state.get_data()).get("elder")
    elder = await get_resident(session, actor, elder_id) if isinstance(elder_id, int) else None
    if elder is None:
        await state.clear()
        await message.answer(refusal_html(CheckinError("not_yours")))
        return
    query = (message.text or "").strip()
    found = await cs.helper_candidates(session, actor, query, limit=MAX_CHOICES, exclude=elder.id)
    if not found:
        await message.answer(t("Nobody on the bot matches {query} in your area (a helper must have joined the bot "
                               "and been verified). Try another name or room, or invite them by link.",
                               query=clip(query)))
        return
    await message.answer(t("Who will answer for {name}?", name=elder.name), reply_markup=to_reply_markup(
        views.pick_helper_buttons(elder.id, [(c.account_id, f"{c.name} · {c.detail}") for c in found], me=None,
                                  alone=False)))


async def helper_picked(query: CallbackQuery, callback_data: HelperPickCb, actor: Actor, session: AsyncSession,
                        state: FSMContext, bot: Bot, checkin_config: CheckinConfig, config: AppConfig,
                        now: datetime) -> None:
    """A choice in /checkin_helper; the service checks the elder's scope, the helper and the mode."""
    message = query.message if isinstance(query.message, Message) else None
    cb = callback_data
    elder = await get_resident(session, actor, cb.rid)
    if elder is None or message is None:
        await query.answer(refusal(CheckinError("not_yours")), show_alert=True)
        return
    try:
        if cb.m == "":
            await query.answer()
            await message.answer(t("How should they answer?"),
                                 reply_markup=to_reply_markup(views.mode_buttons(elder.id, cb.acc)))
            return
        if cb.m == "link":
            await query.answer()
            await message.answer(t("How should the helper who opens the link answer?"),
                                 reply_markup=to_reply_markup(views.mode_buttons(elder.id, 0, link=True)))
            return
        if cb.m == "alone":
            await cs.answer_alone(session, actor, elder, now=now)
            await state.clear()
            await query.answer()
            await message.edit_text(t("{name} answers the daily check-in alone again.", name=elder.name),
                                    reply_markup=None)
            return
        mode = MODE_CODES.get(cb.m, cb.m)  # anything else is refused by the service
        if cb.m in ("lp", "ls"):
            code = await cs.create_helper_invite(session, actor, elder, mode, now=now, cfg=checkin_config)
            me = await bot.me()
            await state.clear()
            await query.answer()
            await message.edit_text(t("Helper link for {name} (works once, for 7 days):", name=elder.name)
                                    + f"\nhttps://t.me/{me.username}?start={cs.HELPER_INVITE_PREFIX}{code}",
                                    reply_markup=None)
            return
        result = await cs.assign_helper(session, actor, elder, cb.acc, mode, now=now, cfg=checkin_config)
    except CheckinError as err:
        await query.answer(refusal(err), show_alert=True)
        return
    await state.clear()
    if result.helper is not None:
        await publish_for_account(bot, session, result.helper, default_locale=config.default_locale)
    await query.answer()
    await message.edit_text(views.helper_assigned_reply(
        elder.name, cs.room_of(elder), views.account_label(result.helper), result.plan.mode.value,
        views.format_minute(result.plan.minute_of_day)), reply_markup=None)


# --- staff: /checkin_handover --------------------------------------------------------------------

async def checkin_handover(message: Message, actor: Actor, session: AsyncSession) -> None:
    """The helpers of the committees in the staff member's area, one button each to hand them over."""
    rows = []
    for committee in await committees_in_scope(session, actor):
        for helper in await cs.known_helpers(session, committee.id, limit=MAX_CHOICES):
            rows.append((helper.account_id, committee.id, f"{helper.name} · {clip(committee.name, 20)}"))
    if not rows:
        await message.answer(t("No helpers answer for elders in your area yet (/checkin_helper assigns one)."))
        return
    await message.answer(t("Whose elders are handed over (travel, illness)?"), reply_markup=to_reply_markup(
        views.handover_helper_buttons(rows[:MAX_CHOICES * 2])))
