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
