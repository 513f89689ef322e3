"""End-to-end harness: the sandbox Bot API server and the real bot, in this process and loop.

The bot runs as in production: it polls the sandbox over real HTTP on 127.0.0.1 handling every update
in its own task (aiogram's ``handle_as_tasks=True``), with the dispatcher's events isolation (one chat
at a time, in order). So a confirmed update is not yet a handled one: :class:`UpdateTracker` watches
the updates the bot received (its getUpdates answers) and the tasks handling them, and every user
action of ``stack.client`` waits until each update delivered so far has been handled to the end (the
commit and the error handler included); ``await stack.settled()`` does the same after updates queued
on ``stack.sandbox`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher, Router
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.types import TelegramObject
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import Runtime, build_bot, build_dispatcher, polling_alone
from bot.db import create_engine, session_factory
from bot.sandbox import Sandbox, create_sandbox_app
from bot.sandbox.client import SandboxClient
from bot.settings import Settings
from notifications.sender import OutboxSender
from services.clock import Clock, system_clock
from services.models import Base

TOKEN = "42:sandbox"
SETTLE_TIMEOUT = 30.0  # seconds an update may take to be handled before a test gives up on it


class UpdateTracker:
    """Knows when every update the bot received has been handled to the end.

    ``delivered`` counts the updates in the bot's getUpdates answers (a request middleware on its
    session: counted before aiogram starts a task for any of them); the first outer middleware of the
    dispatcher counts each update started and, once everything inside has returned, finished, whatever
    happened there (a duplicate acknowledged, a chat lock waited for, the commit, an error answered).
    """

    def __init__(self) -> None:
        self.delivered = self.started = self.finished = 0
        self._changed = asyncio.Event()

    def _bump(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def is_settled(self) -> bool:
        return self.finished >= self.delivered and self.finished == self.started

    async def settled(self, timeout: float = SETTLE_TIMEOUT) -> None:  # noqa: ASYNC109 - one deadline, many waits
        """Return once every update delivered so far has been handled; TimeoutError otherwise."""
        if not await self.wait_until(self.is_settled, timeout):
            raise TimeoutError(f"updates not handled within {timeout}s: delivered {self.delivered}, "
                               f"started {self.started}, finished {self.finished}")

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until ``predicate()`` holds, re-checked whenever an update is received, starts or ends;
        False if it still does not after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    def attach(self, bot: Bot, dp: Dispatcher) -> None:
        tracker = self

        class Received(BaseRequestMiddleware):
            async def __call__(self, make_request: NextRequestMiddlewareType[Any], bot: Bot,
                               method: TelegramMethod[Any]) -> Any:
                result = await make_request(bot, method)
                if isinstance(method, GetUpdates):
                    tracker.delivered += len(result)
                    tracker._bump()
                return result

        class Handling(BaseMiddleware):
            async def __call__(self, handler, event: TelegramObject, data: dict[str, Any]) -> Any:
                tracker.started += 1
                try:
                    return await handler(event, data)
                finally:
                    tracker.finished += 1
                    tracker._bump()

        bot.session.middleware(Received())
        # First of all outer middlewares (before aiogram's error, context and FSM-lock ones), by
        # registering the dispatcher's again after it: only public API, and behaviour unchanged.
        chain = list(dp.update.outer_middleware)
        for middleware in chain:
            dp.update.outer_middleware.unregister(middleware)
        dp.update.outer_middleware(Handling())
        for middleware in chain:
            dp.update.outer_middleware(middleware)


class HarnessClient(SandboxClient):
    """The sandbox client whose actions return once the bot has handled what they caused."""

    def __init__(self, base_url: str, tracker: UpdateTracker) -> None:
        super().__init__(base_url)
        self.tracker = tracker

    async def ensure_confirmed(self, update_id: int) -> None:
        await super().ensure_confirmed(update_id)
        await self.tracker.settled()


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
    tracker: UpdateTracker = field(default_factory=UpdateTracker)

    @property
    def runtime(self) -> Runtime:
        return Runtime(self.settings, self.engine, self.sessions, self.bot, self.dp, self.clock)

    def session(self) -> AsyncSession:
        return self.sessions()

    async def settled(self) -> None:
        """Wait until the bot has handled every update delivered so far (after queuing updates on
        ``self.sandbox`` directly, e.g. two taps at once): confirmed first, then handled."""
        if not await self.sandbox.wait_until(lambda: self.sandbox.pending_update_count() == 0, SETTLE_TIMEOUT):
            raise TimeoutError(f"the bot did not take the queued updates within {SETTLE_TIMEOUT}s")
        await self.tracker.settled()


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
    console: bool = False, redis_turns: bool = False, **overrides
) -> AsyncIterator[Stack]:
    """The sandbox and the bot polling it; with ``console``, as ``demo`` serves them: the bot's routes
    (the staff console, /healthz, /metrics) on the sandbox's own app, its /console links pointing there.
    ``redis_turns``: the bot takes its chats' turns in Redis as a webhook worker does, not as polling
    does (for a test that feeds a second dispatcher beside it)."""
    if console:
        # The port first: the bot's settings need it, and the routes must be added before the app starts.
        sock = socket.create_server(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        sandbox = Sandbox()
        app = create_sandbox_app(sandbox)
        runner = web.AppRunner(app, handle_signals=False)
        overrides.setdefault("public_url", base_url)
    else:
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
    tracker = UpdateTracker()
    tracker.attach(bot, dp)
    if console:
        from bot.web import add_bot_routes

        add_bot_routes(app, Runtime(settings, engine, sessions, bot, dp, clock))
        await runner.setup()
        await web.SockSite(runner, sock).start()
    # As `run` polls (bot.app.run_polling): every update in its own task, the dispatcher's isolation.
    if not redis_turns:
        polling_alone(dp)
    polling = asyncio.create_task(
        dp.start_polling(bot, polling_timeout=1, handle_signals=False, close_bot_session=False)
    )
    client = HarnessClient(base_url, tracker)
    stack = Stack(settings, engine, sessions, sandbox, client, bot, dp, base_url, clock=clock, tracker=tracker)
    # The real outbox sender, fast: tests wait for its messages with user.wait_for_message().
    from bot.runtime import build_sender

    stack.sender = build_sender(stack.runtime, rate=500, per_chat_rate=100, poll_interval=0.05)
    stop_sender = asyncio.Event()
    sending = asyncio.create_task(stack.sender.run(stop_sender))
    try:
        yield stack
    finally:
        # Updates still being handled finish before anything they use goes away.
        with contextlib.suppress(TimeoutError):
            await tracker.settled(10)
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
