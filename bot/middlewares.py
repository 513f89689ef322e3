"""How one update is handled: in its chat's order, once, in one transaction committed before any reply.

- :class:`ChatOrder` (the dispatcher's events isolation): updates of one chat one after another, in
  the order they arrived; different chats in parallel.
- :class:`DbSessionMiddleware`: one session per update whose first statement marks the update handled
  (``services.updates.first_delivery``), so a redelivered update is acknowledged and not handled again.
- :class:`CommitBeforeTelegram` (a Bot session request middleware the session middleware installs):
  a Telegram call made while the update's transaction holds uncommitted work commits it first; if the
  commit fails the call is not made (``UpdateNotSaved``, answered by the error handler).
- :class:`ActorMiddleware`: the account, resident, staff grants and locale behind the update.

docs/ARCHITECTURE.md "One update: in order, once, committed before it is answered" says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.fsm.storage.base import BaseEventIsolation, StorageKey
from aiogram.methods import TelegramMethod
from aiogram.types import TelegramObject, Update, User
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.accounts import TelegramUser, touch_actor
from services.clock import Clock, system_clock
from services.i18n import normalize_locale, set_locale
from services.scope import Actor
from services.updates import UpdateNotSaved, first_delivery

log = logging.getLogger(__name__)
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]

# The session of the update being handled in this task (aiogram runs each update in its own task, whose
# context this is); unset outside updates: the outbox sender, ticks, the CLI.
_update_session: ContextVar[AsyncSession | None] = ContextVar("update_session", default=None)


def update_session() -> AsyncSession | None:
    """The session of the update being handled in this task, if any."""
    return _update_session.get()


# ``session.info`` key of writes that wait for the session's commit (bot.conversations): a Telegram
# call commits them first too.
PENDING_WRITES = "pending_writes"
# ``session.info`` key of writes elsewhere that follow the session's commit (bot.conversations'
# steps kept in Redis): {(their storage, its key): the step}; :func:`commit_update` writes them.
AFTER_COMMIT = "after_commit"


# A commit can fail on the database (constraint, serialisation, lost connection) or on the socket.
COMMIT_ERRORS = (SQLAlchemyError, OSError)


async def commit_update(session: AsyncSession, *, why: str) -> None:
    """Commit the update's work (``UpdateNotSaved`` if that fails: ``why`` says what it stops), then write
    what follows the commit: the update's conversation steps when they are kept in Redis."""
    if session.in_transaction() or session.new or session.dirty or session.deleted or session.info.get(PENDING_WRITES):
        try:
            await session.commit()
        except COMMIT_ERRORS as exc:
            raise UpdateNotSaved(why) from exc
    for (storage, key), step in session.info.pop(AFTER_COMMIT, {}).items():
        await storage.write_committed(key, step)


# The chat whose turn the current task already holds (ChatOrder.hold), so its own lock() passes.
_chat_held: ContextVar[StorageKey | None] = ContextVar("chat_held", default=None)


@contextlib.contextmanager
def holding(key: StorageKey | None) -> Iterator[None]:
    """Tasks created in this block run as holders of ``key``'s turn (see :meth:`ChatOrder.hold`)."""
    token = _chat_held.set(key)
    try:
        yield
    finally:
        _chat_held.reset(token)


