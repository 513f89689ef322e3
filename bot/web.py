"""The bot's one aiohttp application: Telegram webhooks, health and metrics, and the staff console.

``run --webhook`` serves it on WEB_HOST/WEB_PORT; ``demo`` adds its routes to the sandbox's app, so
every page is reachable on one port in every deployment.

Webhook updates go through aiogram's request handler into ``dp.feed_raw_update``: the same
dispatcher, middlewares, events isolation and once-only checks as long polling. Telegram gets its
200 at once and the update is handled in a task (a slow handler never holds Telegram's connection,
and nothing is answered inside the webhook response); on shutdown the tasks in hand are finished
before the runtime closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Callable
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.dispatcher.middlewares.user_context import UserContextMiddleware
from aiogram.fsm.storage.base import StorageKey
from aiogram.methods import TelegramMethod
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from pydantic import ValidationError

from bot import console
from bot.app import Runtime, background_running
from bot.health import Health
from bot.metrics import CONTENT_TYPE, metrics_of
from bot.middlewares import ChatOrder, holding

log = logging.getLogger("bot.web")

RUNTIME_KEY = web.AppKey("runtime", Runtime)
HEALTH_KEY = web.AppKey("health", Health)
WEBHOOK_PATH = "/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DRAIN_SECONDS = 30.0  # on shutdown, updates in hand get this long to finish
# Updates handled at once by one worker. Past it a webhook request waits for a free place before its
# 200, so Telegram (at most max_connections requests in flight, 40 by default) slows down instead of
# the worker queueing unbounded tasks for its 20 database connections.
MAX_IN_HAND = 50
Turn = contextlib.AsyncExitStack  # a chat's turn taken for one update (ChatOrder.hold)


def add_bot_routes(app: web.Application, rt: Runtime) -> None:
    """Mount what the running bot serves over HTTP on ``app`` (before the app starts)."""
    app[RUNTIME_KEY] = rt
    app[HEALTH_KEY] = Health(rt)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)

    async def close_health(app: web.Application) -> None:
        await app[HEALTH_KEY].close()

    app.on_cleanup.append(close_health)
    console.setup(app)


def build_web_app(rt: Runtime) -> web.Application:
    """A fresh application with every route of the running bot."""
    app = web.Application()
    add_bot_routes(app, rt)
    return app


async def healthz(request: web.Request) -> web.Response:
    report = await request.app[HEALTH_KEY].report()
    return web.json_response(report.as_dict(), status=200 if report.ok else 503,
                             headers={"Cache-Control": "no-store"})


async def metrics(request: web.Request) -> web.Response:
    body = await request.app[HEALTH_KEY].metrics_text()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


# ---------------------------------------------------------------------- webhook


class WebhookHandler(SimpleRequestHandler):
    """aiogram's handler, with 403 for a wrong secret, counted, and a drain instead of closing the
    bot's session on shutdown (the runtime owns the session)."""

    def __init__(self, dispatcher: Dispatcher, bot: Bot, *, secret_token: str, max_in_hand: int = MAX_IN_HAND,
                 **data: Any) -> None:
        super().__init__(dispatcher, bot, handle_in_background=True, secret_token=secret_token, **data)
        self.rejected = metrics_of(dispatcher).webhook_rejected
        self._places = asyncio.Semaphore(max_in_hand)

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:
        # Never "no secret, no check": the secret is always set (bot.settings.ensure_webhook_secret).
        # Compared as bytes: a header that is not ASCII is a wrong secret, not an error.
        given = telegram_secret_token.encode("utf-8", "surrogateescape")
        return bool(self.secret_token) and secrets.compare_digest(given, (self.secret_token or "").encode())

    async def handle(self, request: web.Request) -> web.Response:
        if not self.verify_secret(request.headers.get(SECRET_HEADER, ""), self.bot):
            self.rejected.inc()
            log.warning("webhook: refused a request without the secret token from %s", request.remote)
            return web.Response(text="Forbidden", status=403)
        try:
            update = await request.json(loads=self.bot.session.json_loads)
        except ValueError:
            return web.Response(text="Bad Request: the body is not JSON", status=400)
        if not isinstance(update, dict):
            return web.Response(text="Bad Request: an update is a JSON object", status=400)
        try:
            event, held, turn = await self._take_turn(update)
        except Exception as exc:  # the chats' turns live in Redis, and Redis does not answer
            log.error("webhook: update %s not taken, its chat's turn could not be had (%s); Telegram "
                      "delivers it again", update.get("update_id"), type(exc).__name__)
            return web.Response(text="Service Unavailable: try again", status=503)
        await self._places.acquire()
        with holding(held):
            task = asyncio.create_task(self._feed(event or update, turn))
        self._background_feed_update_tasks.add(task)
        task.add_done_callback(self._background_feed_update_tasks.discard)
        task.add_done_callback(lambda _task: self._places.release())
        return web.json_response({}, dumps=self.bot.session.json_dumps)

    async def _take_turn(self, update: dict[str, Any]) -> tuple[Update | None, StorageKey | None, Turn | None]:
        """The update, and its chat's turn taken before Telegram gets the 200: a chat's next update
        then waits for this one at whichever worker it arrives (with Redis, across workers)."""
        try:
            event = Update.model_validate(update, context={"bot": self.bot})
        except ValidationError:
            return None, None, None  # aiogram refuses it in the task, as for polling
        order = self.dispatcher.fsm.events_isolation
        key = event_key(self.dispatcher, self.bot, event)
        if key is None or not isinstance(order, ChatOrder):
            return event, None, None
        return event, key, await order.hold(key)

    async def _feed(self, update: Update | dict[str, Any], turn: Turn | None) -> None:
        try:
            if isinstance(update, Update):
                result = await self.dispatcher.feed_update(bot=self.bot, update=update, **self.data)
            else:
                result = await self.dispatcher.feed_raw_update(bot=self.bot, update=update, **self.data)
            if isinstance(result, TelegramMethod):
                await self.dispatcher.silent_call_request(bot=self.bot, result=result)
        except Exception as exc:
            # aiogram has logged a handler's exception with the update id; an update that is not an
            # Update at all never reached it.
            update_id = update.update_id if isinstance(update, Update) else update.get("update_id")
            log.debug("webhook: update %s not handled (%s)", update_id, type(exc).__name__)
        finally:
            if turn is not None:
                try:
                    await turn.aclose()
                except Exception as exc:  # Redis went away meanwhile: its lock there lapses by itself (60 s)
                    log.warning("webhook: the chat's turn of update %s could not be given back (%s)",
                                update.update_id if isinstance(update, Update) else update.get("update_id"),
                                type(exc).__name__)

    async def close(self) -> None:
        """Finish the updates in hand (on the app's shutdown, after the listener stopped)."""
        pending = set(self._background_feed_update_tasks)
        if not pending:
            return
        log.info("webhook: finishing %d update(s) in hand", len(pending))
        _done, late = await asyncio.wait(pending, timeout=DRAIN_SECONDS)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def event_key(dp: Dispatcher, bot: Bot, event: Update | None) -> StorageKey | None:
    """The key the dispatcher's FSM middleware locks for ``event`` (None: no chat or user)."""
    if event is None:
        return None
    context = UserContextMiddleware.resolve_event_context(event)
    fsm = dp.fsm.resolve_context(bot, context.chat_id, context.user_id, context.thread_id,
                                 context.business_connection_id)
    return fsm.key if fsm else None


