"""Typed application keys, in their own module so route modules can import them without cycles."""

from __future__ import annotations

from aiohttp import web

from bot.sandbox.pages import Pages
from bot.sandbox.state import Sandbox

SANDBOX_KEY = web.AppKey("sandbox", Sandbox)
PAGES_KEY = web.AppKey("sandbox_pages", Pages)