class ChatOrder(BaseEventIsolation):
    """Updates of one chat one after another, in arrival order; different chats in parallel.

    In the process, an ``asyncio.Lock`` per chat (its waiters are served first come, first served),
    kept only while an update of that chat is in hand or waiting, so a process that has seen a million
    chats holds no million locks (aiogram's ``SimpleEventIsolation`` keeps every lock it ever made).
    With webhook workers sharing Redis, aiogram's ``RedisEventIsolation`` as well, taken after the local
    lock: a process's own updates of a chat queue in order, and only the first of them waits on Redis
    while another worker has the chat (:meth:`only_here` drops it for long polling).
    """

    def __init__(self, shared: BaseEventIsolation | None = None) -> None:
        self.shared = shared
        # chat key -> (its lock, how many updates hold or wait for it)
        self._locks: dict[StorageKey, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def _local(self, key: StorageKey) -> AsyncGenerator[None, None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    @contextlib.asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        if _chat_held.get() == key:  # taken for this update before it was handed to its task
            yield
            return
        async with self._local(key):
            if self.shared is None:
                yield
            else:
                async with self.shared.lock(key):
                    yield

    async def hold(self, key: StorageKey) -> contextlib.AsyncExitStack:
        """Take ``key``'s turn now for an update that a task will handle: the webhook takes it before
        Telegram gets its 200, so the chat's next update, at whichever worker, comes after this one.
        Run the task under :func:`holding` and close the returned stack when it is done."""
        turn = contextlib.AsyncExitStack()
        await turn.enter_async_context(self.lock(key))
        return turn

    def only_here(self) -> None:
        """This process is the only one handling the bot's updates (long polling: Telegram gives them to
        one getUpdates caller at a time), so the chat's turn is this process's lock alone: the turn in
        Redis would cost two round trips an update and order nothing more."""
        self.shared = None

    def chats_in_hand(self) -> int:
        """How many chats have an update in hand or waiting in this process."""
        return len(self._locks)

    async def close(self) -> None:
        self._locks.clear()
        if self.shared is not None:
            await self.shared.close()


class CommitBeforeTelegram(BaseRequestMiddleware):
    """Commit, then answer: a Telegram call made while handling an update first commits the work the
    update's session holds, so a reply never claims what is not saved, and no database connection (or
    SQLite's one write lock) is held across the round trip to Telegram. If the commit fails the call is
    not made and ``UpdateNotSaved`` goes up to the error handler, which says it did not work."""

    async def __call__(self, make_request: NextRequestMiddlewareType[Any], bot: Bot,
                       method: TelegramMethod[Any]) -> Any:
        session = _update_session.get()
        if session is not None:
            await commit_update(session, why=f"not committed, so {type(method).__name__} was not called")
        return await make_request(bot, method)


COMMIT_FIRST = CommitBeforeTelegram()


class DbSessionMiddleware(BaseMiddleware):
    """One session per update. Its first statement marks the update handled (a duplicate stops here,
    acknowledged); it is committed before every Telegram call (:class:`CommitBeforeTelegram`, installed
    on the bot it answers through) and when the handler returns; rolled back on error."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock = system_clock) -> None:
        self.sessions = sessions
        self.clock = clock

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        bot: Bot = data["bot"]
        if COMMIT_FIRST not in bot.session.middleware:
            bot.session.middleware(COMMIT_FIRST)
        # One ``now`` per update, from the process's one clock (tests move it instead of sleeping).
        now = data["now"] = self.clock()
        async with self.sessions() as session:
            token = _update_session.set(session)
            try:
                if isinstance(event, Update) and not await first_delivery(session, bot.id, event.update_id, now):
                    await session.rollback()
                    log.info("update %s was handled before: acknowledged, not handled again", event.update_id)
                    return None
                data["session"] = session
                try:
                    result = await handler(event, data)
                except BaseException:
                    session.info.pop(AFTER_COMMIT, None)  # steps of a failed update are not taken
                    await session.rollback()
                    raise
                await commit_update(session, why="the update's last changes were not committed")
                return result
            finally:
                _update_session.reset(token)


class ActorMiddleware(BaseMiddleware):
    """Resolves the account, resident, staff grants and locale of the user behind the update."""

    def __init__(self, default_locale: str) -> None:
        self.default_locale = default_locale

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        session: AsyncSession = data["session"]
        if user is None or user.is_bot:
            set_locale(self.default_locale)
            data["actor"] = Actor(locale=self.default_locale)
            return await handler(event, data)
        # The locale is set before any query so that even a failing lookup is answered politely.
        set_locale(normalize_locale(user.language_code, self.default_locale))
        # No commit here: the touch commits with the update's effects (before its first reply).
        actor = await touch_actor(
            session,
            TelegramUser(user.id, user.first_name, user.last_name, user.username, user.language_code),
            data["now"],
            default_locale=self.default_locale,
        )
        set_locale(actor.locale)
        data["actor"] = actor
        return await handler(event, data)
