"""Discussions for everyone who takes part: /topics (paged), a topic's page of comments, writing a
comment or a reply, reporting, subscribing, and /topic_new (title, text, who takes part).

Every id and page from a button is checked by the service; a refusal is answered politely and
changes nothing. A comment or topic is keyed by the message that carried it, so a redelivered update
posts nothing twice.
"""

from __future__ import annotations

from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.keyboards import inline
from notifications.callbacks import CommentCb, TopicCb, TopicNewCb, TopicsCb
from notifications.messages import discussions as views
from notifications.render import t, to_reply_markup
from services import discussions as ds
from services.i18n import _
from services.scope import Actor


class Writing(StatesGroup):
    comment = State()


class NewTopic(StatesGroup):
    title = State()
    body = State()
    scope = State()
    building = State()


def router() -> Router:
    r = Router(name="discussions.residents")
    r.message.register(list_command, Command("topics"))
    r.callback_query.register(list_page, TopicsCb.filter())
    r.callback_query.register(view, TopicCb.filter(F.a == "view"))
    r.callback_query.register(subscribe, TopicCb.filter(F.a.in_({"sub", "unsub"})))
    r.callback_query.register(start_comment, TopicCb.filter(F.a == "say"))
    r.callback_query.register(start_reply, CommentCb.filter(F.a == "reply"))
    r.callback_query.register(report, CommentCb.filter(F.a == "report"))
    r.message.register(got_comment, Writing.comment, F.text, ~F.text.startswith("/"))
    r.message.register(new_topic, Command("topic_new"))
    r.message.register(got_title, NewTopic.title, F.text, ~F.text.startswith("/"))
    r.message.register(got_body, NewTopic.body, F.text, ~F.text.startswith("/"))
    r.callback_query.register(got_scope, NewTopic.scope, TopicNewCb.filter(F.a == "scope"))
    r.message.register(got_building, NewTopic.building, F.text, ~F.text.startswith("/"))
    r.callback_query.register(cancel_new, TopicNewCb.filter(F.a == "cancel"))
    r.callback_query.register(stale, TopicNewCb.filter())
    return r


def client_key(message: Message) -> str:
    """The message that carried a text: the same update delivered again has the same key."""
    return f"{message.chat.id}:{message.message_id}"


async def _alert(query: CallbackQuery, err: ds.DiscussionError) -> None:
    await query.answer(views.refusal(err).striptags(), show_alert=True)


# --- the list and a topic -------------------------------------------------------------------------------


async def send_list(target: Message, actor: Actor, session: AsyncSession, page: object,
                    cfg: ds.DiscussionConfig) -> None:
    listing = await ds.list_topics(session, actor, page, cfg=cfg)
    if not listing.items:
        await target.answer(t("There are no open topics for you yet. /topic_new proposes one."))
        return
    await target.answer(views.list_text(listing), reply_markup=to_reply_markup(views.list_buttons(listing)))


async def list_command(message: Message, actor: Actor, session: AsyncSession,
                       discussion_config: ds.DiscussionConfig) -> None:
    if not actor.is_verified and not actor.is_staff:
        await message.answer(views.refusal(ds.DiscussionError("not_verified")))
        return
    await send_list(message, actor, session, 0, discussion_config)


async def list_page(query: CallbackQuery, callback_data: TopicsCb, actor: Actor, session: AsyncSession,
                    discussion_config: ds.DiscussionConfig) -> None:
    try:
        listing = await ds.list_topics(session, actor, callback_data.pg, cfg=discussion_config)
    except ds.DiscussionError as err:
        await _alert(query, err)
        return
    await query.answer()
    if isinstance(query.message, Message) and listing.items:
        await query.message.edit_text(views.list_text(listing),
                                      reply_markup=to_reply_markup(views.list_buttons(listing)))


async def send_topic(target: Message, actor: Actor, session: AsyncSession, topic_id: object, page: object,
                     cfg: ds.DiscussionConfig) -> None:
    await answer_topic(target, await ds.topic_view(session, actor, topic_id, page, cfg=cfg))


async def answer_topic(target: Message, view_: ds.TopicView, lead: Markup | None = None) -> None:
    """A topic's page as its messages, answering ``target`` (``lead``: a line before it)."""
    for part in views.topic_messages(view_, lead):
        await target.answer(part.text, reply_markup=to_reply_markup(part.buttons))


