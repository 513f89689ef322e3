"""Topics: who sees and takes part (a committee, optionally one compound or building), opening and
proposing, staff approval, locking, the per-committee "residents publish directly" setting, and the
paged list with comment counts.

Every id from a button or a command is checked here (``services.ids``); a topic outside the actor's
audience is answered exactly like a missing one (``no_topic``), so a forged button learns nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, and_, bindparam, false, func, null, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.discussions.common import REF_TOPIC, DiscussionError
from services.discussions.config import DiscussionConfig
from services.ids import is_db_id
from services.models import (
    Account,
    Comment,
    DiscussionMute,
    DiscussionSetting,
    Region,
    Resident,
    Topic,
    TopicStatus,
    TopicSubscription,
)
from services.notify import committee_staff, tell
from services.outbox import Priority
from services.regions import committee_of_staff
from services.scope import Actor, committee_ids_in_scope
from services.sql import rowcount

SCOPES = ("committee", "compound", "building")
LISTED = (TopicStatus.open, TopicStatus.locked)


# --- who sees what -------------------------------------------------------------------------------


def resident_audience(resident: Resident) -> ColumnElement[bool]:
    """Filter over ``Topic``: the topics a resident's committee, compound and building take part in."""
    return and_(Topic.committee_id == resident.committee_id,
                or_(Topic.compound_id.is_(None), Topic.compound_id == resident.compound_id)
                if resident.compound_id is not None else Topic.compound_id.is_(None),
                or_(Topic.building.is_(None), Topic.building == resident.building)
                if resident.building else Topic.building.is_(None))


def topic_scope(actor: Actor) -> ColumnElement[bool]:
    """Filter over ``Topic``: what this actor may see at all (staff: their committees; a verified
    resident: their audience, and their own proposals; anyone else: nothing)."""
    conds: list[ColumnElement[bool]] = []
    if actor.staff:
        conds.append(Topic.committee_id.in_(committee_ids_in_scope(actor)))
    if actor.is_verified and actor.resident is not None:
        conds.append(and_(resident_audience(actor.resident),
                          or_(Topic.status.in_(LISTED), Topic.author_account_id == actor.account_id)))
    return or_(*conds) if conds else false()


# A resident's scope differs from another resident's only in values (committee, compound, building,
# account), so the statements read on every discussion update of a resident are built once per shape
# of that scope, with the values bound when they run: building a select and computing its cache key
# cost more Python than executing it. Staff and everyone else get theirs built each time.
ResidentShape = tuple[bool, bool]  # (has a compound, has a building)


def resident_shape(actor: Actor) -> ResidentShape | None:
    """The shape of a verified resident's scope who is not staff; None for anyone else."""
    if actor.staff or not actor.is_verified or actor.resident is None or actor.account_id is None:
        return None
    return actor.resident.compound_id is not None, bool(actor.resident.building)


def bound_resident_scope(shape: ResidentShape) -> ColumnElement[bool]:
    """:func:`topic_scope` of a resident of ``shape``, its values bound (see :func:`scope_values`)."""
    has_compound, has_building = shape
    return and_(Topic.committee_id == bindparam("scope_committee"),
                or_(Topic.compound_id.is_(None), Topic.compound_id == bindparam("scope_compound"))
                if has_compound else Topic.compound_id.is_(None),
                or_(Topic.building.is_(None), Topic.building == bindparam("scope_building"))
                if has_building else Topic.building.is_(None),
                or_(Topic.status.in_(LISTED), Topic.author_account_id == bindparam("scope_account")))


def scope_values(actor: Actor) -> dict[str, object]:
    """The values :func:`bound_resident_scope` binds, for a resident with a shape."""
    resident = actor.resident
    assert resident is not None
    return {"scope_committee": resident.committee_id, "scope_compound": resident.compound_id,
            "scope_building": resident.building, "scope_account": actor.account_id}


def is_moderator(actor: Actor, committee: Region) -> bool:
    return bool(actor.staff) and actor.covers_path(committee.path)


