"""Staff: /policy_match CODE (counts, preview, push), /policy_enrol and /policy_decline (outcomes),
/policy_report (take-up, as a message and a sheet), an XLSX/CSV of outcomes sent with /policy_import."""

from __future__ import annotations

from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.staff import StaffOnly
from notifications.callbacks import PolicyEnrolCb, PolicyPushCb
from notifications.limits import clip, pages
from notifications.messages import policies as views
from notifications.policy_report import report_sheet
from notifications.render import join, t, to_reply_markup
from services import policies as pol
from services.config import AppConfig
from services.models import CaseStatus
from services.residents import find_residents
from services.scope import Actor
from services.tags import NotInScope, local_today

MAX_IMPORT_BYTES = 2 * 1024 * 1024


def router() -> Router:
    r = Router(name="policies.staff")
    only = StaffOnly()
    r.message.register(match, Command("policy_match"), only)
    r.callback_query.register(push, PolicyPushCb.filter(), only)
    r.message.register(outcome, Command("policy_enrol", "policy_decline"), only)
    r.callback_query.register(enrol_picked, PolicyEnrolCb.filter(), only)
    r.message.register(report, Command("policy_report"), only)
    r.message.register(import_file, F.document, F.caption.startswith("/policy_import"), only)
    return r


async def _catalogue(message: Message, session: AsyncSession, actor: Actor, now: datetime, config: AppConfig) -> None:
    policies = await pol.policies_in_force(session, local_today(now, config.tz))
    if not policies:
        await message.answer(t("No policies are loaded. Load them with: communitybot policies load DIR"))
        return
    lines = [t("<b>Policies in force</b> — send /policy_match CODE")]
    lines += [t("<code>{code}</code> — {title}", code=p.code, title=pol.pick(p.title, actor.locale)) for p in policies]
    await message.answer(join(lines))


async def match(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, now: datetime,
                config: AppConfig, policy_config: pol.PolicyConfig) -> None:
    code = (command.args or "").strip()
    if not code:
        await _catalogue(message, session, actor, now, config)
        return
    try:
        result = await pol.match_policy(session, actor, code, today=local_today(now, config.tz), now=now,
                                        push_interval=policy_config.push_interval)
    except pol.PolicyNotFound:
        await message.answer(t("There is no policy {code} in force. Send /policy_match for the list.",
                               code=clip(code, 64)))
        return
    rendered = views.match_summary(result, push_days=policy_config.push_interval.days)
    await message.answer(rendered.text, reply_markup=to_reply_markup(rendered.buttons))


async def push(query: CallbackQuery, callback_data: PolicyPushCb, actor: Actor, session: AsyncSession,
               now: datetime, config: AppConfig, policy_config: pol.PolicyConfig) -> None:
    if callback_data.a != "push":
        await query.answer()
        return
    try:
        result = await pol.push_policy(session, actor, callback_data.code, policy_config,
                                       today=local_today(now, config.tz), now=now)
    except pol.PolicyNotFound:
        await query.answer(t("There is no policy {code} in force.", code=callback_data.code), show_alert=True)
        return
    await query.answer()
    if query.message:
        if query.message.reply_markup:
            await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(t(
            "Notices queued for {pushed} residents. Unknown (never notified): {unknown}. Told within the last "
            "{days} days (skipped): {recent}.", pushed=result.pushed, unknown=result.match.unknown,
            days=policy_config.push_interval.days, recent=result.match.eligible_notified_recently))


async def _record(message: Message, session: AsyncSession, actor: Actor, code: str, resident_id: int,
                  status: CaseStatus, now: datetime, reason: str | None = None) -> None:
    try:
        changed = await pol.record_outcome(session, actor, code, resident_id, status, now=now, reason=reason)
    except pol.PolicyNotFound:
        await message.answer(t("There is no policy {code}.", code=clip(code, 64)))
        return
    except NotInScope:
        await message.answer(t("This resident does not exist or is outside your area."))
        return
    except pol.CaseError as err:
        await message.answer(t("{reason}", reason=str(err)))
        return
    if not changed:
        await message.answer(t("Nothing to change: that was already recorded."))
    elif status == CaseStatus.enrolled:
        await message.answer(t("Recorded: resident #{id} is enrolled in {code}.", id=resident_id, code=code))
    else:
        await message.answer(t("Recorded: resident #{id} declined for {code}.", id=resident_id, code=code))


