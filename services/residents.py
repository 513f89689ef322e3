"""Looking residents and households up, always within the actor's scope."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.ids import is_db_id
from services.models import Account, Household, Region, Resident, ResidentStatus
from services.models.core import NAME_FTS
from services.scope import Actor, committee_ids_in_scope, resident_scope, unindexed

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


TRIGRAM = 3  # the shortest text a trigram index finds; a shorter one is looked for along the scope's rows


def _like_escaped(text: str) -> str:
    """``text`` for a LIKE pattern with ESCAPE '/': its ``/``, ``%`` and ``_`` stand for themselves."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def name_contains(session: AsyncSession, text: str) -> ColumnElement[bool]:
    """Residents whose name contains ``text`` literally: exactly the rows of ``name LIKE '%text%'`` (on
    SQLite ASCII letters in either case, as its LIKE does), whatever ``text`` holds (``%``, ``_``, quotes,
    FTS5 syntax). To be combined with a scope filter, which this is not.

    Three characters or more are found along the trigram index (migration 0016): on SQLite the FTS5
    table gives the candidates (a phrase of the text's trigrams, i.e. a substring, with Unicode case
    folded: never fewer rows than the LIKE) and the LIKE keeps exactly its own; on PostgreSQL pg_trgm
    serves the LIKE itself. The pattern is bound whole, so that this statement is not the one shorter
    texts use (``'%' || text || '%'``), whose generic plan PostgreSQL may keep after five executions and
    which never reads the trigram index. One or two characters (a Chinese surname or given name) no
    trigram index can serve: they are matched along the scope's rows (a committee's are a range of
    ``ix_residents_list``, which holds the name). A text with U+0000 (which an FTS5 query cannot hold)
    is matched so too."""
    if len(text) < TRIGRAM or "\x00" in text:
        return Resident.name.contains(text, autoescape=True)
    like = Resident.name.like("%" + _like_escaped(text) + "%", escape="/")
    if session.get_bind().dialect.name != "sqlite":
        return like
    phrase = '"' + text.replace('"', '""') + '"'  # an FTS5 string: every character is text, " doubled
    return and_(Resident.id.in_(select(NAME_FTS.c.rowid).where(NAME_FTS.c.residents_name_fts.match(phrase))),
                like)


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
        base.where(name_contains(session, query), Resident.name != query)
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


# --- lists and cards for the staff console ------------------------------------------------------

MAX_PER_PAGE = 200
MAX_EXPORT = 50_000


