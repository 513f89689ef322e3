"""Update middlewares: one database session per update, and the resolved actor with its locale."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.accounts import TelegramUser, resolve_actor, touch_account
from services.clock import Clock, system_clock
from services.i18n import normalize_locale, set_locale
from services.scope import Actor

log = logging.getLogger(__name__)
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class DbSessionMiddleware(BaseMiddleware):
    """Opens one session per update; commits when the handler returns, rolls back on error."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        async with self.sessions() as session:
            data["session"] = session
            try:
                result = await handler(event, data)
            except BaseException:
                await session.rollback()
                raise
            await session.commit()
            return result


class ActorMiddleware(BaseMiddleware):
    """Resolves the account, resident, staff grants and locale of the user behind the update."""

    def __init__(self, default_locale: str, clock: Clock = system_clock) -> None:
        self.default_locale = default_locale
        self.clock = clock

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        session: AsyncSession = data["session"]
        # One ``now`` per update, from the process's one clock (tests move it instead of sleeping).
        now = data["now"] = self.clock()
        if user is None or user.is_bot:
            set_locale(self.default_locale)
            data["actor"] = Actor(locale=self.default_locale)
            return await handler(event, data)
        # The locale is set before any query so that even a failing lookup is answered politely.
        set_locale(normalize_locale(user.language_code, self.default_locale))
        account = await touch_account(
            session,
            TelegramUser(user.id, user.first_name, user.last_name, user.username, user.language_code),
            now,
        )
        actor = await resolve_actor(
            session, account, language_code=user.language_code, default_locale=self.default_locale
        )
        # Commit the account touch now: the connection goes back to the pool, so a handler that only
        # answers (no queries) never holds one across its network round trip to Telegram.
        await session.commit()
        set_locale(actor.locale)
        data["actor"] = actor
        return await handler(event, data)
