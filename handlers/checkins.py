"""Daily check-ins in the bot: the elder's answers and /checkin menu, /family, family deep links,
alert buttons, and the staff commands (/checkin_enrol, /checkins, /alerts, /checkins_week, …)."""

from __future__ import annotations

import re
import shlex
from datetime import date, datetime, timedelta

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.settings import Settings
from handlers.keyboards import inline
from handlers.staff import StaffOnly
from services import checkins as cs
from services.expressions import ExpressionError
from services.i18n import _
from services.models import AlertOutcome, AlertStatus
from services.residents import committees_in_scope, find_residents, get_resident
from services.scope import Actor
from services.segments import list_segments

MAX_CHOICES = 10
MAX_LINES = 30
TIME_CHOICES = (7 * 60, 8 * 60, 9 * 60, 10 * 60, 11 * 60, 18 * 60)
PAUSE_CHOICES = (3, 7, 14, 30)
OUTCOMES = {"safe": AlertOutcome.safe, "help": AlertOutcome.needed_help, "unr": AlertOutcome.not_reachable}


class CheckinCb(CallbackData, prefix="ci"):
    """The elder's answer (built as ``ci:<round>:ok|help`` by services.checkins)."""

    id: int
    a: str


class AlertCb(CallbackData, prefix="al"):
    """An alert button (``al:<alert>:ack|safe|help|unr|hist``)."""

    id: int
    a: str


class MenuCb(CallbackData, prefix="cim"):
    a: str  # time, t (set), tt (type), pause, p (days), pd (type a date), resume, family
    v: int = 0


class EnrolCb(CallbackData, prefix="cie"):
    rid: int
    m: int  # minute of day, -1 = keep / default
    d: int  # days mask, 0 = keep / default


class ContactCb(CallbackData, prefix="cic"):
    id: int


class CheckinForm(StatesGroup):
    time = State()
    pause_until = State()


def router() -> Router:
    r = Router(name="checkins")
    only = StaffOnly()
    not_command = ~F.text.startswith("/")
    r.message.register(family_start, CommandStart(deep_link=True, magic=F.args.startswith("fam_")))
    r.callback_query.register(answered, CheckinCb.filter(F.a.in_({"ok", "help"})))
    r.callback_query.register(alert_pressed, AlertCb.filter(F.a.in_({"ack", "safe", "help", "unr", "hist"})))
    r.message.register(checkin_menu, Command("checkin"))
    r.callback_query.register(menu_pressed, MenuCb.filter())
    r.message.register(time_typed, CheckinForm.time, F.text, not_command)
    r.message.register(pause_typed, CheckinForm.pause_until, F.text, not_command)
    r.message.register(family, Command("family"))
    r.callback_query.register(contact_remove, ContactCb.filter())
    r.message.register(enrol, Command("checkin_enrol"), only)
    r.callback_query.register(enrol_chosen, EnrolCb.filter(), only)
    r.message.register(stop, Command("checkin_stop"), only)
    r.message.register(show_board, Command("checkins"), only)
    r.message.register(show_alerts, Command("alerts"), only)
    r.message.register(week, Command("checkins_week"), only)
    r.message.register(duty, Command("duty"), only)
    r.message.register(family_for_resident, Command("checkin_family"), only)
    return r


def cfg_of(settings: Settings) -> cs.CheckinConfig:
    return cs.CheckinConfig.of(settings)


def refusal(err: cs.CheckinError) -> str:
    texts = {
        "not_yours": _("This button is no longer valid."),
        "not_found": _("This alert does not exist or is outside your area."),
        "closed": _("This alert is already closed."),
        "taken": _("{who} is already on it.").format(who=err.info.get("by", "?")),
        "not_enrolled": _("You are not enrolled in daily check-ins. Your committee staff can enrol you."),
        "bad_time": _("Please give a time like 08:30."),
        "past_date": _("That date has already passed."),
        "too_far": _("Please choose a date within {n} days.").format(n=err.info.get("days", cs.MAX_PAUSE_DAYS)),
        "not_active": _("This resident is not active in the registry."),
        "unknown_code": _("This family link is not valid."),
        "used_code": _("This family link has already been used. Please ask for a new one."),
        "expired_code": _("This family link has expired. Please ask for a new one."),
        "own_code": _("This is your own family link: send it to a family member."),
    }
    return texts.get(err.reason, _("Sorry, that did not work."))


