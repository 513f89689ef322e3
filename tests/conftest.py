"""Shared fixtures: real databases (SQLite file; PostgreSQL when TEST_DATABASE_URL is set)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

import services.models  # noqa: F401
from bot.db import create_engine, session_factory
from bot.settings import async_driver_url
from services.identity import DataKeys
from services.models import Base

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
TEST_DATA_KEY = "test-data-key-for-phone-numbers-at-rest"  # tests' DATA_KEY (phones encrypted with it)
TEST_DATA_KEYS = DataKeys(TEST_DATA_KEY)


def pg_url() -> str:
    """The PostgreSQL URL for tests, or skip (fail when REQUIRE_POSTGRES=1)."""
    if not TEST_DATABASE_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL not configured (set TEST_DATABASE_URL)")
    return async_driver_url(TEST_DATABASE_URL)


_pg_engine: AsyncEngine | None = None


async def _postgres_engine() -> AsyncEngine:
    global _pg_engine
    if _pg_engine is None:
        engine = create_engine(pg_url(), pool_size=5, data_keys=TEST_DATA_KEYS)
        try:
            async with engine.begin() as conn:
                # Whatever an earlier run or an older schema left behind goes (the test database
                # outlives sessions and CI runs on this machine).
                await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
                await conn.run_sync(Base.metadata.create_all)
        except OSError as exc:
            await engine.dispose()
            if REQUIRE_POSTGRES:
                pytest.fail(f"PostgreSQL required but unreachable: {exc}")
            pytest.skip(f"PostgreSQL unreachable: {exc}")
        _pg_engine = engine
    return _pg_engine


async def _truncate(engine: AsyncEngine) -> None:
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request, tmp_path) -> AsyncIterator[AsyncEngine]:
    """A migrated-schema engine on a fresh database: SQLite file, and PostgreSQL in CI."""
    if request.param == "sqlite":
        eng = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}", data_keys=TEST_DATA_KEYS)
        async with eng.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield eng
        await eng.dispose()
    else:
        eng = await _postgres_engine()
        await _truncate(eng)
        yield eng


@pytest.fixture
async def sqlite_engine(tmp_path) -> AsyncIterator[AsyncEngine]:
    """SQLite only, for tests that need no second backend (e2e, CLI)."""
    eng = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}", data_keys=TEST_DATA_KEYS)
    async with eng.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield eng
    await eng.dispose()


@pytest.fixture
async def session(engine) -> AsyncIterator[AsyncSession]:
    async with session_factory(engine)() as s:
        yield s


@pytest.fixture(scope="session", autouse=True)
async def _dispose_pg() -> AsyncIterator[None]:
    yield
    if _pg_engine is not None:
        await _pg_engine.dispose()


@pytest.fixture
async def stack(tmp_path, request):
    """The sandbox and the real bot polling it (SQLite file); ``extra_routers`` via indirect params."""
    from tests.harness import running_stack

    extra = getattr(request, "param", None) or {}
    async with running_stack(tmp_path, **extra) as s:
        yield s


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
REQUIRE_CHROMIUM = os.environ.get("REQUIRE_CHROMIUM") == "1"


@pytest.fixture(scope="session")
async def browser():
    """One headless Chromium for the whole test session (Debian's, driven by Playwright: never a
    browser Playwright downloads); skipped where there is none, a failure with REQUIRE_CHROMIUM=1 (CI).
    Each test takes a fresh context of it (``tests.helpers.browser_page``)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        if REQUIRE_CHROMIUM:
            pytest.fail("REQUIRE_CHROMIUM=1 but Playwright is not installed (pip install -e '.[test]')")
        pytest.skip("Playwright not installed")
    if not os.access(CHROMIUM, os.X_OK):
        if REQUIRE_CHROMIUM:
            pytest.fail(f"REQUIRE_CHROMIUM=1 but there is no Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()
