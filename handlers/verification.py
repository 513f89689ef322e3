"""Joining a community: consent, then contact + knowledge check, invite code, or manual review."""

from __future__ import annotations

from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.commands import publish_for_actor
from handlers.common import menu_keyboard, welcome_text
from handlers.keyboards import REMOVE, contact_keyboard, inline
from notifications.callbacks import VerifyCb
from notifications.format import local_time, role_name
from notifications.render import Markup, plain, t
from services import verification as vs
from services.config import AppConfig
from services.i18n import _
from services.notify import committee_staff, tell
from services.scope import Actor, load_staff_grants

MAX_INPUT = 200
NOT_COMMAND = ~F.text.startswith("/")  # a command typed mid-conversation goes to its own handler


class Verify(StatesGroup):
    full_name = State()
    id_last4 = State()
    invite_code = State()
    new_member_name = State()
    review_name = State()
    review_address = State()
    review_committee = State()


def router() -> Router:
    r = Router(name="verification")
    r.message.register(start, CommandStart())
    r.callback_query.register(consent, VerifyCb.filter(F.action == "consent"))
    r.callback_query.register(decline, VerifyCb.filter(F.action == "decline"))
    r.message.register(contact_shared, F.contact)
    r.message.register(full_name_given, Verify.full_name, F.text, NOT_COMMAND)
    r.message.register(id_last4_given, Verify.id_last4, F.text, NOT_COMMAND)
    r.callback_query.register(ask_code, VerifyCb.filter(F.action == "code"))
    r.message.register(code_given, Verify.invite_code, F.text, NOT_COMMAND)
    r.callback_query.register(member_chosen, VerifyCb.filter(F.action == "member"))
    r.callback_query.register(new_member, VerifyCb.filter(F.action == "newmember"))
    r.message.register(new_member_named, Verify.new_member_name, F.text, NOT_COMMAND)
    r.callback_query.register(ask_review, VerifyCb.filter(F.action == "review"))
    r.message.register(review_name_given, Verify.review_name, F.text, NOT_COMMAND)
    r.message.register(review_address_given, Verify.review_address, F.text, NOT_COMMAND)
    r.message.register(review_committee_given, Verify.review_committee, F.text, NOT_COMMAND)
    r.callback_query.register(committee_chosen, VerifyCb.filter(F.action == "committee"))
    r.message.register(cancel, Command("cancel"), StateFilter("*"))
    r.message.register(not_text, StateFilter(Verify), ~F.text)
    return r


# --- shared texts ----------------------------------------------------------------------------

def privacy_notice() -> Markup:
    return t(
        "<b>Before you join: your privacy</b>\n"
        "To check that you are a resident, we compare what you tell us with your committee's registry. "
        "We keep: your Telegram name and id, your language, the link to your registry entry, and a record "
        "of each verification attempt. If you share your phone number with the button, we keep it "
        "encrypted with your account so that your committee's staff can reach you (for example when "
        "you miss a daily check-in). Your ID number is held only as a keyed hash and phone numbers are "
        "stored encrypted; we never show your phone number to other residents.\n"
        "Why: so that only real neighbours take part, and so that your committee can reach you.\n"
        "You can see everything we hold with /mydata and delete it at any time with /forget. Failed "
        "attempts stay for 24 hours even after /forget, without your account (the registry entry tried "
        "and a keyed hash of the phone number), so that five wrong answers lock that entry for everyone."
    )


def consent_keyboard():
    return inline([[(_("I agree"), VerifyCb(action="consent").pack()),
                    (_("Not now"), VerifyCb(action="decline").pack())]])


async def show_methods(message: Message) -> None:
    await message.answer(
        t("Share your phone number with the button below: if it is in your committee's registry, "
          "I will ask two short questions."), reply_markup=contact_keyboard(_("📱 Share my phone number")))
    await message.answer(
        t("Other ways to join:"),
        reply_markup=inline([[(_("I have an invite code"), VerifyCb(action="code").pack())],
                             [(_("Ask staff to verify me"), VerifyCb(action="review").pack())]]))


