"""Alembic environment: runs on a connection handed in by ``bot.migrate`` or on DATABASE_URL."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

import services.models  # noqa: F401  (registers every table)
from bot.migrate import compared
from services.models import Base

config = context.config
target_metadata = Base.metadata


# For developers writing one revision per feature: ALEMBIC_ONLY_TABLES=a,b,c limits autogenerate.
_ONLY = {t for t in os.environ.get("ALEMBIC_ONLY_TABLES", "").split(",") if t}


def _include(obj, name, type_, reflected, compare_to) -> bool:
    if not compared(obj, name, type_, reflected, compare_to):
        return False
    if not _ONLY or type_ != "table":
        return True
    return name in _ONLY


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_include,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    from bot.db import create_engine
    from bot.settings import load_settings

    settings = config.attributes.get("settings") or load_settings()
    config.attributes["settings"] = settings  # for data migrations that need the keys (0006)
    url = config.get_main_option("sqlalchemy.url") or settings.db_url
    engine = create_engine(url)  # revisions that need the keys read them from the settings (0006)
    async with engine.begin() as conn:
        await conn.run_sync(_configure)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (conn := config.attributes.get("connection")) is not None:
    _configure(conn)
else:
    asyncio.run(_run_async())
