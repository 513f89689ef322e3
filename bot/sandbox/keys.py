"""Typed application keys, in their own module so route modules can import them without cycles."""

from __future__ import annotations

import jinja2
from aiohttp import web

from bot.sandbox.state import Sandbox

SANDBOX_KEY = web.AppKey("sandbox", Sandbox)
JINJA_KEY = web.AppKey("sandbox_jinja", jinja2.Environment)
