"""The tag dictionary: built-ins, regional overrides, manual tagging in scope, rule refresh, CSV."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, select, text, update

from bot.app import Runtime
from bot.db import session_factory
from bot.runtime import rule_tags_tick
from services.expressions import ExpressionError, compile_sql, parse, to_text
from services.i18n import use_locale
from services.models import (
    AuditLog,
    Resident,
    ResidentStatus,
    ResidentTag,
    Tag,
    TagKind,
)
from services.residents import find_residents, parse_room
from services.scope import Actor
from services.tags import (
    DEFAULT_TAGS,
    NotInScope,
    TagError,
    bulk_tag_csv,
    define_tag,
    ensure_default_tags,
    list_tags,
    recompute_rule_tags,
    resident_tag_codes,
    tag_resident,
    untag_resident,
)
from tests.helpers import NOW, TODAY, make_world


@pytest.fixture(autouse=True)
def english():
    with use_locale("en"):
        yield


async def codes_of(session, resident: Resident) -> set[str]:
    rows = await session.scalars(select(Tag.code).join(ResidentTag, ResidentTag.tag_id == Tag.id)
                                 .where(ResidentTag.resident_id == resident.id))
    return set(rows)


async def test_default_tags_are_seeded_once(session):
    assert await ensure_default_tags(session, NOW) == len(DEFAULT_TAGS)
    assert await ensure_default_tags(session, NOW) == 0
    await session.commit()
    assert await session.scalar(select(func.count()).select_from(Tag)) == len(DEFAULT_TAGS)
    aged_80 = await session.scalar(select(Tag).where(Tag.code == "aged_80"))
    assert (aged_80.kind, aged_80.rule, aged_80.name_zh) == (TagKind.rule, "age >= 80", "高龄老人")


async def test_rule_tags_follow_the_registry_and_the_calendar(session):
    world = await make_world(session)
    counts = await recompute_rule_tags(session, NOW)
    await session.commit()
    r = world.residents
    assert await codes_of(session, r["wang"]) == {"aged_60", "aged_70", "aged_80"}
    assert await codes_of(session, r["li"]) == {"aged_60", "aged_70", "living_alone"}
    assert await codes_of(session, r["zhao"]) == {"aged_60", "aged_70", "aged_80", "living_alone"}
    assert await codes_of(session, r["young"]) == set()
    assert await codes_of(session, r["turning"]) == {"aged_60", "aged_70"}  # 80 tomorrow
    assert counts["aged_80"].added == 4  # wang, zhao, rj, feng
    assert counts["aged_80"].removed == 0

    again = await recompute_rule_tags(session, NOW)
    assert all(c.added == 0 and c.removed == 0 for c in again.values())

    tomorrow = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)  # already the 29th in Shanghai
    r["wang"].status = ResidentStatus.moved_out
    await session.flush()
    later = await recompute_rule_tags(session, tomorrow)
    await session.commit()
    assert later["aged_80"].added == 1 and later["aged_80"].removed == 1
    assert "aged_80" in await codes_of(session, r["turning"])
    assert await codes_of(session, r["wang"]) == set()


async def test_a_committee_definition_overrides_the_default_inside_its_area(session):
    world = await make_world(session)
    await define_tag(session, world.dxyc_staff, code="aged_80", name_zh="高龄老人（本社区）",
                     name_en="Aged 85+ (local)", kind="rule", rule="年龄 >= 85", now=NOW)
    await recompute_rule_tags(session, NOW)
    await session.commit()
    r = world.residents
    assert "aged_80" not in await codes_of(session, r["wang"])  # 81, but DXYC asks for 85
    assert "aged_80" in await codes_of(session, r["zhao"])  # 88
    assert "aged_80" in await codes_of(session, r["rj"])  # RJXC keeps the default
    assert "aged_80" in await codes_of(session, r["feng"])
    listed = {t.code: t for t in await list_tags(session, world.dxyc_staff)}
    assert listed["aged_80"].rule == "年龄 >= 85"
    assert {t.code: t for t in await list_tags(session, world.flsq_staff)}["aged_80"].rule == "age >= 80"
    tagged = await session.scalars(select(Resident.name).where(compile_sql('has_tag("aged_80")', today=TODAY)))
    assert set(tagged) == {"赵桂兰", "周八五", "冯志强"}


async def test_only_some_committees_can_be_refreshed(session):
    world = await make_world(session)
    await recompute_rule_tags(session, NOW, committee_ids=[world.regions["FLSQ"].id])
    await session.commit()
    assert "aged_80" in await codes_of(session, world.residents["feng"])
    assert await codes_of(session, world.residents["zhao"]) == set()


async def test_rules_are_checked_when_a_tag_is_defined(session):
    world = await make_world(session)
    with pytest.raises(ExpressionError) as caught:
        await define_tag(session, world.dxyc_staff, code="old", name_zh="老", name_en="Old", kind="rule",
                         rule="agee >= 80", now=NOW)
    assert str(caught.value) == 'column 1: unknown field "agee" — did you mean "age"?'
    with pytest.raises(TagError, match="refer to itself"):
        await define_tag(session, world.dxyc_staff, code="loop", name_zh="环", name_en="Loop", kind="rule",
                         rule='has_tag("loop")', now=NOW)
    with pytest.raises(TagError, match="needs a rule"):
        await define_tag(session, world.dxyc_staff, code="empty", name_zh="空", name_en="Empty", kind="rule",
                         now=NOW)
    with pytest.raises(NotInScope):
        await define_tag(session, world.dxyc_staff, code="x", name_zh="x", name_en="x",
                         region_id=world.regions["FLSQ"].id, now=NOW)


async def test_staff_tag_and_untag_residents_in_their_area_with_an_audit_trail(session):
    world = await make_world(session)
    staff, wang = world.dxyc_staff, world.residents["wang"]
    assert await tag_resident(session, staff, wang.id, "volunteer", NOW) is True
    assert await tag_resident(session, staff, wang.id, "volunteer", NOW) is False
    await session.commit()
    assert await resident_tag_codes(session, staff, wang.id) == ["volunteer"]
    row = await session.scalar(select(ResidentTag).where(ResidentTag.resident_id == wang.id))
    assert (row.source, row.set_by_account_id) == (TagKind.manual, staff.account_id)

    assert await untag_resident(session, staff, wang.id, "volunteer", NOW) is True
    assert await untag_resident(session, staff, wang.id, "volunteer", NOW) is False
    await session.commit()
    actions = list(await session.scalars(select(AuditLog.action).where(AuditLog.target_id == wang.id)
                                         .order_by(AuditLog.id)))
    assert actions == ["tag.add", "tag.remove"]


async def test_tagging_outside_scope_or_with_rule_tags_is_refused(session):
    world = await make_world(session)
    with pytest.raises(NotInScope):
        await tag_resident(session, world.dxyc_staff, world.residents["feng"].id, "volunteer", NOW)
    with pytest.raises(NotInScope):  # a verified resident is not staff
        resident_actor = Actor(resident=world.residents["li"])
        await tag_resident(session, resident_actor, world.residents["wang"].id, "volunteer", NOW)
    with pytest.raises(TagError, match="computed from its rule"):
        await tag_resident(session, world.dxyc_staff, world.residents["wang"].id, "aged_80", NOW)
    with pytest.raises(TagError, match='Unknown tag "nope"'):
        await tag_resident(session, world.dxyc_staff, world.residents["wang"].id, "nope", NOW)
    # The street sees both of its committees.
    assert await tag_resident(session, world.street_staff, world.residents["rj"].id, "party_member", NOW)


def test_rooms_are_read_in_the_usual_spellings():
    assert parse_room("3-201") == parse_room("3号楼201") == parse_room("3 - 201")
    assert parse_room("3-2-201") == parse_room("3号楼2单元201室")
    assert parse_room("3-2-201").unit == "2"
    assert parse_room("王秀英") is None


async def test_find_residents_by_room_or_name_within_scope(session):
    world = await make_world(session)
    staff = world.dxyc_staff
    assert [r.name for r in await find_residents(session, staff, "3-201")] == ["王秀英"]
    assert [r.name for r in await find_residents(session, staff, "3号楼2单元202室")] == ["李建国"]
    assert [r.name for r in await find_residents(session, staff, "王")] == ["王秀英", "王小明"]
    assert [r.name for r in await find_residents(session, staff, "王小明")] == ["王小明"]
    assert await find_residents(session, staff, "冯志强") == []  # another committee
    assert [r.name for r in await find_residents(session, world.flsq_staff, "1-101")] == ["冯志强"]


async def test_bulk_tagging_from_csv_reports_each_bad_line(session):
    world = await make_world(session)
    r = world.residents
    text = (
        "resident_id,phone,name,room,tag\n"
        f"{r['wang'].id},,,,volunteer\n"
        ",138 0013 8002,,,volunteer\n"
        ",,赵桂兰,5-1-102,party_member\n"
        f"{r['wang'].id},,,,volunteer\n"
        f"{r['feng'].id},,,,volunteer\n"
        ",,无名氏,9-901,volunteer\n"
        f"{r['li'].id},,,,aged_80\n"
        f"{r['li'].id},,,,\n"
    )
    result = await bulk_tag_csv(session, world.dxyc_staff, text, NOW)
    await session.commit()
    assert (result.tagged, result.already) == (3, 1)
    assert [(e.line, e.message) for e in result.errors] == [
        (6, "No such resident in your area."),
        (7, "No such resident in your area."),
        (8, '"aged_80" is computed from its rule and cannot be set by hand.'),
        (9, "The tag is missing."),
    ]
    assert str(result.errors[0]) == "line 6: No such resident in your area."
    assert "party_member" in await codes_of(session, r["zhao"])

    headless = await bulk_tag_csv(session, world.dxyc_staff, f"{r['young'].id},volunteer\n王小明,5-101,party_member\n",
                                  NOW)
    assert (headless.tagged, headless.errors) == (2, [])


async def test_has_tag_follows_every_way_tags_change(session):
    """has_tag reads resident_tags on SQLite and the trigger-kept residents.tag_ids on PostgreSQL:
    after each kind of change both must give the same residents as resident_tags itself."""
    world = await make_world(session)
    staff, r = world.dxyc_staff, world.residents
    postgres = session.bind.dialect.name == "postgresql"

    async def check() -> None:
        await session.flush()
        for code in ("aged_80", "living_alone", "volunteer"):
            stored = set(await session.scalars(select(ResidentTag.resident_id).join(Tag).where(Tag.code == code)))
            for expression, expected in ((f'has_tag("{code}")', stored),
                                         (f'not has_tag("{code}")', {x.id for x in r.values()} - stored)):
                assert set(await session.scalars(select(Resident.id).where(compile_sql(expression, today=TODAY)))) \
                    == expected, expression
        if postgres:
            rows = await session.execute(text(
                "SELECT r.tag_ids, ARRAY(SELECT t.tag_id FROM resident_tags t WHERE t.resident_id = r.id) "
                "FROM residents r"))
            assert all(sorted(kept) == sorted(actual) for kept, actual in rows), "residents.tag_ids out of step"

    await recompute_rule_tags(session, NOW)  # set-based inserts
    await check()
    await tag_resident(session, staff, r["wang"].id, "volunteer", NOW)
    await tag_resident(session, staff, r["li"].id, "volunteer", NOW)
    await check()
    await untag_resident(session, staff, r["wang"].id, "volunteer", NOW)  # delete
    await check()
    await session.execute(update(ResidentTag).where(ResidentTag.resident_id == r["li"].id)
                          .values(resident_id=r["young"].id))  # a row moved to someone else
    await check()
    r["zhao"].living_alone = False
    await recompute_rule_tags(session, NOW)  # set-based deletes
    await check()
    await session.execute(delete(Tag).where(Tag.code == "volunteer"))  # cascades to resident_tags
    await session.commit()
    await check()
    assert set(await session.scalars(select(Resident.name).where(compile_sql(
        'has_tag("aged_80") or has_tag("living_alone")', today=TODAY)))) == {
        "王秀英", "李建国", "赵桂兰", "周八五", "冯志强"}


async def test_the_nightly_tick_recomputes_rule_tags_and_refreshes_sqlite_statistics(engine):
    async with session_factory(engine)() as session:
        world = await make_world(session)
    await rule_tags_tick(Runtime(None, engine, session_factory(engine), None, None), NOW)
    async with session_factory(engine)() as session:
        assert "aged_80" in await codes_of(session, world.residents["zhao"])
        if engine.dialect.name == "sqlite":
            analysed = set(await session.scalars(text("SELECT tbl FROM sqlite_stat1")))
            assert {"residents", "resident_tags"} <= analysed


async def test_tagging_one_resident_from_two_transactions_at_once_keeps_both_tags(engine):
    """On PostgreSQL the second trigger waits for the first one's row lock, then must build on the row
    the first one committed (a recount from its own older snapshot would drop the first tag)."""
    async with session_factory(engine)() as session:
        world = await make_world(session)
    staff, wang = world.dxyc_staff, world.residents["wang"].id
    async with session_factory(engine)() as first, session_factory(engine)() as second:
        await tag_resident(first, staff, wang, "volunteer", NOW)
        await first.flush()  # the trigger has updated (and locked) wang's row

        async def tag_too() -> None:
            await tag_resident(second, staff, wang, "party_member", NOW)
            await second.commit()

        waiting = asyncio.create_task(tag_too())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await first.commit()
        await asyncio.wait_for(waiting, 10)
    async with session_factory(engine)() as session:
        for code in ("volunteer", "party_member"):
            tagged = await session.scalars(select(Resident.id).where(compile_sql(f'has_tag("{code}")', today=TODAY)))
            assert wang in set(tagged), code


async def test_the_lives_alone_tag_is_now_living_alone_and_the_old_code_still_reads(session):
    world = await make_world(session)
    # A database from before the rename: the built-in still has its old code (and its residents).
    await session.execute(update(Tag).where(Tag.code == "living_alone").values(code="lives_alone"))
    await recompute_rule_tags(session, NOW)
    await session.commit()
    alone = {"李建国", "赵桂兰", "冯志强"}

    async def matching(expression: str) -> set[str]:
        return set(await session.scalars(select(Resident.name).where(compile_sql(parse(expression), today=TODAY))))

    assert await matching('has_tag("living_alone")') == alone  # the new code finds the old row
    assert await ensure_default_tags(session, NOW) == 0  # renamed, not added a second time
    await session.commit()
    codes = set(await session.scalars(select(Tag.code).where(Tag.region_id.is_(None))))
    assert "living_alone" in codes and "lives_alone" not in codes
    assert await matching('has_tag("living_alone")') == await matching('has_tag("lives_alone")') == alone
    assert to_text(parse('has_tag("lives_alone")')) == 'has_tag("living_alone")'
    with pytest.raises(TagError, match="cannot be set by hand"):
        await tag_resident(session, world.dxyc_staff, world.residents["wang"].id, "lives_alone", NOW)