async def visible_topic(session: AsyncSession, actor: Actor, topic_id: object) -> Topic:
    """The topic if this actor may see it; ``no_topic`` otherwise (missing, forged, another
    committee's or building's)."""
    if not is_db_id(topic_id):
        raise DiscussionError("no_topic")
    topic = await session.scalar(select(Topic).where(Topic.id == topic_id, topic_scope(actor)))
    if topic is None:
        raise DiscussionError("no_topic")
    return topic


async def moderated_topic(session: AsyncSession, actor: Actor, topic_id: object) -> tuple[Topic, Region]:
    """The topic and its committee if this actor is staff covering it (``not_staff`` / ``no_topic``)."""
    if not actor.staff:
        raise DiscussionError("not_staff")
    topic = await visible_topic(session, actor, topic_id)
    committee = await session.get(Region, topic.committee_id)
    if committee is None or not is_moderator(actor, committee):
        raise DiscussionError("no_topic")
    return topic, committee


async def staff_committee(session: AsyncSession, actor: Actor, code: str | None = None) -> Region:
    """The committee a staff member acts for: ``code`` within their scope, else their own."""
    if not actor.staff:
        raise DiscussionError("not_staff")
    region = await committee_of_staff(session, actor, code)
    if region is None:
        raise DiscussionError("not_committee", code=(code or "").strip()[:32])
    return region


async def active_mute(session: AsyncSession, committee_id: int, account_id: int | None,
                      now: datetime) -> DiscussionMute | None:
    if account_id is None:
        return None
    return await session.scalar(select(DiscussionMute).where(
        DiscussionMute.committee_id == committee_id, DiscussionMute.account_id == account_id,
        DiscussionMute.until > now))


def check_mute(mute: DiscussionMute | None, cfg: DiscussionConfig) -> None:
    check_muted_until(mute.until if mute is not None else None, cfg)


def check_muted_until(until: datetime | None, cfg: DiscussionConfig) -> None:
    """``muted`` while a mute ends at ``until`` (None: not muted)."""
    if until is not None:
        raise DiscussionError("muted", until=cfg.local(until).strftime("%Y-%m-%d %H:%M"))


def muted_until(committee_id, account_id: int | ColumnElement[Any] | None, now: datetime | ColumnElement[Any]):
    """A scalar subquery: when the account's mute in the committee ends (NULL: not muted now);
    ``committee_id`` may be a column of the enclosing query, the account and ``now`` bound parameters."""
    if account_id is None:
        return null()
    return (select(func.max(DiscussionMute.until)).where(
        DiscussionMute.committee_id == committee_id, DiscussionMute.account_id == account_id,
        DiscussionMute.until > now).scalar_subquery())


# --- the committee's setting ------------------------------------------------------------------------


async def residents_publish(session: AsyncSession, committee_id: int) -> bool:
    """Whether verified residents of this committee publish topics without approval (default: no)."""
    return bool(await session.scalar(select(DiscussionSetting.residents_publish)
                                     .where(DiscussionSetting.committee_id == committee_id)))


async def set_residents_publish(session: AsyncSession, actor: Actor, on: bool, *, now: datetime,
                                code: str | None = None) -> Region:
    """Staff: let residents of their committee publish directly (``on``) or propose for approval.
    Audited when it changes; the same setting again changes nothing."""
    committee = await staff_committee(session, actor, code)
    row = await session.get(DiscussionSetting, committee.id)
    if row is not None and row.residents_publish == on:
        return committee
    if row is None:
        session.add(DiscussionSetting(committee_id=committee.id, residents_publish=on))
    else:
        row.residents_publish = on
    audit.record(session, "discussion.residents_publish", now=now, actor_account_id=actor.account_id,
                 target_type="region", target_id=committee.id, region_id=committee.id, detail={"on": on})
    await session.flush()
    return committee


# --- opening and proposing ---------------------------------------------------------------------------


@dataclass(slots=True)
class TopicDraft:
    title: str = ""
    body: str = ""
    scope: str = "committee"  # committee, compound (the resident's), building
    building: str | None = None  # staff name the building; a resident's is their own


def check_title(text: str, cfg: DiscussionConfig) -> str:
    title = " ".join((text or "").split())
    if not title:
        raise DiscussionError("empty")
    if len(title) > cfg.max_title:
        raise DiscussionError("too_long", limit=cfg.max_title)
    return title