class ResidentListError(ValueError):
    """A filter of the residents list names a tag or segment that is not available (translated);
    ``field`` says which (``tag`` or ``segment``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class ResidentFilter:
    """What the residents list is narrowed to; every part optional (``status`` None: any status)."""

    query: str = ""  # a name (contains) or a room (3-201, 3号楼201)
    tag: str | None = None  # a tag code: residents with it (active ones)
    segment_id: int | None = None  # a saved segment in scope: its residents (active ones)
    committee_id: int | None = None  # one committee of the scope
    status: ResidentStatus | None = ResidentStatus.active


@dataclass(frozen=True, slots=True)
class ResidentRow:
    id: int
    name: str
    committee: str
    building: str | None
    unit: str | None
    room: str | None
    birth_date: date | None
    gender: str | None
    status: ResidentStatus
    verified: bool  # an account in the bot is linked to this resident


@dataclass(frozen=True, slots=True)
class ResidentPage:
    rows: list[ResidentRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


async def _list_conditions(session: AsyncSession, actor: Actor, flt: ResidentFilter, today: date) -> list:
    # Function-level: services.segments and services.tags import this module.
    from services.expressions import HasTag
    from services.i18n import _
    from services.segments import get_segment, segment_filter
    from services.tags import CODE_RE

    conds: list = []
    if flt.tag is not None or flt.segment_id is not None:
        if flt.tag is not None:
            if not CODE_RE.match(flt.tag):
                raise ResidentListError(_("Unknown tag \"{code}\".").format(code=flt.tag[:64]), "tag")
            conds.append(segment_filter(actor, HasTag(flt.tag), today))
        if flt.segment_id is not None:
            segment = await get_segment(session, actor, flt.segment_id)
            if segment is None:
                raise ResidentListError(_("This segment does not exist or is outside your area."), "segment")
            conds.append(segment_filter(actor, segment.expression, today))
    else:
        conds.append(resident_scope(actor))
        if flt.status is not None:
            conds.append(Resident.status == flt.status)
    if flt.committee_id is not None:
        conds.append(Resident.committee_id == flt.committee_id)
    query = flt.query.strip()[:50]
    if query:
        room = parse_room(query)
        conds.append(room_filter(room) if room is not None else name_contains(session, query))
    return conds


# The list's order within a committee; ``ix_residents_list`` (committee, status, then these) walks it,
# so a page of one committee's residents of one status is an index range, wherever in the list it is.
_LIST_ORDER = (Resident.building, Resident.unit, Resident.room, Resident.name, Resident.id)


def _row_select(conds: list):
    return (select(Resident.id, Resident.name, Region.name, Resident.building, Resident.unit, Resident.room,
                   Resident.birth_date, Resident.gender, Resident.status)
            .join(Region, Region.id == Resident.committee_id).where(*conds).order_by(*_LIST_ORDER))


async def _counts_by_committee(session: AsyncSession, conds: list, *, by_scan: bool) -> list[tuple[int, int]]:
    """(committee id, matching residents) in the list's order of committees (by name, then id).

    ``by_scan``: the conditions read a name: on SQLite the grouping then reads the rows in scope
    ("+committee_id": a scan of ``ix_residents_list``, which holds the name) instead of walking an index
    and fetching each row it counts at random (a street's name search: 1.25 s against 0.1 s); a name of
    three characters or more is looked up in the trigram index first and only its candidates are read,
    either way. Otherwise it counts along the index."""
    committee = unindexed(Resident.committee_id) if by_scan else Resident.committee_id
    counts: dict[int, int] = dict((await session.execute(
        select(committee, func.count()).where(*conds).group_by(committee))).all())
    if not counts:
        return []
    names = dict((await session.execute(select(Region.id, Region.name).where(Region.id.in_(list(counts))))).all())
    return [(cid, counts[cid]) for cid in sorted(counts, key=lambda cid: (names.get(cid, ""), cid))]


async def _rows(session: AsyncSession, conds: list, counts: list[tuple[int, int]], offset: int,
                limit: int) -> list[ResidentRow]:
    """``limit`` rows from ``offset`` of the list, committee by committee (by name). In each committee
    the ids of the page are found along ``ix_residents_list`` alone (the rows skipped by the offset are
    never read), then only those rows are read; so a deep page costs about what the first one does,
    instead of sorting every resident of a street. Whether each is in the bot is asked for these rows."""
    ids: list[int] = []
    for committee_id, n in counts:
        if len(ids) >= limit:
            break
        if offset >= n:
            offset -= n
            continue
        ids += await session.scalars(select(Resident.id).where(*conds, Resident.committee_id == committee_id)
                                     .order_by(*_LIST_ORDER).limit(limit - len(ids)).offset(offset))
        offset = 0
    if not ids:
        return []
    found = {row[0]: row for row in await session.execute(_row_select([Resident.id.in_(ids)]))}
    verified = set(await session.scalars(select(Account.resident_id).where(
        Account.resident_id.in_(ids), Account.verified_at.is_not(None))))
    return [ResidentRow(rid, name, committee, building, unit, room, born, gender, status, rid in verified)
            for rid, name, committee, building, unit, room, born, gender, status in (found[i] for i in ids)]


def _by_name(flt: ResidentFilter) -> bool:
    """The list is narrowed by a name (``name_contains``), not a room."""
    query = flt.query.strip()[:50]
    return bool(query) and parse_room(query) is None


async def list_residents(session: AsyncSession, actor: Actor, flt: ResidentFilter, *, today: date, page: int = 1,
                         per_page: int = 50) -> ResidentPage:
    """One page of the residents in the actor's scope matching ``flt`` (a tag or segment selects
    active residents, as everywhere), by committee, building, unit, room and name, with the total.
    Raises ``ResidentListError`` for a tag code that cannot exist or a segment not in scope."""
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    conds = await _list_conditions(session, actor, flt, today)
    counts = await _counts_by_committee(session, conds, by_scan=_by_name(flt))
    total = sum(n for _cid, n in counts)
    page = min(max(page, 1), max(1, -(-total // per_page)))
    rows = await _rows(session, conds, counts, (page - 1) * per_page, per_page)
    return ResidentPage(rows, total, page, per_page)


async def export_residents(session: AsyncSession, actor: Actor, flt: ResidentFilter, *, today: date,
                           now: datetime, limit: int = MAX_EXPORT) -> list[ResidentRow]:
    """Every resident of the list (up to ``limit``) for a file; audited (``resident.export``, with the
    filter and the number of rows, never the rows)."""
    conds = await _list_conditions(session, actor, flt, today)
    rows = await _rows(session, conds, await _counts_by_committee(session, conds, by_scan=_by_name(flt)), 0, limit)
    audit.record(session, "resident.export", now=now, actor_account_id=actor.account_id,
                 region_id=_home_region(actor), detail={
                     "rows": len(rows), "query": flt.query[:50] or None, "tag": flt.tag,
                     "segment": flt.segment_id, "committee": flt.committee_id,
                     "status": flt.status.value if flt.status else None})
    await session.flush()
    return rows


def _home_region(actor: Actor) -> int | None:
    """The widest region of a staff member: where an action that spans their scope is filed."""
    grants = sorted(actor.staff, key=lambda g: len(g.region_path))
    return grants[0].region_id if grants else None


@dataclass(frozen=True, slots=True)
class CommitteeCount:
    committee_id: int
    name: str
    residents: int  # active
    verified: int  # of whom linked to an account in the bot


async def resident_counts(session: AsyncSession, actor: Actor) -> list[CommitteeCount]:
    """Active residents and verified ones, per committee of the actor's scope (by name); empty for
    anyone but staff."""
    if not actor.is_staff:
        return []
    linked = func.count(Account.id)
    rows = await session.execute(
        select(Resident.committee_id, Region.name, func.count(Resident.id), linked)
        .join(Region, Region.id == Resident.committee_id)
        .outerjoin(Account, and_(Account.resident_id == Resident.id, Account.verified_at.is_not(None)))
        .where(resident_scope(actor), Resident.status == ResidentStatus.active)
        .group_by(Resident.committee_id, Region.name).order_by(Region.name))
    return [CommitteeCount(*row) for row in rows.all()]


AGE_BANDS = ((0, 17), (18, 59), (60, 69), (70, 79), (80, 89), (90, None))


async def age_bands(session: AsyncSession, actor: Actor, today: date) -> list[tuple[tuple[int, int | None], int]]:
    """Active residents in the actor's scope per age band (``AGE_BANDS``; no birth date: not counted)."""
    if not actor.is_staff:
        return [(band, 0) for band in AGE_BANDS]

    def born_after(years: int) -> date:
        try:
            return today.replace(year=today.year - years)
        except ValueError:  # 29 February
            return today.replace(year=today.year - years, day=28)

    cases = []
    for lo, hi in AGE_BANDS:
        cond = Resident.birth_date <= born_after(lo)
        if hi is not None:
            cond = and_(cond, Resident.birth_date > born_after(hi + 1))
        cases.append(func.count(case((cond, 1))))
    counts = (await session.execute(select(*cases).where(resident_scope(actor),
                                                         Resident.status == ResidentStatus.active))).one()
    return list(zip(AGE_BANDS, counts, strict=True))


