"""``python -m bench updates [--quick]``: updates/s through the full stack (sandbox → polling →
dispatcher → session/actor middlewares → SQLite, and PostgreSQL when it answers → handler →
sendMessage) beside a bare aiogram echo bot on the same sandbox harness, and the ratios."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message
from aiohttp import web
from sqlalchemy import text

from bench import postgres_reachable, postgres_url
from bot.app import build_bot, build_dispatcher
from bot.db import create_engine, session_factory
from bot.sandbox import Sandbox, create_sandbox_app
from bot.settings import Settings
from services.models import Base

TOKEN = "42:sandbox"
PG_SCHEMA = "bench_updates"


async def _serve(sandbox: Sandbox) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_sandbox_app(sandbox), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def _measure(sandbox: Sandbox, bot: Bot, dp: Dispatcher, users: list[int], n: int, text: str) -> float:
    polling = asyncio.create_task(dp.start_polling(bot, polling_timeout=1, handle_signals=False,
                                                   close_bot_session=False))
    # warm up: one round trip so that start-up is not measured
    before = sandbox.stats()["sent_total"]
    sandbox.user_text(users[0], text)
    await sandbox.wait_until(lambda: sandbox.stats()["sent_total"] > before, 30)
    base = sandbox.stats()["sent_total"]
    t0 = time.perf_counter()
    for i in range(n):
        sandbox.user_text(users[i % len(users)], text)
    done = await sandbox.wait_until(
        lambda: sandbox.stats()["sent_total"] >= base + n, 600)
    elapsed = time.perf_counter() - t0
    await dp.stop_polling()
    with contextlib.suppress(asyncio.CancelledError):
        await polling
    if not done:
        raise RuntimeError("not every update was answered")
    return n / elapsed


async def full_stack(n: int, users_n: int, folder: Path, db_url: str | None = None) -> float:
    sandbox = Sandbox()
    runner, url = await _serve(sandbox)
    db_url = db_url or f"sqlite+aiosqlite:///{folder / 'updates.sqlite3'}"
    settings = Settings(_env_file=None, bot_token=TOKEN, telegram_api_base=url, data_dir=folder,
                        database_url=db_url, secret_key="bench")
    if db_url.startswith("postgresql"):
        admin = create_engine(db_url)
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
            await conn.execute(text(f"CREATE SCHEMA {PG_SCHEMA}"))
        await admin.dispose()
        engine = create_engine(db_url, connect_args={"server_settings": {"search_path": PG_SCHEMA}})
    else:
        engine = create_engine(settings.db_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    bot = build_bot(settings)
    dp = build_dispatcher(settings, session_factory(engine))
    users = [sandbox.create_user(f"u{i}", language_code="en").id for i in range(users_n)]
    try:
        return await _measure(sandbox, bot, dp, users, n, "/help")
    finally:
        await bot.session.close()
        if db_url.startswith("postgresql"):
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA {PG_SCHEMA} CASCADE"))
        await engine.dispose()
        await runner.cleanup()


async def bare_echo(n: int, users_n: int) -> float:
    sandbox = Sandbox()
    runner, url = await _serve(sandbox)
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(url)))
    dp = Dispatcher()

    async def echo(message: Message) -> None:
        await message.answer(message.text)

    dp.message.register(echo)
    users = [sandbox.create_user(f"u{i}", language_code="en").id for i in range(users_n)]
    try:
        return await _measure(sandbox, bot, dp, users, n, "/help")
    finally:
        await bot.session.close()
        await runner.cleanup()


async def _run(n: int, users_n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-updates-") as tmp:
        bare = await bare_echo(n, users_n)
        full = await full_stack(n, users_n, Path(tmp))
        pg = await full_stack(n, users_n, Path(tmp), postgres_url()) if postgres_reachable() else None
    out = {"updates": n, "users": users_n, "bare_echo_updates_per_s": round(bare, 1),
           "full_stack_updates_per_s": round(full, 1), "full_over_bare": round(full / bare, 3)}
    if pg is not None:
        out |= {"full_stack_postgres_updates_per_s": round(pg, 1), "postgres_over_bare": round(pg / bare, 3)}
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench updates")
    parser.add_argument("--quick", action="store_true", help="300 updates instead of 3,000")
    parser.add_argument("--updates", type=int)
    parser.add_argument("--users", type=int, default=100)
    args = parser.parse_args(argv)
    n = args.updates or (300 if args.quick else 3000)
    figures = asyncio.run(_run(n, args.users))
    print(f"{'stack':<34} {'updates/s':>10}")
    print(f"{'bare aiogram echo bot':<34} {figures['bare_echo_updates_per_s']:>10}")
    print(f"{'full stack (middlewares + SQLite)':<34} {figures['full_stack_updates_per_s']:>10}")
    print(f"{'ratio full / bare':<34} {figures['full_over_bare']:>10}")
    if "full_stack_postgres_updates_per_s" in figures:
        print(f"{'full stack (PostgreSQL)':<34} {figures['full_stack_postgres_updates_per_s']:>10}")
        print(f"{'ratio PostgreSQL / bare':<34} {figures['postgres_over_bare']:>10}")
    print(json.dumps({"benchmark": "updates", **figures}))
    return 0
