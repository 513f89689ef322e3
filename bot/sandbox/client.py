"""A small client for the sandbox control API, for end-to-end tests.

A message dict holds what Telegram keeps: ``text`` (or ``caption``) is plain text and ``entities``
its formatting (offsets in UTF-16 code units); ``html`` is the HTML rebuilt from the two, as
aiogram's ``Message.html_text`` rebuilds it, for tests that check formatting.

Every user action waits until the bot has confirmed (i.e. fully handled, when polling with
``handle_as_tasks=False``) the update it produced, so a test can assert on the replies at once.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import aiohttp

MessageDict = dict[str, Any]


class SandboxError(RuntimeError):
    """The control API answered with an error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class SandboxClient:
    """Talks to one sandbox server at ``base_url``; use as ``async with SandboxClient(url) as sb:``."""

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        confirm_timeout: float = 10.0,
        wait_for_bot: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.confirm_timeout = confirm_timeout
        # False when no bot is polling (e.g. tests that drive the Bot API by hand).
        self.wait_for_bot = wait_for_bot
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> SandboxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session.request(method, f"{self.base_url}{path}", **kwargs) as resp:
            data = await resp.json()
            if resp.status >= 400:
                message = data.get("error", "") if isinstance(data, dict) else str(data)
                raise SandboxError(resp.status, message)
            return data

    # ---------------------------------------------------------------- users

    async def create_user(
        self,
        first_name: str,
        language_code: str = "zh-hans",
        phone_number: str | None = None,
        **kw: Any,
    ) -> SandboxUser:
        """Create a simulated user; extra keywords: ``last_name``, ``username``."""
        body = {"first_name": first_name, "language_code": language_code, "phone_number": phone_number, **kw}
        data = await self.request("POST", "/sandbox/api/users", json=body)
        return SandboxUser(self, data)

    async def users(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/sandbox/api/users")

    # ---------------------------------------------------------------- updates

    async def wait_confirmed(self, update_id: int, seconds: float | None = None) -> bool:
        """Wait until the bot confirmed ``update_id`` through getUpdates; False on timeout."""
        seconds = self.confirm_timeout if seconds is None else seconds
        data = await self.request(
            "GET",
            f"/sandbox/api/updates/{update_id}/wait",
            params={"timeout": str(seconds)},
            timeout=aiohttp.ClientTimeout(total=seconds + 10),
        )
        return bool(data["confirmed"])

    async def ensure_confirmed(self, update_id: int) -> None:
        if not await self.wait_confirmed(update_id):
            raise TimeoutError(f"update {update_id} was not confirmed by the bot in {self.confirm_timeout}s")

    async def raw_update(self, update: dict[str, Any], *, wait: bool = False) -> int:
        """Queue an arbitrary update dict; optionally wait until the bot confirmed it."""
        data = await self.request("POST", "/sandbox/api/raw_update", json=update)
        if wait:
            await self.ensure_confirmed(data["update_id"])
        return int(data["update_id"])

    async def redeliver(self, update_id: int, *, wait: bool = True) -> int:
        """Deliver update ``update_id`` again, same id and content (as Telegram does after a timeout);
        optionally wait until the bot confirmed it once more."""
        await self.request("POST", f"/sandbox/api/updates/{update_id}/redeliver")
        if wait:
            await self.ensure_confirmed(update_id)
        return update_id

    # ---------------------------------------------------------------- settings & stats

    async def set_rate_limits(self, global_rate: float | None = None, per_chat: float | None = None) -> dict:
        return await self.request(
            "POST", "/sandbox/api/rate_limits", json={"global": global_rate, "per_chat": per_chat}
        )

    async def stats(self) -> dict[str, Any]:
        return await self.request("GET", "/sandbox/api/stats")

    async def commands(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/sandbox/api/commands")


class SandboxUser:
    """One simulated user in a private chat with the bot."""

    def __init__(self, client: SandboxClient, data: dict[str, Any]) -> None:
        self.client = client
        self.data = data
        self.id: int = data["id"]
        self.first_name: str = data["first_name"]
        self.phone_number: str = data["phone_number"]
        self._action_seq = 0  # sandbox change counter just before the last action
        self._cursor = 0  # newest message id already seen by the test (see wait_for_message)

    def __repr__(self) -> str:
        return f"<SandboxUser {self.id} {self.first_name!r}>"

    def _path(self, action: str) -> str:
        return f"/sandbox/api/users/{self.id}/{action}"

    async def _act(self, action: str, **kwargs: Any) -> dict[str, Any]:
        result = await self.client.request("POST", self._path(action), **kwargs)
        self._action_seq = result.get("seq", self._action_seq)
        if self.client.wait_for_bot and result.get("update_id") is not None:
            await self.client.ensure_confirmed(result["update_id"])
        messages = await self.messages()
        if messages:
            self._cursor = max(self._cursor, messages[-1]["message_id"])
        return result

    async def send(self, text: str) -> dict[str, Any]:
        """Send a text message (a leading ``/command`` gets its bot_command entity)."""
        return await self._act("text", json={"text": text})

    async def press(self, button_text: str) -> dict[str, Any]:
        """Press an inline button of the newest keyboard that has it, else a reply-keyboard button."""
        return await self._act("press", json={"text": button_text})

    async def callback(self, message_id: int, data: str) -> dict[str, Any]:
        return await self._act("callback", json={"message_id": message_id, "data": data})

    async def share_contact(self, phone_number: str | None = None, user_id: int | None = None) -> dict:
        """Share a contact; defaults to the user's own phone number and id."""
        body: dict[str, Any] = {}
        if phone_number is not None:
            body["phone_number"] = phone_number
        if user_id is not None:
            body["user_id"] = user_id
        return await self._act("contact", json=body)

    async def send_document(
        self, filename: str, data: bytes, mime_type: str | None = None, caption: str | None = None
    ) -> dict[str, Any]:
        body = {
            "filename": filename,
            "content_base64": base64.b64encode(data).decode(),
            "mime_type": mime_type,
            "caption": caption,
        }
        return await self._act("document", json=body)

    async def block(self) -> dict[str, Any]:
        return await self._act("block")

    async def unblock(self) -> dict[str, Any]:
        return await self._act("unblock")

    async def messages(self, after: int = 0) -> list[MessageDict]:
        """All messages of the chat with id > ``after``, oldest first (deleted ones flagged)."""
        return await self.client.request("GET", self._path("messages"), params={"after": str(after)})

    async def bot_messages(self, after: int = 0) -> list[MessageDict]:
        return [m for m in await self.messages(after) if m["from_bot"] and not m["deleted"]]

    async def last_message(self) -> MessageDict | None:
        """The newest bot message that is not deleted, or None."""
        bot_messages = await self.bot_messages()
        return bot_messages[-1] if bot_messages else None

    async def bot_messages_since_last_action(self) -> list[MessageDict]:
        """Bot messages sent or edited since the last action, oldest first; deleted ones left out."""
        return [m for m in await self.bot_messages() if m["changed_seq"] > self._action_seq]

    async def texts_since_last_action(self, *, html: bool = False) -> str:
        """Those messages joined by newlines: the text (or caption) a person reads, or with
        ``html=True`` the HTML rebuilt from its entities, as aiogram's ``Message.html_text``."""
        messages = await self.bot_messages_since_last_action()
        if html:
            return "\n".join(m["html"] for m in messages)
        return "\n".join(m["text"] if m["text"] is not None else (m["caption"] or "") for m in messages)

    async def reply_keyboard(self) -> dict[str, Any] | None:
        data = await self.client.request("GET", self._path("keyboard"))
        return data["reply_keyboard"]

    async def wait_for_message(
        self,
        predicate: Callable[[MessageDict], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - the deadline spans several server-side waits
    ) -> MessageDict:
        """Wait for a bot message the test has not seen yet (e.g. one the bot sends on its own).

        "Seen" means: sent before the end of the last action, or returned by an earlier call.
        Raises TimeoutError if no matching message arrives within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        scanned = self._cursor
        while True:
            for message in await self.bot_messages(self._cursor):
                if predicate is None or predicate(message):
                    self._cursor = message["message_id"]
                    return message
                scanned = max(scanned, message["message_id"])
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no matching bot message for user {self.id} within {timeout}s")
            await self.client.request(
                "GET",
                self._path("wait_message"),
                params={"after": str(scanned), "timeout": str(min(remaining, 30.0))},
                timeout=aiohttp.ClientTimeout(total=remaining + 10),
            )
