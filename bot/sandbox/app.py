"""The sandbox application factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from bot.sandbox import api, control
from bot.sandbox.keys import JINJA_KEY, SANDBOX_KEY
from bot.sandbox.state import Sandbox

TEMPLATES_DIR = Path(__file__).parent / "templates"


def create_jinja_env(translate: Any = None) -> jinja2.Environment:
    """Jinja2 environment for the chat pages; ``translate`` has ``gettext`` and ``ngettext``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
    )
    if translate is not None:
        env.install_gettext_callables(  # type: ignore[attr-defined]
            gettext=translate.gettext, ngettext=translate.ngettext, newstyle=True
        )
    else:
        env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    return env


def create_sandbox_app(sandbox: Sandbox | None = None, *, translate: Any = None) -> web.Application:
    """A fresh sandbox server; every app owns its own :class:`Sandbox` unless one is passed in."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SANDBOX_KEY] = sandbox if sandbox is not None else Sandbox()
    app[JINJA_KEY] = create_jinja_env(translate)

    async def release_waiters(app: web.Application) -> None:
        # Long polls and wait endpoints would otherwise hold the shutdown for their full timeout.
        app[SANDBOX_KEY].close()

    app.on_shutdown.append(release_waiters)
    api.add_routes(app)
    control.add_routes(app)
    return app
