"""/notice: a cadre composes a notice (text → optional photo/file → audience → preview → send now or
at a time → confirm); residents press Received; /notice_report shows live delivery figures."""

from __future__ import annotations

import contextlib
from datetime import datetime
from html import escape

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.settings import Settings
from handlers.keyboards import inline
from handlers.staff import StaffOnly
from services import notices as ns
from services.i18n import _
from services.scope import Actor
from services.tags import tag_name


class Compose(StatesGroup):
    text = State()
    media = State()
    audience = State()
    when = State()
    confirm = State()


class NoticeCb(CallbackData, prefix="nt"):
    action: str  # skip, aud, tag, seg, now, later, send, abort, refresh, remind
    ref: str = ""


class ReceivedCb(CallbackData, prefix="nr"):
    id: int


def router() -> Router:
    r = Router(name="notices")
    only = StaffOnly()
    r.message.register(start_compose, Command("notice"), only)
    r.message.register(report_command, Command("notice_report"), only)
    r.message.register(cancel_command, Command("notice_cancel"), only)
    r.message.register(list_command, Command("notices"), only)
    r.message.register(got_text, Compose.text, F.text, ~F.text.startswith("/"))
    r.message.register(got_media, Compose.media, F.photo | F.document)
    r.callback_query.register(skip_media, Compose.media, NoticeCb.filter(F.action == "skip"))
    r.callback_query.register(chose_audience, Compose.audience, NoticeCb.filter(F.action.in_({"aud", "tag", "seg"})))
    r.callback_query.register(send_now, Compose.confirm, NoticeCb.filter(F.action == "now"), only)
    r.callback_query.register(ask_time, Compose.confirm, NoticeCb.filter(F.action == "later"))
    r.message.register(got_time, Compose.when, F.text, ~F.text.startswith("/"))
    r.callback_query.register(confirm_scheduled, Compose.confirm, NoticeCb.filter(F.action == "send"), only)
    r.callback_query.register(abort, NoticeCb.filter(F.action == "abort"))
    r.callback_query.register(refresh_report, NoticeCb.filter(F.action == "refresh"), only)
    r.callback_query.register(remind, NoticeCb.filter(F.action == "remind"), only)
    r.callback_query.register(received, ReceivedCb.filter())
    r.message.register(need_text, Compose.text, ~F.text)
    r.message.register(need_media, Compose.media, ~F.text.startswith("/"))
    return r


async def start_compose(message: Message, state: FSMContext) -> None:
    await state.clear()
    await state.set_state(Compose.text)
    await message.answer(_("New notice. Send its text (or /cancel)."))


async def need_text(message: Message) -> None:
    await message.answer(_("Please send the notice as text, or /cancel."))


async def got_text(message: Message, state: FSMContext) -> None:
    text = message.html_text  # keeps the author's bold/italic formatting, escaped otherwise
    try:
        ns._check_text(text, None)
    except ns.NoticeError as err:
        await message.answer(str(err))
        return
    await state.update_data(text=text)
    await state.set_state(Compose.media)
    await message.answer(_("Add a photo or a file? Send it now, or press Skip."),
                         reply_markup=inline([[(_("Skip"), NoticeCb(action="skip").pack())]]))


async def need_media(message: Message) -> None:
    await message.answer(_("Please send a photo or a file, or press Skip."))


async def got_media(message: Message, state: FSMContext) -> None:
    if message.photo:
        await state.update_data(media_kind="photo", media_file_id=message.photo[-1].file_id)
    else:
        await state.update_data(media_kind="document", media_file_id=message.document.file_id)
    await _ask_audience(message, state)


