"""Signing in and out: the one-time link from /console, the Mini App's initData, logout, language.

The link's token travels in the URL *fragment* (``/console/login#t=…``), which browsers never send
to a server: it appears in no access log, proxy log or Referer. The sign-in page's script posts it
(``POST /console/login``), and the answer sets the session cookie. The Mini App works the same way
with Telegram's ``tgWebAppData`` (also in the fragment), checked with aiogram's
``safe_parse_webapp_init_data`` against the bot token.
"""

from __future__ import annotations

from typing import NoReturn
from urllib.parse import urlsplit

from aiogram.utils.web_app import safe_parse_webapp_init_data
from aiohttp import web

from bot.console.core import CONSOLE, clear_session_cookie, ctx, public, render, set_session_cookie, url
from services import console_auth
from services.accounts import TelegramUser
from services.console_auth import ConsoleAuthError
from services.i18n import N_

routes = web.RouteTableDef()

REFUSALS = {
    "unknown": N_("This sign-in link is not valid. Send /console to the bot for a new one."),
    "used": N_("This sign-in link was already used. Send /console to the bot for a new one."),
    "expired": N_("This sign-in link has expired. Send /console to the bot for a new one."),
    "not_staff": N_("The console is for committee staff only."),
    "forged": N_("Telegram's signature of this Mini App is not valid. Close it and open it again."),
    "stale": N_("This Mini App was opened too long ago. Close it and open it again."),
}


def _login_page(request: web.Request, mode: str, *, refusal: str | None = None, status: int = 200) -> web.Response:
    return render(request, "login.html", status=status, mode=mode,
                  refusal=REFUSALS[refusal] if refusal else None,
                  signed_out="signed_out" in request.query)


def _refuse_another_site(request: web.Request) -> None:
    """403 for a sign-in posted by another site's page: it would sign this browser in to the poster's
    own account (login CSRF), and whatever its user then did would be done as someone else. Browsers
    say where a form comes from (``Sec-Fetch-Site``, ``Origin``); a request that says nothing is taken
    as it comes (an old browser; the link's token is still needed)."""
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        raise web.HTTPForbidden()
    origin = request.headers.get("Origin")
    if origin is None:
        return
    here = {urlsplit("//" + request.host).hostname, urlsplit(request.app[CONSOLE].cfg.public_url).hostname} - {None}
    if urlsplit(origin).hostname not in here:  # "null" (an opaque origin) included
        raise web.HTTPForbidden()


async def _signed_in(request: web.Request, opened: console_auth.OpenedSession, via: str) -> NoReturn:
    """The new session's cookie, replacing the session this browser had (which ends: a sign-in never
    keeps an old session id alive beside the new one)."""
    c = ctx(request)
    if c.signed_in is not None and c.signed_in.session.id != opened.session_id:
        await console_auth.end_session(c.db, c.signed_in, now=c.now)
    redirect = web.HTTPSeeOther(url("/"))
    set_session_cookie(redirect, request.app[CONSOLE].cfg, opened.token, via=via)
    raise redirect


@routes.get("/login")
@public
async def login_page(request: web.Request) -> web.Response:
    if ctx(request).signed_in is not None and "signed_out" not in request.query:
        raise web.HTTPSeeOther(url("/"))
    return _login_page(request, "link")


@routes.post("/login")
@public
async def login(request: web.Request) -> web.Response:
    _refuse_another_site(request)
    c = ctx(request)
    form = await request.post()
    token = form.get("token")
    try:
        opened = await console_auth.redeem_link(c.db, token if isinstance(token, str) else "", now=c.now,
                                                cfg=c.console.cfg, default_locale=c.console.app_config.default_locale)
    except ConsoleAuthError as err:
        # Returned, not raised: the refusal is audited and a spent link stays spent.
        return _login_page(request, "link", refusal=err.reason, status=403)
    await _signed_in(request, opened, console_auth.VIA_LINK)


@routes.get("/app")
@public
async def mini_app_page(request: web.Request) -> web.Response:
    return _login_page(request, "mini_app")


@routes.post("/app")
@public
async def mini_app_login(request: web.Request) -> web.Response:
    _refuse_another_site(request)
    c = ctx(request)
    form = await request.post()
    raw = form.get("init_data")
    try:
        data = safe_parse_webapp_init_data(c.console.rt.bot.token, raw if isinstance(raw, str) else "")
    except (ValueError, TypeError):  # a bad signature, or fields that do not parse
        return _login_page(request, "mini_app", refusal="forged", status=403)
    if data.user is None:
        return _login_page(request, "mini_app", refusal="forged", status=403)
    user = TelegramUser(data.user.id, data.user.first_name, data.user.last_name, data.user.username,
                        data.user.language_code)
    try:
        opened = await console_auth.open_mini_app_session(
            c.db, user, signed_at=data.auth_date, now=c.now, cfg=c.console.cfg,
            default_locale=c.console.app_config.default_locale)
    except ConsoleAuthError as err:
        return _login_page(request, "mini_app", refusal="stale" if err.reason == "expired" else err.reason,
                           status=403)
    await _signed_in(request, opened, console_auth.VIA_MINI_APP)


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    c = ctx(request)
    assert c.signed_in is not None
    await console_auth.end_session(c.db, c.signed_in, now=c.now)
    redirect = web.HTTPSeeOther(url("/login", signed_out=1))
    clear_session_cookie(redirect, c.console.cfg)
    raise redirect


@routes.post("/lang")
async def switch_language(request: web.Request) -> web.Response:
    c = ctx(request)
    assert c.signed_in is not None
    form = await request.post()
    locale = form.get("locale")
    await console_auth.set_locale(c.db, c.signed_in, locale if isinstance(locale, str) else "")
    back = form.get("next")
    # Only back to a console page: never an open redirect.
    target = back if isinstance(back, str) and back.startswith("/console/") and "//" not in back else url("/")
    raise web.HTTPSeeOther(target)
