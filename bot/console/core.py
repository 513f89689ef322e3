"""The console's core: the request context, sign-in and CSRF checks, rendering, navigation.

Every console request runs through two middlewares (see ``docs/ARCHITECTURE.md`` "The staff console"):

1. ``error_pages`` turns a 403/404/… into a page of the console's layout, in the reader's language;
2. ``signed_in_request`` opens one database session for the request (committed when the handler
   returns, rolled back when it fails), finds the staff member behind the session cookie
   (``services.console_auth.resume``, which also ends idle sessions), sends anyone else to the
   sign-in page, refuses a state-changing request without the session's CSRF token (403) and sets
   the locale. Routes marked :func:`public` (sign-in pages) skip the sign-in and CSRF checks.

A page handler reads :func:`ctx` (database session, ``now``, the :class:`~services.scope.Actor`
and configs) and answers with :func:`render`; it calls services with ``c.actor`` so that every
query is scoped by the same functions the bot uses, and turns "not in your area" into
:func:`not_found`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import Runtime
from notifications import format as fmt
from services import console_auth
from services.checkins.common import account_name
from services.config import AppConfig
from services.console_auth import ConsoleConfig, SignedIn
from services.i18n import N_, gettext, ngettext, normalize_locale, use_locale
from services.scope import Actor
from services.tags import tag_name

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/console"
COOKIE = "cc_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class NavItem:
    """One entry of the console's menu: ``label`` is a msgid (``N_()``), ``path`` is below /console."""

    key: str
    label: str
    path: str
    order: int = 100


@dataclass
class Console:
    """What the console needs of the running bot, kept on its sub-application."""

    rt: Runtime
    cfg: ConsoleConfig
    app_config: AppConfig
    env: jinja2.Environment
    nav: list[NavItem] = field(default_factory=list)

    def now(self) -> datetime:
        return self.rt.clock()

    def data(self, name: str) -> Any:
        """A typed config the dispatcher holds (``checkin_config``, ``poll_config``, …)."""
        return self.rt.dp[name]


CONSOLE = web.AppKey("console", Console)


@dataclass
class Ctx:
    """One console request: its database session and time, and who is asking (None on public pages)."""

    console: Console
    db: AsyncSession
    now: datetime
    signed_in: SignedIn | None
    locale: str
    csrf: str = ""  # the session's CSRF token (empty before sign-in)

    @property
    def actor(self) -> Actor:
        if self.signed_in is None:
            raise web.HTTPForbidden()
        return self.signed_in.actor

    @property
    def tz(self) -> ZoneInfo:
        return self.console.app_config.tz


_CTX = web.RequestKey("console_ctx", Ctx)


def ctx(request: web.Request) -> Ctx:
    """The console context of a request (set by the middleware)."""
    return request[_CTX]


def public(handler: Handler) -> Handler:
    """Mark a route that anyone may open (sign-in pages): no session needed, no CSRF token checked."""
    handler.console_public = True  # type: ignore[attr-defined]
    return handler


def not_found() -> NoReturn:
    """Answer 404: what the id names does not exist, or lies outside the staff member's area (the two
    are never told apart)."""
    raise web.HTTPNotFound()


# --- rendering ------------------------------------------------------------------------------------


def url(path: str, /, **query: Any) -> str:
    """A console URL: ``url("/residents", q="王", page=2)`` → ``/console/residents?q=%E7%8E%8B&page=2``
    (empty values left out)."""
    params = {k: v for k, v in query.items() if v not in (None, "")}
    return PREFIX + path + (("?" + urlencode(params)) if params else "")


def create_env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             extensions=["jinja2.ext.i18n"])
    # newstyle gettext: {{ _("Hello, %(name)s", name=x) }} escapes x; the locale is the request's.
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(url=url, room_text=fmt.room_text, resident_status=fmt.resident_status, yes_no=fmt.yes_no,
                       role_name=fmt.role_name, person_name=fmt.person_name, account_name=account_name)
    return env


def render(request: web.Request, template: str, /, *, status: int = 200, **data: Any) -> web.Response:
    """Render a console page (autoescaped, in the request's language) with the layout's context."""
    html = render_text(request, template, **data)
    return web.Response(text=html, content_type="text/html", status=status)


def render_text(request: web.Request, template: str, /, *, locale: str | None = None, **data: Any) -> str:
    console = request.app[CONSOLE]
    c: Ctx | None = request.get(_CTX)
    tz = console.app_config.tz
    locale = locale or (c.locale if c else console.app_config.default_locale)
    signed_in = c is not None and c.signed_in is not None
    context = {
        "c": c,
        "actor": c.actor if signed_in and c else None,
        "csrf": c.csrf if c else "",
        "locale": locale,
        "path": request.path,
        "full_path": request.path_qs,
        "nav": console.nav if signed_in else [],
        "local_time": lambda when: fmt.local_time(when, tz, with_zone=False) if when else "—",
        "tag_label": lambda tag: tag_name(tag, locale),
        **data,
    }
    with use_locale(locale):
        return console.env.get_template(template).render(context)


