"""Verification: attempts (for the lock), household and staff invites, manual review requests."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, BigId
from services.models.core import StaffRole
from services.models.pii import PhoneIndex


class VerificationAttempt(Base):
    """One try at verifying, for the lock. Failures count against the account, the registry entry
    tried and the phone number's blind index; /forget detaches them from the account but keeps the
    failures of the lock window, so a new account does not start afresh."""

    __tablename__ = "verification_attempts"
    __table_args__ = (Index("ix_verification_attempts_account_at", "account_id", "at"),
                      Index("ix_verification_attempts_resident_at", "resident_id", "at"),
                      Index("ix_verification_attempts_phone_index_at", "phone_index", "at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id", ondelete="SET NULL"))
    phone_index: Mapped[str | None] = mapped_column(PhoneIndex)  # blind index of the phone tried
    method: Mapped[str] = mapped_column(String(16))  # contact, knowledge, invite, review
    success: Mapped[bool]
    reason: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[datetime]


class HouseholdInvite(Base):
    """A one-time code that verifies its user as a member of one household. Stored hashed."""

    __tablename__ = "household_invites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"), index=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"), index=True)
    created_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))


class StaffInvite(Base):
    __tablename__ = "staff_invites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"), index=True)
    role: Mapped[StaffRole] = mapped_column(Enum(StaffRole, native_enum=False, length=16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))


class RequestStatus(enum.StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    cancelled = "cancelled"


class VerificationRequest(Base):
    """Something staff must decide: a manual review, a new household member, a claim conflict."""

    __tablename__ = "verification_requests"
    __table_args__ = (Index("ix_verification_requests_committee_status", "committee_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))  # review, new_member, conflict
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(200))
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id", ondelete="SET NULL"))
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id", ondelete="SET NULL"))
    status: Mapped[RequestStatus] = mapped_column(
        Enum(RequestStatus, native_enum=False, length=16), default=RequestStatus.pending)
    decided_by_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
