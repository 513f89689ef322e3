"""Staff moderation of discussions: /topics_review (proposals and comments hidden by reports), the
publish / reject buttons, /topic_lock and /topic_unlock, /comment_hide and /comment_restore with a
reason, /mute and /unmute a comment's author, /topics_direct on|off. The services check every id."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.staff import StaffOnly
from notifications.callbacks import TopicCb
from notifications.messages import discussions as views
from notifications.render import render_template, t, to_reply_markup
from services import discussions as ds
from services.i18n import _
from services.ids import parse_db_id
from services.scope import Actor

DURATION = re.compile(r"^(\d{1,4})([hd])$")


def router() -> Router:
    r = Router(name="discussions.staff")
    only = StaffOnly()
    r.message.register(review, Command("topics_review"), only)
    r.callback_query.register(decide, TopicCb.filter(F.a.in_({"approve", "reject"})), only)
    r.message.register(lock, Command("topic_lock", "topic_unlock"), only)
    r.message.register(moderate, Command("comment_hide", "comment_restore"), only)
    r.message.register(mute, Command("mute"), only)
    r.message.register(unmute, Command("unmute"), only)
    r.message.register(direct, Command("topics_direct"), only)
    return r


def _id_and_rest(command: CommandObject) -> tuple[int | None, str]:
    head, _sep, rest = (command.args or "").strip().partition(" ")
    return parse_db_id(head), rest.strip()


async def review(message: Message, actor: Actor, session: AsyncSession,
                 discussion_config: ds.DiscussionConfig) -> None:
    pending = await ds.list_topics(session, actor, 0, cfg=discussion_config, pending=True)
    hidden = await ds.hidden_by_reports(session, actor)
    await message.answer(render_template(
        "discussions/review.html", topics=[{"id": i.id, "title": i.title} for i in pending.items],
        hidden=[{"id": h.id, "topic_id": h.topic_id, "reports": h.reports, "author": views.author_label(h.author),
                 "body": h.body[:300]} for h in hidden]))
    for item in pending.items:
        view_ = await ds.topic_view(session, actor, item.id, cfg=discussion_config)
        rendered = views.proposed({"topic": {"id": view_.id, "title": view_.title, "body": view_.body,
                                             "building": view_.building,
                                             "author": {"role": view_.author.role,
                                                        "building": view_.author.building}}})
        await message.answer(rendered.text, reply_markup=to_reply_markup(rendered.buttons))


async def decide(query: CallbackQuery, callback_data: TopicCb, actor: Actor, session: AsyncSession,
                 now: datetime) -> None:
    approve = callback_data.a == "approve"
    try:
        topic = await ds.decide_topic(session, actor, callback_data.t, approve, now=now)
    except ds.DiscussionError as err:
        await query.answer(views.refusal(err).striptags(), show_alert=True)
        return
    await query.answer(_("Published.") if approve else _("Rejected."))
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(t("Topic #{id} is published; its author is told.", id=topic.id) if approve
                                   else t("Topic #{id} is rejected; its author is told.", id=topic.id))


async def lock(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, now: datetime,
               discussion_config: ds.DiscussionConfig) -> None:
    locked = command.command == "topic_lock"
    topic_id, reason = _id_and_rest(command)
    if topic_id is None:
        await message.answer(t("Usage: /topic_lock ID [reason] or /topic_unlock ID (see /topics)"))
        return
    try:
        await ds.set_locked(session, actor, topic_id, locked, now=now, reason=reason, cfg=discussion_config)
    except ds.DiscussionError as err:
        await message.answer(views.refusal(err))
        return
    await message.answer(t("Topic #{id} is locked: it can be read, no new comments.", id=topic_id) if locked
                         else t("Topic #{id} is open for comments again.", id=topic_id))


async def moderate(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, now: datetime,
                   discussion_config: ds.DiscussionConfig) -> None:
    hide = command.command == "comment_hide"
    comment_id, reason = _id_and_rest(command)
    if comment_id is None:
        await message.answer(t("Usage: /comment_hide ID REASON or /comment_restore ID REASON"))
        return
    try:
        if hide:
            await ds.hide_comment(session, actor, comment_id, reason, now=now, cfg=discussion_config)
        else:
            await ds.restore_comment(session, actor, comment_id, reason, now=now, cfg=discussion_config)
    except ds.DiscussionError as err:
        await message.answer(views.refusal(err))
        return
    await message.answer(t("Comment #{id} is hidden; its replies stay.", id=comment_id) if hide
                         else t("Comment #{id} is shown again.", id=comment_id))


def parse_until(text: str, now: datetime, cfg: ds.DiscussionConfig) -> tuple[datetime | None, str]:
    """``24h`` / ``7d`` / ``YYYY-MM-DD HH:MM`` at the start of ``text``, and the rest (the reason)."""
    parts = text.split()
    if parts and (m := DURATION.match(parts[0].lower())):
        amount = int(m.group(1))
        return now + (timedelta(hours=amount) if m.group(2) == "h" else timedelta(days=amount)), " ".join(parts[1:])
    if len(parts) >= 2 and (when := cfg.parse_local(" ".join(parts[:2]))) is not None:
        return when, " ".join(parts[2:])
    return None, text


async def mute(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, now: datetime,
               discussion_config: ds.DiscussionConfig) -> None:
    comment_id, rest = _id_and_rest(command)
    until, reason = parse_until(rest, now, discussion_config)
    if comment_id is None or until is None:
        await message.answer(t("Usage: /mute COMMENT_ID 24h|7d|YYYY-MM-DD HH:MM [reason] — mutes the comment's "
                               "author in your committee's discussions."))
        return
    try:
        result = await ds.mute_author(session, actor, comment_id, until, now=now, cfg=discussion_config,
                                      reason=reason)
    except ds.DiscussionError as err:
        await message.answer(views.refusal(err))
        return
    await message.answer(t("The author of comment #{id} cannot write in discussions until {until}; they are told.",
                           id=comment_id, until=f"{discussion_config.local(result.until or now):%Y-%m-%d %H:%M}"))


async def unmute(message: Message, command: CommandObject, actor: Actor, session: AsyncSession, now: datetime,
                 discussion_config: ds.DiscussionConfig) -> None:
    comment_id, _rest = _id_and_rest(command)
    if comment_id is None:
        await message.answer(t("Usage: /unmute COMMENT_ID"))
        return
    try:
        await ds.mute_author(session, actor, comment_id, None, now=now, cfg=discussion_config)
    except ds.DiscussionError as err:
        await message.answer(views.refusal(err))
        return
    await message.answer(t("The author of comment #{id} can write again; they are told.", id=comment_id))


async def direct(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                 now: datetime) -> None:
    word = (command.args or "").strip().lower()
    if word not in ("on", "off"):
        await message.answer(t("Usage: /topics_direct on (residents publish topics directly) or /topics_direct off "
                               "(staff approve each one)"))
        return
    try:
        committee = await ds.set_residents_publish(session, actor, word == "on", now=now)
    except ds.DiscussionError as err:
        await message.answer(views.refusal(err))
        return
    await message.answer(t("{committee}: residents now publish topics directly.", committee=committee.name)
                         if word == "on" else
                         t("{committee}: staff now approve each topic residents propose.", committee=committee.name))
