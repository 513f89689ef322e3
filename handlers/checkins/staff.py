"""Staff commands of check-ins: /checkin_enrol (one resident or a segment), /checkin_stop,
/checkin_family, /checkins (today's board), /checkins_week, /duty."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.checkins.common import refusal, refusal_html
from handlers.checkins.family import invite_link
from handlers.commands import publish_for_account
from handlers.staff import StaffOnly
from notifications.callbacks import EnrolCb
from notifications.limits import clip
from notifications.messages import checkins as views
from notifications.render import t, to_reply_markup
from notifications.reports import weekly_chart, weekly_sheet
from services import checkins as cs
from services.checkins import CheckinConfig, CheckinError
from services.config import AppConfig
from services.expressions import ExpressionError
from services.models import Resident
from services.residents import committees_in_scope, find_residents, get_resident
from services.scope import Actor
from services.segments import list_segments

MAX_CHOICES = 10


def router() -> Router:
    r = Router(name="checkins.staff")
    only = StaffOnly()
    r.message.register(enrol, Command("checkin_enrol"), only)
    r.callback_query.register(enrol_chosen, EnrolCb.filter(), only)
    r.message.register(stop, Command("checkin_stop"), only)
    r.message.register(family_for_resident, Command("checkin_family"), only)
    r.message.register(show_board, Command("checkins"), only)
    r.message.register(week, Command("checkins_week"), only)
    r.message.register(duty, Command("duty"), only)
    return r


# --- /checkin_enrol ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EnrolArgs:
    """``/checkin_enrol`` as typed: a resident query or a segment, and the raw option values."""

    query: str = ""
    segment: str | None = None
    time: str | None = None
    days: str | None = None
    committee: str | None = None


_OPTION = re.compile(r"(?:^|\s)(?:--(time|days|committee)\s+|(days)=)(\S+)")
_SEGMENT = re.compile(r"^--segment(?:\s+|$)")


def parse_enrol_args(text: str | None) -> EnrolArgs:
    """The one parser of ``/checkin_enrol``::

        <room or name> [HH:MM] [days=1-5]
        <room or name> [--time HH:MM] [--days 1-5]
        --segment <expression or saved segment> [--time HH:MM] [--days 1-5] [--committee CODE]

    Options may stand anywhere; a bare trailing time belongs to a resident query only. Values are
    returned as typed: they are read (and checked) by the caller and the service."""
    options: dict[str, str] = {}

    def take(m: re.Match) -> str:
        options[m[1] or m[2]] = m[3]
        return " "

    rest = _OPTION.sub(take, text or "").strip()
    if _SEGMENT.match(rest):
        return EnrolArgs(segment=_SEGMENT.sub("", rest, count=1).strip(), **options)
    words = rest.split()
    if "time" not in options and len(words) > 1 and cs.parse_time(words[-1]) is not None:
        options["time"] = words.pop()
    return EnrolArgs(query=" ".join(words), **options)


def _usage():
    return t("Usage: /checkin_enrol &lt;room or name&gt; [HH:MM] [days=1-5], or "
             "/checkin_enrol --segment &lt;expression&gt; [--time HH:MM]")


async def enrol(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, bot: Bot,
                checkin_config: CheckinConfig, config: AppConfig, now: datetime) -> None:
    args = parse_enrol_args(command.args)
    if not args.query and not args.segment:
        await message.answer(_usage())
        return
    minute = cs.parse_time(args.time) if args.time is not None else None
    if args.time is not None and minute is None:
        await message.answer(t("{value} is not a time. Please give a time like 08:30.", value=clip(args.time, 20)))
        return
    days = cs.parse_days(args.days) if args.days is not None else None
    if args.days is not None and days is None:
        await message.answer(t("{value} are not days. Please use daily, weekdays, 1-5 or 1,3,5 (1 = Monday).",
                               value=clip(args.days, 20)))
        return
    if args.segment is not None:
        await _enrol_segment(message, actor, session, args, minute, days, checkin_config, now)
        return
    found = await find_residents(session, actor, args.query)
    if not found:
        await message.answer(t("Nobody matching {query} in your area.", query=clip(args.query)))
        return
    if len(found) > 1:
        choices = [(r.id, f"{clip(r.name, 30)} · {clip(cs.room_of(r), 30)}") for r in found[:MAX_CHOICES]]
        await message.answer(t("Several residents match. Whom do you mean?"),
                             reply_markup=to_reply_markup(views.enrol_buttons(choices, minute, days)))
        return
    try:
        text = await _enrol_one(bot, session, actor, found[0], minute, days, checkin_config, config, now)
    except CheckinError as err:
        await message.answer(refusal_html(err))
        return
    await message.answer(text)


async def _enrol_segment(message: Message, actor: Actor, session: AsyncSession, args: EnrolArgs,
                         minute: int | None, days: int | None, cfg: CheckinConfig, now: datetime) -> None:
    committees = await committees_in_scope(session, actor)
    if args.committee:
        committees = [c for c in committees if c.code == args.committee]
    if len(committees) != 1:
        await message.answer(t("Which committee? Add --committee &lt;code&gt;. In your area: {names}",
                               names=views.committee_list(committees)))
        return
    # A saved segment (services.segments) may be named instead of written out.
    saved = {seg.name: seg.expression for seg in await list_segments(session, actor)}
    expression = saved.get(args.segment, args.segment)
    try:
        result = await cs.enrol_segment(session, committees[0], expression, now=now, cfg=cfg, minute=minute,
                                        days=days, by_account_id=actor.account_id)
    except ExpressionError as err:
        await message.answer(t("That expression has an error: {error}", error=clip(str(err), 300)))
        return
    await message.answer(t("{matched} residents match; {enrolled} newly enrolled, {already} already enrolled.",
                           matched=result.matched, enrolled=result.enrolled, already=result.already))


async def _enrol_one(bot: Bot, session: AsyncSession, actor: Actor, resident: Resident, minute: int | None,
                     days: int | None, cfg: CheckinConfig, config: AppConfig, now: datetime):
    plan, _created = await cs.enrol_resident(session, resident, now=now, cfg=cfg, minute=minute, days=days,
                                             by_account_id=actor.account_id)
    elder = await cs.elder_account(session, resident.id)
    if elder is not None:
        # The elder's "/" list gains /checkin now, not at their next /start.
        await publish_for_account(bot, session, elder, default_locale=config.default_locale)
    return views.enrolled_reply(resident.name, cs.room_of(resident), plan.minute_of_day, plan.days,
                                plan.starts_on.isoformat(), on_bot=elder is not None, mode=plan.mode.value)


async def enrol_chosen(query: CallbackQuery, callback_data: EnrolCb, actor: Actor, session: AsyncSession, bot: Bot,
                       checkin_config: CheckinConfig, config: AppConfig, now: datetime) -> None:
    """One of several matches picked; the button's values are checked by the service like typed ones."""
    resident = await get_resident(session, actor, callback_data.rid)
    if resident is None:
        await query.answer(refusal(CheckinError("not_yours")), show_alert=True)
        return
    minute = None if callback_data.m == -1 else callback_data.m
    days = None if callback_data.d == 0 else callback_data.d
    try:
        text = await _enrol_one(bot, session, actor, resident, minute, days, checkin_config, config, now)
    except CheckinError as err:
        await query.answer(refusal(err), show_alert=True)
        return
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=None)


