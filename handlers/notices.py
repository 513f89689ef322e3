"""/notice: a cadre composes a notice (text → optional photo/file → audience → preview → send now or
at a time → confirm); residents press Received; /notice_report shows live delivery figures; those the
bot cannot reach are listed for a phone call."""

from __future__ import annotations

import contextlib
from datetime import datetime

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.keyboards import inline
from handlers.staff import StaffOnly
from notifications.callbacks import NoticeCb, ReceivedCb
from notifications.format import local_time, room_text, zone_name
from notifications.limits import MAX_MESSAGE, clip, tg_len
from notifications.render import render_template, t, tn
from services import notices as ns
from services.config import AppConfig
from services.i18n import N_, _
from services.ids import parse_db_id
from services.scope import Actor
from services.tags import tag_name

CALL_PAGE = 60  # rows fetched per call-list page; as many as fit in one message are shown
STATUS_NAMES = {"scheduled": N_("scheduled"), "sent": N_("released"), "cancelled": N_("cancelled"),
                "draft": N_("draft")}


class Compose(StatesGroup):
    text = State()
    media = State()
    audience = State()
    when = State()
    confirm = State()


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
    # "Send now" and "Confirm" carry the draft's id: a second tap reaches the service, which refuses it.
    r.callback_query.register(send_now, NoticeCb.filter(F.action == "now"), only)
    r.callback_query.register(ask_time, Compose.confirm, NoticeCb.filter(F.action == "later"))
    r.message.register(got_time, Compose.when, F.text, ~F.text.startswith("/"))
    r.callback_query.register(confirm_scheduled, NoticeCb.filter(F.action == "send"), only)
    r.callback_query.register(abort, NoticeCb.filter(F.action == "abort"))
    r.callback_query.register(refresh_report, NoticeCb.filter(F.action == "refresh"), only)
    r.callback_query.register(remind, NoticeCb.filter(F.action == "remind"), only)
    r.callback_query.register(call_list, NoticeCb.filter(F.action == "calls"), only)
    r.callback_query.register(received, ReceivedCb.filter())
    r.message.register(need_text, Compose.text, ~F.text)
    r.message.register(need_media, Compose.media, ~F.text.startswith("/"))
    return r


def refusal(err: ns.NoticeError) -> Markup:
    return t(err.msgid, **err.values)


async def start_compose(message: Message, state: FSMContext) -> None:
    await state.clear()
    await state.set_state(Compose.text)
    await message.answer(t("New notice. Send its text (or /cancel)."))


async def need_text(message: Message) -> None:
    await message.answer(t("Please send the notice as text, or /cancel."))


async def got_text(message: Message, state: FSMContext) -> None:
    text = message.html_text  # keeps the author's bold/italic formatting, escaped otherwise
    try:
        text = ns.check_text(text, None)
    except ns.NoticeError as err:
        await message.answer(refusal(err))
        return
    await state.update_data(text=text)
    await state.set_state(Compose.media)
    await message.answer(t("Add a photo or a file? Send it now, or press Skip."),
                         reply_markup=inline([[(_("Skip"), NoticeCb(action="skip").pack())]]))


async def need_media(message: Message) -> None:
    await message.answer(t("Please send a photo or a file, or press Skip."))


