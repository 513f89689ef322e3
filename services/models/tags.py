"""The tag dictionary, tags on residents, and saved segments."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, BigId


class TagKind(enum.StrEnum):
    manual = "manual"  # set and removed by staff
    rule = "rule"  # computed from an expression by recompute_rule_tags


class Tag(Base):
    """One entry of the tag dictionary (标签字典).

    ``region_id`` NULL is a built-in default for everyone; a region may define the same ``code``
    and its definition wins for residents below it (the deepest definition wins).
    """

    __tablename__ = "tags"
    __table_args__ = (
        # PostgreSQL treats NULLs as distinct, so built-in codes are kept unique by
        # ensure_default_tags (and by the partial index below).
        UniqueConstraint("region_id", "code"),
        Index("ix_tags_code_default", "code", unique=True, postgresql_where=text("region_id IS NULL"),
              sqlite_where=text("region_id IS NULL")),
        Index("ix_tags_code", "code"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(32), default="general")
    kind: Mapped[TagKind] = mapped_column(Enum(TagKind, native_enum=False, length=16))
    rule: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class ResidentTag(Base):
    __tablename__ = "resident_tags"
    __table_args__ = (
        UniqueConstraint("resident_id", "tag_id"),
        # has_tag() reads "residents with this tag" from this index, in tag order.
        Index("ix_resident_tags_tag_resident", "tag_id", "resident_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"))
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"))
    source: Mapped[TagKind] = mapped_column(Enum(TagKind, native_enum=False, length=16))
    set_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    set_at: Mapped[datetime]


class Segment(Base):
    """A saved filter expression (社区人群), owned by a region; always evaluated fresh."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("region_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    expression: Mapped[str] = mapped_column(Text)
    created_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
