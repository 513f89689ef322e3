"""run_polling takes at most MAX_IN_HAND updates in hand (as a webhook worker): the rest wait at Telegram
instead of piling up tasks that wait for a database connection."""

from __future__ import annotations

import asyncio

from aiogram import F, Router
from aiogram.types import Message
from aiohttp import web

from bot.app import Runtime, build_bot, build_dispatcher, run_polling
from bot.db import create_engine, session_factory
from bot.sandbox import Sandbox, create_sandbox_app
from bot.settings import Settings
from bot.web import MAX_IN_HAND
from services.models import Base


async def test_polling_holds_at_most_max_in_hand_updates_and_then_takes_the_rest(tmp_path):
    sandbox = Sandbox()
    runner = web.AppRunner(create_sandbox_app(sandbox), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    settings = Settings(_env_file=None, bot_token="42:sandbox", telegram_api_base=f"http://{host}:{port}",
                        data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}",
                        secret_key="k")
    engine = create_engine(settings.db_url, data_keys=settings.data_keys())
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    in_hand, most, release, full = set(), [0], asyncio.Event(), asyncio.Event()
    held = Router()

    async def hold(message: Message) -> None:
        await message.answer("holding")  # commits the update's marker first: the one SQLite connection is free
        in_hand.add(message.chat.id)
        most[0] = max(most[0], len(in_hand))
        if len(in_hand) == MAX_IN_HAND:
            full.set()
        await release.wait()
        in_hand.discard(message.chat.id)
        await message.answer("done")

    held.message.register(hold, F.text == "hold")
    sessions = session_factory(engine)
    bot = build_bot(settings)
    rt = Runtime(settings, engine, sessions, bot, build_dispatcher(settings, sessions, extra_routers=[held]))
    users = [sandbox.create_user(f"u{i}").id for i in range(MAX_IN_HAND + 10)]  # one chat each: no chat order
    for uid in users:
        sandbox.user_text(uid, "hold")
    polling = asyncio.create_task(run_polling(rt, handle_signals=False))
    try:
        await asyncio.wait_for(full.wait(), 30)
        assert sandbox.pending_update_count() > 0  # the rest were not taken from Telegram yet
        release.set()
        assert await sandbox.wait_until(lambda: sandbox.stats()["sent_total"] >= 2 * len(users), 30)
        assert most[0] == MAX_IN_HAND
    finally:
        release.set()
        await rt.dp.stop_polling()
        await asyncio.wait_for(polling, 10)
        await bot.session.close()
        await engine.dispose()
        await runner.cleanup()
