"""The bot's HTTP session to the Bot API: aiogram's aiohttp session, without one avoidable cost.

aiogram checks every Bot API answer with the pydantic model ``Response[T]`` (``T`` the method's result
type). pydantic keeps the classes it makes for ``Response[T]`` in a cache of weak references, and such a
class is only collectable by the cyclic garbage collector: after a collection the next call builds the
model again, about 8 ms of CPU (schema, validator). ``python -m bench updates`` counted it: under the
mixed load one update in three paid for it, a fifth of the full stack's CPU. The session below holds
one strong reference per result type (a few dozen at most: the Bot API's methods return a handful of
types), so the cache always answers. What is sent and how answers are checked is unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType


class BotSession(AiohttpSession):
    """:class:`AiohttpSession` whose answer models stay built (see the module's docstring)."""

    _kept: ClassVar[dict[Any, type]] = {}

    def check_response(self, bot: Bot, method: TelegramMethod[TelegramType], status_code: int,
                       content: str) -> Response[TelegramType]:
        returning = method.__returning__
        if returning not in self._kept:
            self._kept[returning] = Response[returning]  # type: ignore[valid-type]
        return super().check_response(bot, method, status_code, content)