@dataclass(frozen=True, slots=True)
class Verification:
    """How the resident's account in the bot was verified (None fields: not in the bot)."""

    method: str | None
    verified_at: datetime | None
    unreachable_at: datetime | None


@dataclass(frozen=True, slots=True)
class ResidentCard:
    """Everything the console's resident page shows (plain data; the phone stays encrypted-at-rest
    text the caller masks)."""

    resident: Resident
    committee: Region
    household: Household | None
    members: list[Resident]  # the household's other residents (scope: the same committee)
    tags: list  # services.tags.TagOnResident
    verification: Verification | None
    history: list  # services.audit.AuditEntry, newest first (this view included)


async def resident_card(session: AsyncSession, actor: Actor, resident_id: int, *, now: datetime,
                        history_limit: int = 30) -> ResidentCard | None:
    """A resident in the actor's staff scope with household, tags, verification and who viewed or
    changed them; None when not found or out of scope. The view itself is audited (``resident.view``)."""
    from services.tags import resident_tags  # services.tags imports this module

    if not actor.is_staff:
        return None
    resident = await get_resident(session, actor, resident_id)
    if resident is None:
        return None
    audit.record(session, "resident.view", now=now, actor_account_id=actor.account_id, target_type="resident",
                 target_id=resident.id, region_id=resident.committee_id)
    await session.flush()
    committee = await session.get_one(Region, resident.committee_id)
    household = members = None
    if resident.household_id is not None:
        household = await session.get(Household, resident.household_id)
        members = list(await session.scalars(
            select(Resident).where(Resident.household_id == resident.household_id, Resident.id != resident.id,
                                   Resident.committee_id == resident.committee_id)
            .order_by(Resident.name, Resident.id)))
    account = await session.scalar(select(Account).where(Account.resident_id == resident.id))
    verification = None if account is None else Verification(account.verification_method, account.verified_at,
                                                             account.unreachable_at)
    history = await audit.resident_history(session, actor, resident.id, limit=history_limit)
    return ResidentCard(resident, committee, household, members or [],
                        await resident_tags(session, actor, resident.id), verification, history)
