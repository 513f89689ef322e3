"""A name search finds exactly what ``name LIKE '%text%'`` finds, along the trigram index where the text
has three characters or more (SQLite FTS5 trigram table, PostgreSQL pg_trgm), within the actor's scope,
whatever the name or the text holds; the index follows every insert, rename and delete."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, select, text, update

from bot.db import session_factory
from services import residents as rs
from services.models import Resident, ResidentStatus
from services.residents import name_contains, parse_room
from services.scope import Actor, resident_scope
from tests.helpers import NOW, TODAY, make_world

# Names that are hard for a LIKE or an FTS5 query: wildcards, the escape character, quotes, FTS5 syntax
# (", *, :, -, ^, (, AND, OR, NOT, NEAR), letters in both cases (SQLite's LIKE folds ASCII only, FTS5
# folds all of Unicode), spaces, one and two characters, Chinese names sharing characters.
NAMES = [
    "王秀英", "王秀兰", "秀英王", "王", "王王王王", "欧阳秀英", "李秀", "张 三丰", "100%纯", "50_50", "a/b%c_d",
    "O'Brien", 'Dwayne "The Rock"', 'say ""hi""', "NEAR(a b)", "x AND y", "a OR NOT b", "star*", "col:on",
    "-minus", "^caret", "Anna Lee", "ANNA LEE", "anna-lee", "Émile Zola", "émile zola", "ÉMILE", "Straße",
    "ß", "Ωmega", "ωmega", "😀😀😀", "李😀秀", "{}[]", "%%%", "___", "///", "'''", '"""',
]
QUERIES = [
    "王", "秀", "英", "王秀", "秀英", "王秀英", "王秀兰", "秀英王", "王王", "王王王", "王王王王王", "欧阳", "欧阳秀",
    "阳秀英", "李秀", "李秀英", "张 三", " 三丰", "张 三丰", "%", "%%", "%%%", "%纯", "100%", "0%纯", "_", "__", "___",
    "0_5", "50_50", "/", "//", "///", "a/b", "/b%", "%c_", "a/b%c_d", "'", "'''", "O'B", "o'brien", '"', '""', '"""',
    '"The', 'The Rock"', '""hi""', '"hi"', "NEAR", "NEAR(", "NEAR(a b)", "AND", "x AND y", " AND ", "OR NOT",
    "NOT", "*", "star*", "ar*", "r*", ":", "col:", "l:o", "-", "-mi", "-minus", "^", "^ca", "anna", "ANNA",
    "Anna", "nna lee", "NNA LEE", "a-l", "émile", "Émile", "ÉMILE", "mile", "MILE", "straße", "STRASSE", "aße",
    "ß", "ωmega", "Ωmega", "OMEGA", "😀", "😀😀", "😀😀😀", "李😀", "李😀秀", "{}[", "]", "nobody here",
]


def like_matches(name: str, query: str, dialect: str) -> bool:
    """``name LIKE '%query%'`` as each backend's LIKE answers it: PostgreSQL compares exactly, SQLite
    folds ASCII letters only (U+0000 never reaches PostgreSQL: bot.db drops it)."""
    if dialect == "sqlite":
        fold = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
        return query.translate(fold) in name.translate(fold)
    return query.replace("\x00", "") in name


@pytest.fixture
async def sessions(engine):
    return session_factory(engine)


@pytest.fixture
async def world(sessions):
    """make_world's committees with NAMES in each (by the ORM and by Core statements, as a registry
    import writes), then some renamed, some moved out and some deleted, all before anything is searched."""
    async with sessions() as s:
        world = await make_world(s)
        committees = [world.regions[c].id for c in ("DXYC", "RJXC", "FLSQ")]
        for i, name in enumerate(NAMES):
            s.add(Resident(committee_id=committees[i % 3], name=name, building=str(i), room="101",
                           created_at=NOW, updated_at=NOW))
        await s.execute(insert(Resident), [
            dict(committee_id=committees[(i + 1) % 3], name=name, building="c", room=str(i), created_at=NOW,
                 updated_at=NOW) for i, name in enumerate(NAMES)])
        await s.flush()
        rows = list(await s.scalars(select(Resident).where(Resident.building == "c").order_by(Resident.id)))
        # Renamed (the old name must no longer be found, the new one must), moved out, deleted.
        await s.execute(update(Resident).where(Resident.id == rows[0].id).values(name="改名王秀英后"))
        rows[3].name = "新名字秀英"  # by the ORM; both in the street of DXYC and RJXC
        await s.execute(update(Resident).where(Resident.id.in_([r.id for r in (rows[1], rows[2], rows[4], rows[5])]))
                        .values(status=ResidentStatus.moved_out))
        await s.execute(delete(Resident).where(Resident.id.in_([rows[6].id, rows[7].id])))
        await s.commit()
    return world


def actors(world) -> dict[str, Actor]:
    return {"committee": world.dxyc_staff, "street": world.street_staff, "other street": world.flsq_staff}


async def in_scope(session, actor: Actor) -> list[tuple[int, str, ResidentStatus]]:
    """Every resident the actor may see (id, name, status), read without any name condition."""
    return list((await session.execute(select(Resident.id, Resident.name, Resident.status)
                                       .where(resident_scope(actor)))).all())


