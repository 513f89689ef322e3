"""The staff web console at /console (aiohttp + Jinja2), on the bot's one web application."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Add the console's routes to ``app``; the running bot is ``app[bot.web.RUNTIME_KEY]``."""
