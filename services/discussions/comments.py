"""Comments and their moderation: writing (one level of replies, limits with a reason each), a
topic's page of comments, reports that hide a comment after N distinct residents, staff hiding and
restoring with a reason, mutes.

A hidden comment stays in the table: it is not counted and shows as a placeholder (its text to staff
only), and its replies stay as they are. Every action is audited; every refusal writes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, and_, bindparam, exists, false, func, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.discussions.common import REF_TOPIC, Author, DiscussionError
from services.discussions.config import DiscussionConfig
from services.discussions.topics import (
    ResidentShape,
    bound_resident_scope,
    check_body,
    check_muted_until,
    check_page,
    check_reason,
    is_moderator,
    moderated_topic,
    muted_until,
    resident_name,
    resident_names,
    resident_shape,
    scope_values,
    topic_scope,
    visible_count,
)
from services.ids import is_db_id
from services.models import (
    Account,
    Comment,
    CommentReport,
    DiscussionMute,
    Region,
    Topic,
    TopicStatus,
    TopicSubscription,
)
from services.notify import committee_staff, tell
from services.outbox import Priority
from services.scope import Actor
from services.sql import rowcount

HIDDEN_BY_REPORTS = "reports"


def _insert(session: AsyncSession, table):
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)


def writable(topic: Topic) -> None:
    if topic.status == TopicStatus.locked:
        raise DiscussionError("locked")
    if topic.status == TopicStatus.pending:
        raise DiscussionError("pending")
    if topic.status != TopicStatus.open:
        raise DiscussionError("closed")


# --- writing ------------------------------------------------------------------------------------------


# A topic's last activity orders the topic lists, and to the minute is enough: a comment writes it only
# when it is that old or more, so on a busy topic one comment a minute writes (and, on PostgreSQL, locks
# until its commit) the topic's row, not every one.
ACTIVITY_STEP = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class CommentResult:
    comment: Comment
    created: bool  # False: the same update again
    view: TopicView | None = None  # the topic's first page, as the writer sees it now (``add_comment(view=True)``)


async def add_comment(session: AsyncSession, actor: Actor, topic_id: object, text: str, *, now: datetime,
                      cfg: DiscussionConfig, parent_id: object = None, client_key: str | None = None,
                      view: bool = False) -> CommentResult:
    """A comment on a topic the actor takes part in, or a reply to one of its visible comments (a
    reply to a reply joins its thread: one level). Residents are limited (length, per 10 minutes,
    muted) and staff only by length; a locked topic takes none. Idempotent by ``client_key``. With
    ``view``, the topic's first page as the writer sees it afterwards comes with it, read before the
    topic's last activity is written (the last statement: on PostgreSQL another comment on the topic
    waits for that row until this transaction commits; see ACTIVITY_STEP)."""
    target = await _writing_target(session, actor, topic_id, now=now, cfg=cfg, client_key=client_key)
    topic = target.topic
    if target.existing_id is not None:
        existing = await session.get(Comment, target.existing_id)
        if existing is not None:
            return await _again(session, actor, existing, view, cfg)
    body = check_body(text, cfg)
    staff, parent = await _writer_checks(session, actor, target, parent_id, cfg=cfg)
    # A second worker writing the same update at the same moment: its comment stands, this one is not made.
    made = await session.scalar(_insert(session, Comment).values(
        topic_id=topic.id, parent_id=parent.id if parent else None, author_account_id=actor.account_id,
        author_building=None if staff else actor.resident.building if actor.resident else None,
        author_role=str(actor.top_role) if staff else None, body=body, created_at=now, reviewed_reports=0,
        client_key=client_key).on_conflict_do_nothing(index_elements=["client_key"]).returning(Comment))
    if made is None:
        existing = await session.scalar(select(Comment).where(Comment.client_key == client_key))
        assert existing is not None  # nothing but the client key conflicts
        return await _again(session, actor, existing, view, cfg)
    comment = made
    if target.subscribed:  # the writer has read what came before: their own digest starts after this comment
        await session.execute(update(TopicSubscription).where(TopicSubscription.topic_id == topic.id,
                                                              TopicSubscription.account_id == actor.account_id,
                                                              TopicSubscription.seen_comment_id < comment.id)
                              .values(seen_comment_id=comment.id))
    audit.record(session, "comment.create", now=now, actor_account_id=actor.account_id, target_type="comment",
                 target_id=comment.id, region_id=topic.committee_id,
                 detail={"topic": topic.id, "parent": comment.parent_id})
    # The page's heading from what the checks read: the counts with this comment in them.
    page = await _page_view(session, actor, topic, target.committee, target.roots + (parent is None),
                            target.visible + 1, target.subscribed, 0, cfg) if view else None
    await session.execute(update(Topic).where(Topic.id == topic.id, Topic.last_activity_at <= now - ACTIVITY_STEP)
                          .values(last_activity_at=now))
    return CommentResult(comment, True, page)


async def _again(session: AsyncSession, actor: Actor, comment: Comment, view: bool,
                 cfg: DiscussionConfig) -> CommentResult:
    """The comment this update made before, and its topic's first page when asked for."""
    page = await topic_view(session, actor, comment.topic_id, 0, cfg=cfg) if view else None
    return CommentResult(comment, False, page)


