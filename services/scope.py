"""Who is acting, and what they may see.

Every query for residents (and later topics, polls, notices, alerts) goes through a scope
filter derived from the ``Actor``: staff see their region and every region below it; a
verified resident sees their own committee; anyone else sees nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.ext.compiler import compiles

from services.models import Account, Region, Resident, ResidentStatus, Staff, StaffRole

ROLE_RANK = {StaffRole.committee: 1, StaffRole.street: 2, StaffRole.district: 3, StaffRole.admin: 4}


@dataclass(frozen=True, slots=True)
class StaffGrant:
    staff_id: int
    role: StaffRole
    region_id: int
    region_path: str
    region_code: str
    region_name: str


@dataclass(frozen=True, slots=True)
class CheckinRoles:
    elder: bool  # the account's own resident is enrolled (an active plan)
    helper: bool  # the account answers the check-in for at least one elder (as helped_committees counts)


@dataclass(slots=True)
class Actor:
    """The resolved identity behind an update or a web request."""

    account: Account | None = None
    resident: Resident | None = None
    staff: list[StaffGrant] = field(default_factory=list)
    locale: str = "zh_Hans"
    # The check-in roles as read with the actor at the start of the update (``touch_actor``); None when
    # not read. A handler that changes plans reads them afresh (``services.checkins.checkin_roles``).
    checkin: CheckinRoles | None = None

    @property
    def account_id(self) -> int | None:
        return self.account.id if self.account else None

    @property
    def is_verified(self) -> bool:
        """A linked resident whose registry row is current (not moved out or withdrawn)."""
        return self.resident is not None and self.resident.status == ResidentStatus.active

    @property
    def verified_resident(self) -> Resident | None:
        """The linked resident when verified (see ``is_verified``), else None."""
        return self.resident if self.is_verified else None

    @property
    def is_staff(self) -> bool:
        return bool(self.staff)

    @property
    def top_role(self) -> StaffRole | None:
        return max((g.role for g in self.staff), key=ROLE_RANK.__getitem__, default=None)

    def region_paths(self) -> list[str]:
        return [g.region_path for g in self.staff]

    def covers_path(self, path: str) -> bool:
        """True when ``path`` (a region's materialised path) lies within this staff scope."""
        return any(path.startswith(p) for p in self.region_paths())


def committee_ids_in_scope(actor: Actor):
    """A subquery of the region ids an actor may see residents of (committee level and below)."""
    if actor.staff:
        conds = [Region.path.startswith(p, autoescape=True) for p in actor.region_paths()]
        return select(Region.id).where(or_(*conds)).scalar_subquery()
    if actor.is_verified and actor.resident is not None:
        return select(Region.id).where(Region.id == actor.resident.committee_id).scalar_subquery()
    return None


class _ScanColumn(ColumnElement):
    """A column SQLite must not use an index for (rendered ``+col``; unchanged elsewhere).

    For a street, district or city scope the committee filter keeps most rows; SQLite would still
    walk the committee index and fetch rows one by one, several times slower than scanning.
    """

    inherit_cache = True

    def __init__(self, column) -> None:
        self.column = column
        self.type = column.type


@compiles(_ScanColumn)
def _scan_default(element, compiler, **kw):
    return compiler.process(element.column, **kw)


@compiles(_ScanColumn, "sqlite")
def _scan_sqlite(element, compiler, **kw):
    return "+" + compiler.process(element.column, **kw)


def unindexed(column) -> ColumnElement:
    """``column`` as an expression SQLite must not read along an index (``+col``; unchanged elsewhere):
    e.g. a GROUP BY over a street that an index would order at the price of a random row read each."""
    return _ScanColumn(column)


def wide_scope(actor: Actor) -> bool:
    """True when a staff scope reaches above one committee (street, district or city)."""
    return any(g.role != StaffRole.committee for g in actor.staff)


def resident_scope(actor: Actor, *, indexed: bool = False) -> ColumnElement[bool]:
    """Filter over ``Resident`` rows that this actor may see.

    ``indexed``: the query reads only columns of ``ix_residents_segment``, so SQLite should walk that
    index committee by committee even for a wide scope (it never touches the wide rows).
    """
    if actor.staff:
        column = _ScanColumn(Resident.committee_id) if wide_scope(actor) and not indexed else Resident.committee_id
        return column.in_(committee_ids_in_scope(actor))
    if actor.is_verified and actor.resident is not None:
        return Resident.committee_id == actor.resident.committee_id
    return false()


async def load_staff_grants(session, account_id: int) -> list[StaffGrant]:
    rows = await session.execute(
        select(Staff.id, Staff.role, Region.id, Region.path, Region.code, Region.name)
        .join(Region, Region.id == Staff.region_id)
        .where(Staff.account_id == account_id, Staff.active.is_(True))
    )
    return [StaffGrant(*row) for row in rows]
