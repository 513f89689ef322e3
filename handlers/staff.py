"""Staff commands in the bot: /pending, request decisions, /invite, /whois, /export."""

from __future__ import annotations

from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.commands import publish_for_account
from handlers.keyboards import inline
from notifications.callbacks import ConfirmCb, ReviewCb
from notifications.format import resident_status, room_text
from notifications.limits import clip, pages
from notifications.render import Markup, render_template, t
from services import verification as vs
from services.config import AppConfig
from services.i18n import _
from services.identity import mask_phone
from services.models import ResidentStatus
from services.registry import confirm_resident, export_registry_xlsx
from services.residents import committees_in_scope, find_household, find_residents, get_resident
from services.scope import Actor

MAX_INVITES = 50
WHOIS_LIMIT = 20


class Lookup(StatesGroup):
    query = State()  # the menu's "Find a resident" asked for a name or room


class StaffOnly(Filter):
    """Passes staff only. Others fall through: a staff command is then refused politely by the
    fallback router, a staff button is answered as no longer valid."""

    async def __call__(self, event, actor: Actor) -> bool:
        return actor.is_staff


def router() -> Router:
    r = Router(name="staff")
    only = StaffOnly()
    r.message.register(pending, Command("pending"), only)
    r.callback_query.register(decide, ReviewCb.filter(F.decision.in_({"a", "r"})), only)
    r.message.register(invite, Command("invite"), only)
    r.message.register(whois, Command("whois"), only)
    r.message.register(whois_typed, Lookup.query, F.text, ~F.text.startswith("/"), only)
    r.message.register(export, Command("export"), only)
    r.callback_query.register(confirm_moved, ConfirmCb.filter(), only)
    return r


def request_line(req) -> Markup:
    kinds = {"review": _("manual review"), "new_member": _("new household member"),
             "conflict": _("conflicting claim")}
    return t("#{id} {kind}: {name}, {address}", id=req.id, kind=kinds.get(req.kind, req.kind), name=req.name,
             address=req.address or "—")


async def pending(message: Message, actor: Actor, session: AsyncSession) -> None:
    reqs = await vs.pending_requests(session, actor, limit=10)
    if not reqs:
        await message.answer(t("No verification requests are waiting."))
        return
    for req in reqs:
        await message.answer(request_line(req), reply_markup=inline([[
            (_("Approve"), ReviewCb(id=req.id, decision="a").pack()),
            (_("Reject"), ReviewCb(id=req.id, decision="r").pack())]]))


async def decide(query: CallbackQuery, callback_data: ReviewCb, actor: Actor, session: AsyncSession,
                 config: AppConfig, now: datetime) -> None:
    approve = callback_data.decision == "a"
    try:
        req, account = await vs.decide_request(session, actor, callback_data.id, approve=approve, now=now)
    except vs.NotFoundInScope:
        await query.answer(_("This request does not exist or is outside your area."), show_alert=True)
        return
    except vs.VerificationError:
        await query.answer(_("This request has already been decided."), show_alert=True)
        return
    done = _("Approved") if approve else _("Rejected")
    await query.answer(done)
    if query.message:
        await query.message.edit_text(t("{request}\n— {decision}", request=request_line(req), decision=done),
                                      reply_markup=None)
    if account is not None and approve:  # their "/" list now shows what a verified resident may use
        await publish_for_account(query.bot, session, account, default_locale=config.default_locale)


async def invite(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                 config: AppConfig, now: datetime) -> None:
    parts = (command.args or "").split()
    if not parts:
        await message.answer(t("Usage: /invite &lt;household code or building-room&gt; [count], e.g. /invite 3-201 2"))
        return
    count = 1
    if len(parts) > 1 and parts[-1].isascii() and parts[-1].isdigit():  # "²" is a digit, but no number
        count = int(parts.pop())
    if not 1 <= count <= MAX_INVITES:
        await message.answer(t("Please ask for between 1 and {n} codes.", n=MAX_INVITES))
        return
    household = await find_household(session, actor, " ".join(parts))
    if household is None:
        await message.answer(t("No household {query} in your area.", query=clip(" ".join(parts))))
        return
    codes = await vs.create_household_invites(session, household=household, count=count,
                                              secret_key=config.secret_key, ttl=config.invite_ttl,
                                              now=now, created_by=actor.account_id)
    me = await message.bot.me()
    await message.answer(render_template(
        "staff/invites.html",
        heading=t("Invite codes for household {household} (valid {days} days, each works once):",
                  household=household.code, days=config.invite_ttl.days),
        codes=[(vs.format_code(c), f"https://t.me/{me.username}?start=inv_{c}") for c in codes]))


async def ask_whois(message: Message, state: FSMContext) -> None:
    await state.set_state(Lookup.query)
    await message.answer(t("Whom are you looking for? Send a name or a room, e.g. 王 or 3-201 (or /cancel)."))


async def whois_typed(message: Message, actor: Actor, session: AsyncSession, state: FSMContext) -> None:
    await state.clear()
    await _whois(message, actor, session, message.text or "")


async def whois(message: Message, command: CommandObject, actor: Actor, session: AsyncSession) -> None:
    query = (command.args or "").strip()
    if not query:
        await message.answer(t("Usage: /whois &lt;name or room&gt;, e.g. /whois 王 or /whois 3-201"))
        return
    await _whois(message, actor, session, query)


async def _whois(message: Message, actor: Actor, session: AsyncSession, query: str) -> None:
    query = query.strip()
    found = await find_residents(session, actor, query, limit=WHOIS_LIMIT + 1, active_only=False)
    if not found:
        await message.answer(t("Nobody matching {query} in your area.", query=clip(query)))
        return
    shown = found[:WHOIS_LIMIT]
    rows = [(r.name, room_text(r.building, r.unit, r.room) or "?", mask_phone(r.phone) or "—",
             resident_status(r.status)) for r in shown]
    moved = [r for r in shown if r.status == ResidentStatus.moved_out]
    keyboard = inline([[(_("✓ {name} still lives here").format(name=r.name), ConfirmCb(id=r.id).pack())]
                       for r in moved]) if moved else None
    text = render_template("staff/whois.html", rows=rows, more=len(found) > WHOIS_LIMIT)
    *first, last = pages(text.split("\n"))  # one resident a line: a page never cuts one in two
    for page in first:
        await message.answer(page)
    await message.answer(last, reply_markup=keyboard)


async def confirm_moved(query: CallbackQuery, callback_data: ConfirmCb, actor: Actor, session: AsyncSession,
                        now: datetime) -> None:
    resident = await get_resident(session, actor, callback_data.id)
    if resident is None:
        await query.answer(_("This resident does not exist or is outside your area."), show_alert=True)
        return
    await confirm_resident(session, resident, actor_account_id=actor.account_id, now=now)
    await query.answer(_("Confirmed: {name} keeps resident rights.").format(name=resident.name), show_alert=True)


async def export(message: Message, command: CommandObject, actor: Actor, session: AsyncSession) -> None:
    committees = await committees_in_scope(session, actor)
    wanted = (command.args or "").strip()
    if wanted:
        committees = [c for c in committees if c.code == wanted or wanted in c.name]
    if len(committees) != 1:
        names = ", ".join(f"{c.name} ({c.code})" for c in committees[:20]) or "—"
        await message.answer(t("Which committee? /export &lt;code&gt;. In your area: {names}", names=names))
        return
    data = await export_registry_xlsx(session, committees[0])
    await message.answer_document(BufferedInputFile(data, filename=f"registry-{committees[0].code}.xlsx"),
                                  caption=t("Registry of {name}", name=committees[0].name))