async def got_media(message: Message, state: FSMContext) -> None:
    kind = "photo" if message.photo else "document"
    try:  # a caption is shorter than a message: the text must fit under the file
        ns.check_text((await state.get_data()).get("text", ""), kind)
    except ns.NoticeError as err:
        await message.answer(refusal(err))
        return
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
    await message.answer(t("Who should receive it?"), reply_markup=inline([
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
            rows = [[(tag_name(tg, actor.locale), NoticeCb(action="tag", ref=tg.code).pack())] for tg in tags[:20]]
        else:
            rows = [[(s.name, NoticeCb(action="seg", ref=str(s.id)).pack())] for s in segments[:20]]
        if not rows:
            await query.message.answer(t("There is nothing to choose from yet."))
            return
        await query.message.answer(t("Choose:"), reply_markup=inline(rows))
        return
    kind = {"aud": "committee", "tag": "tag", "seg": "segment"}[callback_data.action]
    try:
        aud = await ns.audience(session, actor, kind, callback_data.ref or None)
    except ns.NoticeError as err:
        await query.message.answer(refusal(err))
        return
    residents, reachable = await ns.count_recipients(session, actor, aud, now.date())
    data = await state.get_data()
    try:
        draft = await ns.save_draft(session, actor, text=data.get("text", ""), aud=aud, now=now,
                                    media_kind=data.get("media_kind"), media_file_id=data.get("media_file_id"),
                                    draft_id=data.get("draft_id"))
    except ns.NoticeError as err:
        await query.message.answer(refusal(err))
        return
    await state.update_data(aud_kind=aud.kind, aud_ref=aud.ref, draft_id=draft.id)
    await state.set_state(Compose.confirm)
    media = {"photo": _("with a photo"), "document": _("with a file")}.get(data.get("media_kind"), "")
    ref = str(draft.id)
    rows = [[(_("Send now"), NoticeCb(action="now", ref=ref).pack()),
             (_("Send later…"), NoticeCb(action="later", ref=ref).pack())]]
    if residents > reachable:
        rows.append([(_("📞 Call list: {n} not reachable in the bot").format(n=residents - reachable),
                      NoticeCb(action="calls", ref="d.0").pack())])
    rows.append([(_("Cancel"), NoticeCb(action="abort", ref=ref).pack())])
    await query.message.answer(render_template(
        "notices/preview.html", media=media, text=Markup(data["text"]), residents=residents, reachable=reachable,
        audience=tn("Audience: {n} resident, of whom {reachable} can be reached in the bot.",
                    "Audience: {n} residents, of whom {reachable} can be reached in the bot.",
                    residents, reachable=reachable)),
        reply_markup=inline(rows))


async def _send(query: CallbackQuery, callback_data: NoticeCb, actor: Actor, session: AsyncSession,
                state: FSMContext, config: AppConfig, now: datetime, send_at: datetime | None) -> None:
    draft_id = parse_db_id(callback_data.ref)
    if draft_id is None:  # a preview from before drafts: its compose is gone
        await query.answer()
        await query.message.answer(t("Please start again: /notice"))
        return
    try:
        notice = await ns.send_draft(session, actor, draft_id, now=now, send_at=send_at)
    except ns.NoticeError as err:
        await query.answer()
        await query.message.answer(refusal(err))
        return
    if (await state.get_data()).get("draft_id") == notice.id:
        await state.clear()
    await query.answer()
    await query.message.edit_reply_markup(reply_markup=None)
    if send_at is not None:
        await query.message.answer(t("Notice #{id} will be sent at {time}. /notice_cancel {id} cancels it.",
                                     id=notice.id, time=local_time(send_at, config.tz)))
    elif notice.recipients:
        await query.message.answer(tn("Notice #{id} is on its way to {n} person. Follow it with /notice_report {id}",
                                      "Notice #{id} is on its way to {n} people. Follow it with /notice_report {id}",
                                      notice.recipients, id=notice.id))
    else:
        await query.message.answer(
            t("Notice #{id} reached nobody: no one in its audience can be reached in the bot.", id=notice.id),
            reply_markup=inline([[(_("📞 Call list"), NoticeCb(action="calls", ref=f"{notice.id}.0").pack())]]))


async def send_now(query: CallbackQuery, callback_data: NoticeCb, actor: Actor, session: AsyncSession,
                   state: FSMContext, config: AppConfig, now: datetime) -> None:
    await _send(query, callback_data, actor, session, state, config, now, None)


async def ask_time(query: CallbackQuery, state: FSMContext, config: AppConfig) -> None:
    await query.answer()
    await state.set_state(Compose.when)
    await query.message.answer(t("When? Send a date and time ({zone}), e.g. 2026-12-01 09:00.",
                                 zone=zone_name(config.tz)))


async def got_time(message: Message, state: FSMContext, config: AppConfig, now: datetime) -> None:
    text = message.text.strip()[:40]
    try:
        when = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=config.tz)
    except ValueError:
        await message.answer(t("I could not read that time. Please use the form 2026-12-01 09:00."))
        return
    if when <= now:
        await message.answer(t("The send time must be in the future."))
        return
    await state.update_data(send_at=when.isoformat())
    await state.set_state(Compose.confirm)
    ref = str((await state.get_data()).get("draft_id", ""))
    await message.answer(t("Send at {time}?", time=local_time(when, config.tz)), reply_markup=inline(
        [[(_("Confirm"), NoticeCb(action="send", ref=ref).pack()),
          (_("Cancel"), NoticeCb(action="abort", ref=ref).pack())]]))


async def confirm_scheduled(query: CallbackQuery, callback_data: NoticeCb, actor: Actor, session: AsyncSession,
                            state: FSMContext, config: AppConfig, now: datetime) -> None:
    send_at = (await state.get_data()).get("send_at")
    if not send_at:
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    await _send(query, callback_data, actor, session, state, config, now, datetime.fromisoformat(send_at))


async def abort(query: CallbackQuery, callback_data: NoticeCb, actor: Actor, session: AsyncSession,
                state: FSMContext) -> None:
    await ns.discard_draft(session, actor, parse_db_id(callback_data.ref))
    await state.clear()
    await query.answer(_("Cancelled."))
    if query.message:
        await query.message.edit_reply_markup(reply_markup=None)


# --- who the bot cannot reach: a call list, page by page -----------------------------------------

def _call_page(entries: list[ns.CallEntry], heading: Markup) -> tuple[Markup, int]:
    """The page text and how many entries it shows: as many as fit in one message (the HTML is never
    shorter than the text Telegram counts, so measuring it is safe)."""
    rows = [(e.name, room_text(e.building, e.unit, e.room) or "?", e.phone or "—") for e in entries]
    shown = len(rows)
    text = render_template("notices/call_list.html", heading=heading, rows=rows)
    while tg_len(text) > MAX_MESSAGE and shown > 1:
        shown = max(1, min(shown - 1, shown * MAX_MESSAGE // tg_len(text)))
        text = render_template("notices/call_list.html", heading=heading, rows=rows[:shown])
    return text, shown


async def call_list(query: CallbackQuery, callback_data: NoticeCb, actor: Actor, session: AsyncSession,
                    state: FSMContext, now: datetime) -> None:
    """``ref``: ``d.<offset>`` for the notice being composed, ``<notice id>.<offset>`` for a sent one."""
    source, _sep, offset_text = callback_data.ref.partition(".")
    offset = int(offset_text) if offset_text.isascii() and offset_text.isdigit() and len(offset_text) < 9 else 0
    draft = await state.get_data() if source == "d" else {}
    try:
        if "aud_kind" in draft:
            aud = await ns.audience(session, actor, draft["aud_kind"], draft.get("aud_ref"))
        elif (notice_id := parse_db_id(source)) is not None:
            aud = await ns.notice_audience(session, actor, notice_id)
        else:
            aud = None  # the draft was sent or abandoned
    except ns.NoticeError as err:
        await query.answer(str(err), show_alert=True)
        return
    if aud is None or not isinstance(query.message, Message):
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    await query.answer()
    entries = await ns.unreachable_residents(session, actor, aud, now.date(), limit=CALL_PAGE, offset=offset)
    if not entries:
        await query.message.answer(t("Everyone in this audience can be reached in the bot."))
        return
    heading = t("Residents the bot cannot reach (no account, or they blocked it), from number {first}:",
                first=offset + 1)
    text, shown = _call_page(entries, heading)
    more = await ns.unreachable_residents(session, actor, aud, now.date(), limit=1, offset=offset + shown)
    keyboard = inline([[(_("Next page"), NoticeCb(action="calls", ref=f"{source}.{offset + shown}").pack())]]
                      ) if more else None
    await query.message.answer(text, reply_markup=keyboard)


# --- reports -------------------------------------------------------------------------------------

def _report_text(rep: ns.NoticeReport) -> Markup:
    return t("<b>Notice #{id}</b> ({status})\nRecipients: {recipients}\nSent: {sent}\nWaiting: {pending}\n"
             "Failed: {failed}\nUnreachable (blocked the bot): {unreachable}\nPressed Received: {received}",
             id=rep.notice.id, status=_(STATUS_NAMES[rep.notice.status.value]), recipients=rep.recipients,
             sent=rep.sent, pending=rep.pending, failed=rep.failed, unreachable=rep.unreachable,
             received=rep.received)


def _report_keyboard(rep: ns.NoticeReport):
    rows = [[(_("Refresh"), NoticeCb(action="refresh", ref=str(rep.notice.id)).pack())]]
    if rep.notice.reminded_at is None and rep.sent > rep.received:
        rows.append([(_("Remind those who have not confirmed"), NoticeCb(action="remind", ref=str(rep.notice.id))
                      .pack())])
    rows.append([(_("📞 Call list"), NoticeCb(action="calls", ref=f"{rep.notice.id}.0").pack())])
    return inline(rows)


def _notice_id(text: str | None) -> int | None:
    return parse_db_id(text)  # "#12" or "12"; not "²" (a digit to isdigit, not to int) nor 20 digits


async def report_command(message: Message, command: CommandObject, actor: Actor, session: AsyncSession) -> None:
    notice_id = _notice_id(command.args)
    if notice_id is None:
        await message.answer(t("Usage: /notice_report NUMBER"))
        return
    try:
        rep = await ns.report(session, actor, notice_id)
    except ns.NoticeError as err:
        await message.answer(refusal(err))
        return
    await message.answer(_report_text(rep), reply_markup=_report_keyboard(rep))


async def refresh_report(query: CallbackQuery, callback_data: NoticeCb, actor: Actor, session: AsyncSession) -> None:
    notice_id = _notice_id(callback_data.ref)
    try:
        rep = await ns.report(session, actor, notice_id or 0)
    except ns.NoticeError as err:
        await query.answer(str(err), show_alert=True)  # an alert is plain text
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
        await message.answer(t("Usage: /notice_cancel NUMBER"))
        return
    try:
        await ns.cancel_notice(session, actor, notice_id, now)
    except ns.NoticeError as err:
        await message.answer(refusal(err))
        return
    await message.answer(t("Notice #{id} is cancelled; nobody will receive it.", id=notice_id))


async def list_command(message: Message, actor: Actor, session: AsyncSession) -> None:
    items = await ns.list_notices(session, actor)
    if not items:
        await message.answer(t("No notices yet. Send /notice to write one."))
        return
    # The stored text is the author's Telegram HTML: its words only, cut short, escaped again.
    rows = [(n.id, _(STATUS_NAMES[n.status.value]), n.recipients, _snippet(n.text)) for n in items]
    await message.answer(render_template("notices/list.html", rows=rows))


def _snippet(html_text: str, length: int = 40) -> str:
    return clip(Markup(html_text).striptags(), length)


async def received(query: CallbackQuery, callback_data: ReceivedCb, actor: Actor, session: AsyncSession,
                   now: datetime) -> None:
    try:
        first = await ns.mark_received(session, actor, callback_data.id, now)
    except ns.NoticeError as err:
        await query.answer(str(err), show_alert=True)
        return
    await query.answer(_("Thank you for confirming.") if first else _("You have already confirmed this notice."))