def refusal(err: vs.VerificationError, config: AppConfig) -> Markup:
    """The polite sentence for each refusal reason (with attempts left / lock end when known)."""
    until = err.info.get("until")
    if err.reason == "locked" or until is not None:
        # The lock ends when the oldest of the last five failures is a day old: say when, and in which zone.
        return t("Too many failed attempts (five within 24 hours). For your safety, verification is locked "
                 "until {time}.", time=local_time(until, config.tz))
    texts = {
        "not_own_contact": _("Please share your own contact with the button, not someone else's."),
        "wrong_answer": _("That does not match the registry."),
        "unknown_code": _("This invite code is not valid. Please check it and type it again."),
        "used_code": _("This invite code has already been used."),
        "expired_code": _("This invite code has expired. Please ask your committee for a new one."),
        "no_match": _("I could not find this phone number in the registry."),
        "several": _("Several registry entries share this phone number, so I cannot tell which is you."),
        "conflict": _("This registry entry is already linked to another account. I have asked the committee "
                      "staff to review it; you will hear from them."),
        "already_pending": _("You already have a request waiting for staff review."),
        "not_found": _("Sorry, that is no longer available."),
        "name_required": _("Please type your full name."),
    }
    text = plain(texts.get(err.reason, _("Sorry, that did not work.")))
    if "remaining" in err.info:
        text = t("{reason} Attempts left: {n} (failed attempts count for 24 hours).", reason=text,
                 n=err.info["remaining"])
    return text


# --- /start ----------------------------------------------------------------------------------

async def start(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                state: FSMContext, config: AppConfig, now: datetime) -> None:
    await state.clear()
    payload = (command.args or "").strip()
    if payload.startswith("staff_"):
        await _enrol_staff(message, actor, session, config, payload.removeprefix("staff_"), now)
        return
    if actor.is_verified or actor.is_staff:  # a known account: its "/" list as its roles are now
        await publish_for_actor(message.bot, session, actor)
    user = message.from_user
    if actor.is_verified and not payload:
        await message.answer(welcome_text(actor, user.first_name, user.last_name), reply_markup=menu_keyboard(actor))
        return
    if payload.startswith("inv_"):
        await state.update_data(pending_code=payload.removeprefix("inv_"))
    await message.answer(welcome_text(actor, user.first_name, user.last_name))
    if actor.account.consent_at is None:
        await message.answer(privacy_notice(), reply_markup=consent_keyboard())
        return
    await _after_consent(message, actor, session, state, config, now)


async def _after_consent(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                         config: AppConfig, now: datetime) -> None:
    code = (await state.get_data()).get("pending_code")
    if code:
        await _open_code(message, actor, session, state, config, code, now)
    elif actor.is_verified:
        await message.answer(t("You are already verified."), reply_markup=menu_keyboard(actor))
    else:
        await show_methods(message)


async def consent(query: CallbackQuery, actor: Actor, session: AsyncSession, state: FSMContext,
                  config: AppConfig, now: datetime) -> None:
    vs.give_consent(actor.account, now)
    await query.answer(_("Thank you."))
    await query.message.edit_reply_markup(reply_markup=None)
    await _after_consent(query.message, actor, session, state, config, now)


async def decline(query: CallbackQuery) -> None:
    await query.answer()
    await query.message.edit_reply_markup(reply_markup=None)
    await query.message.answer(t("No problem. Nothing has been stored beyond your Telegram name. "
                                 "Send /start whenever you want to join."))


async def cancel(message: Message, state: FSMContext, actor: Actor) -> None:
    await state.clear()
    await message.answer(t("Cancelled."), reply_markup=REMOVE)


async def not_text(message: Message) -> None:
    await message.answer(t("Please answer with text, or send /cancel to stop."))


async def _needs_consent(message: Message, actor: Actor) -> bool:
    if actor.account.consent_at is None:
        await message.answer(privacy_notice(), reply_markup=consent_keyboard())
        return True
    return False


# --- method 1: contact + knowledge -----------------------------------------------------------

