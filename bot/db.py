"""Database engine and sessions: SQLite (aiosqlite on the event loop, WAL, BEGIN IMMEDIATE) or
PostgreSQL (asyncpg).

The engine carries the deployment's data keys (phone numbers are encrypted at rest with them, see
``services.models.pii``); a SQLite file and its -wal/-shm are readable by their owner only.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from pathlib import Path

import aiosqlite
from sqlalchemy import event
from sqlalchemy.exc import InvalidatePoolError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bot.settings import make_private_dir
from services.identity import DataKeys
from services.models.pii import attach_data_keys

SQLITE_BUSY_TIMEOUT_MS = 15_000
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
# A pooled PostgreSQL connection idle for this long is pinged before use (_ping_when_idle).
IDLE_PING_S = 2.0


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite+aiosqlite:///path`` URL (None for memory databases)."""
    path = url.split("///", 1)[-1].split("?", 1)[0] if "///" in url else ""
    return Path(path) if path and path != ":memory:" and not path.startswith("file:") else None


def private_sqlite_file(path: Path) -> None:
    """Create the database file owner-only (0600) before SQLite does (it would follow the umask:
    0644), in a folder made 0700 if we create it; tighten an existing file and its -wal/-shm, which
    SQLite creates with the database file's permissions."""
    if not path.parent.exists():
        make_private_dir(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in SQLITE_SUFFIXES:
        f = path.with_name(path.name + suffix)
        if f.exists() and stat.S_IMODE(f.stat().st_mode) & 0o077:
            f.chmod(0o600)


def create_engine(url: str, *, data_keys: DataKeys | None = None, **kwargs) -> AsyncEngine:
    """An engine for ``url``; ``data_keys`` (``settings.data_keys()``) to read and write phone numbers."""
    engine = _create_engine(url, **kwargs)
    attach_data_keys(engine, data_keys)
    return engine


class _OnTheLoop(aiosqlite.Connection):
    """aiosqlite's connection with every call made on the event loop, not handed to its thread.

    A statement on a local file takes microseconds; each hand-over to aiosqlite's thread (and a
    statement is four: open a cursor, execute, fetch, close) woke both threads and cost more than the
    statement, and every update pays a transaction. The thread still opens the connection and closes
    it when it is stopped. Nothing here waits in SQLite's busy handler, which would sleep in the
    loop's thread: the connection's busy_timeout is 0 once it is set up, and ``BEGIN IMMEDIATE``
    waits for another process's write lock by sleeping on the loop (``_begin``).
    """

    async def _execute(self, fn, *args, **kwargs):
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _connect_on_the_loop(database: str, **kwargs) -> _OnTheLoop:
    # The sqlite3 connection is made in aiosqlite's thread and used on the loop's.
    kwargs["check_same_thread"] = False
    conn = _OnTheLoop(lambda: sqlite3.connect(database, **kwargs), iter_chunk_size=64)
    conn._thread.daemon = True  # as SQLAlchemy's dialect does for the connections it makes
    return conn


async def _begin(driver: aiosqlite.Connection, begin: str) -> None:
    """``begin`` on ``driver``; while another process holds the write lock, sleep on the loop and try
    again (as SQLite's busy handler would in its thread), for SQLITE_BUSY_TIMEOUT_MS at most."""
    deadline = pause = 0.0
    while True:
        try:
            await driver.execute(begin)
            return
        except sqlite3.OperationalError as err:
            now = time.monotonic()
            deadline = deadline or now + SQLITE_BUSY_TIMEOUT_MS / 1000
            if err.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or now >= deadline:
                raise
        pause = min(2 * pause or 0.001, 0.05)
        await asyncio.sleep(min(pause, deadline - now))


def _create_engine(url: str, **kwargs) -> AsyncEngine:
    # An error names the statement, never the values bound to it: a logged traceback would otherwise
    # carry names, message texts and comments (logs hold no personal data).
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            private_sqlite_file(path)
        # SQLite has one writer and every transaction here is BEGIN IMMEDIATE: one pooled connection
        # makes sessions of this process queue in FIFO order on the pool instead of sleep-polling on
        # the file lock (busy_timeout still covers other processes). Don't nest sessions in one task.
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", 300)
        kwargs.setdefault("pool_reset_on_return", None)  # done by _tune_sqlite's reset hook
        # The busy timeout covers only the connection's first pragmas (_on_connect).
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "async_creator_fn": _connect_on_the_loop}
        engine = create_async_engine(url, connect_args=connect_args, **kwargs)
        _tune_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    # JIT compilation costs more than these short queries take; sorts and hashes over a city's
    # residents (segment previews, the registry's re-import matching) stay in memory.
    connect_args = kwargs.pop("connect_args", {})
    settings = connect_args.setdefault("server_settings", {})
    settings.setdefault("jit", "off")
    settings.setdefault("work_mem", "64MB")
    engine = create_async_engine(url, connect_args=connect_args, **kwargs)
    _no_nul_characters(engine)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use only when it has been idle for IDLE_PING_S: one that the
    server dropped (a restart, an idle timeout) is replaced before the update that takes it, as
    ``pool_pre_ping`` would do, without a round trip on every checkout under load, where connections
    come back within milliseconds (the ping was a third of a transaction's cost). A connection cut in
    that moment fails its statement instead, and SQLAlchemy then renews every pooled connection."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _idle_from(_dbapi_conn, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping(dbapi_conn, record, _proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_S:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as err:
            if dialect.is_disconnect(err, dbapi_conn, None):
                raise InvalidatePoolError() from err  # reconnect: this one and every older one
            raise


def _without_nul(value):
    """A statement's parameters (a row of values, or a list of rows for executemany) with U+0000
    removed from every string; the same object when there was none (the usual case: one pass, no copy)."""
    if type(value) is str:
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            cleaned = _without_nul(item)
            if cleaned is not item:
                return type(value)([*value[:i], cleaned, *(_without_nul(v) for v in value[i + 1:])])
        return value
    if isinstance(value, dict) and any(_without_nul(v) is not v for v in value.values()):
        return {k: _without_nul(v) for k, v in value.items()}
    return value


def _no_nul_characters(engine: AsyncEngine) -> None:
    """PostgreSQL's text cannot hold U+0000 (SQLite's can), and Telegram text may carry it: a search or
    a comment with one failed with "invalid byte sequence". It is dropped from every value sent."""

    @event.listens_for(engine.sync_engine, "before_cursor_execute", retval=True)
    def _strip(_conn, _cursor, statement, parameters, _context, _executemany):
        return statement, _without_nul(parameters)


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # Take transaction control from the driver so that we can emit BEGIN IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=0")  # statements run on the loop: never wait in SQLite (_begin)
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:
        # A deferred BEGIN that later writes fails at once with "database is locked";
        # IMMEDIATE takes the write lock up front and waits (_begin) for it instead.
        begin = "BEGIN" if conn.get_execution_options().get("sqlite_deferred") else "BEGIN IMMEDIATE"
        # On the driver's connection, not a statement of ours: statement events
        # (``before_cursor_execute``) do not see it; a failure (the lock not had within
        # SQLITE_BUSY_TIMEOUT_MS) is raised as SQLAlchemy's OperationalError, as a statement's would be.
        try:
            conn.connection.dbapi_connection.run_async(lambda driver: _begin(driver, begin))
        except sqlite3.Error as err:
            raise OperationalError(begin, None, err) from err

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_conn, _record, state) -> None:
        # The pool's reset on return (``pool_reset_on_return=None`` above hands it to this hook): roll
        # back only what is still open. A session's connection comes back committed or rolled back,
        # and a ROLLBACK of nothing would cost one more statement per transaction.
        if state.asyncio_safe and not state.terminate_only and dbapi_conn.driver_connection.in_transaction:
            dbapi_conn.rollback()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