# --- /checkin_stop, /checkin_family ----------------------------------------------------------------

async def _one_resident(message: Message, actor: Actor, session: AsyncSession, query: str, usage) -> Resident | None:
    found = await find_residents(session, actor, query) if query else []
    if not query:
        await message.answer(usage)
    elif len(found) != 1:
        await message.answer(t("Please name exactly one resident ({n} match {query}).", n=len(found),
                               query=clip(query)))
    else:
        return found[0]
    return None


async def stop(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, now: datetime) -> None:
    usage = t("Usage: /checkin_stop &lt;room or name&gt; (exactly one resident).")
    resident = await _one_resident(message, actor, session, (command.args or "").strip(), usage)
    if resident is None:
        return
    if await cs.unenrol(session, resident, now=now, by_account_id=actor.account_id):
        await message.answer(t("Daily check-ins stopped for {name}.", name=resident.name))
    else:
        await message.answer(t("{name} is not enrolled.", name=resident.name))


async def family_for_resident(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                              checkin_config: CheckinConfig, now: datetime) -> None:
    usage = t("Usage: /checkin_family &lt;room or name&gt;, e.g. /checkin_family 5-1-102")
    resident = await _one_resident(message, actor, session, (command.args or "").strip(), usage)
    if resident is None:
        return
    code = await cs.create_family_invite(session, resident.id, issued_by="staff", cfg=checkin_config, now=now,
                                         by_account_id=actor.account_id)
    await message.answer(t("Family link for {name} (works once, for {days} days):", name=resident.name,
                           days=checkin_config.family_invite_ttl.days)
                         + "\n" + await invite_link(message.bot, code))


# --- /checkins, /checkins_week, /duty --------------------------------------------------------------

async def show_board(message: Message, actor: Actor, session: AsyncSession, checkin_config: CheckinConfig,
                     now: datetime) -> None:
    board = await cs.board(session, actor, now=now, cfg=checkin_config)
    for page in views.board_pages(board):
        await message.answer(page)


async def week(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
               checkin_config: CheckinConfig, now: datetime) -> None:
    """The seven days up to and including today: text, chart and sheet."""
    committees = await committees_in_scope(session, actor)
    wanted = (command.args or "").strip()
    if wanted:
        committees = [c for c in committees if c.code == wanted or wanted in c.name]
    if len(committees) != 1:
        await message.answer(t("Which committee? /checkins_week &lt;code&gt;. In your area: {names}",
                               names=views.committee_list(committees)))
        return
    report = await cs.weekly_report(session, committees[0], checkin_config.today(now))
    png, xlsx = await asyncio.to_thread(lambda: (weekly_chart(report), weekly_sheet(report)))
    stem = f"checkins-{report.code}-{report.start.isoformat()}"
    await message.answer(views.weekly_text(report.data()))
    await message.answer_photo(BufferedInputFile(png, filename=f"{stem}.png"))
    await message.answer_document(BufferedInputFile(xlsx, filename=f"{stem}.xlsx"))


DUTY_WORDS = {"on": True, "开": True, "上班": True, "off": False, "关": False, "下班": False}


async def duty(message: Message, command: CommandObject, actor: Actor, session: AsyncSession) -> None:
    on = DUTY_WORDS.get((command.args or "").strip().lower())
    if on is None:
        await message.answer(t("Usage: /duty on or /duty off (on-duty staff receive check-in alerts first)."))
        return
    if not await cs.set_duty(session, actor, on):
        await message.answer(t("Only committee staff take duty."))
        return
    await message.answer(t("You are on duty: check-in alerts come to you first.") if on else t("You are off duty."))