def check_body(text: str, cfg: DiscussionConfig) -> str:
    body = (text or "").strip()
    if not body:
        raise DiscussionError("empty")
    if len(body) > cfg.max_body:
        raise DiscussionError("too_long", limit=cfg.max_body)
    return body


def check_reason(text: str | None, cfg: DiscussionConfig, *, required: bool = True) -> str | None:
    reason = " ".join((text or "").split())
    if not reason:
        if required:
            raise DiscussionError("bad_reason", limit=cfg.max_reason)
        return None
    if len(reason) > cfg.max_reason:
        raise DiscussionError("bad_reason", limit=cfg.max_reason)
    return reason


async def check_can_open(session: AsyncSession, actor: Actor, *, now: datetime, cfg: DiscussionConfig) -> None:
    """The refusal :func:`create_topic` would give now whatever the text (staff without a committee;
    not verified, muted, or the day's topics made)."""
    if actor.staff:
        await staff_committee(session, actor)
        return
    if not actor.is_verified or actor.resident is None:
        raise DiscussionError("not_verified")
    check_mute(await active_mute(session, actor.resident.committee_id, actor.account_id, now), cfg)
    made = await session.scalar(select(func.count()).select_from(Topic).where(
        Topic.author_account_id == actor.account_id, Topic.created_at > now - timedelta(days=1)))
    if (made or 0) >= cfg.topics_per_day:
        raise DiscussionError("too_many_topics", limit=cfg.topics_per_day)


@dataclass(frozen=True, slots=True)
class TopicResult:
    topic: Topic
    created: bool  # False: the same update again (nothing new was written)
    published: bool  # False: waiting for staff approval


async def create_topic(session: AsyncSession, actor: Actor, draft: TopicDraft, *, now: datetime,
                       cfg: DiscussionConfig, client_key: str | None = None, code: str | None = None) -> TopicResult:
    """Staff open a topic in their committee; a verified resident proposes one in theirs (published at
    once where the committee allows it, else pending approval; staff are told). The author is
    subscribed. Idempotent by ``client_key``; a refusal writes nothing."""
    if client_key:
        existing = await session.scalar(select(Topic).where(Topic.client_key == client_key))
        if existing is not None and existing.author_account_id == actor.account_id:
            return TopicResult(existing, False, existing.status != TopicStatus.pending)
    title = check_title(draft.title, cfg)
    body = check_body(draft.body, cfg)
    if draft.scope not in SCOPES:
        raise DiscussionError("bad_scope")
    if actor.staff:
        committee = await staff_committee(session, actor, code)
        if draft.scope == "compound":
            raise DiscussionError("bad_scope")  # staff narrow by building (compounds: a later console)
        building = (" ".join((draft.building or "").split())[:32] or None) if draft.scope == "building" else None
        if draft.scope == "building" and building is None:
            raise DiscussionError("bad_scope")
        topic = Topic(committee_id=committee.id, compound_id=None, building=building, title=title, body=body,
                      status=TopicStatus.open, author_account_id=actor.account_id, author_role=str(actor.top_role),
                      created_at=now, decided_at=now, decided_by_account_id=actor.account_id,
                      last_activity_at=now, client_key=client_key)
    else:
        if not actor.is_verified or actor.resident is None:
            raise DiscussionError("not_verified")
        resident = actor.resident
        await check_can_open(session, actor, now=now, cfg=cfg)
        compound_id = resident.compound_id if draft.scope in ("compound", "building") else None
        building = resident.building if draft.scope == "building" else None
        if (draft.scope == "compound" and compound_id is None) or (draft.scope == "building" and not building):
            raise DiscussionError("bad_scope")
        direct = await residents_publish(session, resident.committee_id)
        committee = await session.get_one(Region, resident.committee_id)  # a RESTRICT foreign key
        topic = Topic(committee_id=committee.id, compound_id=compound_id, building=building, title=title,
                      body=body, status=TopicStatus.open if direct else TopicStatus.pending,
                      author_account_id=actor.account_id, author_building=resident.building,
                      created_at=now, decided_at=now if direct else None, last_activity_at=now,
                      client_key=client_key)
    try:
        async with session.begin_nested():
            session.add(topic)
            await session.flush()
    except IntegrityError:
        # The same update at the same moment in another worker: that one made the topic.
        existing = await session.scalar(select(Topic).where(Topic.client_key == client_key))
        if existing is None:
            raise
        return TopicResult(existing, False, existing.status != TopicStatus.pending)
    session.add(TopicSubscription(topic_id=topic.id, account_id=actor.account_id, created_at=now,
                                  seen_comment_id=0))
    audit.record(session, "topic.create", now=now, actor_account_id=actor.account_id, target_type="topic",
                 target_id=topic.id, region_id=committee.id,
                 detail={"status": topic.status.value, "building": topic.building, "staff": bool(actor.staff)})
    if topic.status == TopicStatus.pending:
        for account in await committee_staff(session, committee):
            await tell(session, account, f"topic:{topic.id}:proposed:{account.id}", "discussions.proposed",
                       {"topic": topic_card(topic)}, now=now, priority=Priority.reply, ref_type=REF_TOPIC,
                       ref_id=topic.id)
    await session.flush()
    return TopicResult(topic, True, topic.status != TopicStatus.pending)


