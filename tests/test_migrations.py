"""Alembic: every revision upgrades, downgrades and upgrades again (the "stairway"), on SQLite and
PostgreSQL, and the head matches the models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from bot.db import create_engine
from bot.migrate import alembic_config, compared, current_revision, downgrade, upgrade
from services.models import Base
from tests.conftest import pg_url


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_engine(request, tmp_path):
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'migrations.sqlite3'}")
        yield engine
        await engine.dispose()
        return
    url = pg_url()
    admin = create_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS migration_test CASCADE"))
        await conn.execute(text("CREATE SCHEMA migration_test"))
    engine = create_engine(url, connect_args={"server_settings": {"search_path": "migration_test"}})
    yield engine
    await engine.dispose()
    async with admin.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS migration_test CASCADE"))
    await admin.dispose()


async def name_search_objects(engine) -> set[str]:
    """The name search's index objects (services.models.core): SQLite's FTS5 tables and the triggers on
    residents that keep them, PostgreSQL's trigram index."""
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = await conn.execute(text("SELECT type || ' ' || name || ' on ' || tbl_name FROM sqlite_master "
                                           "WHERE name LIKE 'residents_name_fts%' AND type IN ('table', 'trigger')"))
        else:
            # The operator class is named with the extension's schema where that is not on the search path.
            rows = await conn.execute(text("SELECT indexname || ' ' || regexp_replace(regexp_replace(indexdef, "
                                           "'^.* USING ', ''), '[^ (]+[.]gin_trgm_ops', 'gin_trgm_ops') "
                                           "FROM pg_indexes WHERE tablename = 'residents' AND indexname = "
                                           "'ix_residents_name_trgm' AND schemaname = current_schema()"))
        return set(rows.scalars())


NAME_SEARCH = {
    "sqlite": {"table residents_name_fts on residents_name_fts", "table residents_name_fts_data on "
               "residents_name_fts_data", "table residents_name_fts_idx on residents_name_fts_idx",
               "table residents_name_fts_config on residents_name_fts_config",
               "trigger residents_name_fts_insert on residents", "trigger residents_name_fts_delete on residents",
               "trigger residents_name_fts_update on residents"},
    "postgresql": {"ix_residents_name_trgm gin (name gin_trgm_ops)"},
}


async def test_stairway_upgrade_downgrade_upgrade(fresh_engine):
    revs = revisions()
    assert revs, "no migrations found"
    for rev in revs:
        await upgrade(fresh_engine, rev)
        await downgrade(fresh_engine, "-1")
        await upgrade(fresh_engine, rev)
        assert await current_revision(fresh_engine) == rev


