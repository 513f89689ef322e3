"""Looking residents and households up, always within the actor's scope."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.ids import is_db_id
from services.models import Household, Region, Resident, ResidentStatus
from services.scope import Actor, committee_ids_in_scope, resident_scope

_ROOM_DASH = re.compile(r"^(\w+?)\s*[-－/]\s*(?:(\w+?)\s*[-－/]\s*)?(\w+)$")
_ROOM_CN = re.compile(r"^(\w+?)\s*(?:号楼|号|栋|幢|楼)\s*(?:(\w+?)\s*单元)?\s*(\w+?)\s*(?:室|号)?$")


@dataclass(frozen=True, slots=True)
class RoomQuery:
    building: str
    unit: str | None
    room: str


def parse_room(text: str) -> RoomQuery | None:
    """``3-201``, ``3-2-201``, ``3号楼201``, ``3号楼2单元201室`` → building, unit, room."""
    text = text.strip()
    for pattern in (_ROOM_DASH, _ROOM_CN):
        m = pattern.match(text)
        if m and any(ch.isdigit() for ch in m.group(3)):
            return RoomQuery(m.group(1), m.group(2), m.group(3))
    return None


def room_filter(room: RoomQuery):
    conds = [Resident.building == room.building, Resident.room == room.room]
    if room.unit:
        conds.append(Resident.unit == room.unit)
    return and_(*conds)


async def find_residents(session: AsyncSession, actor: Actor, query: str, limit: int = 20, *,
                         active_only: bool = True) -> list[Resident]:
    """Residents in the actor's scope matching a room (``3-201``, ``3号楼201``) or a name (exact
    matches first, then names containing the text); only active ones unless ``active_only=False``."""
    query = query.strip()[:50]
    if not query:
        return []
    base = select(Resident).where(resident_scope(actor))
    if active_only:
        base = base.where(Resident.status == ResidentStatus.active)
    order = (Resident.building, Resident.unit, Resident.room, Resident.name, Resident.id)
    room = parse_room(query)
    if room is not None:
        found = list(await session.scalars(base.where(room_filter(room)).order_by(*order).limit(limit)))
        if found:
            return found
    exact = list(await session.scalars(base.where(Resident.name == query).order_by(*order).limit(limit)))
    if len(exact) >= limit:
        return exact
    more = await session.scalars(
        base.where(Resident.name.contains(query, autoescape=True), Resident.name != query)
        .order_by(*order).limit(limit - len(exact)))
    return exact + list(more)


async def get_resident(session: AsyncSession, actor: Actor, resident_id: int) -> Resident | None:
    """One resident by id, or None when it does not exist or lies outside the actor's scope."""
    if not is_db_id(resident_id):  # from a button or a command: never bind what the database refuses
        return None
    return await session.scalar(select(Resident).where(Resident.id == resident_id, resident_scope(actor)))


async def find_household(session: AsyncSession, actor: Actor, text: str) -> Household | None:
    """A household in scope by its code, or by building-room."""
    scope = committee_ids_in_scope(actor)
    if scope is None or not actor.is_staff:
        return None
    q = text.strip()[:64]
    hh = await session.scalar(select(Household).where(Household.code == q, Household.committee_id.in_(scope)))
    if hh is None and (room := parse_room(q)):
        conds = [Household.building == room.building, Household.room == room.room, Household.committee_id.in_(scope)]
        if room.unit:
            conds.append(Household.unit == room.unit)
        rows = (await session.scalars(select(Household).where(*conds).limit(2))).all()
        hh = rows[0] if len(rows) == 1 else None
    return hh


async def committee_households(session: AsyncSession, committee_id: int, code: str | None = None
                               ) -> list[Household]:
    """A committee's households by code (one, when ``code`` is given); for staff tools and the CLI."""
    stmt = select(Household).where(Household.committee_id == committee_id).order_by(Household.code)
    if code:
        stmt = stmt.where(Household.code == code)
    return list((await session.scalars(stmt)).all())


async def committees_in_scope(session: AsyncSession, actor: Actor) -> list[Region]:
    from services.models import RegionLevel

    scope = committee_ids_in_scope(actor)
    if scope is None:
        return []
    return list((await session.scalars(select(Region).where(Region.id.in_(scope),
                                                            Region.level == RegionLevel.committee)
                                       .order_by(Region.name))).all())