def csrf_field(token: str) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)


# --- sessions and cookies -------------------------------------------------------------------------


def set_session_cookie(response: web.StreamResponse, cfg: ConsoleConfig, token: str, *, via: str) -> None:
    """The session cookie: HttpOnly, SameSite=Lax, Secure behind HTTPS, for /console only. A Mini App
    session over HTTPS is SameSite=None: Telegram's web and desktop apps show the Mini App in a frame
    of their own site, where a Lax cookie is never sent (the CSRF token still guards every change)."""
    samesite = "None" if via == console_auth.VIA_MINI_APP and cfg.secure else "Lax"
    response.set_cookie(COOKIE, token, path=PREFIX, httponly=True, samesite=samesite, secure=cfg.secure)


def clear_session_cookie(response: web.StreamResponse, cfg: ConsoleConfig) -> None:
    response.del_cookie(COOKIE, path=PREFIX, httponly=True, samesite="Lax", secure=cfg.secure)


def request_locale(request: web.Request, default: str) -> str:
    """For pages before sign-in: the browser's first language (zh_Hans or en), else the default."""
    header = request.headers.get("Accept-Language", "")
    first = header.split(",", 1)[0].split(";", 1)[0].strip()
    return normalize_locale(first, default) if first and first != "*" else default


async def _csrf_value(request: web.Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


@web.middleware
async def signed_in_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None or isinstance(match.route.resource, web.StaticResource):
        return await handler(request)
    console = request.app[CONSOLE]
    is_public = getattr(match.handler, "console_public", False)
    now = console.now()
    default = console.app_config.default_locale
    async with console.rt.sessions() as db:
        try:
            signed_in = await console_auth.resume(db, request.cookies.get(COOKIE), now=now, cfg=console.cfg,
                                                  default_locale=default)
            if signed_in is None and not is_public:
                await db.commit()  # an idle session ends for good
                redirect = web.HTTPSeeOther(url("/login"))
                if COOKIE in request.cookies:
                    clear_session_cookie(redirect, console.cfg)
                raise redirect
            if signed_in is not None and not is_public and request.method not in SAFE_METHODS \
                    and not console_auth.check_csrf(signed_in.session, console.app_config.secret_key,
                                                    await _csrf_value(request)):
                await db.commit()
                raise web.HTTPForbidden(reason="CSRF token missing or wrong")
            locale = signed_in.actor.locale if signed_in else request_locale(request, default)
            csrf = console_auth.csrf_token(signed_in.session, console.app_config.secret_key) if signed_in else ""
            request[_CTX] = Ctx(console, db, now, signed_in, locale, csrf)
            with use_locale(locale):
                response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                await db.commit()  # a redirect raised after a change keeps the change
                raise
            # The page is drawn before the rollback, which expires what it shows (the staff member).
            page = error_page(request, exc) if _CTX in request else None
            await db.rollback()
            if page is None:
                raise
            return page
        except BaseException:
            await db.rollback()
            raise
        await db.commit()
        return response


ERROR_TITLES = {
    400: N_("This request is not valid."),
    403: N_("You may not do this here."),
    404: N_("Not found, or not in your area."),
    405: N_("This request is not valid."),
    413: N_("This file is too large."),
}


def error_page(request: web.Request, exc: web.HTTPException) -> web.Response | None:
    """A 4xx as a page of the console (None: a status with no page of its own, left to aiohttp)."""
    if exc.status not in ERROR_TITLES:
        return None
    c: Ctx | None = request.get(_CTX)
    # Before sign-in (or on an unknown path) the page still speaks the browser's language.
    locale = c.locale if c else request_locale(request, request.app[CONSOLE].app_config.default_locale)
    with use_locale(locale):
        html = render_text(request, "error.html", locale=locale, status=exc.status,
                           message=gettext(ERROR_TITLES[exc.status]))
    return web.Response(text=html, status=exc.status, content_type="text/html")


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors raised outside a signed-in request (an unknown path, a static file) as console pages."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        page = error_page(request, exc)
        if page is None:
            raise
        return page


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """No sniffing, no framing except by Telegram's own apps and this site, no caching of pages; over
    HTTPS (PUBLIC_URL), browsers are told to come back by HTTPS only (HSTS, a year)."""
    if request.app[CONSOLE].cfg.secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'self' https://web.telegram.org "
        "https://*.telegram.org")
    if not request.path.startswith(PREFIX + "/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


def nav_entries(items: Iterator[NavItem] | list[NavItem]) -> list[NavItem]:
    return sorted(items, key=lambda item: (item.order, item.key))


def query_int(query: Mapping[str, str], name: str, default: int = 1, *, lo: int = 1, hi: int = 1_000_000) -> int:
    """A whole number from the query string within [lo, hi]; anything else gives ``default``."""
    raw = (query.get(name) or "").strip()
    if not (raw.isascii() and raw.isdigit()):
        return default
    return min(max(int(raw), lo), hi)