async def outcome(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                  now: datetime) -> None:
    enrol = command.command == "policy_enrol"
    parts = (command.args or "").split(maxsplit=2)
    if len(parts) < 2 or (not enrol and len(parts) < 3):
        if enrol:
            await message.answer(t("Usage: /policy_enrol CODE room-or-name, e.g. "
                                   "/policy_enrol meal_assistance 3-2-201"))
        else:
            await message.answer(t("Usage: /policy_decline CODE room-or-name reason, e.g. "
                                   "/policy_decline meal_assistance 3-2-201 moved to a care home"))
        return
    code, who = parts[0], parts[1]
    rest = parts[2] if len(parts) > 2 else ""
    if enrol and rest:
        who = f"{who} {rest}"
    found = await find_residents(session, actor, who, limit=8)
    if not found:
        await message.answer(t("Nobody matching {query} in your area.", query=clip(who)))
        return
    if len(found) > 1:
        if not enrol:
            await message.answer(t("Several residents match {query}; use the room or the resident number (#…).",
                                   query=clip(who)))
            return
        rows = [[{"text": f"{r.name} ({'-'.join(p for p in (r.building, r.unit, r.room) if p)})",
                  "callback_data": PolicyEnrolCb(code=code[:40], rid=r.id, s="enrolled").pack()}] for r in found]
        await message.answer(t("Several residents match. Which one?"), reply_markup=to_reply_markup(rows))
        return
    await _record(message, session, actor, code, found[0].id, CaseStatus.enrolled if enrol else CaseStatus.declined,
                  now, None if enrol else rest)


async def enrol_picked(query: CallbackQuery, callback_data: PolicyEnrolCb, actor: Actor, session: AsyncSession,
                       now: datetime) -> None:
    await query.answer()
    if query.message is None:
        return
    if query.message.reply_markup:
        await query.message.edit_reply_markup(reply_markup=None)
    if callback_data.s != "enrolled":
        await query.message.answer(t("This button is no longer valid."))
        return
    await _record(query.message, session, actor, callback_data.code, callback_data.rid, CaseStatus.enrolled, now)


async def report(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, now: datetime,
                 config: AppConfig, policy_config: pol.PolicyConfig) -> None:
    codes = (command.args or "").split() or None
    rows = await pol.policy_report(session, actor, policy_config, today=local_today(now, config.tz), now=now,
                                   codes=codes)
    if not rows:
        await message.answer(t("No policies to report on."))
        return
    text = views.report(rows, title_of=lambda r: pol.pick(r.title, actor.locale))
    for page in pages(text.split("\n")):
        await message.answer(page)
    title = t("Policy take-up, {date}", date=local_today(now, config.tz).isoformat())
    sheet = report_sheet(rows, actor.locale, str(title))
    await message.answer_document(BufferedInputFile(sheet, filename="policy-take-up.xlsx"), caption=title)


async def import_file(message: Message, actor: Actor, session: AsyncSession, bot: Bot, now: datetime) -> None:
    doc = message.document
    name = doc.file_name or "outcomes.csv"
    if not name.lower().endswith((".xlsx", ".csv")) or (doc.file_size or 0) > MAX_IMPORT_BYTES:
        await message.answer(t("Send a CSV or XLSX file (at most 2 MB) with the caption /policy_import."))
        return
    buffer = await bot.download(doc)
    try:
        rows = pol.read_rows(name, buffer.read())
    except (ValueError, KeyError, OSError):
        await message.answer(t("The file could not be read. Send a CSV (UTF-8) or XLSX file."))
        return
    result = await pol.import_enrolments(session, actor, rows, now=now)
    lines = [t("Recorded {changed}, unchanged {unchanged}, rejected {rejected}.", changed=result.changed,
               unchanged=result.unchanged, rejected=len(result.errors))]
    lines += [t("· {error}", error=e) for e in result.errors[:20]]
    await message.answer(join(lines))