# --- the elder answers -----------------------------------------------------------------------

async def answered(query: CallbackQuery, callback_data: CheckinCb, actor: Actor, session: AsyncSession,
                   settings: Settings, now: datetime) -> None:
    need_help = callback_data.a == "help"
    try:
        await cs.answer(session, actor.account, callback_data.id, need_help=need_help, now=now,
                        cfg=cfg_of(settings))
    except cs.CheckinError as err:
        await query.answer(refusal(err), show_alert=True)
        return
    if need_help:
        text = _("🆘 Help is on the way. The committee staff have been told.")
        rows = [[(_("😊 I'm fine now"), CheckinCb(id=callback_data.id, a="ok").pack())]]
    else:
        text = _("😊 Thank you! Have a good day.")
        rows = [[(_("🆘 I need help"), CheckinCb(id=callback_data.id, a="help").pack())]]
    await query.answer(text)
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=inline(rows))


# --- the elder's /checkin menu -----------------------------------------------------------------

def plan_text(plan, today: date) -> str:
    text = _("Your daily check-in: {time}, {days}.").format(time=cs.format_minute(plan.minute_of_day),
                                                             days=cs.format_days(plan.days))
    if plan.paused_until is not None and plan.paused_until >= today:
        text += "\n" + _("Paused until {date} (inclusive).").format(date=plan.paused_until.isoformat())
    return text


def menu_rows(plan, today: date) -> list[list[tuple[str, str]]]:
    paused = plan.paused_until is not None and plan.paused_until >= today
    rows = [[(_("🕘 Change time"), MenuCb(a="time").pack())]]
    rows.append([(_("▶️ Resume check-ins"), MenuCb(a="resume").pack())] if paused
                else [(_("⏸ Pause (travel, hospital)"), MenuCb(a="pause").pack())])
    rows.append([(_("👪 Family contacts"), MenuCb(a="family").pack())])
    return rows


async def checkin_menu(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                       settings: Settings, now: datetime) -> None:
    await state.clear()
    plan = await cs.my_plan(session, actor.account) if actor.is_verified else None
    if plan is None:
        await message.answer(refusal(cs.CheckinError("not_enrolled")))
        return
    today = cfg_of(settings).today(now)
    await message.answer(plan_text(plan, today), reply_markup=inline(menu_rows(plan, today)))


async def menu_pressed(query: CallbackQuery, callback_data: MenuCb, actor: Actor, session: AsyncSession,
                       state: FSMContext, settings: Settings, now: datetime) -> None:
    cfg = cfg_of(settings)
    plan = await cs.my_plan(session, actor.account) if actor.is_verified else None
    if plan is None:
        await query.answer(refusal(cs.CheckinError("not_enrolled")), show_alert=True)
        return
    await query.answer()
    message = query.message if isinstance(query.message, Message) else None
    if message is None:
        return
    action = callback_data.a
    if action == "time":
        rows = [[(cs.format_minute(m), MenuCb(a="t", v=m).pack()) for m in TIME_CHOICES[i:i + 3]]
                for i in range(0, len(TIME_CHOICES), 3)]
        rows.append([(_("⌨️ Type another time"), MenuCb(a="tt").pack())])
        await message.answer(_("When should I ask you each day?"), reply_markup=inline(rows))
    elif action == "t":
        plan = await cs.set_time(session, actor.account, callback_data.v, now=now)
        await message.edit_text(plan_text(plan, cfg.today(now)), reply_markup=inline(menu_rows(plan, cfg.today(now))))
    elif action == "tt":
        await state.set_state(CheckinForm.time)
        await message.answer(_("Please type the time, for example 08:30."))
    elif action == "pause":
        rows = [[(_("{n} days").format(n=n), MenuCb(a="p", v=n).pack()) for n in PAUSE_CHOICES[:2]],
                [(_("{n} days").format(n=n), MenuCb(a="p", v=n).pack()) for n in PAUSE_CHOICES[2:]],
                [(_("📅 Until a date"), MenuCb(a="pd").pack())]]
        await message.answer(_("Going away or in hospital? For how long should I not ask?"), reply_markup=inline(rows))
    elif action == "p":
        days = max(1, min(callback_data.v, cs.MAX_PAUSE_DAYS))
        await _pause(message, actor, session, cfg, cfg.today(now) + timedelta(days=days), now)
    elif action == "pd":
        await state.set_state(CheckinForm.pause_until)
        await message.answer(_("Until which date (inclusive)? For example 2026-12-05 or 12-05."))
    elif action == "resume":
        plan = await cs.resume(session, actor.account, now=now)
        await message.answer(_("Welcome back! Daily check-ins are on again.") + "\n" + plan_text(plan, cfg.today(now)))
    elif action == "family":
        await _family(message, actor, session, settings, now)


