"""``python -m bench update_cost [--updates N]``: what one update costs, by kind, through the full stack.

For each kind of update (a first ``/start`` that makes the account, ``/help`` of a known account,
``/menu`` and a menu button of a verified resident) the bot handles N of them one at a time (so every
statement belongs to the update measured) and this prints, per update: SQL statements, transactions
(commits), Telegram calls, and where the wall time went (in SQL statements, in Telegram calls, the
rest: aiogram, middlewares, handlers, rendering). SQLite, and PostgreSQL when it answers.

The throughput work starts from these figures: a statement or a commit that every update pays is
where ``bench updates`` loses against a bare aiogram bot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import GetUpdates, TelegramMethod
from aiohttp import web
from sqlalchemy import event, insert, text

import services.models  # noqa: F401
from bench import postgres_reachable, postgres_url
from bot.app import build_bot, build_dispatcher
from bot.db import create_engine, session_factory
from bot.sandbox import Sandbox, create_sandbox_app
from bot.settings import Settings
from services.models import Account, Base, Resident, ResidentStatus
from services.regions import ensure_demo_regions, get_region

TOKEN = "42:sandbox"
PG_SCHEMA = "bench_update_cost"


class Counters:
    def __init__(self) -> None:
        self.statements = self.commits = self.calls = 0
        self.sql_s = self.telegram_s = 0.0

    def snapshot(self) -> tuple[int, int, int, float, float]:
        return self.statements, self.commits, self.calls, self.sql_s, self.telegram_s


class TelegramTimer(BaseRequestMiddleware):
    """Counts and times the bot's Bot API calls (getUpdates, the polling itself, left out)."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    async def __call__(self, make_request: NextRequestMiddlewareType[Any], bot: Bot,
                       method: TelegramMethod[Any]) -> Any:
        if isinstance(method, GetUpdates):
            return await make_request(bot, method)
        started = time.perf_counter()
        try:
            return await make_request(bot, method)
        finally:
            self.counters.calls += 1
            self.counters.telegram_s += time.perf_counter() - started


def _count_sql(engine, counters: Counters) -> None:
    starts: dict[int, float] = {}

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany) -> None:
        starts[id(cursor)] = time.perf_counter()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany) -> None:
        counters.statements += 1
        counters.sql_s += time.perf_counter() - starts.pop(id(cursor), time.perf_counter())

    @event.listens_for(engine.sync_engine, "commit")
    def _commit(conn) -> None:
        counters.commits += 1


async def _serve(sandbox: Sandbox) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_sandbox_app(sandbox), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def _residents(sessions, sandbox: Sandbox, n: int) -> list[int]:
    """N verified residents of DXYC, each with an account and a sandbox user (ids returned)."""
    uids = [sandbox.create_user(f"居民{i}", language_code="en").id for i in range(n)]
    then = datetime.now(UTC) - timedelta(days=30)
    async with sessions() as s:
        await ensure_demo_regions(s)
        await s.commit()
        committee = await get_region(s, "DXYC")
        assert committee is not None
        for i, uid in enumerate(uids):
            resident = Resident(committee_id=committee.id, name=f"居民{i}", building="1", unit="1", room=str(i),
                                status=ResidentStatus.active, created_at=then, updated_at=then)
            s.add(resident)
            await s.flush()
            await s.execute(insert(Account).values(
                telegram_id=uid, chat_id=uid, first_name=f"居民{i}", language_code="en", resident_id=resident.id,
                consent_at=then, verified_at=then, verification_method="contact", created_at=then,
                last_seen_at=then))
        await s.commit()
    return uids


async def _one(sandbox: Sandbox, act: Callable[[], Awaitable[int] | int]) -> None:
    update_id = act()
    if not isinstance(update_id, int):
        update_id = await update_id
    if not await sandbox.wait_until(lambda: sandbox.is_confirmed(update_id), 30):
        raise RuntimeError(f"update {update_id} was not handled")


