"""Community discussions (议事厅) and polls: topics, comments, reports, subscriptions, mutes; polls with
open ballots (who chose what, changeable) or secret ones (that a unit voted, apart from what was chosen).
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, BigId

# --- polls ---------------------------------------------------------------------------------------


class PollStatus(enum.StrEnum):
    scheduled = "scheduled"  # opens later
    open = "open"
    closed = "closed"


class PollUnit(enum.StrEnum):
    resident = "resident"  # one vote per resident
    household = "household"  # the household's first vote counts
    owner = "owner"  # one vote per owner household, weighed by exclusive area where the rule says so


class Poll(Base):
    """A question to a committee's residents (narrowed by an expression), counted by a rule at close."""

    __tablename__ = "polls"
    __table_args__ = (Index("ix_polls_status_closes_at", "status", "closes_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"), index=True)
    question: Mapped[str] = mapped_column(Text)
    options: Mapped[list] = mapped_column(JSON)  # the option texts, in order (0 is "agree" for rules)
    multiple: Mapped[int] = mapped_column(Integer, default=1)  # at most this many options per ballot
    eligible: Mapped[str | None] = mapped_column(Text)  # an expression narrowing the committee
    unit: Mapped[PollUnit] = mapped_column(Enum(PollUnit, native_enum=False, length=16))
    rule: Mapped[str] = mapped_column(String(32))  # majority, plurality, fraction:2/3, civil-code-*
    quorum: Mapped[str | None] = mapped_column(String(32))  # an exact fraction "p/q" of eligible units
    secret: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_change: Mapped[bool] = mapped_column(Boolean, default=True)
    opens_at: Mapped[datetime]
    closes_at: Mapped[datetime]
    status: Mapped[PollStatus] = mapped_column(Enum(PollStatus, native_enum=False, length=16))
    created_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    announced_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    results: Mapped[dict | None] = mapped_column(JSON)  # the tally frozen at close


class PollVote(Base):
    """An open ballot: a unit's current choice (one row per unit, enforced here, not only in code)."""

    __tablename__ = "poll_votes"
    __table_args__ = (UniqueConstraint("poll_id", "unit_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id", ondelete="CASCADE"))
    unit_key: Mapped[str] = mapped_column(String(32))  # "r:<resident id>" or "h:<household id>"
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id", ondelete="SET NULL"))
    choices: Mapped[list] = mapped_column(JSON)  # option indexes, sorted
    area: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))  # the household's area when cast
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PollVoter(Base):
    """A secret ballot's "this unit voted": no id, no time, nothing that points at what it chose."""

    __tablename__ = "poll_voters"
    __table_args__ = {"sqlite_with_rowid": False}

    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True)
    unit_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    area: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))


class PollTally(Base):
    """A secret ballot's "what was chosen", only as running sums per option: no ballot rows to link."""

    __tablename__ = "poll_tallies"
    __table_args__ = {"sqlite_with_rowid": False}

    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True)
    option: Mapped[int] = mapped_column(Integer, primary_key=True)
    votes: Mapped[int] = mapped_column(Integer, default=0)
    area: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal(0))


# --- discussions ---------------------------------------------------------------------------------


class TopicStatus(enum.StrEnum):
    pending = "pending"  # proposed by a resident, waiting for staff
    open = "open"
    locked = "locked"  # readable, no new comments
    rejected = "rejected"


class DiscussionSetting(Base):
    """Per committee: whether verified residents publish topics directly (else staff approve)."""

    __tablename__ = "discussion_settings"

    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True)
    residents_publish: Mapped[bool] = mapped_column(Boolean, default=False)


class Topic(Base):
    """A discussion in one committee, optionally narrowed to a compound or a building."""

    __tablename__ = "topics"
    __table_args__ = (Index("ix_topics_committee_status", "committee_id", "status", "last_activity_at"),
                      UniqueConstraint("client_key"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    compound_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    building: Mapped[str | None] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[TopicStatus] = mapped_column(Enum(TopicStatus, native_enum=False, length=16))
    author_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    author_building: Mapped[str | None] = mapped_column(String(32))  # for the neutral name, when written
    author_role: Mapped[str | None] = mapped_column(String(16))  # staff role when staff wrote it
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    last_activity_at: Mapped[datetime]
    # "<chat>:<message>" of the update that made it: a redelivered update makes no second topic
    client_key: Mapped[str | None] = mapped_column(String(64))


class Comment(Base):
    """A comment on a topic, or a reply to one (one level). Hidden ones stay in the table."""

    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_topic", "topic_id", "parent_id", "id"),
                      Index("ix_comments_author_time", "author_account_id", "created_at"),
                      UniqueConstraint("client_key"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id", ondelete="CASCADE"))
    author_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    author_building: Mapped[str | None] = mapped_column(String(32))
    author_role: Mapped[str | None] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    hidden_at: Mapped[datetime | None]
    hidden_reason: Mapped[str | None] = mapped_column(String(200))  # "reports" when hidden automatically
    hidden_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime | None]  # staff restored it
    reviewed_reports: Mapped[int] = mapped_column(Integer, default=0)  # reports then: only later ones hide it again
    client_key: Mapped[str | None] = mapped_column(String(64))  # as Topic.client_key: one comment per update


class CommentReport(Base):
    """One resident's report of one comment (at most one each)."""

    __tablename__ = "comment_reports"
    __table_args__ = (UniqueConstraint("comment_id", "account_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    comment_id: Mapped[int] = mapped_column(ForeignKey("comments.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]


class TopicSubscription(Base):
    """A subscriber of a topic and how far their digests have got."""

    __tablename__ = "topic_subscriptions"
    __table_args__ = (UniqueConstraint("topic_id", "account_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    seen_comment_id: Mapped[int] = mapped_column(BigId, default=0)  # digests cover comments after this
    last_digest_at: Mapped[datetime | None]


class DiscussionMute(Base):
    """A resident who may not write in a committee's discussions until ``until``."""

    __tablename__ = "discussion_mutes"
    __table_args__ = (UniqueConstraint("committee_id", "account_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    until: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(String(200))
    by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