async def _pause(message: Message, actor: Actor, session: AsyncSession, cfg: cs.CheckinConfig, until: date,
                 now: datetime) -> None:
    try:
        plan = await cs.pause(session, actor.account, until, now=now, cfg=cfg)
    except cs.CheckinError as err:
        await message.answer(refusal(err))
        return
    await message.answer(_("Check-ins paused until {date} (inclusive). Take care! Send /checkin to resume earlier.")
                         .format(date=plan.paused_until.isoformat()))


async def time_typed(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                     settings: Settings, now: datetime) -> None:
    minute = cs.parse_time(message.text)
    if minute is None:
        await message.answer(refusal(cs.CheckinError("bad_time")))
        return
    await state.clear()
    try:
        plan = await cs.set_time(session, actor.account, minute, now=now)
    except cs.CheckinError as err:
        await message.answer(refusal(err))
        return
    today = cfg_of(settings).today(now)
    await message.answer(plan_text(plan, today), reply_markup=inline(menu_rows(plan, today)))


_DATE = re.compile(r"^\s*(?:(\d{4})\s*[-/.年]\s*)?(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\s*$")


def parse_date(text: str, today: date) -> date | None:
    """``2026-12-05``, ``12-05``, ``12/5``, ``12月5日``; without a year, the next such date."""
    m = _DATE.match(text or "")
    if not m:
        return None
    try:
        if m[1]:
            return date(int(m[1]), int(m[2]), int(m[3]))
        day = date(today.year, int(m[2]), int(m[3]))
        return day if day >= today else date(today.year + 1, day.month, day.day)
    except ValueError:
        return None


async def pause_typed(message: Message, actor: Actor, session: AsyncSession, state: FSMContext,
                      settings: Settings, now: datetime) -> None:
    cfg = cfg_of(settings)
    until = parse_date(message.text, cfg.today(now))
    if until is None:
        await message.answer(_("Please type a date like 2026-12-05 or 12-05."))
        return
    await state.clear()
    await _pause(message, actor, session, cfg, until, now)


# --- family ----------------------------------------------------------------------------------

async def _link(message: Message, code: str) -> str:
    me = await message.bot.me()
    return f"https://t.me/{me.username}?start=fam_{code}"


async def _family(message: Message, actor: Actor, session: AsyncSession, settings: Settings, now: datetime) -> None:
    contacts = await cs.list_contacts(session, actor.resident.id)
    code = await cs.create_family_invite(session, actor.resident.id, issued_by="elder",
                                         secret_key=settings.ensure_secret_key(), now=now,
                                         by_account_id=actor.account_id)
    lines = [_("<b>Your emergency contacts</b>")]
    lines += [f"• {c.name}" for c in contacts] or [_("None yet.")]
    lines.append(_("To add a family member, send them this link (works once, for 7 days):"))
    lines.append(await _link(message, code))
    rows = [[(_("Remove {name}").format(name=c.name), ContactCb(id=c.id).pack())] for c in contacts[:MAX_CHOICES]]
    await message.answer("\n".join(lines), reply_markup=inline(rows) if rows else None)


async def family(message: Message, actor: Actor, session: AsyncSession, settings: Settings, now: datetime) -> None:
    if not actor.is_verified:
        await message.answer(_("Only verified residents can add emergency contacts. Send /start to join."))
        return
    await _family(message, actor, session, settings, now)


async def contact_remove(query: CallbackQuery, callback_data: ContactCb, actor: Actor, session: AsyncSession,
                         now: datetime) -> None:
    if not await cs.remove_contact(session, actor.account, callback_data.id, now=now):
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    await query.answer(_("Removed."))
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)