async def view(query: CallbackQuery, callback_data: TopicCb, actor: Actor, session: AsyncSession,
               discussion_config: ds.DiscussionConfig) -> None:
    if not isinstance(query.message, Message):
        await query.answer()
        return
    try:
        view_ = await ds.topic_view(session, actor, callback_data.t, callback_data.pg, cfg=discussion_config)
    except ds.DiscussionError as err:
        await _alert(query, err)
        return
    await query.answer()
    await answer_topic(query.message, view_)


async def subscribe(query: CallbackQuery, callback_data: TopicCb, actor: Actor, session: AsyncSession,
                    now: datetime) -> None:
    on = callback_data.a == "sub"
    try:
        changed = await ds.subscribe(session, actor, callback_data.t, on, now=now)
    except ds.DiscussionError as err:
        await _alert(query, err)
        return
    if on:
        text = (_("Subscribed: new comments come as a digest.") if changed else _("You are already subscribed."))
    else:
        text = _("Unsubscribed.") if changed else _("You are not subscribed.")
    await query.answer(text)


# --- writing -------------------------------------------------------------------------------------------


async def _start_writing(query: CallbackQuery, actor: Actor, session: AsyncSession, state: FSMContext,
                         topic_id: int, parent: int | None, cfg: ds.DiscussionConfig, now: datetime) -> None:
    try:
        # The same checks as posting (who, locked, muted), so nobody types a comment in vain.
        topic = await ds.check_can_comment(session, actor, topic_id, parent, now=now, cfg=cfg)
    except ds.DiscussionError as err:
        await _alert(query, err)
        return
    await state.set_state(Writing.comment)
    await state.update_data(topic=topic_id, parent=parent)
    await query.answer()
    if isinstance(query.message, Message):
        prompt = (t("Send your reply to comment #{c} (up to {limit} characters), or /cancel.", c=parent,
                    limit=cfg.max_body) if parent else
                  t("Send your comment on “{title}” (up to {limit} characters), or /cancel.", title=topic.title,
                    limit=cfg.max_body))
        await query.message.answer(prompt)


async def start_comment(query: CallbackQuery, callback_data: TopicCb, actor: Actor, session: AsyncSession,
                        state: FSMContext, now: datetime, discussion_config: ds.DiscussionConfig) -> None:
    await _start_writing(query, actor, session, state, callback_data.t, None, discussion_config, now)


async def start_reply(query: CallbackQuery, callback_data: CommentCb, actor: Actor, session: AsyncSession,
                      state: FSMContext, now: datetime, discussion_config: ds.DiscussionConfig) -> None:
    await _start_writing(query, actor, session, state, callback_data.t, callback_data.c, discussion_config, now)


async def got_comment(message: Message, actor: Actor, session: AsyncSession, state: FSMContext, now: datetime,
                      discussion_config: ds.DiscussionConfig) -> None:
    data = await state.get_data()
    try:
        # The page comes with the comment, read before the first answer commits (a read after it would
        # be a second transaction).
        result = await ds.add_comment(session, actor, data.get("topic"), message.text or "", now=now,
                                      cfg=discussion_config, parent_id=data.get("parent"),
                                      client_key=client_key(message), view=True)
    except ds.DiscussionError as err:
        await message.answer(views.refusal(err))
        if err.reason not in ("too_long", "empty"):
            await state.clear()
        return
    assert result.view is not None
    # The conversation ends with the comment, in its transaction: had the comment not been saved, the
    # next message would still be taken as the comment (bot.conversations).
    await state.clear()
    # The page, opened by the confirmation, is the answer: it commits, and the topic's row, written last,
    # is locked until then.
    await answer_topic(message, result.view, lead=t("Posted as comment #{id}.", id=result.comment.id))


async def report(query: CallbackQuery, callback_data: CommentCb, actor: Actor, session: AsyncSession,
                 now: datetime, discussion_config: ds.DiscussionConfig) -> None:
    try:
        result = await ds.report_comment(session, actor, callback_data.c, now=now, cfg=discussion_config)
    except ds.DiscussionError as err:
        await _alert(query, err)
        return
    if result.hidden:
        await query.answer(_("Thank you. The comment is hidden until the committee reviews it."), show_alert=True)
    else:
        await query.answer(_("Thank you. The committee will look at it."), show_alert=True)


