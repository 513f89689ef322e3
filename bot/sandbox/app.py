"""The sandbox application factory."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from bot.sandbox import api, control, webapp, webhook
from bot.sandbox.keys import PAGES_KEY, SANDBOX_KEY
from bot.sandbox.pages import Pages, Translations
from bot.sandbox.state import Sandbox


def create_sandbox_app(
    sandbox: Sandbox | None = None,
    *,
    translate: Translations | None = None,
    translations_for: Callable[[str], Translations] | None = None,
) -> web.Application:
    """A fresh sandbox server; every app owns its own :class:`Sandbox` unless one is passed in.

    Pages are translated with ``translate``, or per language with ``translations_for`` (a
    ``language_code`` → translations function): a chat page follows its user's language.
    """
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SANDBOX_KEY] = sandbox if sandbox is not None else Sandbox()
    app[PAGES_KEY] = Pages(translate, translations_for)

    async def release_waiters(app: web.Application) -> None:
        # Long polls and wait endpoints would otherwise hold the shutdown for their full timeout.
        app[SANDBOX_KEY].close()

    app.on_shutdown.append(release_waiters)
    api.add_routes(app)
    control.add_routes(app)
    webapp.add_routes(app)  # Mini Apps: the menu button's Web App with signed initData
    webhook.setup(app)  # delivers updates by POST while a webhook is set
    return app