async def test_a_name_search_finds_exactly_what_the_like_finds_within_the_scope(sessions, world):
    assert all(parse_room(q) is None for q in QUERIES)  # names, never rooms
    async with sessions() as s:
        dialect = s.get_bind().dialect.name
        everyone = set(await s.scalars(select(Resident.id)))
        for who, actor in actors(world).items():
            visible = await in_scope(s, actor)
            assert visible and len(visible) < len(everyone)
            for query in QUERIES:
                expected = {rid for rid, name, _status in visible if like_matches(name, query, dialect)}
                # The condition as it was (a plain LIKE), asked of the same database.
                plain = set(await s.scalars(select(Resident.id).where(
                    resident_scope(actor), Resident.name.contains(query, autoescape=True))))
                found = set(await s.scalars(select(Resident.id).where(resident_scope(actor),
                                                                      name_contains(s, query))))
                assert found == plain == expected, (who, query)
                page = await rs.list_residents(s, actor, rs.ResidentFilter(query=query, status=None), today=TODAY,
                                               per_page=rs.MAX_PER_PAGE)
                assert {r.id for r in page.rows} == expected and page.total == len(expected), (who, query)
                active = {rid for rid, name, status in visible
                          if status == ResidentStatus.active and like_matches(name, query, dialect)}
                listed = await rs.list_residents(s, actor, rs.ResidentFilter(query=query), today=TODAY,
                                                 per_page=rs.MAX_PER_PAGE)
                assert {r.id for r in listed.rows} == active, (who, query)
                bot = await rs.find_residents(s, actor, query, limit=1000, active_only=False)
                assert {r.id for r in bot} == expected, (who, query)


async def test_the_index_follows_renames_and_deletes(sessions, world):
    async with sessions() as s:
        street = world.street_staff

        async def names(query: str) -> list[str]:
            return sorted(await s.scalars(select(Resident.name).where(resident_scope(street),
                                                                      name_contains(s, query))))

        assert "改名王秀英后" in await names("改名王")
        assert await names("新名字") == ["新名字秀英"]
        someone = await s.scalar(select(Resident).where(Resident.name == "新名字秀英"))
        someone.name = "又改了"
        await s.flush()
        assert await names("新名字") == [] and await names("又改了") == ["又改了"]
        await s.delete(someone)
        await s.flush()
        assert await names("又改了") == []
        s.add(Resident(committee_id=world.regions["DXYC"].id, name="刚登记的人", created_at=NOW, updated_at=NOW))
        await s.flush()
        assert await names("登记的") == ["刚登记的人"]
        await s.rollback()  # the index's rows go with the transaction's
        assert await names("登记的") == [] and await names("新名字") == ["新名字秀英"]


async def test_a_text_of_three_characters_is_looked_up_along_the_trigram_index(sessions, world):
    """With a committee's worth of residents (and their statistics) the street's search of a text of three
    characters or more reads the index; a shorter text never asks it (SQLite's FTS5 would find nothing)."""
    async with sessions() as s:
        dialect = s.get_bind().dialect.name
        await s.execute(insert(Resident), [dict(committee_id=world.regions["RJXC"].id, name=f"居民{n}号",
                                                created_at=NOW, updated_at=NOW) for n in range(20_000)])
        if dialect == "postgresql":  # as VACUUM does (autovacuum, or past gin_pending_list_limit)
            await s.execute(text("SELECT gin_clean_pending_list('ix_residents_name_trgm')"))
        await s.execute(text("ANALYZE"))
        conn = await s.connection()

        async def plan(query: str) -> str:
            stmt = select(Resident.id).where(resident_scope(world.street_staff), name_contains(s, query))
            compiled = stmt.compile(dialect=conn.dialect)
            params = compiled.construct_params()
            args = tuple(params[k] for k in compiled.positiontup or ())
            if dialect == "sqlite":
                return "\n".join(row[-1] for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args))
            return "\n".join(row[0] for row in await conn.exec_driver_sql(f"EXPLAIN {compiled}", args))

        index = "residents_name_fts VIRTUAL TABLE" if dialect == "sqlite" else "ix_residents_name_trgm"
        # pg_trgm makes trigrams of letters and digits only: a text of emoji (or of punctuation alone)
        # reads the rows there, and finds what the LIKE finds all the same.
        for query in ("王秀英", '"The', "100%", "a/b%c_d", "NEAR(a b)") + (("😀😀😀",) if dialect == "sqlite" else ()):
            assert index in await plan(query), query
        for query in ("王", "秀英", "%", '"'):
            assert index not in await plan(query), query
        await s.rollback()


async def test_a_search_text_with_a_nul_character_is_matched_as_the_like_matches_it(sessions, world):
    """An FTS5 query cannot hold U+0000 (its string would end there): such a text takes the plain LIKE."""
    async with sessions() as s:
        actor = world.street_staff
        for query in ("王\x00秀英", "\x00王秀", "秀英\x00", "\x00\x00\x00"):
            plain = set(await s.scalars(select(Resident.id).where(
                resident_scope(actor), Resident.name.contains(query, autoescape=True))))
            found = set(await s.scalars(select(Resident.id).where(resident_scope(actor), name_contains(s, query))))
            assert found == plain, query


async def test_names_of_another_committee_are_never_found(sessions, world):
    async with sessions() as s:
        flsq = world.regions["FLSQ"].id
        for query in ("秀英王", "秀英", "王", "nna", "%"):
            page = await rs.list_residents(s, world.dxyc_staff, rs.ResidentFilter(query=query, status=None),
                                           today=TODAY, per_page=rs.MAX_PER_PAGE)
            committees = set(await s.scalars(select(Resident.committee_id).where(
                Resident.id.in_([r.id for r in page.rows]))))
            assert page.rows and committees == {world.regions["DXYC"].id}, query
            foreign = set(await s.scalars(select(Resident.id).where(Resident.committee_id == flsq,
                                                                    name_contains(s, query))))
            assert foreign and not foreign & {r.id for r in page.rows}, query
