"""Staff commands in the bot: /pending, request decisions, /invite, /whois, /export."""

from __future__ import annotations

from datetime import datetime
from html import escape

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.filters.callback_data import CallbackData
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.settings import Settings
from handlers.keyboards import inline
from services import verification as vs
from services.i18n import _
from services.identity import mask_phone
from services.models import ResidentStatus
from services.notify import notify
from services.registry import confirm_resident, export_registry_xlsx
from services.residents import committees_in_scope, find_household, find_residents, get_resident
from services.scope import Actor

MAX_INVITES = 50


class ReviewCb(CallbackData, prefix="vr"):
    id: int
    decision: str  # a / r


class ConfirmCb(CallbackData, prefix="rc"):
    id: int


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
    r.message.register(export, Command("export"), only)
    r.callback_query.register(confirm_moved, ConfirmCb.filter(), only)
    return r


def request_line(req) -> str:
    kinds = {"review": _("manual review"), "new_member": _("new household member"),
             "conflict": _("conflicting claim")}
    return _("#{id} {kind}: {name}, {address}").format(id=req.id, kind=kinds.get(req.kind, req.kind),
                                                        name=escape(req.name), address=escape(req.address or "—"))


async def pending(message: Message, actor: Actor, session: AsyncSession) -> None:
    reqs = await vs.pending_requests(session, actor, limit=10)
    if not reqs:
        await message.answer(_("No verification requests are waiting."))
        return
    for req in reqs:
        await message.answer(request_line(req), reply_markup=inline([[
            (_("Approve"), ReviewCb(id=req.id, decision="a").pack()),
            (_("Reject"), ReviewCb(id=req.id, decision="r").pack())]]))


async def decide(query: CallbackQuery, callback_data: ReviewCb, actor: Actor, session: AsyncSession,
                 settings: Settings, now: datetime) -> None:
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
        await query.message.edit_text(f"{request_line(req)}\n— {done}", reply_markup=None)
    if account is not None:
        def render():
            if approve:
                return _("Good news: the committee staff verified you. Welcome to your community! Send /menu."), None
            return _("Sorry, the committee staff could not verify your details. You can send /start to try "
                     "another way, or contact your committee office."), None
        await notify(session, account, f"vreq:{req.id}:decision", render, now=now)


async def invite(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                 settings: Settings, now: datetime) -> None:
    parts = (command.args or "").split()
    if not parts:
        await message.answer(_("Usage: /invite &lt;household code or building-room&gt; [count], e.g. /invite 3-201 2"))
        return
    count = 1
    if len(parts) > 1 and parts[-1].isdigit():
        count = int(parts.pop())
    if not 1 <= count <= MAX_INVITES:
        await message.answer(_("Please ask for between 1 and {n} codes.").format(n=MAX_INVITES))
        return
    household = await find_household(session, actor, " ".join(parts))
    if household is None:
        await message.answer(_("No household {query} in your area.").format(query=escape(" ".join(parts))))
        return
    codes = await vs.create_household_invites(session, household=household, count=count,
                                              secret_key=settings.ensure_secret_key(), ttl=settings.invite_ttl,
                                              now=now, created_by=actor.account_id)
    me = await message.bot.me()
    lines = [_("Invite codes for household {household} (valid {days} days, each works once):").format(
        household=household.code, days=settings.invite_ttl.days)]
    lines += [f"<code>{vs.format_code(c)}</code>  https://t.me/{me.username}?start=inv_{c}" for c in codes]
    await message.answer("\n".join(lines))


async def whois(message: Message, command: CommandObject, actor: Actor, session: AsyncSession) -> None:
    query = (command.args or "").strip()
    if not query:
        await message.answer(_("Usage: /whois &lt;name or room&gt;, e.g. /whois 王 or /whois 3-201"))
        return
    found = await find_residents(session, actor, query, active_only=False)
    if not found:
        await message.answer(_("Nobody matching {query} in your area.").format(query=escape(query)))
        return
    lines = [f"{escape(r.name)} · {r.building or '?'}-{r.unit + '-' if r.unit else ''}{r.room or '?'} · "
             f"{mask_phone(r.phone)} · {status_name(r.status)}" for r in found]
    moved = [r for r in found if r.status == ResidentStatus.moved_out]
    keyboard = inline([[(_("✓ {name} still lives here").format(name=r.name), ConfirmCb(id=r.id).pack())]
                       for r in moved]) if moved else None
    await message.answer("\n".join(lines), reply_markup=keyboard)


def status_name(status: ResidentStatus) -> str:
    return {ResidentStatus.active: _("active"), ResidentStatus.moved_out: _("moved out? (missing from the last "
                                                                           "import)"),
            ResidentStatus.withdrawn: _("withdrew (/forget)")}[status]


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
        names = escape(", ".join(f"{c.name} ({c.code})" for c in committees[:20]) or "—")
        await message.answer(_("Which committee? /export &lt;code&gt;. In your area: {names}").format(names=names))
        return
    data = await export_registry_xlsx(session, committees[0])
    await message.answer_document(BufferedInputFile(data, filename=f"registry-{committees[0].code}.xlsx"),
                                  caption=_("Registry of {name}").format(name=committees[0].name))