def topic_card(topic: Topic) -> dict:
    """A topic as plain JSON for the outbox (what staff review and authors are told about)."""
    return {"id": topic.id, "title": topic.title, "body": topic.body, "building": topic.building,
            "author": {"role": topic.author_role, "building": topic.author_building}}


async def decide_topic(session: AsyncSession, actor: Actor, topic_id: object, approve: bool, *,
                       now: datetime) -> Topic:
    """Staff approve (publish) or reject a pending proposal; the author is told. A second tap (or
    another staff member's) is ``not_pending`` and changes nothing. Audited."""
    topic, committee = await moderated_topic(session, actor, topic_id)
    status = TopicStatus.open if approve else TopicStatus.rejected
    done = await session.execute(update(Topic).where(Topic.id == topic.id, Topic.status == TopicStatus.pending)
                                 .values(status=status, decided_at=now, decided_by_account_id=actor.account_id,
                                         last_activity_at=now))
    if rowcount(done) != 1:
        raise DiscussionError("not_pending")
    await session.refresh(topic)
    audit.record(session, "topic.approve" if approve else "topic.reject", now=now,
                 actor_account_id=actor.account_id, target_type="topic", target_id=topic.id,
                 region_id=committee.id)
    author = await session.get(Account, topic.author_account_id) if topic.author_account_id else None
    if author is not None:
        await tell(session, author, f"topic:{topic.id}:decided", "discussions.decided",
                   {"topic": topic_card(topic), "approved": approve}, now=now, ref_type=REF_TOPIC, ref_id=topic.id)
    return topic


async def set_locked(session: AsyncSession, actor: Actor, topic_id: object, locked: bool, *, now: datetime,
                     reason: str | None, cfg: DiscussionConfig) -> Topic:
    """Staff lock a topic (readable, no new comments) or reopen it; ``already`` if it is so. Audited."""
    topic, committee = await moderated_topic(session, actor, topic_id)
    why = check_reason(reason, cfg, required=False)
    before, after = (TopicStatus.open, TopicStatus.locked) if locked else (TopicStatus.locked, TopicStatus.open)
    if topic.status not in (TopicStatus.open, TopicStatus.locked):
        raise DiscussionError("pending" if topic.status == TopicStatus.pending else "closed")
    done = await session.execute(update(Topic).where(Topic.id == topic.id, Topic.status == before)
                                 .values(status=after))
    if rowcount(done) != 1:
        raise DiscussionError("already")
    await session.refresh(topic)
    audit.record(session, "topic.lock" if locked else "topic.unlock", now=now, actor_account_id=actor.account_id,
                 target_type="topic", target_id=topic.id, region_id=committee.id, detail={"reason": why})
    return topic


# --- the list ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicItem:
    id: int
    title: str
    status: str
    comments: int  # visible comments (hidden ones are not counted)
    building: str | None