async def family_start(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                       state: FSMContext, settings: Settings, now: datetime) -> None:
    await state.clear()
    code = (command.args or "").removeprefix("fam_")
    try:
        resident = await cs.redeem_family_invite(session, actor.account, code, secret_key=settings.ensure_secret_key(),
                                                 now=now)
    except cs.CheckinError as err:
        await message.answer(refusal(err))
        return
    await message.answer(_(
        "You are now an emergency contact of {name}. I will tell you if they do not answer their daily "
        "check-in or ask for help.\nWe keep only your Telegram name and id for this; send /forget to stop."
    ).format(name=resident.name))


async def family_for_resident(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                              settings: Settings, now: datetime) -> None:
    query = (command.args or "").strip()
    if not query:
        await message.answer(_("Usage: /checkin_family &lt;room or name&gt;, e.g. /checkin_family 5-1-102"))
        return
    found = await find_residents(session, actor, query)
    if len(found) != 1:
        await message.answer(_("Please name exactly one resident ({n} match).").format(n=len(found)))
        return
    code = await cs.create_family_invite(session, found[0].id, issued_by="staff",
                                         secret_key=settings.ensure_secret_key(), now=now,
                                         by_account_id=actor.account_id)
    await message.answer(_("Family link for {name} (works once, for 7 days):").format(name=found[0].name)
                         + "\n" + await _link(message, code))


# --- alerts ----------------------------------------------------------------------------------

async def alert_pressed(query: CallbackQuery, callback_data: AlertCb, actor: Actor, session: AsyncSession,
                        settings: Settings, now: datetime) -> None:
    cfg = cfg_of(settings)
    message = query.message if isinstance(query.message, Message) else None
    try:
        if callback_data.a == "hist":
            lines = await cs.round_history(session, actor, callback_data.id, cfg=cfg)
            await query.answer()
            if message is not None:
                await message.answer("\n".join(lines)[:4000] or "—")
            return
        if callback_data.a == "ack":
            alert = await cs.acknowledge(session, actor, callback_data.id, now=now)
        else:
            alert = await cs.resolve(session, actor, callback_data.id, OUTCOMES[callback_data.a], now=now, cfg=cfg)
    except cs.CheckinError as err:
        await query.answer(refusal(err), show_alert=True)
        return
    if alert.status == AlertStatus.acknowledged:
        await query.answer(_("Thank you. Please close the alert when you know more."))
        if message is not None:
            rows = [[(b["text"], b["callback_data"]) for b in row] for row in cs.alert_buttons(alert.id, True)]
            await message.edit_text(message.html_text + "\n— " + _("You are on it."), reply_markup=inline(rows))
        return
    done = _("Closed: {outcome}.").format(outcome=_(cs.OUTCOME_NAMES[alert.outcome]))
    await query.answer(done)
    if message is not None:
        await message.edit_text(message.html_text + "\n— " + done, reply_markup=None)


async def show_alerts(message: Message, actor: Actor, session: AsyncSession, settings: Settings) -> None:
    cfg = cfg_of(settings)
    views = await cs.open_alerts(session, actor)
    if not views:
        await message.answer(_("No open alerts in your area."))
        return
    for v in views:
        reason = _(cs.HEADLINES[v.alert.reason]).format(name=f"<b>{cs._e(v.resident.name)}</b>")
        lines = [reason, _("Committee: {committee}").format(committee=cs._e(v.committee)),
                 _("Room: {room}").format(room=cs._e(cs.room_of(v.resident))),
                 _("Phone: {phone}").format(phone=cs._e(v.resident.phone) or "—"),
                 _("Since {time}, level {level}.").format(time=cs._fmt(cfg, v.alert.opened_at), level=v.alert.level)]
        if v.acknowledged_by:
            lines.append(_("{who} is on it.").format(who=cs._e(v.acknowledged_by)))
        rows = [[(b["text"], b["callback_data"]) for b in row]
                for row in cs.alert_buttons(v.alert.id, v.alert.status == AlertStatus.acknowledged)]
        rows.append([(_("📜 History"), AlertCb(id=v.alert.id, a="hist").pack())])
        await message.answer("\n".join(lines), reply_markup=inline(rows))


# --- staff: enrolment, board, weekly report, duty ----------------------------------------------

def _split_options(args: str) -> tuple[str, dict[str, str]]:
    """``--time 08:30 --days 1-5 --committee X`` options out of the argument text; the rest stays."""
    options: dict[str, str] = {}
    try:
        tokens = shlex.split(args)
    except ValueError:
        tokens = args.split()
    rest: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("--time", "--days", "--committee") and i + 1 < len(tokens):
            options[tok[2:]] = tokens[i + 1]
            i += 2
            continue
        if tok.startswith("days="):
            options["days"] = tok[5:]
        elif cs.parse_time(tok) is not None and "segment" not in options and not tok.startswith("--"):
            options["time"] = tok
        else:
            rest.append(tok)
        i += 1
    return " ".join(rest), options


