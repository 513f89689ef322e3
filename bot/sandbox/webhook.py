"""Webhook delivery, as Telegram does it: while a webhook is set, queued updates are POSTed to it.

Each update is one JSON POST with ``X-Telegram-Bot-Api-Secret-Token`` (when setWebhook gave a
secret). A 2xx answer delivers it; a refused connection, a timeout or any other status is recorded
for getWebhookInfo's ``last_error_message`` and the update is tried again with backoff (dropped after
``Sandbox.webhook_max_attempts``). At most ``max_connections`` POSTs are in flight; with one, updates
go strictly in order. The queue itself is :class:`bot.sandbox.state.Sandbox`'s, shared with getUpdates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import aiohttp
from aiohttp import web

from bot.sandbox.keys import SANDBOX_KEY
from bot.sandbox.state import QueuedUpdate, Sandbox

log = logging.getLogger("bot.sandbox.webhook")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
REQUEST_TIMEOUT = 30.0  # seconds for one POST (Telegram waits about a minute)
IDLE_WAKEUP = 1.0


def _status_error(status: int, reason: str | None) -> str:
    # The wording of getWebhookInfo at Telegram, e.g. "Wrong response from the webhook: 403 Forbidden".
    return f"Wrong response from the webhook: {status} {reason or ''}".rstrip()


class WebhookDeliverer:
    """The task that POSTs the sandbox's queued updates to its webhook (one per sandbox app)."""

    def __init__(self, sandbox: Sandbox, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.sandbox = sandbox
        self.timeout = timeout
        self._posts: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        sb = self.sandbox
        loop = asyncio.get_running_loop()
        # No connection reuse: each POST picks a worker afresh, as the kernel's SO_REUSEPORT spreads
        # new connections (and a killed worker's kept-alive connection is never reused).
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=self.timeout)) as http:
            try:
                while not sb.closing:
                    for queued in sb.webhook_due(loop.time()):
                        queued.in_flight = True
                        task = asyncio.create_task(self._post(http, queued))
                        self._posts.add(task)
                        task.add_done_callback(self._posts.discard)
                    retry = sb.next_webhook_retry()
                    wait = IDLE_WAKEUP if retry is None else min(IDLE_WAKEUP, max(0.0, retry - loop.time()))
                    # Until something is due, or a failure set a new retry time to sleep towards.
                    await sb.wait_until(
                        lambda: bool(sb.webhook_due(loop.time())) or sb.next_webhook_retry() != retry, wait)  # noqa: B023
            finally:
                for task in list(self._posts):
                    task.cancel()
                await asyncio.gather(*self._posts, return_exceptions=True)

    async def _post(self, http: aiohttp.ClientSession, queued: QueuedUpdate) -> None:
        sb = self.sandbox
        hook = sb.webhook
        loop = asyncio.get_running_loop()
        if hook is None:  # deleted meanwhile: the update stays queued for getUpdates
            queued.in_flight = False
            return
        headers = {"Content-Type": "application/json"}
        if hook.secret_token:
            headers[SECRET_HEADER] = hook.secret_token
        try:
            async with http.post(hook.url, data=json.dumps(queued.payload, ensure_ascii=False),
                                 headers=headers) as resp:
                await resp.read()
                ok, error = 200 <= resp.status < 300, _status_error(resp.status, resp.reason)
        except asyncio.CancelledError:
            queued.in_flight = False
            raise
        except TimeoutError:
            ok, error = False, "Read timeout expired"
        except aiohttp.ClientConnectorError:
            ok, error = False, "Connection refused"
        except aiohttp.ClientError as exc:
            ok, error = False, f"Connection error: {type(exc).__name__}"
        if ok:
            sb.webhook_delivered(queued)
        else:
            log.debug("sandbox webhook: update %d not delivered (%s)", queued.update_id, error)
            sb.webhook_failed(queued, error, loop.time())


def setup(app: web.Application) -> None:
    """Run a :class:`WebhookDeliverer` for the app's sandbox while the app runs."""

    async def deliver(app: web.Application):
        task = asyncio.create_task(WebhookDeliverer(app[SANDBOX_KEY]).run())
        yield
        app[SANDBOX_KEY].close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(deliver)
