"""Looking residents and households up, always within the actor's scope."""

from __future__ import annotations

import re

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Household, Region, Resident
from services.scope import Actor, committee_ids_in_scope, resident_scope

# "3-201", "3号楼201", "3幢2单元201", "3/2/201": building, optional unit, room.
_ROOM = re.compile(r"^\s*(\w+?)\s*(?:号楼|幢|栋|#|-|/|\s)\s*(?:(\w+?)\s*(?:单元|-|/)\s*)?(\w+?)\s*(?:室|号)?\s*$")


def parse_room(text: str) -> tuple[str, str | None, str] | None:
    m = _ROOM.match(text)
    return (m[1], m[2], m[3]) if m else None


async def find_residents(session: AsyncSession, actor: Actor, query: str, limit: int = 10) -> list[Resident]:
    """Residents in scope by exact room (``3-201``, ``3号楼201``), or name containing the query."""
    q = query.strip()[:50]
    if not q:
        return []
    conds = [Resident.name.contains(q, autoescape=True)]
    room = parse_room(q)
    if room:
        building, unit, number = room
        c = and_(Resident.building == building, Resident.room == number)
        conds.append(and_(c, Resident.unit == unit) if unit else c)
    stmt = (select(Resident).where(resident_scope(actor), or_(*conds))
            .order_by(Resident.building, Resident.unit, Resident.room, Resident.name).limit(limit))
    return list((await session.scalars(stmt)).all())


async def get_resident(session: AsyncSession, actor: Actor, resident_id: int) -> Resident | None:
    """One resident by id, or None when it does not exist or lies outside the actor's scope."""
    return await session.scalar(select(Resident).where(Resident.id == resident_id, resident_scope(actor)))


async def find_household(session: AsyncSession, actor: Actor, text: str) -> Household | None:
    """A household in scope by its code, or by building-room."""
    scope = committee_ids_in_scope(actor)
    if scope is None or not actor.is_staff:
        return None
    q = text.strip()[:64]
    hh = await session.scalar(select(Household).where(Household.code == q, Household.committee_id.in_(scope)))
    if hh is None and (room := parse_room(q)):
        building, unit, number = room
        conds = [Household.building == building, Household.room == number, Household.committee_id.in_(scope)]
        if unit:
            conds.append(Household.unit == unit)
        rows = (await session.scalars(select(Household).where(*conds).limit(2))).all()
        hh = rows[0] if len(rows) == 1 else None
    return hh


async def committees_in_scope(session: AsyncSession, actor: Actor) -> list[Region]:
    from services.models import RegionLevel

    scope = committee_ids_in_scope(actor)
    if scope is None:
        return []
    return list((await session.scalars(select(Region).where(Region.id.in_(scope),
                                                            Region.level == RegionLevel.committee)
                                       .order_by(Region.name))).all())
