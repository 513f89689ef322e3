"""Core tables: regions, households, residents, accounts, staff, audit log."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    column,
    event,
    table,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from services.models.base import Base, BigId
from services.models.pii import EncryptedPhone, PhoneIndex


class RegionLevel(enum.StrEnum):
    city = "city"
    district = "district"
    street = "street"
    committee = "committee"
    compound = "compound"


LEVEL_ORDER = [RegionLevel.city, RegionLevel.district, RegionLevel.street,
               RegionLevel.committee, RegionLevel.compound]


class StaffRole(enum.StrEnum):
    committee = "committee"
    street = "street"
    district = "district"
    admin = "admin"


class ResidentStatus(enum.StrEnum):
    active = "active"
    moved_out = "moved_out"  # missing from the latest registry import; staff must confirm
    withdrawn = "withdrawn"  # the resident used /forget; registry row kept, link erased


class Region(Base):
    """One node of city → district → street → committee → compound.

    ``path`` is the materialised chain of codes (``/310000/310104/.../``) so that a scope
    ("this region and everything below") is a single indexed prefix match.
    """

    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str | None] = mapped_column(String(100))
    level: Mapped[RegionLevel] = mapped_column(Enum(RegionLevel, native_enum=False, length=16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"), index=True)
    path: Mapped[str] = mapped_column(String(400), index=True)

    parent: Mapped[Region | None] = relationship(remote_side=[id], lazy="raise")


class Household(Base):
    __tablename__ = "households"
    __table_args__ = (UniqueConstraint("committee_id", "code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"), index=True)
    compound_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    code: Mapped[str] = mapped_column(String(64))
    building: Mapped[str | None] = mapped_column(String(32))
    unit: Mapped[str | None] = mapped_column(String(32))
    room: Mapped[str | None] = mapped_column(String(32))
    # Owner votes (Civil Code art. 278): whether the household owns its home, and its exclusive area.
    owner: Mapped[bool | None] = mapped_column(Boolean)
    floor_area: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))  # m²


SEGMENT_INDEX_COLUMNS = ("committee_id", "status", "birth_date", "living_alone", "gender", "building", "unit",
                         "disability_level", "monthly_income", "hukou")


class Resident(Base):
    """A registry row, owned by the committee. Never holds an ID number in clear; phone numbers are
    encrypted at rest (``phone`` reads and writes the clear number, ``phone_index`` matches it)."""

    __tablename__ = "residents"
    __table_args__ = (
        # A committee's residents of one status in the console's order (and its rooms looked up by
        # building, unit, room): a page anywhere in a list of 20,000 is an index range (bench console).
        Index("ix_residents_list", "committee_id", "status", "building", "unit", "room", "name", "id"),
        # Covers the registry fields segments filter on, so SQLite counts a segment from this narrow
        # index instead of the wide rows (bench segments, 1M residents: 109–358 ms → 7–130 ms);
        # birth_date comes right after the scope so age ranges are seeks within each committee.
        Index("ix_residents_segment", *SEGMENT_INDEX_COLUMNS),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    compound_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    household_id: Mapped[int | None] = mapped_column(
        ForeignKey("households.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(EncryptedPhone)  # E.164, +86…, in clear in Python only
    phone_index: Mapped[str | None] = mapped_column(PhoneIndex, index=True)  # set from ``phone``
    id_hash: Mapped[str | None] = mapped_column(String(64), unique=True)  # HMAC-SHA256 hex
    id_last4_hash: Mapped[str | None] = mapped_column(String(64))  # identity.hash_id_last4
    birth_date: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(String(1))  # "M" / "F"
    compound: Mapped[str | None] = mapped_column(String(100))
    building: Mapped[str | None] = mapped_column(String(32))
    unit: Mapped[str | None] = mapped_column(String(32))
    room: Mapped[str | None] = mapped_column(String(32))
    living_alone: Mapped[bool | None] = mapped_column(Boolean)
    hukou: Mapped[str | None] = mapped_column(String(32))  # "local" / "nonlocal" or a free code
    disability_level: Mapped[int | None] = mapped_column(Integer)  # 1 (most severe) … 4
    monthly_income: Mapped[int | None] = mapped_column(Integer)  # yuan
    emergency_contact_phone: Mapped[str | None] = mapped_column(EncryptedPhone)
    status: Mapped[ResidentStatus] = mapped_column(
        Enum(ResidentStatus, native_enum=False, length=16), default=ResidentStatus.active)
    registry_seen_at: Mapped[datetime | None]  # start of the last import that listed this row
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    household: Mapped[Household | None] = relationship(lazy="raise")

    @validates("phone")
    def _index_phone(self, _key: str, value: str | None) -> str | None:
        # The blind index follows the number (PhoneIndex hashes it when written). Core statements
        # (registry imports) set both columns themselves.
        self.phone_index = value
        return value


# A name search (``services.residents.name_contains``) finds a text of three characters or more along an
# index of the names' trigrams, kept by the database itself: on SQLite an external-content FTS5 table
# with the trigram tokenizer (SQLite 3.34+; it holds the names' trigrams by rowid = residents.id and reads
# nothing back from residents) kept by triggers on residents, whatever writes them; on PostgreSQL a GIN
# index of pg_trgm (which serves ``LIKE '%…%'`` as it is). Migration 0016 creates the same objects and
# alembic's comparison leaves them out (NAME_SEARCH_OBJECTS). A later migration that rebuilds residents
# on SQLite (batch mode: copy, drop, rename) drops the triggers with the old table and must create them
# again (tests/test_migrations.py checks they are there at the head).
NAME_FTS = table("residents_name_fts", column("rowid"), column("residents_name_fts"))
SQLITE_NAME_SEARCH_DDL = (
    "CREATE VIRTUAL TABLE residents_name_fts USING fts5(name, content='residents', content_rowid='id', "
    "tokenize='trigram', columnsize=0)",
    "CREATE TRIGGER residents_name_fts_insert AFTER INSERT ON residents BEGIN "
    "INSERT INTO residents_name_fts (rowid, name) VALUES (new.id, new.name); END",
    "CREATE TRIGGER residents_name_fts_delete AFTER DELETE ON residents BEGIN "
    "INSERT INTO residents_name_fts (residents_name_fts, rowid, name) VALUES ('delete', old.id, old.name); END",
    "CREATE TRIGGER residents_name_fts_update AFTER UPDATE OF id, name ON residents "
    "WHEN old.id IS NOT new.id OR old.name IS NOT new.name BEGIN "
    "INSERT INTO residents_name_fts (residents_name_fts, rowid, name) VALUES ('delete', old.id, old.name); "
    "INSERT INTO residents_name_fts (rowid, name) VALUES (new.id, new.name); END",
)
# The extension may live in any schema (the first of the search path when this creates it): its operator
# class is named with that schema, so an index in a schema of its own (tests, benchmarks) finds it too
# (``%%``: DDL() formats its statement with ``%``).
PG_NAME_SEARCH_DDL = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    """DO $$ BEGIN
    EXECUTE format('CREATE INDEX ix_residents_name_trgm ON residents USING gin (name %%I.gin_trgm_ops)',
                   (SELECT n.nspname FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
                    WHERE e.extname = 'pg_trgm'));