async def contact_shared(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                         config: AppConfig, now: datetime) -> None:
    if actor.is_verified:
        await message.answer(t("You are already verified."), reply_markup=REMOVE)
        return
    if await _needs_consent(message, actor):
        return
    try:
        resident = await vs.match_contact(session, actor.account, contact_user_id=message.contact.user_id,
                                          phone=message.contact.phone_number, now=now)
    except vs.VerificationError as err:
        await message.answer(refusal(err, config), reply_markup=REMOVE)
        if err.reason in ("no_match", "several") or err.info.get("scope") == "entry":
            await message.answer(t("You can use an invite code from your committee, or ask staff to verify you."),
                                 reply_markup=inline([[(_("I have an invite code"), VerifyCb(action="code").pack())],
                                                      [(_("Ask staff to verify me"),
                                                        VerifyCb(action="review").pack())]]))
        return
    await state.set_state(Verify.full_name)
    await state.update_data(resident_id=resident.id)
    await message.answer(t("Thank you. Please type your full name as it is in the registry."), reply_markup=REMOVE)


async def full_name_given(message: Message, state: FSMContext) -> None:
    await state.update_data(full_name=message.text.strip()[:MAX_INPUT])
    await state.set_state(Verify.id_last4)
    await message.answer(t("Now the last 4 characters of your ID number (for example 123X)."))


async def id_last4_given(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                         config: AppConfig, now: datetime) -> None:
    data = await state.get_data()
    try:
        resident = await vs.knowledge_check(session, actor.account, resident_id=data.get("resident_id", 0),
                                            full_name=data.get("full_name", ""), id_last4=message.text[:MAX_INPUT],
                                            secret_key=config.secret_key, now=now)
    except vs.VerificationError as err:
        await state.set_state(None if err.info.get("until") or err.reason != "wrong_answer" else Verify.full_name)
        text = refusal(err, config)
        if err.reason == "wrong_answer" and not err.info.get("until"):
            text = t("{refusal}\nPlease type your full name again.", refusal=text)
        await message.answer(text)
        return
    await state.clear()
    await _verified(message, actor, session, resident)


async def _verified(message: Message, actor: Actor, session: AsyncSession, resident) -> None:
    actor.resident = resident  # the menu below already offers what a verified resident may use
    await publish_for_actor(message.bot, session, actor)
    await message.answer(t("You are verified. Welcome to your community!"), reply_markup=REMOVE)
    await message.answer(t("Main menu"), reply_markup=menu_keyboard(actor))


# --- method 2: invite code -------------------------------------------------------------------

async def ask_code(query: CallbackQuery, actor: Actor, state: FSMContext) -> None:
    await query.answer()
    if await _needs_consent(query.message, actor):
        return
    await state.set_state(Verify.invite_code)
    await query.message.answer(t("Please type the invite code from your committee's letter (12 letters and digits)."))


async def code_given(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                     config: AppConfig, now: datetime) -> None:
    await _open_code(message, actor, session, state, config, message.text[:MAX_INPUT], now)


async def _open_code(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                     config: AppConfig, code: str, now: datetime) -> None:
    try:
        check = await vs.open_invite(session, actor.account, code, secret_key=config.secret_key, now=now)
    except vs.VerificationError as err:
        await state.clear()
        await message.answer(refusal(err, config))
        return
    await state.set_state(None)
    await state.update_data(invite_code=vs.normalize_code(code), pending_code=None)
    rows = [[(_("I am {name}").format(name=m.name), VerifyCb(action="member", id=m.id).pack())]  # plain button
            for m in check.members[:10]]
    rows.append([(_("I am not listed (new household member)"), VerifyCb(action="newmember").pack())])
    await message.answer(t("This code belongs to household {household}. Who are you?",
                           household=check.household.code), reply_markup=inline(rows))


async def member_chosen(query: CallbackQuery, callback_data: VerifyCb, actor: Actor, session: AsyncSession,
                        state: FSMContext, config: AppConfig, now: datetime) -> None:
    code = (await state.get_data()).get("invite_code")
    if not code:
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    try:
        resident = await vs.redeem_invite(session, actor.account, code, secret_key=config.secret_key,
                                          now=now, resident_id=callback_data.id)
    except vs.VerificationError as err:
        await query.answer()
        await query.message.answer(refusal(err, config))
        return
    await query.answer()
    await state.clear()
    await query.message.edit_reply_markup(reply_markup=None)
    await _verified(query.message, actor, session, resident)