async def enrol(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                settings: Settings, now: datetime) -> None:
    raw = (command.args or "").strip()
    usage = _("Usage: /checkin_enrol &lt;room or name&gt; [HH:MM] [days=1-5], or "
              "/checkin_enrol --segment &lt;expression&gt; [--time HH:MM]")
    if not raw:
        await message.answer(usage)
        return
    cfg = cfg_of(settings)
    if raw.startswith("--segment"):
        expression, options = _segment_args(raw.removeprefix("--segment"))
    else:
        expression, (query, options) = None, _split_options(raw)
    minute = cs.parse_time(options["time"]) if "time" in options else None
    days = cs.parse_days(options["days"]) if "days" in options else None
    if ("time" in options and minute is None) or ("days" in options and days is None):
        await message.answer(usage)
        return
    if expression is not None:
        committees = await committees_in_scope(session, actor)
        wanted = options.get("committee")
        if wanted:
            committees = [c for c in committees if c.code == wanted]
        if len(committees) != 1:
            names = ", ".join(f"{c.name} ({c.code})" for c in committees[:20]) or "—"
            await message.answer(_("Which committee? Add --committee &lt;code&gt;. In your area: {names}")
                                 .format(names=names))
            return
        # A saved segment (services.segments) may be named instead of written out.
        saved = {seg.name: seg.expression for seg in await list_segments(session, actor)}
        expression = saved.get(expression, expression)
        try:
            result = await cs.enrol_segment(session, committees[0], expression, now=now, cfg=cfg, minute=minute,
                                            days=days, by_account_id=actor.account_id)
        except ExpressionError as err:
            await message.answer(_("That expression has an error: {error}").format(error=cs._e(str(err))))
            return
        await message.answer(_("{matched} residents match; {enrolled} newly enrolled, {already} already enrolled.")
                             .format(matched=result.matched, enrolled=result.enrolled, already=result.already))
        return
    found = await find_residents(session, actor, query)
    if not found:
        await message.answer(_("Nobody matching {query} in your area.").format(query=cs._e(query)))
        return
    if len(found) > 1:
        rows = [[(f"{r.name} · {cs.room_of(r)}", EnrolCb(rid=r.id, m=-1 if minute is None else minute,
                                                         d=days or 0).pack())] for r in found[:MAX_CHOICES]]
        await message.answer(_("Several residents match. Whom do you mean?"), reply_markup=inline(rows))
        return
    await _enrol_one(message, session, actor, found[0], minute, days, cfg, now)


def _segment_args(text: str) -> tuple[str, dict[str, str]]:
    options: dict[str, str] = {}
    for name in ("time", "days", "committee"):
        m = re.search(rf"\s--{name}\s+(\S+)", text)
        if m:
            options[name] = m[1]
            text = text[:m.start()] + text[m.end():]
    return text.strip(), options


async def _enrol_one(message: Message, session: AsyncSession, actor: Actor, resident, minute: int | None,
                     days: int | None, cfg: cs.CheckinConfig, now: datetime) -> None:
    try:
        plan, _created = await cs.enrol_resident(session, resident, now=now, cfg=cfg, minute=minute, days=days,
                                                 by_account_id=actor.account_id)
    except cs.CheckinError as err:
        await message.answer(refusal(err))
        return
    text = _("Enrolled {name} ({room}): daily check-in at {time}, {days}, from {start}.").format(
        name=cs._e(resident.name), room=cs._e(cs.room_of(resident)), time=cs.format_minute(plan.minute_of_day),
        days=cs.format_days(plan.days), start=plan.starts_on.isoformat())
    lines = await cs.list_plans(session, resident.committee_id)
    if not any(line.resident.id == resident.id and line.on_bot for line in lines):
        text += "\n" + _("They have not joined the bot yet: check-ins start once they do (household invite: /invite).")
    await message.answer(text)