@dataclass(frozen=True, slots=True)
class TopicPage:
    items: list[TopicItem]
    page: int
    pages: int
    total: int


def visible_count():
    """A correlated count of a topic's visible comments (replies included; hidden ones not)."""
    return (select(func.count(Comment.id)).where(Comment.topic_id == Topic.id, Comment.hidden_at.is_(None))
            .correlate(Topic).scalar_subquery())


def _topic_list(cond: ColumnElement[bool]) -> Select:
    """Listed topics matching ``cond``, latest activity first, with their visible comment counts and the
    count of them all; ``limit`` and ``offset`` bound when it runs."""
    return (select(Topic.id, Topic.title, Topic.status, visible_count(), Topic.building, func.count().over())
            .where(cond).order_by(Topic.last_activity_at.desc(), Topic.id.desc())
            .limit(bindparam("limit", type_=Integer)).offset(bindparam("offset", type_=Integer)))


@functools.cache
def _resident_list(shape: ResidentShape) -> Select:
    return _topic_list(and_(bound_resident_scope(shape), Topic.status.in_(LISTED)))


def check_page(page: object) -> int:
    if not isinstance(page, int) or isinstance(page, bool) or not 0 <= page <= 10_000:
        raise DiscussionError("bad_page")
    return page


async def list_topics(session: AsyncSession, actor: Actor, page: object = 0, *, cfg: DiscussionConfig,
                      pending: bool = False) -> TopicPage:
    """Open and locked topics this actor may see, latest activity first, with visible comment counts;
    ``pending``: staff's proposals waiting for approval. A page beyond the last is the last."""
    number = check_page(page)
    if pending and not actor.staff:
        raise DiscussionError("not_staff")
    shape = None if pending else resident_shape(actor)
    values: dict[str, object] = {"limit": cfg.topics_page}
    if shape is not None:
        query, values = _resident_list(shape), values | scope_values(actor)
    elif pending:
        query = _topic_list(and_(Topic.committee_id.in_(committee_ids_in_scope(actor)),
                                 Topic.status == TopicStatus.pending))
    else:
        query = _topic_list(and_(topic_scope(actor), Topic.status.in_(LISTED)))
    # The page and the whole count in one statement; a page beyond the last (no rows) asks for the
    # first row's count and then reads the last page.
    rows = (await session.execute(query, values | {"offset": number * cfg.topics_page})).all()
    total = rows[0][5] if rows else 0
    if not rows and number:  # the first row carries the count too
        first = (await session.execute(query, values | {"offset": 0, "limit": 1})).first()
        total = first[5] if first else 0
    pages = max(1, -(-total // cfg.topics_page))
    if number > pages - 1:
        number = pages - 1
        rows = (await session.execute(query, values | {"offset": number * cfg.topics_page})).all()
    items = [TopicItem(i, title, status.value, count or 0, building) for i, title, status, count, building, _ in rows]
    return TopicPage(items, number, pages, total)


async def comment_count(session: AsyncSession, topic_id: int) -> int:
    """Visible comments of a topic: hidden ones are not counted, their replies are."""
    return await session.scalar(select(func.count(Comment.id)).where(
        Comment.topic_id == topic_id, Comment.hidden_at.is_(None))) or 0


async def resident_names(session: AsyncSession, account_ids: set[int]) -> dict[int, str | None]:
    """:func:`resident_name` of several accounts in one statement (staff readers only)."""
    if not account_ids:
        return {}
    rows = await session.execute(select(Account.id, Account.first_name, Resident.name).outerjoin(
        Resident, Resident.id == Account.resident_id).where(Account.id.in_(sorted(account_ids))))
    return {account_id: name or first_name or None for account_id, first_name, name in rows}


async def resident_name(session: AsyncSession, account_id: int | None) -> str | None:
    """For staff readers: the registry name behind an account (else its Telegram first name)."""
    if account_id is None:
        return None
    row = (await session.execute(select(Account.first_name, Resident.name).outerjoin(
        Resident, Resident.id == Account.resident_id).where(Account.id == account_id))).first()
    if row is None:
        return None
    return row[1] or row[0] or None
