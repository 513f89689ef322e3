"""Policy matching (政策找人): the catalogue with versions by date, questionnaire answers, take-up cases."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Enum,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from services.models.base import Base, BigId


class Policy(Base):
    """One programme (政策) by its stable code; what it says lives in its dated versions."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    # NULL: applies everywhere; otherwise the region (and everything below it) it applies to.
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    sample: Mapped[bool] = mapped_column(Boolean, default=False)  # sample data, not advice
    source_file: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    versions: Mapped[list[PolicyVersion]] = relationship(
        lazy="raise", order_by="PolicyVersion.valid_from", cascade="all, delete-orphan")


class PolicyVersion(Base):
    """What a policy says from ``valid_from`` (until ``valid_to`` or the next version): rules and
    amounts change on a date without rewriting what held before (OpenFisca's parameters by date)."""

    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("policy_id", "valid_from"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)  # last day it applies; NULL: open-ended
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    rule: Mapped[str] = mapped_column(Text)  # the expression text, as written in the file
    # {"summary": {zh, en}, "benefit": {...}, "apply": {...}, "source": "..."}: shown, never queried.
    content: Mapped[dict] = mapped_column(JSON)


class PolicyFieldType(enum.StrEnum):
    int = "int"
    decimal = "decimal"
    bool = "bool"
    str = "str"
    date = "date"


class PolicyField(Base):
    """A questionnaire field a policy file declares (a datum the registry lacks), with its question."""

    __tablename__ = "policy_fields"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[PolicyFieldType] = mapped_column(Enum(PolicyFieldType, native_enum=False, length=16))
    # {"label": {zh, en}, "question": {zh, en}, "choices": [{"value", "zh", "en"}], "min", "max"}
    content: Mapped[dict] = mapped_column(JSON)
    source_file: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime]


class PolicyAnswer(Base):
    """One questionnaire answer of a resident, kept with their consent (shown in /mydata, erased by
    /forget). The value sits in the column of its type, so policy rules compile to plain SQL."""

    __tablename__ = "policy_answers"

    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True)
    field: Mapped[str] = mapped_column(String(64), primary_key=True)
    value_int: Mapped[int | None] = mapped_column(BigInteger)
    value_num: Mapped[Decimal | None] = mapped_column(Numeric(18, 4))
    value_bool: Mapped[bool | None] = mapped_column(Boolean)
    value_str: Mapped[str | None] = mapped_column(String(200))
    value_date: Mapped[date | None] = mapped_column(Date)
    answered_at: Mapped[datetime]


class PolicyConsent(Base):
    """The resident agreed that their questionnaire answers are kept."""

    __tablename__ = "policy_consents"

    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True)
    given_at: Mapped[datetime]


class CaseStatus(enum.StrEnum):
    # "eligible" is not stored: it is what the rule says over the registry now.
    notified = "notified"
    applied = "applied"
    enrolled = "enrolled"
    declined = "declined"


class PolicyCase(Base):
    """Take-up of one policy by one resident: notified → applied → enrolled, or declined (with a reason)."""

    __tablename__ = "policy_cases"
    __table_args__ = (
        UniqueConstraint("policy_id", "resident_id"),
        Index("ix_policy_cases_followup", "status", "notified_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), index=True)
    status: Mapped[CaseStatus] = mapped_column(Enum(CaseStatus, native_enum=False, length=16))
    reason: Mapped[str | None] = mapped_column(String(500))  # why declined
    notified_at: Mapped[datetime | None]  # the last push
    followup_at: Mapped[datetime | None]  # the one follow-up after that push
    applied_at: Mapped[datetime | None]
    enrolled_at: Mapped[datetime | None]
    declined_at: Mapped[datetime | None]
    updated_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)
