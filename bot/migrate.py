"""Alembic from code: ``upgrade``/``downgrade`` on an async engine, ``revision`` for developers."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.models.core import NAME_SEARCH_OBJECTS
from services.models.tags import PG_ONLY

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x636F6D6D  # any fixed number: the advisory lock every upgrade of this schema takes


def compared(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic ``include_object``: leave out what only the models' DDL of one dialect creates
    (``residents.tag_ids`` and its index, services.models.tags.PG_ONLY; the name search's trigram index
    and FTS5 tables, services.models.core.NAME_SEARCH_OBJECTS)."""
    qualified = f"{obj.table.name}.{name}" if type_ == "column" else name
    return (type_, qualified) not in PG_ONLY and (type_, qualified) not in NAME_SEARCH_OBJECTS


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


async def _run(engine: AsyncEngine, fn, *args, settings=None) -> None:
    cfg = alembic_config()

    def _sync(conn) -> None:
        cfg.attributes["connection"] = conn
        # Data migrations that need the deployment's keys (0006) read them from these settings;
        # without them, from the environment, as the app would.
        cfg.attributes["settings"] = settings
        fn(cfg, *args)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Workers started together upgrade one after the other; the later ones find the head.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        await conn.run_sync(_sync)


async def upgrade(engine: AsyncEngine, revision: str = "head", *, settings=None) -> None:
    await _run(engine, command.upgrade, revision, settings=settings)


async def downgrade(engine: AsyncEngine, revision: str, *, settings=None) -> None:
    await _run(engine, command.downgrade, revision, settings=settings)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
