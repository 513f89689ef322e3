"""Population segments (社区人群): saved expressions, counted and previewed live in the database.

A segment is never cached: every count or preview compiles its expression afresh and ANDs it with
the actor's scope and "active residents only", so the same segment gives each staff member the
residents of their own area, as the registry stands now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Column, ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import visitors

from services import audit
from services.expressions import Expr, ExpressionError, as_tree, compile_sql, parse, tags_used
from services.i18n import _
from services.ids import is_db_id
from services.models import SEGMENT_INDEX_COLUMNS, Region, Resident, ResidentStatus, Segment
from services.scope import Actor, resident_scope, wide_scope
from services.tags import NotInScope, list_tags

MAX_NAME = 100
_INDEXED = frozenset(SEGMENT_INDEX_COLUMNS) | {"id"}


class SegmentError(ValueError):
    """A translated, user-facing reason why a segment was refused."""


def _indexed_only(condition: ColumnElement[bool]) -> bool:
    """True when every ``residents`` column the condition reads is in ``ix_residents_segment``."""
    table = Resident.__table__
    return all(c.name in _INDEXED for c in visitors.iterate(condition)
               if isinstance(c, Column) and c.table is table)


def segment_filter(actor: Actor, expression: str | Expr, today: date) -> ColumnElement[bool]:
    """The expression's filter, limited to active residents the actor may see."""
    condition = compile_sql(as_tree(expression), today=today, few_residents=not wide_scope(actor))
    return and_(resident_scope(actor, indexed=_indexed_only(condition)), Resident.status == ResidentStatus.active,
                condition)


async def count_segment(session: AsyncSession, actor: Actor, expression: str | Expr, today: date) -> int:
    """How many active residents in the actor's scope match, counted by the database now."""
    return await session.scalar(
        select(func.count()).select_from(Resident).where(segment_filter(actor, expression, today))) or 0


async def preview_segment(session: AsyncSession, actor: Actor, expression: str | Expr, today: date,
                          limit: int = 10, offset: int = 0) -> list[Resident]:
    """The first matching residents in the actor's scope, by building, unit, room and name."""
    return list(await session.scalars(
        select(Resident).where(segment_filter(actor, expression, today))
        .order_by(Resident.building, Resident.unit, Resident.room, Resident.name, Resident.id)
        .limit(limit).offset(offset)))


@dataclass(frozen=True, slots=True)
class LiveCount:
    """What an expression editor shows while staff type: the count, or where and why it fails.

    ``position`` is the 1-based column (in characters, as :class:`ExpressionError` gives it) of the
    mistake; ``error`` its translated sentence. ``unknown_tags``: codes of ``has_tag()`` that are no
    tag of the actor's area (the expression is valid, they simply match nobody)."""

    count: int | None
    position: int | None = None
    error: str | None = None
    unknown_tags: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


async def live_count(session: AsyncSession, actor: Actor, expression: str, today: date) -> LiveCount:
    """Parse and count ``expression`` as typed, in the actor's scope (exactly :func:`count_segment`);
    a mistake is returned with its position instead of raised. Reads only."""
    try:
        tree = parse(expression)
        count = await count_segment(session, actor, tree, today)
    except ExpressionError as err:
        return LiveCount(None, err.position, err.message)
    codes = tags_used(tree)
    known = {tag.code for tag in await list_tags(session, actor)} if codes else set()
    return LiveCount(count, unknown_tags=tuple(sorted(codes - known)))


def _visible_regions(actor: Actor):
    """Regions whose segments the actor may see: their own regions and everything below."""
    if not actor.staff:
        return None
    return select(Region.id).where(or_(*[Region.path.startswith(p, autoescape=True)
                                         for p in actor.region_paths()]))


async def save_segment(
    session: AsyncSession,
    actor: Actor,
    name: str,
    expression: str,
    now: datetime,
    region_id: int | None = None,
) -> Segment:
    """Create or replace (by region and name) a staff member's segment; the expression is parsed first
    (``ExpressionError``) and stored as typed. Audited."""
    if not actor.staff:
        raise NotInScope(_("Only staff can save segments."))
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME:
        raise SegmentError(_("A segment name is 1 to {limit} characters.").format(limit=MAX_NAME))
    tree = parse(expression)
    compile_sql(tree, today=now.date())  # every field must be usable in the database
    if region_id is None:
        region_id = max(actor.staff, key=lambda g: len(g.region_path)).region_id
    elif region_id not in {g.region_id for g in actor.staff}:
        path = await session.scalar(select(Region.path).where(Region.id == region_id))
        if path is None or not actor.covers_path(path):
            raise NotInScope(_("That region is outside your area."))
    segment = await session.scalar(select(Segment).where(Segment.region_id == region_id, Segment.name == name))
    if segment is None:
        segment = Segment(region_id=region_id, name=name, created_by_account_id=actor.account_id,
                          created_at=now)
        session.add(segment)
    segment.expression = expression.strip()
    segment.updated_at = now
    await session.flush()
    audit.record(session, "segment.save", now=now, actor_account_id=actor.account_id, target_type="segment",
                 target_id=segment.id, region_id=region_id, detail={"name": name, "expression": segment.expression})
    return segment


async def list_segments(session: AsyncSession, actor: Actor) -> list[Segment]:
    """Segments owned by the actor's regions or regions below them (nothing for non-staff)."""
    regions = _visible_regions(actor)
    if regions is None:
        return []
    return list(await session.scalars(
        select(Segment).where(Segment.region_id.in_(regions)).order_by(Segment.name, Segment.id)))


async def get_segment(session: AsyncSession, actor: Actor, segment_id: int) -> Segment | None:
    """One segment, or None when it does not exist or belongs to a region outside the actor's scope."""
    regions = _visible_regions(actor)
    if regions is None or not is_db_id(segment_id):
        return None
    return await session.scalar(select(Segment).where(Segment.id == segment_id, Segment.region_id.in_(regions)))


async def delete_segment(session: AsyncSession, actor: Actor, segment_id: int, now: datetime) -> bool:
    """Delete a segment within the actor's scope; False when not found there. Audited."""
    segment = await get_segment(session, actor, segment_id)
    if segment is None:
        return False
    await session.delete(segment)
    audit.record(session, "segment.delete", now=now, actor_account_id=actor.account_id, target_type="segment",
                 target_id=segment_id, region_id=segment.region_id, detail={"name": segment.name})
    await session.flush()
    return True