async def measure(db_url: str | None, n: int, folder: Path) -> dict[str, dict[str, float]]:
    sandbox = Sandbox()
    runner, url = await _serve(sandbox)
    db_url = db_url or f"sqlite+aiosqlite:///{folder / 'update_cost.sqlite3'}"
    settings = Settings(_env_file=None, bot_token=TOKEN, telegram_api_base=url, data_dir=folder,
                        database_url=db_url, secret_key="bench")
    engine_kwargs: dict[str, Any] = {}
    if db_url.startswith("postgresql"):
        admin = create_engine(db_url)
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
            await conn.execute(text(f"CREATE SCHEMA {PG_SCHEMA}"))
        await admin.dispose()
        engine_kwargs["connect_args"] = {"server_settings": {"search_path": PG_SCHEMA}}
    engine = create_engine(settings.db_url, data_keys=settings.data_keys(), **engine_kwargs)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = session_factory(engine)
    counters = Counters()
    bot = build_bot(settings)
    bot.session.middleware(TelegramTimer(counters))
    dp = build_dispatcher(settings, sessions)
    residents = await _residents(sessions, sandbox, n)
    newcomers = [sandbox.create_user(f"新{i}", language_code="en").id for i in range(n)]
    _count_sql(engine, counters)
    # One at a time, so that every statement counted belongs to the update being measured.
    polling = asyncio.create_task(dp.start_polling(bot, polling_timeout=1, handle_as_tasks=False,
                                                   handle_signals=False, close_bot_session=False))
    kinds: dict[str, Callable[[int], Callable[[], int]]] = {
        "/start, new account": lambda i: lambda: sandbox.user_text(newcomers[i], "/start")["update_id"],
        "/help, known account": lambda i: lambda: sandbox.user_text(newcomers[i], "/help")["update_id"],
        "/menu, verified resident": lambda i: lambda: sandbox.user_text(residents[i], "/menu")["update_id"],
        "menu button, verified resident": lambda i: lambda: sandbox.press(residents[i], "❓ Help")["update_id"],
    }
    out: dict[str, dict[str, float]] = {}
    try:
        await _one(sandbox, lambda: sandbox.user_text(residents[0], "/help")["update_id"])  # warm up
        for name, make in kinds.items():
            before = counters.snapshot()
            started = time.perf_counter()
            for i in range(n):
                await _one(sandbox, make(i))
            wall = time.perf_counter() - started
            statements, commits, calls, sql_s, tg_s = (b - a for a, b in zip(before, counters.snapshot(), strict=True))
            out[name] = {"statements": round(statements / n, 1), "transactions": round(commits / n, 1),
                         "telegram_calls": round(calls / n, 1), "ms": round(wall / n * 1000, 2),
                         "sql_ms": round(sql_s / n * 1000, 2), "telegram_ms": round(tg_s / n * 1000, 2),
                         "other_ms": round((wall - sql_s - tg_s) / n * 1000, 2)}
    finally:
        await dp.stop_polling()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        await bot.session.close()
        if db_url.startswith("postgresql"):
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA {PG_SCHEMA} CASCADE"))
        await engine.dispose()
        await runner.cleanup()
    return out


def _print(backend: str, figures: dict[str, dict[str, float]]) -> None:
    print(f"\n{backend}: per update")
    head = ("statements", "transactions", "telegram_calls", "ms", "sql_ms", "telegram_ms", "other_ms")
    print(f"{'kind':<32}" + "".join(f"{h:>15}" for h in head))
    for name, row in figures.items():
        print(f"{name:<32}" + "".join(f"{row[h]:>15}" for h in head))


async def _run(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-update-cost-") as tmp:
        out: dict[str, Any] = {"sqlite": await measure(None, n, Path(tmp))}
        if postgres_reachable():
            out["postgres"] = await measure(postgres_url(), n, Path(tmp))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench update_cost")
    parser.add_argument("--quick", action="store_true", help="20 updates of each kind instead of 200")
    parser.add_argument("--updates", type=int)
    args = parser.parse_args(argv)
    n = args.updates or (20 if args.quick else 200)
    figures = asyncio.run(_run(n))
    for backend, rows in figures.items():
        _print(backend, rows)
    print(json.dumps({"benchmark": "update_cost", "updates": n, **figures}, ensure_ascii=False))
    return 0