END $$""",
)
NAME_SEARCH_OBJECTS = {("index", "ix_residents_name_trgm")} | {
    ("table", "residents_name_fts" + suffix) for suffix in ("", "_data", "_idx", "_config")}

for _statement in SQLITE_NAME_SEARCH_DDL:
    event.listen(Resident.__table__, "after_create", DDL(_statement).execute_if(dialect="sqlite"))
for _statement in PG_NAME_SEARCH_DDL:
    event.listen(Resident.__table__, "after_create", DDL(_statement).execute_if(dialect="postgresql"))
# Dropping residents drops its triggers, not the FTS table: drop_all then create_all would find it there.
event.listen(Resident.__table__, "before_drop",
             DDL("DROP TABLE IF EXISTS residents_name_fts").execute_if(dialect="sqlite"))


class Account(Base):
    """A Telegram user as the bot knows them (``phone``: encrypted at rest, never compared in SQL)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    first_name: Mapped[str] = mapped_column(String(128), default="")
    last_name: Mapped[str | None] = mapped_column(String(128))
    username: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(16))  # chosen by /lang; None = from Telegram
    language_code: Mapped[str | None] = mapped_column(String(16))  # as Telegram last reported it
    resident_id: Mapped[int | None] = mapped_column(
        ForeignKey("residents.id", ondelete="SET NULL"), unique=True)
    verification_method: Mapped[str | None] = mapped_column(String(16))  # contact / invite / review
    verified_at: Mapped[datetime | None]
    # The account's own number, shared as its Telegram contact while verifying: encrypted like the
    # registry's, so staff can reach a resident whose registry entry has none (alerts fall back to it).
    phone: Mapped[str | None] = mapped_column(EncryptedPhone)
    consent_at: Mapped[datetime | None]
    unreachable_at: Mapped[datetime | None]  # blocked the bot (Telegram said so, or a send came back 403)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]

    resident: Mapped[Resident | None] = relationship(lazy="raise")


class Staff(Base):
    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("account_id", "region_id", "role"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"), index=True)
    role: Mapped[StaffRole] = mapped_column(Enum(StaffRole, native_enum=False, length=16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    on_duty: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]

    region: Mapped[Region] = relationship(lazy="raise")


class AuditLog(Base):
    """Who did what, when, with what outcome. Never holds phone or ID numbers."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(BigInteger)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="SET NULL"), index=True)
    outcome: Mapped[str] = mapped_column(String(32), default="ok")
    detail: Mapped[dict | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
