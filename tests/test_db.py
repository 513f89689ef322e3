"""Our engine settings (bot.db), not SQLAlchemy's: foreign keys enforced on both backends, SQLite
writers from two processes queue instead of failing, the database file is its owner's only, and a
PostgreSQL connection dropped while idle is replaced before use."""

from __future__ import annotations

import asyncio
import contextlib
import stat
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.db
from bot.db import create_engine, session_factory
from services.models import Base, Region, RegionLevel, Resident
from tests.conftest import pg_url
from tests.helpers import TcpProxy

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


async def test_a_postgres_connection_the_server_dropped_while_idle_is_replaced_before_use(monkeypatch):
    """No ping on every checkout (a round trip per transaction); one idle for IDLE_PING_S is pinged and,
    when the server dropped it meanwhile (a restart), replaced before the statement that takes it. A
    connection back from use just now is not pinged: its statement meets the drop and fails."""
    target = make_url(pg_url())
    async with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        engine = create_engine(target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
                               pool_size=1, max_overflow=0)
        try:
            for idle_ping_s, works in ((3600.0, False), (0.0, True)):
                monkeypatch.setattr(bot.db, "IDLE_PING_S", idle_ping_s)
                async with engine.connect() as conn:
                    assert await conn.scalar(text("SELECT 1")) == 1
                await proxy.cut()  # the server goes away and comes back: the pooled connection is dead
                await proxy.restore()
                async with engine.connect() as conn:
                    if works:
                        assert await conn.scalar(text("SELECT 2")) == 2
                    else:
                        with pytest.raises(DBAPIError) as failed:
                            await conn.scalar(text("SELECT 2"))
                        assert failed.value.connection_invalidated
            assert proxy.connections == 3  # the first, the one after the failure, the one the ping made
        finally:
            await engine.dispose()


def test_the_sqlite_file_is_readable_by_its_owner_only(tmp_path):
    create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'private.sqlite3'}")
    assert stat.S_IMODE((tmp_path / "data" / "private.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