@dataclass(frozen=True, slots=True)
class _Target:
    """A topic the actor sees, with what the writer's checks need, read in one statement."""

    topic: Topic
    committee: Region
    muted_until: datetime | None  # the actor's mute in the topic's committee
    recent: int  # the actor's comments within the comment window
    existing_id: int | None  # the actor's comment made by this client key
    subscribed: bool  # the actor is subscribed to the topic
    roots: int  # the topic's top-level comments
    visible: int  # the topic's visible comments


async def _writing_target(session: AsyncSession, actor: Actor, topic_id: object, *, now: datetime,
                          cfg: DiscussionConfig, client_key: str | None = None) -> _Target:
    if not is_db_id(topic_id):
        raise DiscussionError("no_topic")
    values = {"topic_id": topic_id, "now": now, "since": now - cfg.comment_window, "client_key": client_key}
    shape = resident_shape(actor)
    if shape is not None:
        query, values = _resident_target(shape, bool(client_key)), values | scope_values(actor)
    else:
        query = _target(topic_scope(actor), actor.account_id, bool(client_key), subscribed(actor))
    row = (await session.execute(query, values)).first()
    if row is None:
        raise DiscussionError("no_topic")
    return _Target(row[0], row[1], row[2], row[3] or 0, row[4], bool(row[5]), row[6] or 0, row[7] or 0)


def _target(scope: ColumnElement[bool], account: int | ColumnElement[Any] | None, by_client_key: bool,
            subscribed_: ColumnElement[bool]) -> Select:
    """:class:`_Target`'s statement: the topic ``topic_id`` within ``scope``, what the checks of
    ``account`` writing in it need, and its counts for the page after; ``now``, ``since`` (the comment
    window's start), ``client_key`` bound."""
    recent = (select(func.count()).select_from(Comment).where(
        Comment.author_account_id == account, Comment.created_at > bindparam("since")).scalar_subquery())
    existing = (select(Comment.id).where(Comment.client_key == bindparam("client_key"),
                                         Comment.author_account_id == account).scalar_subquery()
                if by_client_key else null())
    return (select(Topic, Region, muted_until(Topic.committee_id, account, bindparam("now")), recent, existing,
                   subscribed_, _roots(), visible_count())
            .join(Region, Region.id == Topic.committee_id).where(Topic.id == bindparam("topic_id"), scope))


@functools.cache
def _resident_target(shape: ResidentShape, by_client_key: bool) -> Select:
    account = bindparam("scope_account", type_=Integer)
    return _target(bound_resident_scope(shape), account, by_client_key, _subscription(account))


def _subscription(account: int | ColumnElement[Any]) -> ColumnElement[bool]:
    return exists().where(TopicSubscription.topic_id == Topic.id, TopicSubscription.account_id == account
                          ).correlate(Topic)


def subscribed(actor: Actor):
    """A column of a query over ``Topic``: whether the actor is subscribed to the topic."""
    if actor.account_id is None:
        return false()
    return _subscription(actor.account_id)


