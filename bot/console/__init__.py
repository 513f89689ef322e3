"""The staff web console at /console (aiohttp + Jinja2), on the bot's one web application.

A sub-application mounted at ``/console``: its own middlewares (sign-in, CSRF, error pages, see
``bot.console.core``) apply to console routes only. Pages live in ``bot.console.pages`` (one module
per page: ``routes`` and ``NAV``); ``docs/ARCHITECTURE.md`` "The staff console" says how to add one.
"""

from __future__ import annotations

from aiohttp import web

from bot.console import auth
from bot.console.core import (
    CONSOLE,
    PREFIX,
    STATIC,
    Console,
    create_env,
    error_pages,
    nav_entries,
    security_headers,
    signed_in_request,
)


def build_console_app(console: Console) -> web.Application:
    """The console's sub-application (not yet mounted)."""
    from bot.console.pages import PAGES

    sub = web.Application(middlewares=[error_pages, signed_in_request])
    sub[CONSOLE] = console
    sub.on_response_prepare.append(security_headers)
    sub.add_routes(auth.routes)
    for page in PAGES:
        sub.add_routes(page.routes)
        console.nav.extend(page.NAV)
        if hasattr(page, "setup"):  # a page with state of its own (live streams, background work)
            page.setup(sub)
    console.nav[:] = nav_entries(console.nav)
    sub.router.add_static("/static", STATIC, name="static")
    return sub


def setup(app: web.Application) -> None:
    """Add the console's routes to ``app``; the running bot is ``app[bot.web.RUNTIME_KEY]``."""
    from bot.web import RUNTIME_KEY  # bot.web imports this package: read its key at call time

    rt = app[RUNTIME_KEY]
    console = Console(rt=rt, cfg=rt.dp["console_config"], app_config=rt.dp["config"], env=create_env())

    async def to_console(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(PREFIX + "/")

    # Before the sub-application: both are indexed under "/console" and the first registered wins.
    app.router.add_get(PREFIX, to_console)
    app.add_subapp(PREFIX, build_console_app(console))