def webhook_url(rt: Runtime) -> str:
    if not rt.settings.public_url:
        raise SystemExit("configuration error: PUBLIC_URL: required by run --webhook "
                         "(the public https:// base URL Telegram reaches)")
    return rt.settings.public_url + WEBHOOK_PATH


def add_webhook_route(app: web.Application, rt: Runtime) -> WebhookHandler:
    """``POST /webhook`` on ``app``: updates from Telegram carrying the secret token."""
    handler = WebhookHandler(rt.dp, rt.bot, secret_token=rt.settings.ensure_webhook_secret())
    handler.register(app, path=WEBHOOK_PATH)
    return handler


async def set_webhook(rt: Runtime) -> None:
    """Point Telegram at this deployment (updates waiting at Telegram are kept, not dropped)."""
    await rt.bot.set_webhook(webhook_url(rt), secret_token=rt.settings.ensure_webhook_secret(),
                             allowed_updates=rt.dp.resolve_used_update_types(), drop_pending_updates=False)
    log.info("webhook set to %s", webhook_url(rt))


async def run_webhook(rt: Runtime, *, call_set_webhook: bool = True, stop: asyncio.Event | None = None,
                      handle_signals: bool = True, ready: Callable[[str], None] | None = None) -> None:
    """Serve the web app with the webhook on WEB_HOST/WEB_PORT (SO_REUSEPORT, so that several
    workers share the port), plus the background jobs, until ``stop`` or SIGTERM/SIGINT."""
    webhook_url(rt)  # fail before binding anything when PUBLIC_URL is missing
    stop = stop or asyncio.Event()
    app = build_web_app(rt)
    add_webhook_route(app, rt)
    loop = asyncio.get_running_loop()
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    data = {"dispatcher": rt.dp, **rt.dp.workflow_data}
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    try:
        async with background_running(rt):
            await rt.dp.emit_startup(bot=rt.bot, **data)
            try:
                await runner.setup()
                site = web.TCPSite(runner, rt.settings.web_host, rt.settings.web_port, reuse_port=True)
                await site.start()
                if call_set_webhook:
                    await set_webhook(rt)
                host, port = runner.addresses[0][:2]
                address = f"http://{host}:{port}"
                log.info("serving the webhook on %s%s", address, WEBHOOK_PATH)
                if ready is not None:
                    ready(address)
                await stop.wait()
            finally:
                # Stop listening, finish the updates in hand (handler.close), then the dispatcher.
                await runner.cleanup()
                await rt.dp.emit_shutdown(bot=rt.bot, **data)
    finally:
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)