async def skip_media(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await _ask_audience(query.message, state)


async def _ask_audience(message: Message, state: FSMContext) -> None:
    await state.set_state(Compose.audience)
    await message.answer(_("Who should receive it?"), reply_markup=inline([
        [(_("Everyone in my area"), NoticeCb(action="aud", ref="committee").pack())],
        [(_("Residents with a tag"), NoticeCb(action="aud", ref="tag").pack())],
        [(_("A saved segment"), NoticeCb(action="aud", ref="segment").pack())],
    ]))


async def chose_audience(query: CallbackQuery, callback_data: NoticeCb, actor: Actor, session: AsyncSession,
                         state: FSMContext, now: datetime) -> None:
    await query.answer()
    if callback_data.action == "aud" and callback_data.ref in ("tag", "segment"):
        tags, segments = await ns.audience_choices(session, actor)
        if callback_data.ref == "tag":
            rows = [[(tag_name(t, actor.locale), NoticeCb(action="tag", ref=t.code).pack())] for t in tags[:20]]
        else:
            rows = [[(s.name, NoticeCb(action="seg", ref=str(s.id)).pack())] for s in segments[:20]]
        if not rows:
            await query.message.answer(_("There is nothing to choose from yet."))
            return
        await query.message.answer(_("Choose:"), reply_markup=inline(rows))
        return
    kind = {"aud": "committee", "tag": "tag", "seg": "segment"}[callback_data.action]
    try:
        aud = await ns.audience(session, actor, kind, callback_data.ref or None)
    except ns.NoticeError as err:
        await query.message.answer(str(err))
        return
    residents, reachable = await ns.count_recipients(session, actor, aud, now.date())
    await state.update_data(aud_kind=aud.kind, aud_ref=aud.ref)
    await state.set_state(Compose.confirm)
    data = await state.get_data()
    media = {"photo": _("with a photo"), "document": _("with a file")}.get(data.get("media_kind"), "")
    await query.message.answer(
        _("<b>Preview</b> {media}\n{text}\n\nAudience: {residents} residents, of whom {reachable} can be reached "
          "in the bot.").format(media=media, text=data["text"], residents=residents, reachable=reachable),
        reply_markup=inline([[(_("Send now"), NoticeCb(action="now").pack()),
                              (_("Send later…"), NoticeCb(action="later").pack())],
                             [(_("Cancel"), NoticeCb(action="abort").pack())]]))


async def _create(query: CallbackQuery, actor: Actor, session: AsyncSession, state: FSMContext, now: datetime,
                  send_at: datetime | None) -> None:
    data = await state.get_data()
    try:
        aud = await ns.audience(session, actor, data["aud_kind"], data.get("aud_ref"))
        notice = await ns.create_notice(session, actor, text=data["text"], aud=aud, now=now, send_at=send_at,
                                        media_kind=data.get("media_kind"), media_file_id=data.get("media_file_id"))
    except (ns.NoticeError, KeyError) as err:
        await query.answer()
        await query.message.answer(str(err) if isinstance(err, ns.NoticeError) else _("Please start again: /notice"))
        return
    await state.clear()
    await query.answer()
    await query.message.edit_reply_markup(reply_markup=None)
    if send_at is None:
        await query.message.answer(_("Notice #{id} is on its way to {n} people. Follow it with /notice_report {id}")
                                   .format(id=notice.id, n=notice.recipients))
    else:
        await query.message.answer(_("Notice #{id} will be sent at {time}. /notice_cancel {id} cancels it.").format(
            id=notice.id, time=escape(data.get("when_text", ""))))


async def send_now(query: CallbackQuery, actor: Actor, session: AsyncSession, state: FSMContext,
                   now: datetime) -> None:
    await _create(query, actor, session, state, now, None)


async def ask_time(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await state.set_state(Compose.when)
    await query.message.answer(_("When? Send a local date and time, e.g. 2026-12-01 09:00."))


async def got_time(message: Message, state: FSMContext, settings: Settings, now: datetime) -> None:
    text = message.text.strip()[:40]
    try:
        when = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=settings.tz)
    except ValueError:
        await message.answer(_("I could not read that time. Please use the form 2026-12-01 09:00."))
        return
    if when <= now:
        await message.answer(_("The send time must be in the future."))
        return
    await state.update_data(send_at=when.isoformat(), when_text=text)
    await state.set_state(Compose.confirm)
    await message.answer(_("Send at {time}?").format(time=escape(text)), reply_markup=inline(
        [[(_("Confirm"), NoticeCb(action="send").pack()), (_("Cancel"), NoticeCb(action="abort").pack())]]))


async def confirm_scheduled(query: CallbackQuery, actor: Actor, session: AsyncSession, state: FSMContext,
                            now: datetime) -> None:
    send_at = (await state.get_data()).get("send_at")
    if not send_at:
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    await _create(query, actor, session, state, now, datetime.fromisoformat(send_at))


async def abort(query: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await query.answer(_("Cancelled."))
    if query.message:
        await query.message.edit_reply_markup(reply_markup=None)


def _report_text(rep: ns.NoticeReport) -> str:
    status = {"scheduled": _("scheduled"), "sent": _("released"), "cancelled": _("cancelled"),
              "draft": _("draft")}[rep.notice.status.value]
    return _("<b>Notice #{id}</b> ({status})\nRecipients: {recipients}\nSent: {sent}\nWaiting: {pending}\n"
             "Failed: {failed}\nUnreachable (blocked the bot): {unreachable}\nPressed Received: {received}").format(
        id=rep.notice.id, status=status, recipients=rep.recipients, sent=rep.sent, pending=rep.pending,
        failed=rep.failed, unreachable=rep.unreachable, received=rep.received)


def _report_keyboard(rep: ns.NoticeReport):
    rows = [[(_("Refresh"), NoticeCb(action="refresh", ref=str(rep.notice.id)).pack())]]
    if rep.notice.reminded_at is None and rep.sent > rep.received:
        rows.append([(_("Remind those who have not confirmed"), NoticeCb(action="remind", ref=str(rep.notice.id))
                      .pack())])
    return inline(rows)


def _notice_id(text: str | None) -> int | None:
    arg = (text or "").strip().lstrip("#")
    return int(arg) if arg.isdigit() and len(arg) < 12 else None


async def report_command(message: Message, command: CommandObject, actor: Actor, session: AsyncSession) -> None:
    notice_id = _notice_id(command.args)
    if notice_id is None:
        await message.answer(_("Usage: /notice_report NUMBER"))
        return
    try:
        rep = await ns.report(session, actor, notice_id)
    except ns.NoticeError as err:
        await message.answer(str(err))
        return
    await message.answer(_report_text(rep), reply_markup=_report_keyboard(rep))


async def refresh_report(query: CallbackQuery, callback_data: NoticeCb, actor: Actor, session: AsyncSession) -> None:
    notice_id = _notice_id(callback_data.ref)
    try:
        rep = await ns.report(session, actor, notice_id or 0)
    except ns.NoticeError as err:
        await query.answer(str(err), show_alert=True)
        return
    await query.answer()
    if query.message:
        with contextlib.suppress(TelegramBadRequest):  # "message is not modified": nothing changed
            await query.message.edit_text(_report_text(rep), reply_markup=_report_keyboard(rep))


async def remind(query: CallbackQuery, callback_data: NoticeCb, actor: Actor, session: AsyncSession,
                 now: datetime) -> None:
    try:
        n = await ns.remind_unconfirmed(session, actor, _notice_id(callback_data.ref) or 0, now)
    except ns.NoticeError as err:
        await query.answer(str(err), show_alert=True)
        return
    await query.answer(_("Reminder sent to {n} people.").format(n=n), show_alert=True)


async def cancel_command(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                         now: datetime) -> None:
    notice_id = _notice_id(command.args)
    if notice_id is None:
        await message.answer(_("Usage: /notice_cancel NUMBER"))
        return
    try:
        await ns.cancel_notice(session, actor, notice_id, now)
    except ns.NoticeError as err:
        await message.answer(str(err))
        return
    await message.answer(_("Notice #{id} is cancelled; nobody will receive it.").format(id=notice_id))


async def list_command(message: Message, actor: Actor, session: AsyncSession) -> None:
    items = await ns.list_notices(session, actor)
    if not items:
        await message.answer(_("No notices yet. Send /notice to write one."))
        return
    lines = [f"#{n.id} · {n.status.value} · {n.recipients} · {escape(n.text[:40])}" for n in items]
    await message.answer("\n".join(lines))


async def received(query: CallbackQuery, callback_data: ReceivedCb, actor: Actor, session: AsyncSession,
                   now: datetime) -> None:
    try:
        first = await ns.mark_received(session, actor, callback_data.id, now)
    except ns.NoticeError as err:
        await query.answer(str(err), show_alert=True)
        return
    await query.answer(_("Thank you for confirming.") if first else _("You have already confirmed this notice."))