async def new_member(query: CallbackQuery, state: FSMContext) -> None:
    if not (await state.get_data()).get("invite_code"):
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    await query.answer()
    await state.set_state(Verify.new_member_name)
    await query.message.answer(t("Please type your full name."))


async def new_member_named(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                           config: AppConfig, now: datetime) -> None:
    code = (await state.get_data()).get("invite_code", "")
    try:
        await vs.redeem_invite(session, actor.account, code, secret_key=config.secret_key, now=now,
                               new_member_name=message.text[:MAX_INPUT])
    except vs.VerificationError as err:
        await message.answer(refusal(err, config))
        return
    await state.clear()
    await message.answer(t("Thank you. The committee staff will confirm you as a member of the household; "
                           "I will tell you as soon as they do."))
    await _tell_staff_of_pending(session, actor, now)


# --- method 3: manual review -----------------------------------------------------------------

async def ask_review(query: CallbackQuery, actor: Actor, state: FSMContext) -> None:
    await query.answer()
    if await _needs_consent(query.message, actor):
        return
    await state.set_state(Verify.review_name)
    await query.message.answer(t("Staff of your committee will check your details. What is your full name?"))


async def review_name_given(message: Message, state: FSMContext) -> None:
    await state.update_data(review_name=message.text.strip()[:100])
    await state.set_state(Verify.review_address)
    await message.answer(t("Your address: compound, building, unit and room (for example 丁香苑 3号楼 2单元 201)."))


async def review_address_given(message: Message, state: FSMContext) -> None:
    await state.update_data(review_address=message.text.strip()[:200])
    await state.set_state(Verify.review_committee)
    await message.answer(t("Which residents' committee? Type part of its name."))


async def review_committee_given(message: Message, session: AsyncSession, state: FSMContext) -> None:
    found = await vs.find_committees(session, message.text)
    if not found:
        await message.answer(t("I found no committee by that name. Please try another part of the name."))
        return
    await message.answer(t("Please choose your committee:"), reply_markup=inline(
        [[(c.name, VerifyCb(action="committee", id=c.id).pack())] for c in found]))


async def committee_chosen(query: CallbackQuery, callback_data: VerifyCb, actor: Actor, session: AsyncSession,
                           state: FSMContext, config: AppConfig, now: datetime) -> None:
    data = await state.get_data()
    if not data.get("review_name"):
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    try:
        await vs.request_review(session, actor.account, committee_id=callback_data.id, name=data["review_name"],
                                address=data.get("review_address", ""), now=now)
    except vs.VerificationError as err:
        await query.answer()
        await query.message.answer(refusal(err, config))
        return
    await state.clear()
    await query.answer()
    await query.message.edit_reply_markup(reply_markup=None)
    await query.message.answer(t("Your request has been sent to the committee staff. I will tell you their "
                                 "decision here."))
    await _tell_staff_of_pending(session, actor, now)


async def _tell_staff_of_pending(session: AsyncSession, actor: Actor, now: datetime) -> None:
    req, committee = await vs.pending_request_of(session, actor.account_id)
    if req is None:
        return
    for staff_account in await committee_staff(session, committee):
        await tell(session, staff_account, f"vreq:{req.id}:staff:{staff_account.id}", "verification.request",
                   {"id": req.id, "name": req.name, "address": req.address}, now=now)


# --- staff enrolment -------------------------------------------------------------------------

async def _enrol_staff(message: Message, actor: Actor, session: AsyncSession, config: AppConfig, code: str,
                       now: datetime) -> None:
    try:
        staff, region = await vs.redeem_staff_invite(session, actor.account, code,
                                                     secret_key=config.secret_key, now=now)
    except vs.VerificationError as err:
        await message.answer(refusal(err, config))
        return
    await message.answer(t("You are now enrolled as {role} staff of {region}. Send /help for staff commands.",
                           role=role_name(staff.role), region=region.name))
    actor.staff = await load_staff_grants(session, actor.account.id)  # the new grant, for the "/" list
    await publish_for_actor(message.bot, session, actor)