async def _writer_checks(session: AsyncSession, actor: Actor, target: _Target, parent_id: object, *,
                         cfg: DiscussionConfig) -> tuple[bool, Comment | None]:
    """Whether the actor writes as staff, and the thread's first comment; or the refusal."""
    topic = target.topic
    staff = is_moderator(actor, target.committee)
    if not staff and not actor.is_verified:
        raise DiscussionError("not_verified")
    parent = None
    if parent_id is not None:
        parent = await _visible_comment(session, topic.id, parent_id)
        if parent.parent_id is not None:
            parent = await _visible_comment(session, topic.id, parent.parent_id)
    writable(topic)
    if not staff:
        check_muted_until(target.muted_until, cfg)
        if target.recent >= cfg.comments_per_window:
            raise DiscussionError("too_many_comments", limit=cfg.comments_per_window,
                                  minutes=int(cfg.comment_window.total_seconds() // 60))
    return staff, parent


async def check_can_comment(session: AsyncSession, actor: Actor, topic_id: object, parent_id: object = None, *,
                            now: datetime, cfg: DiscussionConfig) -> Topic:
    """The refusal :func:`add_comment` would give now, whatever the text (before anyone types it); else the topic."""
    target = await _writing_target(session, actor, topic_id, now=now, cfg=cfg)
    await _writer_checks(session, actor, target, parent_id, cfg=cfg)
    return target.topic


async def _visible_comment(session: AsyncSession, topic_id: int, comment_id: object) -> Comment:
    if not is_db_id(comment_id):
        raise DiscussionError("no_comment")
    comment = await session.get(Comment, comment_id)
    if comment is None or comment.topic_id != topic_id or comment.hidden_at is not None:
        raise DiscussionError("no_comment")
    return comment


async def comment_in_scope(session: AsyncSession, actor: Actor, comment_id: object) -> tuple[Comment, Topic]:
    """A comment of a topic this actor sees (hidden ones included; callers decide), or ``no_comment``."""
    if not is_db_id(comment_id):
        raise DiscussionError("no_comment")
    row = (await session.execute(select(Comment, Topic).join(Topic, Topic.id == Comment.topic_id)
                                 .where(Comment.id == comment_id, topic_scope(actor)))).first()
    if row is None:
        raise DiscussionError("no_comment")
    return row[0], row[1]


# --- reading -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommentView:
    id: int
    parent_id: int | None
    author: Author
    body: str | None  # None: hidden, and the reader is not staff
    hidden: bool
    hidden_reason: str | None  # staff readers only
    created_at: datetime
    mine: bool
    replies: list[CommentView] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TopicView:
    id: int
    title: str
    body: str
    status: str
    building: str | None
    author: Author
    comments: list[CommentView]  # this page's top-level comments, oldest first, each with its replies
    count: int  # visible comments of the whole topic
    page: int  # 0 is the latest
    pages: int
    subscribed: bool
    moderator: bool  # the reader is staff of this committee (sees names and hidden text)
    committee_id: int


def _roots():
    """A correlated count of a topic's top-level comments."""
    return (select(func.count()).select_from(Comment).where(Comment.topic_id == Topic.id, Comment.parent_id.is_(None))
            .correlate(Topic).scalar_subquery())


def _heading(scope: ColumnElement[bool], subscribed_: ColumnElement[bool]) -> Select:
    """A topic page's first statement: the topic ``topic_id`` within ``scope``, its committee, its counts
    (top-level comments, visible comments) and the reader's subscription."""
    return (select(Topic, Region, _roots(), visible_count(), subscribed_).join(Region, Region.id == Topic.committee_id)
            .where(Topic.id == bindparam("topic_id"), scope))


@functools.cache
def _resident_heading(shape: ResidentShape) -> Select:
    return _heading(bound_resident_scope(shape), _subscription(bindparam("scope_account", type_=Integer)))


def _comments_page() -> Select:
    """A page of the topic ``topic_id``'s top-level comments (latest first: ``offset``, ``limit``), with
    their replies, oldest first."""
    page_ids = (select(Comment.id).where(Comment.topic_id == bindparam("topic_id"), Comment.parent_id.is_(None))
                .order_by(Comment.id.desc()).offset(bindparam("offset", type_=Integer))
                .limit(bindparam("limit", type_=Integer)))
    # A reply is of its parent's topic (add_comment checks it): the topic narrows the replies' lookup
    # to the topic's index.
    return (select(Comment).where(or_(Comment.id.in_(page_ids), and_(Comment.topic_id == bindparam("topic_id"),
                                                                    Comment.parent_id.in_(page_ids))))
            .order_by(Comment.id))


_PAGE = _comments_page()


async def topic_view(session: AsyncSession, actor: Actor, topic_id: object, page: object = 0, *,
                     cfg: DiscussionConfig) -> TopicView:
    """A topic with one page of its comments: page 0 holds the latest top-level comments, each with
    all its replies (replies of a hidden comment included). Residents see each other by building,
    staff by role; staff of the committee also see names and hidden text."""
    number = check_page(page)
    if not is_db_id(topic_id):
        raise DiscussionError("no_topic")
    # The topic, its committee, its counts and the reader's subscription in one statement; the page
    # of comments with their replies in a second.
    shape = resident_shape(actor)
    if shape is not None:
        query, values = _resident_heading(shape), {"topic_id": topic_id} | scope_values(actor)
    else:
        query, values = _heading(topic_scope(actor), subscribed(actor)), {"topic_id": topic_id}
    row = (await session.execute(query, values)).first()
    if row is None:
        raise DiscussionError("no_topic")
    return await _page_view(session, actor, row[0], row[1], row[2] or 0, row[3] or 0, bool(row[4]), number, cfg)


async def _page_view(session: AsyncSession, actor: Actor, topic: Topic, committee: Region, total_roots: int,
                     count: int, subscribed_: bool, number: int, cfg: DiscussionConfig) -> TopicView:
    """:func:`topic_view` once its heading is read: page ``number`` (the last if beyond it)."""
    moderator = is_moderator(actor, committee)
    pages = max(1, -(-total_roots // cfg.comments_page))
    number = min(number, pages - 1)
    top: list[Comment] = []
    replies: dict[int, list[Comment]] = {}
    if total_roots:
        for c in await session.scalars(_PAGE, {"topic_id": topic.id, "offset": number * cfg.comments_page,
                                               "limit": cfg.comments_page}):
            if c.parent_id is None:
                top.append(c)
            else:
                replies.setdefault(c.parent_id, []).append(c)
    names: dict[int, str | None] = {}
    if moderator:  # every name on the page in one statement
        authors = {topic.author_account_id, *(c.author_account_id for c in top),
                   *(r.author_account_id for thread in replies.values() for r in thread)}
        names = await resident_names(session, {a for a in authors if a is not None})

    def author(account_id: int | None, role: str | None, building: str | None) -> Author:
        if not moderator:
            return Author(role, building)
        return Author(role, building, names.get(account_id) if account_id else None, account_id)

    def view(c: Comment) -> CommentView:
        hidden = c.hidden_at is not None
        return CommentView(c.id, c.parent_id, author(c.author_account_id, c.author_role, c.author_building),
                           c.body if moderator or not hidden else None, hidden,
                           c.hidden_reason if moderator else None, c.created_at,
                           c.author_account_id is not None and c.author_account_id == actor.account_id,
                           [view(r) for r in replies.get(c.id, [])])

    return TopicView(topic.id, topic.title, topic.body, topic.status.value, topic.building,
                     author(topic.author_account_id, topic.author_role, topic.author_building),
                     [view(c) for c in top], count, number, pages, subscribed_, moderator, topic.committee_id)


# --- reports --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportResult:
    comment_id: int
    hidden: bool  # this report hid the comment pending review


async def report_comment(session: AsyncSession, actor: Actor, comment_id: object, *, now: datetime,
                         cfg: DiscussionConfig) -> ReportResult:
    """A verified resident reports a visible comment once (a unique key: a second tap or a redelivered
    update is ``reported`` and changes nothing). After ``cfg.reports_to_hide`` distinct reports since
    the last review the comment is hidden pending review and the committee's staff are told."""
    if not actor.is_verified:
        raise DiscussionError("not_verified")
    comment, topic = await comment_in_scope(session, actor, comment_id)
    if comment.hidden_at is not None:
        raise DiscussionError("no_comment")
    if comment.author_account_id == actor.account_id:
        raise DiscussionError("own_comment")
    done = await session.execute(_insert(session, CommentReport).values(
        comment_id=comment.id, account_id=actor.account_id, created_at=now)
        .on_conflict_do_nothing(index_elements=["comment_id", "account_id"]))
    if rowcount(done) != 1:
        raise DiscussionError("reported")
    audit.record(session, "comment.report", now=now, actor_account_id=actor.account_id, target_type="comment",
                 target_id=comment.id, region_id=topic.committee_id)
    reports = await session.scalar(select(func.count()).select_from(CommentReport)
                                   .where(CommentReport.comment_id == comment.id)) or 0
    if reports - comment.reviewed_reports < cfg.reports_to_hide:
        return ReportResult(comment.id, False)
    hidden = await session.execute(update(Comment).where(Comment.id == comment.id, Comment.hidden_at.is_(None))
                                   .values(hidden_at=now, hidden_reason=HIDDEN_BY_REPORTS, hidden_by_account_id=None))
    if rowcount(hidden) != 1:
        return ReportResult(comment.id, False)
    audit.record(session, "comment.auto_hide", now=now, target_type="comment", target_id=comment.id,
                 region_id=topic.committee_id, detail={"reports": reports})
    committee = await session.get(Region, topic.committee_id)
    if committee is not None:
        data = {"topic": {"id": topic.id, "title": topic.title}, "comment": {"id": comment.id, "body": comment.body},
                "reports": reports}
        for account in await committee_staff(session, committee):
            await tell(session, account, f"comment:{comment.id}:hidden:{reports}:{account.id}",
                       "discussions.auto_hidden", data, now=now, priority=Priority.reply, ref_type=REF_TOPIC,
                       ref_id=topic.id)
    return ReportResult(comment.id, True)


# --- staff moderation -------------------------------------------------------------------------------------


async def _moderated_comment(session: AsyncSession, actor: Actor, comment_id: object) -> tuple[Comment, Topic]:
    if not actor.staff:
        raise DiscussionError("not_staff")
    comment, topic = await comment_in_scope(session, actor, comment_id)
    await moderated_topic(session, actor, topic.id)
    return comment, topic


async def hide_comment(session: AsyncSession, actor: Actor, comment_id: object, reason: str | None, *,
                       now: datetime, cfg: DiscussionConfig) -> Comment:
    """Staff hide a comment with a reason (or confirm one hidden by reports); ``already`` when staff
    hid it before. Its replies stay. Audited."""
    comment, topic = await _moderated_comment(session, actor, comment_id)
    why = check_reason(reason, cfg)
    done = await session.execute(update(Comment).where(Comment.id == comment.id,
                                                       Comment.hidden_by_account_id.is_(None),
                                                       (Comment.hidden_at.is_(None))
                                                       | (Comment.hidden_reason == HIDDEN_BY_REPORTS))
                                 .values(hidden_at=comment.hidden_at or now, hidden_reason=why,
                                         hidden_by_account_id=actor.account_id, reviewed_at=now))
    if rowcount(done) != 1:
        raise DiscussionError("already")
    await session.refresh(comment)
    audit.record(session, "comment.hide", now=now, actor_account_id=actor.account_id, target_type="comment",
                 target_id=comment.id, region_id=topic.committee_id, detail={"reason": why, "topic": topic.id})
    return comment


async def restore_comment(session: AsyncSession, actor: Actor, comment_id: object, reason: str | None, *,
                          now: datetime, cfg: DiscussionConfig) -> Comment:
    """Staff restore a hidden comment with a reason; the reports so far no longer count (new ones
    may hide it again). ``already`` when it is visible. Audited."""
    comment, topic = await _moderated_comment(session, actor, comment_id)
    why = check_reason(reason, cfg)
    reports = await session.scalar(select(func.count()).select_from(CommentReport)
                                   .where(CommentReport.comment_id == comment.id)) or 0
    done = await session.execute(update(Comment).where(Comment.id == comment.id, Comment.hidden_at.is_not(None))
                                 .values(hidden_at=None, hidden_reason=None, hidden_by_account_id=None,
                                         reviewed_at=now, reviewed_reports=reports))
    if rowcount(done) != 1:
        raise DiscussionError("already")
    await session.refresh(comment)
    audit.record(session, "comment.restore", now=now, actor_account_id=actor.account_id, target_type="comment",
                 target_id=comment.id, region_id=topic.committee_id, detail={"reason": why, "topic": topic.id})
    return comment


@dataclass(frozen=True, slots=True)
class MuteResult:
    account_id: int
    until: datetime | None  # None: unmuted
    changed: bool


async def mute_author(session: AsyncSession, actor: Actor, comment_id: object, until: datetime | None, *,
                      now: datetime, cfg: DiscussionConfig, reason: str | None = None) -> MuteResult:
    """Staff mute the author of a comment in the committee's discussions until ``until`` (or lift the
    mute: ``until`` None). One mute row per resident and committee; the resident is told. Audited."""
    comment, topic = await _moderated_comment(session, actor, comment_id)
    if comment.author_account_id is None or comment.author_role is not None:
        raise DiscussionError("no_comment")  # staff are not muted; a deleted account cannot be
    why = check_reason(reason, cfg, required=False)
    account_id = comment.author_account_id
    current = await session.scalar(select(DiscussionMute).where(DiscussionMute.committee_id == topic.committee_id,
                                                                DiscussionMute.account_id == account_id))
    if until is None:
        if current is None or current.until <= now:
            raise DiscussionError("already")
        current.until = now
        action = "discussion.unmute"
    else:
        if until <= now or until - now > cfg.max_mute:
            raise DiscussionError("bad_until")
        if current is not None and current.until == until:
            return MuteResult(account_id, until, False)
        if current is None:
            session.add(DiscussionMute(committee_id=topic.committee_id, account_id=account_id, until=until,
                                       reason=why, by_account_id=actor.account_id, created_at=now))
        else:
            current.until, current.reason, current.by_account_id = until, why, actor.account_id
        action = "discussion.mute"
    audit.record(session, action, now=now, actor_account_id=actor.account_id, target_type="account",
                 target_id=account_id, region_id=topic.committee_id,
                 detail={"until": until.isoformat() if until else None, "reason": why, "comment": comment.id})
    await session.flush()
    account = await session.get(Account, account_id)
    if account is not None:
        when = cfg.local(until).strftime("%Y-%m-%d %H:%M") if until else None
        await tell(session, account, f"mute:{topic.committee_id}:{account_id}:{when or 'off'}:{now.isoformat()}",
                   "discussions.muted", {"until": when, "reason": why}, now=now, ref_type=REF_TOPIC, ref_id=topic.id)
    return MuteResult(account_id, until, True)


# --- what waits for staff -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HiddenItem:
    id: int
    topic_id: int
    topic_title: str
    body: str
    author: Author
    reports: int


async def hidden_by_reports(session: AsyncSession, actor: Actor, *, limit: int = 20) -> list[HiddenItem]:
    """Staff: comments hidden by reports that no one has reviewed yet, in their committees."""
    if not actor.staff:
        raise DiscussionError("not_staff")
    from services.scope import committee_ids_in_scope

    reports = (select(func.count(CommentReport.id)).where(CommentReport.comment_id == Comment.id)
               .correlate(Comment).scalar_subquery())
    rows = await session.execute(
        select(Comment, Topic.title, reports).join(Topic, Topic.id == Comment.topic_id)
        .where(Topic.committee_id.in_(committee_ids_in_scope(actor)), Comment.hidden_at.is_not(None),
               Comment.hidden_reason == HIDDEN_BY_REPORTS).order_by(Comment.hidden_at, Comment.id).limit(limit))
    out = []
    for comment, title, count in rows:
        out.append(HiddenItem(comment.id, comment.topic_id, title, comment.body,
                              Author(comment.author_role, comment.author_building,
                                     await resident_name(session, comment.author_account_id),
                                     comment.author_account_id), count or 0))
    return out
