"""Our engine settings (bot.db), not SQLAlchemy's: foreign keys enforced on both backends, SQLite
writers from two processes queue instead of failing, and the database file is its owner's only."""

from __future__ import annotations

import asyncio
import contextlib
import stat
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import create_engine, session_factory
from services.models import Base, Region, RegionLevel, Resident

NOW = datetime(2026, 11, 28, tzinfo=UTC)


async def test_foreign_keys_are_enforced(session):
    """SQLite ignores REFERENCES unless told (PRAGMA foreign_keys, set on every connection)."""
    session.add(Resident(committee_id=987654, name="nobody's", created_at=NOW, updated_at=NOW))
    with pytest.raises(IntegrityError):
        await session.flush()


def add_region(code: str):
    return insert(Region).values(code=code, name=code, level=RegionLevel.committee, path=f"/{code}/")


@contextlib.asynccontextmanager
async def two_processes(tmp_path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines on one SQLite file with the schema made: as two processes would see it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    first, second = create_engine(url), create_engine(url)
    try:
        async with first.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield first, second
    finally:
        await first.dispose()
        await second.dispose()


async def test_sqlite_statements_run_on_the_event_loop(tmp_path):
    """aiosqlite's calls are made on the loop's thread (bot.db._OnTheLoop), not handed to its own."""
    async with two_processes(tmp_path) as (engine, _), engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        threads: list[int] = []
        await driver.create_function("where_am_i", 0, lambda: threads.append(threading.get_ident()) or 1)
        assert await conn.scalar(text("SELECT where_am_i()")) == 1
    assert threads == [threading.get_ident()]


async def test_two_sqlite_writers_queue_instead_of_failing(tmp_path):
    """Two engines are two processes: a deferred BEGIN would fail at once with "database is locked";
    BEGIN IMMEDIATE makes the second writer wait for the first, sleeping on the event loop (SQLite's
    busy handler would sleep in the loop's thread, and the first writer could not commit meanwhile)."""
    async with two_processes(tmp_path) as (first, second):
        async with session_factory(first)() as holder:
            await holder.execute(add_region("A"))

            async def write_from_the_other_process() -> None:
                async with session_factory(second)() as other:
                    await other.execute(add_region("B"))
                    await other.commit()

            waiting = asyncio.create_task(write_from_the_other_process())
            await asyncio.sleep(0.2)  # let it reach its BEGIN IMMEDIATE while the first holds the lock
            assert not waiting.done()  # it waits (a deferred BEGIN would have failed by now)
            await holder.commit()
        await waiting
        async with session_factory(first)() as s:
            assert await s.scalar(select(func.count()).select_from(Region)) == 2


async def test_a_sqlite_writer_that_never_gets_the_lock_fails_as_a_statement_would(tmp_path, monkeypatch):
    """BEGIN IMMEDIATE goes to the driver directly: when the other process keeps the lock past
    SQLITE_BUSY_TIMEOUT_MS it still fails as SQLAlchemy's OperationalError,
    which the callers' error handling knows, and the holder's transaction is untouched."""
    monkeypatch.setattr("bot.db.SQLITE_BUSY_TIMEOUT_MS", 100)
    async with two_processes(tmp_path) as (first, second):
        async with session_factory(first)() as holder:
            await holder.execute(add_region("A"))
            async with session_factory(second)() as other:
                with pytest.raises(OperationalError, match="locked"):
                    await other.execute(add_region("B"))
            await holder.commit()
        async with session_factory(second)() as s:  # its connection came back clean: it writes now
            await s.execute(add_region("C"))
            await s.commit()
            assert set(await s.scalars(select(Region.code))) == {"A", "C"}


async def test_a_sqlite_connection_comes_back_to_the_pool_without_an_open_transaction(tmp_path):
    """The pool rolls back on return only what is still open (the reset hook): after a commit nothing
    is sent, after work left uncommitted it is rolled back, and the next session begins afresh."""
    async with two_processes(tmp_path) as (engine, _):
        sessions = session_factory(engine)
        async with sessions() as s:
            await s.execute(add_region("A"))
            await s.commit()
        async with sessions() as s:  # left without commit: nothing of it stays
            await s.execute(add_region("B"))
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert not raw.driver_connection.in_transaction
            assert set(await conn.scalars(select(Region.code))) == {"A"}


def test_the_sqlite_file_is_readable_by_its_owner_only(tmp_path):
    create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'private.sqlite3'}")
    assert stat.S_IMODE((tmp_path / "data" / "private.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
