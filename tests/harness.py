"""End-to-end harness: the sandbox Bot API server and the real bot, in this process and loop.

The bot polls the sandbox over real HTTP on 127.0.0.1 with ``handle_as_tasks=False``, so once
the sandbox reports an update confirmed, its handler (and the commit) has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from aiogram import Bot, Dispatcher, Router
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import Runtime, build_bot, build_dispatcher
from bot.db import create_engine, session_factory
from bot.sandbox import Sandbox, create_sandbox_app
from bot.sandbox.client import SandboxClient
from bot.settings import Settings
from notifications.sender import OutboxSender
from services.clock import Clock, system_clock
from services.models import Base

TOKEN = "42:sandbox"


@dataclass
class Stack:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    sandbox: Sandbox
    client: SandboxClient
    bot: Bot
    dp: Dispatcher
    base_url: str
    sender: OutboxSender | None = None
    clock: Clock = system_clock  # the one clock of the bot: middleware, sender and ticks

    @property
    def runtime(self) -> Runtime:
        return Runtime(self.settings, self.engine, self.sessions, self.bot, self.dp, self.clock)

    def session(self) -> AsyncSession:
        return self.sessions()


async def start_sandbox(sandbox: Sandbox | None = None) -> tuple[web.AppRunner, str, Sandbox]:
    sandbox = sandbox or Sandbox()
    runner = web.AppRunner(create_sandbox_app(sandbox), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}", sandbox


@contextlib.asynccontextmanager
async def running_stack(
    tmp: Path, *, db_url: str | None = None, extra_routers: Iterable[Router] = (), clock: Clock = system_clock,
    **overrides
) -> AsyncIterator[Stack]:
    runner, base_url, sandbox = await start_sandbox()
    settings = Settings(
        _env_file=None,
        bot_token=TOKEN,
        telegram_api_base=base_url,
        data_dir=tmp,
        database_url=db_url or f"sqlite+aiosqlite:///{tmp / 'e2e.sqlite3'}",
        secret_key="test-secret-key",
        **overrides,
    )
    # The data key is made in DATA_DIR as on a first start, so worker processes given the same data
    # folder (tests/checkin_worker.py) read the same phone numbers.
    engine = create_engine(settings.db_url, data_keys=settings.data_keys())
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = session_factory(engine)
    bot = build_bot(settings)
    dp = build_dispatcher(settings, sessions, extra_routers=extra_routers, clock=clock)
    polling = asyncio.create_task(
        dp.start_polling(bot, polling_timeout=1, handle_as_tasks=False, handle_signals=False,
                         close_bot_session=False)
    )
    client = SandboxClient(base_url)
    stack = Stack(settings, engine, sessions, sandbox, client, bot, dp, base_url, clock=clock)
    # The real outbox sender, fast: tests wait for its messages with user.wait_for_message().
    from bot.runtime import build_sender

    stack.sender = build_sender(stack.runtime, rate=500, per_chat_rate=100, poll_interval=0.05)
    stop_sender = asyncio.Event()
    sending = asyncio.create_task(stack.sender.run(stop_sender))
    try:
        yield stack
    finally:
        stop_sender.set()
        await asyncio.wait_for(sending, 10)
        with contextlib.suppress(RuntimeError):
            await dp.stop_polling()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(polling, 10)
        await client.close()
        await bot.session.close()
        await engine.dispose()
        await runner.cleanup()
