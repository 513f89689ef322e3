"""All ORM models; importing this package registers every table on ``Base.metadata``."""

from services.models.base import Base, BigId, UTCDateTime
from services.models.core import (
    LEVEL_ORDER,
    Account,
    AuditLog,
    Household,
    Region,
    RegionLevel,
    Resident,
    ResidentStatus,
    Staff,
    StaffRole,
)
from services.models.outbox import FINAL_STATUSES, OutboxMessage, OutboxStatus  # noqa: F401

__all__ = [
    "LEVEL_ORDER",
    "Account",
    "AuditLog",
    "Base",
    "BigId",
    "Household",
    "Region",
    "RegionLevel",
    "Resident",
    "ResidentStatus",
    "Staff",
    "StaffRole",
    "UTCDateTime",
]
