"""The bot's HTTP session to the Bot API: aiogram's aiohttp session, without two avoidable costs.

aiogram checks every Bot API answer with the pydantic model ``Response[T]`` (``T`` the method's result
type). pydantic keeps the classes it makes for ``Response[T]`` in a cache of weak references, and such a
class is only collectable by the cyclic garbage collector: after a collection the next call builds the
model again, about 8 ms of CPU (schema, validator). ``python -m bench updates`` counted it: under the
mixed load one update in three paid for it, a fifth of the full stack's CPU. The session below holds
one strong reference per result type (a few dozen at most: the Bot API's methods return a handful of
types), so the cache always answers. How answers are checked is unchanged.

aiogram sends every call as a form (``application/x-www-form-urlencoded``, its nested values such as a
keyboard as JSON inside it): percent-encoding a message of Chinese text byte by byte cost about
150 µs a call. A call without a file goes as one JSON body instead (``application/json``, which the
Bot API takes for every method but uploads), about 60 µs; a call with a file goes as aiogram sends it
(multipart). The fields sent are the same: those aiogram's form leaves out (None, "") are left out.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import InputFile
from aiohttp import ClientError, ClientTimeout

JSON_BODY = {"Content-Type": "application/json"}


class BotSession(AiohttpSession):
    """:class:`AiohttpSession` whose answer models stay built and whose calls without a file go as
    JSON (see the module's docstring)."""

    _kept: ClassVar[dict[Any, type]] = {}

    async def make_request(self, bot: Bot, method: TelegramMethod[TelegramType],
                           timeout: int | None = None) -> TelegramType:  # noqa: ASYNC109 (aiogram's signature)
        files: dict[str, InputFile] = {}
        body: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            value = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if value is not None and value != "":
                body[key] = value
        if files:
            return await super().make_request(bot, method, timeout)
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        try:
            async with session.post(url, data=self.json_dumps(body), headers=JSON_BODY,
                                    timeout=ClientTimeout(total=self.timeout if timeout is None else timeout)) as resp:
                raw_result = await resp.text()
        except TimeoutError as e:
            raise TelegramNetworkError(method=method, message="Request timeout error") from e
        except ClientError as e:
            raise TelegramNetworkError(method=method, message=f"{type(e).__name__}: {e}") from e
        response = self.check_response(bot=bot, method=method, status_code=resp.status, content=raw_result)
        return cast(TelegramType, response.result)

    def check_response(self, bot: Bot, method: TelegramMethod[TelegramType], status_code: int,
                       content: str) -> Response[TelegramType]:
        returning = method.__returning__
        if returning not in self._kept:
            self._kept[returning] = Response[returning]  # type: ignore[valid-type]
        return super().check_response(bot, method, status_code, content)