async def test_head_matches_the_models(fresh_engine):
    await upgrade(fresh_engine, "head")

    def diff(conn):
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": compared})
        return compare_metadata(ctx, Base.metadata)

    async with fresh_engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []
    if fresh_engine.dialect.name == "postgresql":
        # What the comparison leaves out (PG_ONLY) must be there all the same, as create_all makes it.
        async with fresh_engine.connect() as conn:
            triggers = set(await conn.scalars(text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'resident_tags'::regclass AND NOT tgisinternal")))
            column = await conn.scalar(text(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'residents' AND column_name = 'tag_ids'"))
            index = await conn.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_residents_tag_ids' "
                                           "AND schemaname = current_schema()"))
        assert triggers == {"resident_tags_sync_insert", "resident_tags_sync_update", "resident_tags_sync_delete"}
        assert column == "ARRAY" and "gin (tag_ids)" in index
    # The name search's index, left out of the comparison too (NAME_SEARCH_OBJECTS), and on SQLite the
    # triggers that keep it: a later revision rebuilding residents in batch mode drops them with the table.
    assert await name_search_objects(fresh_engine) == NAME_SEARCH[fresh_engine.dialect.name]


async def test_0006_encrypts_phones_hashes_id_last4_and_keeps_account_links(fresh_engine, tmp_path):
    from bot.settings import Settings
    from services.identity import DataKeys, hash_id_last4
    from tests.conftest import TEST_DATA_KEY

    settings = Settings(_env_file=None, data_dir=tmp_path / "data", secret_key="migration-secret",
                        data_key=TEST_DATA_KEY)
    await upgrade(fresh_engine, "0005")
    async with fresh_engine.begin() as conn:
        await conn.execute(text("INSERT INTO regions (id, code, name, level, path) "
                                "VALUES (1, 'C1', 'C', 'committee', '/C1/')"))
        await conn.execute(text(
            "INSERT INTO residents (id, committee_id, name, phone, id_hash, id_last4, emergency_contact_phone, "
            "status, created_at, updated_at) VALUES (1, 1, '王', '+8613800138001', 'h1', '123X', '+862164321234', "
            "'active', '2026-01-01', '2026-01-01'), (2, 1, '李', NULL, NULL, NULL, NULL, 'active', '2026-01-01', "
            "'2026-01-01')"))
        await conn.execute(text("INSERT INTO accounts (id, telegram_id, chat_id, first_name, resident_id, created_at) "
                                "VALUES (1, 100, 100, 'w', 1, '2026-01-01')"))
        await conn.execute(text("INSERT INTO verification_attempts (account_id, method, success, at) "
                                "VALUES (1, 'knowledge', false, '2026-01-01')"))
    await upgrade(fresh_engine, "0006", settings=settings)
    keys = DataKeys(TEST_DATA_KEY)
    async with fresh_engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM residents WHERE id = 1"))).mappings().one()
        empty = (await conn.execute(text("SELECT * FROM residents WHERE id = 2"))).mappings().one()
        link = await conn.scalar(text("SELECT resident_id FROM accounts WHERE id = 1"))
    assert "id_last4" not in row and row["id_last4_hash"] == hash_id_last4("123X", "h1", "migration-secret")
    assert row["phone"].startswith("v1:") and keys.decrypt(row["phone"]) == "+8613800138001"
    assert row["phone_index"] == keys.phone_index("+8613800138001")
    assert keys.decrypt(row["emergency_contact_phone"]) == "+862164321234"
    assert empty["phone"] is None and empty["phone_index"] is None and empty["id_last4_hash"] is None
    assert link == 1  # rewriting residents did not null the accounts' links to it
    await downgrade(fresh_engine, "0005", settings=settings)
    async with fresh_engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM residents WHERE id = 1"))).mappings().one()
        link = await conn.scalar(text("SELECT resident_id FROM accounts WHERE id = 1"))
    assert row["phone"] == "+8613800138001" and row["emergency_contact_phone"] == "+862164321234"
    assert row["id_last4"] is None and link == 1  # the clear last four is gone for good (only its hash was kept)


async def test_0006_on_an_empty_database_reads_no_keys(fresh_engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a key generated from the environment would land in ./data
    await upgrade(fresh_engine, "0006")
    assert not (tmp_path / "data").exists()


async def test_0009_renames_the_built_in_lives_alone_tag_and_leaves_regional_ones(fresh_engine):
    await upgrade(fresh_engine, "0008")
    insert = text("INSERT INTO tags (region_id, code, name_zh, name_en, category, kind, rule, created_at) "
                  "VALUES (NULL, :code, '独居', 'Lives alone', 'care', 'rule', 'living_alone == true', "
                  "CURRENT_TIMESTAMP)")
    async with fresh_engine.begin() as conn:
        await conn.execute(insert, {"code": "lives_alone"})
    await upgrade(fresh_engine, "0009")
    async with fresh_engine.connect() as conn:
        codes = (await conn.execute(text("SELECT code FROM tags WHERE region_id IS NULL"))).scalars().all()
    assert codes == ["living_alone"]
    await downgrade(fresh_engine, "0008")
    async with fresh_engine.connect() as conn:
        codes = (await conn.execute(text("SELECT code FROM tags WHERE region_id IS NULL"))).scalars().all()
    assert codes == ["lives_alone"]
