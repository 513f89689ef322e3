"""Composition root: Bot, Dispatcher, middlewares, background tasks, and the process runners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiogram import Bot, Dispatcher, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import BotCommand, BotCommandScopeDefault
from aiohttp import ClientError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import handlers
from bot.checkin_jobs import checkin_config
from bot.conversations import DatabaseStorage, RedisConversations
from bot.db import create_engine, session_factory
from bot.edits import EditsThatChangeNothing
from bot.logs import UpdateLogContext
from bot.metrics import Metrics
from bot.middlewares import ActorMiddleware, ChatOrder, DbSessionMiddleware
from bot.routing import button_prefixes_first, magic_filters_inline, message_gates_first
from bot.settings import Settings
from bot.telegram_session import BotSession
from handlers.commands import commands_for
from services.clock import Clock, system_clock
from services.config import AppConfig, OutboxConfig
from services.console_auth import ConsoleConfig
from services.discussions import DiscussionConfig
from services.i18n import LOCALES, use_locale
from services.i18n import _ as gettext
from services.policies import PolicyConfig
from services.polls import PollConfig

log = logging.getLogger("bot")

# Telegram language codes for which we register a translated command list.
COMMAND_LANGUAGES = {"zh_Hans": ("zh", "zh-hans"), "en": ("en",)}


def build_bot(settings: Settings, token: str | None = None) -> Bot:
    token = token or settings.bot_token
    if not token:
        raise SystemExit("configuration error: BOT_TOKEN: required to talk to Telegram (or use `demo`)")
    base = settings.telegram_api_base
    session = BotSession(api=TelegramAPIServer.from_base(base)) if base else BotSession()
    bot = Bot(token=token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    bot.session.middleware(EditsThatChangeNothing())  # a second tap's edit is done (bot.edits)
    return bot


def build_storage(settings: Settings, sessions: async_sessionmaker[AsyncSession] | None = None,
                  clock: Clock = system_clock) -> BaseStorage:
    """Conversation state: in Redis shared by every worker, else in the database (one process:
    ``bot.conversations``; in memory only without a database, as for routing checks). The key carries
    the bot id (two bots on one Redis or database never read each other's state) and a conversation
    is forgotten FSM_TTL after its last step, so abandoned ones do not pile up."""
    if settings.redis_url:
        from aiogram.fsm.storage.base import DefaultKeyBuilder

        return RedisConversations.from_url(settings.redis_url, key_builder=DefaultKeyBuilder(with_bot_id=True),
                                           state_ttl=settings.fsm_ttl, data_ttl=settings.fsm_ttl)
    if sessions is not None:
        return DatabaseStorage(sessions, ttl=settings.fsm_ttl, clock=clock)
    return MemoryStorage()


def app_config(settings: Settings) -> AppConfig:
    """The typed core configuration, built once at start-up."""
    return AppConfig(tz=settings.tz, default_locale=settings.default_locale,
                     secret_key=settings.ensure_secret_key(), invite_ttl=settings.invite_ttl)


def outbox_config(settings: Settings) -> OutboxConfig:
    return OutboxConfig(rate=settings.outbox_rate, per_chat_rate=settings.outbox_per_chat_rate,
                        senders=settings.outbox_senders)


def policy_config(settings: Settings) -> PolicyConfig:
    return PolicyConfig(push_interval=settings.policy_push_interval, followup_after=settings.policy_followup_after)


def poll_config(settings: Settings) -> PollConfig:
    return PollConfig(tz=settings.tz, default_locale=settings.default_locale,
                      reminder_before=settings.poll_reminder_before,
                      reports_dir=str(Path(settings.data_dir) / "reports"))


def discussion_config(settings: Settings) -> DiscussionConfig:
    return DiscussionConfig(tz=settings.tz, default_locale=settings.default_locale,
                            digest_interval=settings.discussion_digest_interval,
                            reports_to_hide=settings.discussion_reports_to_hide)


def console_config(settings: Settings) -> ConsoleConfig:
    """Where staff reach the console (PUBLIC_URL, else this host's WEB_HOST:WEB_PORT) and how long a
    session lasts without a request."""
    public = settings.public_url or f"http://{settings.web_host}:{settings.web_port}"
    return ConsoleConfig(public_url=public, session_idle=settings.console_session_idle)


# A chat's turn in Redis (aiogram's RedisEventIsolation, a redis-py lock): held at most a minute (a
# worker that died gives it up by then); a worker waiting for another's looks again every 5 ms, not
# every 100 (redis-py's default): a chat's next update, sent as soon as an answer came, may arrive
# while the previous one is still finishing at the other worker.
CHAT_TURN_LOCK = {"timeout": 60, "sleep": 0.005}


def build_dispatcher(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    storage: BaseStorage | None = None,
    extra_routers: Iterable[Router] = (),
    clock: Clock = system_clock,
) -> Dispatcher:
    """The dispatcher with its middlewares and routers; handlers get the typed configs as data."""
    from aiogram.fsm.storage.redis import RedisStorage

    storage = storage or build_storage(settings, sessions, clock)
    # Updates of one chat in order, one at a time; across workers too when the state is in Redis.
    shared = storage.create_isolation(lock_kwargs=CHAT_TURN_LOCK) if isinstance(storage, RedisStorage) else None
    dp = Dispatcher(storage=storage, events_isolation=ChatOrder(shared), sessions=sessions,
                    config=app_config(settings), clock=clock,
                    checkin_config=checkin_config(settings),  # check-ins: one typed config per process
                    policy_config=policy_config(settings), poll_config=poll_config(settings),
                    discussion_config=discussion_config(settings),
                    console_config=console_config(settings))
    # First of ours, so that it times the session and the commit too (bot.metrics, /metrics).
    dp["metrics"] = metrics = Metrics()
    dp.update.outer_middleware(UpdateLogContext())  # outermost: every log record of the update has its id
    dp.update.outer_middleware(metrics.middleware())
    dp.update.outer_middleware(DbSessionMiddleware(sessions, clock))
    dp.update.outer_middleware(ActorMiddleware(settings.default_locale))
    dp.include_routers(*extra_routers, *handlers.routers())
    magic_filters_inline(dp)  # F filters on the loop, not one thread hop each (bot.routing)
    button_prefixes_first(dp)  # a button skips the routers that cannot take it (bot.routing)
    message_gates_first(dp)  # and a message those that take neither its command nor its state
    dp.startup.register(register_commands)
    return dp


async def register_commands(bot: Bot) -> None:
    """Publish the command list per language; a refusal must not stop the bot."""
    try:
        for locale in LOCALES:
            with use_locale(locale):
                commands = [BotCommand(command=c.name, description=gettext(c.description))
                            for c in commands_for(None)]
            for code in COMMAND_LANGUAGES[locale]:
                await bot.set_my_commands(commands, scope=BotCommandScopeDefault(), language_code=code)
            if locale == LOCALES[0]:
                await bot.set_my_commands(commands, scope=BotCommandScopeDefault())
    except (TelegramAPIError, ClientError, TimeoutError) as exc:
        log.warning("could not register the command list (%s); carrying on", type(exc).__name__)


BackgroundTask = Callable[["Runtime", asyncio.Event], Awaitable[None]]


@dataclass
class Runtime:
    """Everything one running bot process owns; made and released by :func:`open_runtime`."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bot: Bot
    dp: Dispatcher
    clock: Clock = system_clock
    background: list[BackgroundTask] = field(default_factory=list)


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, token: str | None = None, migrate: bool = True,
                       clock: Clock = system_clock) -> AsyncIterator[Runtime]:
    """Open the engine, bot session and dispatcher; on leaving, release every one of them, whatever
    failed in between (aiohttp's cleanup_ctx idea, with an exit stack)."""
    settings.ensure_secret_key()
    async with contextlib.AsyncExitStack() as owned:
        engine = create_engine(settings.db_url, data_keys=settings.data_keys())
        owned.push_async_callback(engine.dispose)
        if migrate:
            from bot.migrate import upgrade

            await upgrade(engine, settings=settings)
        sessions = session_factory(engine)
        bot = build_bot(settings, token)
        owned.push_async_callback(bot.session.close)
        dp = build_dispatcher(settings, sessions, clock=clock)
        yield Runtime(settings, engine, sessions, bot, dp, clock)


@contextlib.asynccontextmanager
async def background_running(rt: Runtime) -> AsyncIterator[asyncio.Event]:
    """Run ``rt.background`` jobs until the block ends; they are stopped and awaited on the way out."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(job(rt, stop), name=getattr(job, "__name__", "job")) for job in rt.background]
    try:
        yield stop
    finally:
        stop.set()
        # A job gets a moment to finish what it holds (the sender hands back claimed rows).
        _done, pending = await asyncio.wait(tasks, timeout=10) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def polling_alone(dp: Dispatcher) -> None:
    """Long polling: Telegram gives the bot's updates to one getUpdates caller at a time, so this process
    is the only one handling them and a chat's turn is its own lock alone (``ChatOrder.only_here``)."""
    order = dp.fsm.events_isolation
    if isinstance(order, ChatOrder):
        order.only_here()


async def run_polling(rt: Runtime, *, handle_signals: bool = True) -> None:
    """Long polling plus the background tasks, until a signal or the dispatcher stops. At most as many
    updates in hand as a webhook worker takes (``bot.web.MAX_IN_HAND``): beyond that the next batch
    waits at Telegram instead of piling up tasks that wait for a database connection (and time out)."""
    from bot.web import MAX_IN_HAND

    polling_alone(rt.dp)
    async with background_running(rt):
        with contextlib.suppress(TelegramAPIError):
            await rt.bot.delete_webhook(drop_pending_updates=False)
        await rt.dp.start_polling(rt.bot, handle_signals=handle_signals, close_bot_session=False,
                                  tasks_concurrency_limit=MAX_IN_HAND)
