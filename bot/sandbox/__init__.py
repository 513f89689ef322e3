"""A local Telegram Bot API server for tests and a browser demo (no real Telegram involved)."""

from bot.sandbox.app import create_sandbox_app
from bot.sandbox.keys import SANDBOX_KEY
from bot.sandbox.state import Sandbox

__all__ = ["SANDBOX_KEY", "Sandbox", "create_sandbox_app"]