async def enrol_chosen(query: CallbackQuery, callback_data: EnrolCb, actor: Actor, session: AsyncSession,
                       settings: Settings, now: datetime) -> None:
    resident = await get_resident(session, actor, callback_data.rid)
    if resident is None:
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)
        await _enrol_one(query.message, session, actor, resident, None if callback_data.m < 0 else callback_data.m,
                         callback_data.d or None, cfg_of(settings), now)


async def stop(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, now: datetime) -> None:
    query = (command.args or "").strip()
    found = await find_residents(session, actor, query) if query else []
    if len(found) != 1:
        await message.answer(_("Usage: /checkin_stop &lt;room or name&gt; (exactly one resident)."))
        return
    if await cs.unenrol(session, found[0], now=now, by_account_id=actor.account_id):
        await message.answer(_("Daily check-ins stopped for {name}.").format(name=cs._e(found[0].name)))
    else:
        await message.answer(_("{name} is not enrolled.").format(name=cs._e(found[0].name)))


def _section(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    shown = items[:MAX_LINES]
    more = [_("… and {n} more").format(n=len(items) - len(shown))] if len(items) > len(shown) else []
    return [f"<b>{title}</b> ({len(items)})", *(f"• {cs._e(i)}" for i in shown), *more]


def board_text(b: cs.Board, cfg: cs.CheckinConfig) -> str:
    if not b.committees:
        return _("Nobody is enrolled in daily check-ins in your area.")
    out = [_("<b>Check-ins {date}</b>").format(date=b.day.isoformat())]
    detailed = len(b.committees) == 1
    for c in b.committees:
        if not detailed:
            out.append(_("{committee}: {ok} fine, {help} need help, {alerted} alerted, {waiting} waiting, "
                         "{paused} paused").format(
                committee=cs._e(c.committee.name), ok=len(c.answered), help=len(c.help), alerted=len(c.alerted),
                waiting=len(c.pending) + len(c.reminded), paused=len(c.paused)))
            continue
        out.append(cs._e(c.committee.name))
        out += _section(_("🆘 Need help"), c.help)
        out += _section(_("🔔 Alerted"), c.alerted)
        out += _section(_("⏰ Reminded, no answer yet"), c.reminded)
        out += _section(_("⌛ Asked, no answer yet"), c.pending)
        out += _section(_("😊 Answered"), [f"{name} {cs._fmt(cfg, at)[-5:]}" for name, at in c.answered])
        out += _section(_("⏸ Paused"), [f"{name} → {until.isoformat() if until else '—'}" for name, until in c.paused])
        out += _section(_("🕘 Later today"), [f"{name} {cs.format_minute(m)}" for name, m in c.later])
        out += _section(_("📵 Not on the bot yet"), c.not_on_bot)
    return "\n".join(out)[:4000]


async def show_board(message: Message, actor: Actor, session: AsyncSession, settings: Settings, now: datetime) -> None:
    cfg = cfg_of(settings)
    await message.answer(board_text(await cs.board(session, actor, now=now, cfg=cfg), cfg))


async def week(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, settings: Settings,
               now: datetime) -> None:
    committees = await committees_in_scope(session, actor)
    wanted = (command.args or "").strip()
    if wanted:
        committees = [c for c in committees if c.code == wanted or wanted in c.name]
    if len(committees) != 1:
        names = ", ".join(f"{c.name} ({c.code})" for c in committees[:20]) or "—"
        await message.answer(
            _("Which committee? /checkins_week &lt;code&gt;. In your area: {names}").format(names=names))
        return
    end = cfg_of(settings).today(now) - timedelta(days=1)
    report = await cs.weekly_report(session, committees[0], end)
    stem = f"checkins-{committees[0].code}-{report.start.isoformat()}"
    await message.answer(report.text)
    await message.answer_photo(BufferedInputFile(report.png, filename=f"{stem}.png"))
    await message.answer_document(BufferedInputFile(report.xlsx, filename=f"{stem}.xlsx"))


async def duty(message: Message, command: CommandObject, actor: Actor, session: AsyncSession) -> None:
    arg = (command.args or "").strip().lower()
    if arg not in ("on", "off", "开", "关"):
        await message.answer(_("Usage: /duty on or /duty off (on-duty staff receive check-in alerts first)."))
        return
    on = arg in ("on", "开")
    if not await cs.set_duty(session, actor, on):
        await message.answer(_("Only committee staff take duty."))
        return
    await message.answer(_("You are on duty: check-in alerts come to you first.") if on
                         else _("You are off duty."))