# --- a new topic ---------------------------------------------------------------------------------------


async def new_topic(message: Message, actor: Actor, session: AsyncSession, state: FSMContext, now: datetime,
                    discussion_config: ds.DiscussionConfig) -> None:
    try:
        await ds.check_can_open(session, actor, now=now, cfg=discussion_config)
    except ds.DiscussionError as err:
        await message.answer(views.refusal(err))
        return
    await state.clear()
    await state.set_state(NewTopic.title)
    await message.answer(t("New topic. Send its title (up to {limit} characters), or /cancel.",
                           limit=discussion_config.max_title))


async def got_title(message: Message, state: FSMContext, discussion_config: ds.DiscussionConfig) -> None:
    try:
        title = ds.check_title(message.text or "", discussion_config)
    except ds.DiscussionError as err:
        await message.answer(views.refusal(err))
        return
    await state.update_data(title=title)
    await state.set_state(NewTopic.body)
    await message.answer(t("Now send the text of the topic (up to {limit} characters).",
                           limit=discussion_config.max_body))


async def got_body(message: Message, actor: Actor, state: FSMContext,
                   discussion_config: ds.DiscussionConfig) -> None:
    try:
        body = ds.check_body(message.text or "", discussion_config)
    except ds.DiscussionError as err:
        await message.answer(views.refusal(err))
        return
    await state.update_data(body=body, key=client_key(message))
    await state.set_state(NewTopic.scope)
    rows = [[(_("Whole committee"), TopicNewCb(a="scope", v="committee").pack())]]
    if actor.is_staff:
        rows.append([(_("One building…"), TopicNewCb(a="scope", v="building").pack())])
    else:
        resident = actor.resident
        if resident is not None and resident.compound_id is not None:
            rows.append([(_("My compound only"), TopicNewCb(a="scope", v="compound").pack())])
        if resident is not None and resident.building:
            rows.append([(_("My building only ({building})").format(building=resident.building),
                          TopicNewCb(a="scope", v="building").pack())])
    rows.append([(_("Cancel"), TopicNewCb(a="cancel").pack())])
    await message.answer(t("Who takes part?"), reply_markup=inline(rows))


async def _create(target: Message, actor: Actor, session: AsyncSession, state: FSMContext, now: datetime,
                  cfg: ds.DiscussionConfig, scope: str, building: str | None = None) -> None:
    data = await state.get_data()
    draft = ds.TopicDraft(title=data.get("title", ""), body=data.get("body", ""), scope=scope, building=building)
    try:
        result = await ds.create_topic(session, actor, draft, now=now, cfg=cfg, client_key=data.get("key"))
    except ds.DiscussionError as err:
        await target.answer(views.refusal(err))
        if err.reason != "bad_scope":
            await state.clear()
        return
    await state.clear()
    if result.published:
        await target.answer(t("Topic #{id} is published; you are subscribed to it.", id=result.topic.id))
        await send_topic(target, actor, session, result.topic.id, 0, cfg)
    else:
        await target.answer(t("Thank you. Topic #{id} goes to the committee for approval; you will be told.",
                              id=result.topic.id))


async def got_scope(query: CallbackQuery, callback_data: TopicNewCb, actor: Actor, session: AsyncSession,
                    state: FSMContext, now: datetime, discussion_config: ds.DiscussionConfig) -> None:
    if callback_data.v not in ds.SCOPES:
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    await query.answer()
    if not isinstance(query.message, Message):
        return
    await query.message.edit_reply_markup(reply_markup=None)
    if callback_data.v == "building" and actor.is_staff:
        await state.set_state(NewTopic.building)
        await query.message.answer(t("Which building? Send its number, e.g. 3."))
        return
    await _create(query.message, actor, session, state, now, discussion_config, callback_data.v)


async def got_building(message: Message, actor: Actor, session: AsyncSession, state: FSMContext, now: datetime,
                       discussion_config: ds.DiscussionConfig) -> None:
    await _create(message, actor, session, state, now, discussion_config, "building", message.text or "")


async def cancel_new(query: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(t("Cancelled. Nothing was posted."))


async def stale(query: CallbackQuery) -> None:
    await query.answer(_("This button is no longer valid."), show_alert=True)
