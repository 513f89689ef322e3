"""The bot's one aiohttp application: Telegram webhooks, health and metrics, and the staff console.

``run --webhook`` serves it on WEB_HOST/WEB_PORT; ``demo`` adds its routes to the sandbox's app, so
every page is reachable on one port in every deployment.
"""

from __future__ import annotations

from aiohttp import web

from bot import console
from bot.app import Runtime

RUNTIME_KEY = web.AppKey("runtime", Runtime)


def add_bot_routes(app: web.Application, rt: Runtime) -> None:
    """Mount what the running bot serves over HTTP on ``app`` (before the app starts)."""
    app[RUNTIME_KEY] = rt
    console.setup(app)


def build_web_app(rt: Runtime) -> web.Application:
    """A fresh application with every route of the running bot."""
    app = web.Application()
    add_bot_routes(app, rt)
    return app
