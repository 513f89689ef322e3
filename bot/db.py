"""Database engine and sessions: SQLite (WAL, busy_timeout, BEGIN IMMEDIATE) or PostgreSQL.

The engine carries the deployment's data keys (phone numbers are encrypted at rest with them, see
``services.models.pii``); a SQLite file and its -wal/-shm are readable by their owner only.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bot.settings import make_private_dir
from services.identity import DataKeys
from services.models.pii import attach_data_keys

SQLITE_BUSY_TIMEOUT_MS = 15_000
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


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
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
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
    engine = create_async_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
    _no_nul_characters(engine)
    return engine


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
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:
        # A deferred BEGIN that later writes fails at once with "database is locked";
        # IMMEDIATE takes the write lock up front and waits (busy_timeout) for it instead.
        begin = "BEGIN" if conn.get_execution_options().get("sqlite_deferred") else "BEGIN IMMEDIATE"
        # On the driver's connection: one trip to aiosqlite's thread instead of a cursor's three (open,
        # execute, close), which every transaction paid. Not a statement of ours, so statement events
        # (``before_cursor_execute``) do not see it; a failure (the lock not had within busy_timeout)
        # is raised as SQLAlchemy's OperationalError, as a statement's would be.
        try:
            conn.connection.dbapi_connection.run_async(lambda driver: driver.execute(begin))
        except sqlite3.Error as err:
            raise OperationalError(begin, None, err) from err

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_conn, _record, state) -> None:
        # The pool's reset on return (``pool_reset_on_return=None`` above hands it to this hook): roll
        # back only what is still open. A session's connection comes back committed or rolled back,
        # and a ROLLBACK of nothing would cost one more trip to aiosqlite's thread per transaction.
        if state.asyncio_safe and not state.terminate_only and dbapi_conn.driver_connection.in_transaction:
            dbapi_conn.rollback()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
