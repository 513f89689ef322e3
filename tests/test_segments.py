"""Segments: live counts and previews in the actor's scope, saved per region, never leaked across."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects import sqlite

from services.expressions import ExpressionError, parse
from services.i18n import use_locale
from services.models import AuditLog, Resident, ResidentStatus, StaffRole
from services.scope import Actor
from services.segments import (
    SegmentError,
    count_segment,
    delete_segment,
    get_segment,
    list_segments,
    preview_segment,
    save_segment,
    segment_filter,
)
from services.tags import NotInScope, recompute_rule_tags, tag_resident
from tests.helpers import NOW, TODAY, make_actor, make_world


@pytest.fixture(autouse=True)
def english():
    with use_locale("en"):
        yield


async def test_counts_are_scoped_and_only_count_active_residents(session):
    world = await make_world(session)
    await recompute_rule_tags(session, NOW)
    await session.commit()
    elderly = 'has_tag("aged_80") or has_tag("living_alone")'
    assert await count_segment(session, world.dxyc_staff, elderly, TODAY) == 3  # wang, li, zhao
    assert await count_segment(session, world.street_staff, elderly, TODAY) == 4  # + rj of RJXC
    assert await count_segment(session, world.flsq_staff, elderly, TODAY) == 1
    assert await count_segment(session, Actor(), elderly, TODAY) == 0  # anonymous sees nothing
    resident = Actor(resident=world.residents["young"])
    assert await count_segment(session, resident, elderly, TODAY) == 3  # a verified resident: own committee

    world.residents["li"].status = ResidentStatus.moved_out
    await session.commit()
    assert await count_segment(session, world.dxyc_staff, elderly, TODAY) == 2


async def test_counts_follow_the_registry_live_and_accept_trees(session):
    world = await make_world(session)
    staff = world.dxyc_staff
    tree = parse("年龄 >= 80 且 性别 == 女")
    assert await count_segment(session, staff, tree, TODAY) == 2  # wang 81, zhao 88
    world.residents["young"].birth_date = world.residents["zhao"].birth_date
    world.residents["young"].gender = "F"
    await session.commit()
    assert await count_segment(session, staff, tree, TODAY) == 3
    assert await count_segment(session, staff, "true", TODAY) == 5
    assert await count_segment(session, staff, 'has_tag("volunteer")', TODAY) == 0
    await tag_resident(session, staff, world.residents["wang"].id, "volunteer", NOW)
    assert await count_segment(session, staff, 'has_tag("volunteer")', TODAY) == 1


async def test_preview_lists_by_building_unit_room_then_name(session):
    world = await make_world(session)
    names = [r.name for r in await preview_segment(session, world.dxyc_staff, "age >= 60", TODAY)]
    assert names == ["王秀英", "李建国", "赵桂兰", "钱八十"]  # 3-2-201, 3-2-202, 5-1-102, 6-1-101
    assert [r.name for r in await preview_segment(session, world.dxyc_staff, "age >= 60", TODAY, limit=2)] == [
        "王秀英", "李建国"]
    assert await preview_segment(session, world.flsq_staff, 'building == "3"', TODAY) == []


async def test_saved_segments_belong_to_a_region_and_stay_there(session):
    world = await make_world(session)
    saved = await save_segment(session, world.dxyc_staff, " 独居  高龄 ", "独居 且 年龄 >= 70", NOW)
    await session.commit()
    assert (saved.name, saved.expression, saved.region_id) == ("独居 高龄", "独居 且 年龄 >= 70",
                                                               world.regions["DXYC"].id)
    assert await count_segment(session, world.dxyc_staff, saved.expression, TODAY) == 2  # li, zhao

    later = datetime(2026, 12, 1, tzinfo=UTC)
    replaced = await save_segment(session, world.dxyc_staff, "独居 高龄", "独居 且 年龄 >= 85", later)
    assert replaced.id == saved.id and replaced.updated_at == later and replaced.created_at == NOW

    assert [s.name for s in await list_segments(session, world.dxyc_staff)] == ["独居 高龄"]
    assert [s.name for s in await list_segments(session, world.street_staff)] == ["独居 高龄"]  # below the street
    assert await list_segments(session, world.flsq_staff) == []
    assert await list_segments(session, Actor(resident=world.residents["li"])) == []
    assert (await get_segment(session, world.dxyc_staff, saved.id)).id == saved.id
    assert await get_segment(session, world.flsq_staff, saved.id) is None  # another region's: not found

    assert await delete_segment(session, world.flsq_staff, saved.id, NOW) is False
    assert await delete_segment(session, world.dxyc_staff, saved.id, NOW) is True
    await session.commit()
    actions = list(await session.scalars(select(AuditLog.action).where(AuditLog.target_type == "segment")
                                         .order_by(AuditLog.id)))
    assert actions == ["segment.save", "segment.save", "segment.delete"]


async def test_bad_segments_are_refused(session):
    world = await make_world(session)
    with pytest.raises(ExpressionError) as caught:
        await save_segment(session, world.dxyc_staff, "bad", "age >= ", NOW)
    assert caught.value.position == 8
    with pytest.raises(SegmentError):
        await save_segment(session, world.dxyc_staff, "  ", "age >= 80", NOW)
    with pytest.raises(NotInScope):
        await save_segment(session, Actor(resident=world.residents["li"]), "mine", "age >= 80", NOW)
    with pytest.raises(NotInScope):
        await save_segment(session, world.dxyc_staff, "theirs", "age >= 80", NOW,
                           region_id=world.regions["FLSQ"].id)


async def test_wide_scopes_walk_the_segment_index_only_when_it_holds_every_column_read(session):
    """On SQLite a street-wide count seeks committee by committee through ix_residents_segment when the
    expression reads only its columns; otherwise ``+committee_id`` makes SQLite scan the table rather
    than fetch every wide row through an index (both measured in bench segments). Either way the rows
    are the street's matching residents (DXYC and RJXC), and the same as a committee-by-committee count."""
    world = await make_world(session)
    await recompute_rule_tags(session, NOW)
    await session.commit()
    street, committees = world.street_staff, (world.dxyc_staff, await _rjxc_staff(session, world))

    def sql(expression: str) -> str:
        query = select(func.count()).select_from(Resident).where(segment_filter(street, expression, TODAY))
        return str(query.compile(dialect=sqlite.dialect()))

    async def names(actor: Actor, expression: str) -> set[str]:
        return set(await session.scalars(select(Resident.name).where(segment_filter(actor, expression, TODAY))))

    expected = {  # from make_world's registry, at TODAY
        'age >= 80 and living_alone': {"赵桂兰"},
        'has_tag("aged_80") or gender == "F"': {"王秀英", "赵桂兰", "钱八十", "周八五"},
        "not verified and unit == '2'": {"王秀英", "李建国"},
        'room == "101"': {"王小明", "钱八十", "周八五"},
        'room == "201" or age < 40': {"王秀英", "王小明"},
    }
    covered = list(expected)[:3]
    for expression, rows in expected.items():
        assert ("+residents.committee_id" in sql(expression)) == (expression not in covered), expression
        assert await names(street, expression) == rows, expression
        assert set().union(*[await names(c, expression) for c in committees]) == rows, expression


async def _rjxc_staff(session, world) -> Actor:
    actor = await make_actor(session, 4, world.regions["RJXC"], StaffRole.committee)
    await session.commit()
    return actor
