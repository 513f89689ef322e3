"""Subscriptions and the digest tick: a subscriber hears of new comments in one message per topic at
most every ``digest_interval``, never one message per comment.

The tick claims each subscription's step with a conditional ``UPDATE`` (its ``seen_comment_id`` and
``last_digest_at``) and enqueues the digest by a key naming the last comment it covers, so every
process may run it at any moment and each comment is told once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.accounts import account_locale
from services.discussions.common import REF_TOPIC
from services.discussions.config import DiscussionConfig
from services.discussions.topics import LISTED, topic_scope, visible_topic
from services.limits import clip
from services.models import Account, Comment, Topic, TopicSubscription
from services.outbox import OutboxItem, Priority, enqueue_many, message_payload
from services.scope import Actor, load_staff_grants
from services.sql import rowcount


async def subscribe(session: AsyncSession, actor: Actor, topic_id: object, on: bool, *, now: datetime) -> bool:
    """Subscribe to (``on``) or unsubscribe from a topic the actor sees; True when it changed (a second
    tap changes nothing). A new subscriber hears of comments from now on."""
    topic = await visible_topic(session, actor, topic_id)
    if actor.account_id is None:
        return False
    if not on:
        done = await session.execute(delete(TopicSubscription).where(TopicSubscription.topic_id == topic.id,
                                                                     TopicSubscription.account_id == actor.account_id))
        return rowcount(done) == 1
    from services.discussions.comments import _insert

    last = await session.scalar(select(func.max(Comment.id)).where(Comment.topic_id == topic.id)) or 0
    done = await session.execute(_insert(session, TopicSubscription).values(
        topic_id=topic.id, account_id=actor.account_id, created_at=now, seen_comment_id=last)
        .on_conflict_do_nothing(index_elements=["topic_id", "account_id"]))
    return rowcount(done) == 1


@dataclass(frozen=True, slots=True)
class DigestReport:
    sent: int = 0
    skipped: int = 0  # claimed, but the subscriber no longer sees the topic (or cannot be reached)

    def __bool__(self) -> bool:
        return bool(self.sent or self.skipped)


def _new_comments(sub_topic, sub_seen, sub_account):
    return (Comment.topic_id == sub_topic, Comment.id > sub_seen, Comment.hidden_at.is_(None),
            or_(Comment.author_account_id.is_(None), Comment.author_account_id != sub_account))


async def _reader(session: AsyncSession, account: Account) -> Actor:
    from services.models import Resident

    resident = await session.get(Resident, account.resident_id) if account.resident_id else None
    return Actor(account=account, resident=resident, staff=await load_staff_grants(session, account.id))


async def tick(sessions: async_sessionmaker[AsyncSession], cfg: DiscussionConfig, now: datetime, *,
               batch: int = 500) -> DigestReport:
    """Send each due subscriber one digest of a topic's new visible comments (not their own), at most
    one per topic every ``cfg.digest_interval``. Idempotent; each subscription in its own transaction."""
    due_before = now - cfg.digest_interval
    async with sessions() as session:
        ids = list(await session.scalars(
            select(TopicSubscription.id).join(Topic, Topic.id == TopicSubscription.topic_id)
            .where(Topic.status.in_(LISTED),
                   or_(TopicSubscription.last_digest_at.is_(None), TopicSubscription.last_digest_at <= due_before),
                   exists().where(*_new_comments(TopicSubscription.topic_id, TopicSubscription.seen_comment_id,
                                                 TopicSubscription.account_id)))
            .order_by(TopicSubscription.id).limit(batch)))
    sent = skipped = 0
    for sub_id in ids:
        async with sessions() as session, session.begin():
            sub = await session.get(TopicSubscription, sub_id)
            if sub is None:
                continue
            comments = list(await session.scalars(select(Comment).where(
                *_new_comments(sub.topic_id, sub.seen_comment_id, sub.account_id)).order_by(Comment.id)))
            last = await session.scalar(select(func.max(Comment.id)).where(Comment.topic_id == sub.topic_id)) or 0
            if not comments:
                continue
            claimed = await session.execute(update(TopicSubscription).where(
                TopicSubscription.id == sub.id, TopicSubscription.seen_comment_id == sub.seen_comment_id,
                or_(TopicSubscription.last_digest_at.is_(None), TopicSubscription.last_digest_at <= due_before))
                .values(seen_comment_id=last, last_digest_at=now))
            if rowcount(claimed) != 1:
                continue
            account = await session.get(Account, sub.account_id)
            topic = await session.get(Topic, sub.topic_id)
            if account is None or topic is None or account.unreachable_at is not None:
                skipped += 1
                continue
            reader = await _reader(session, account)
            if await session.scalar(select(Topic.id).where(Topic.id == topic.id, topic_scope(reader))) is None:
                skipped += 1
                continue
            shown = comments[-cfg.digest_comments:]
            data = {"topic": {"id": topic.id, "title": topic.title, "status": topic.status.value},
                    "comments": [{"id": c.id, "reply": c.parent_id is not None,
                                  "author": {"role": c.author_role, "building": c.author_building},
                                  "body": clip(c.body, 300)} for c in shown],
                    "more": len(comments) - len(shown)}
            item = OutboxItem(key=f"topic:{topic.id}:digest:{sub.id}:{last}", chat_id=account.chat_id,
                              account_id=account.id,
                              payload=message_payload("discussions.digest", data,
                                                      locale=account_locale(account, cfg.default_locale)),
                              priority=Priority.broadcast, ref_type=REF_TOPIC, ref_id=topic.id)
            sent += await enqueue_many(session, [item], now=now)
    return DigestReport(sent, skipped)
