"""Mini Apps in the sandbox: a panel that opens the chat's menu-button Web App the way Telegram does.

Telegram opens a Mini App at its URL with the launch parameters in the fragment
(``#tgWebAppData=<initData>&tgWebAppVersion=…``); ``initData`` is signed with the bot's token:
``secret = HMAC_SHA256(key="WebAppData", msg=token)``, ``hash = HMAC_SHA256(key=secret,
msg=data_check_string)`` where the data-check-string is every other field as ``key=value``, sorted
by key and joined by newlines (core.telegram.org/bots/webapps, "Validating data received via the
Mini App"). The sandbox learns the token from the bot's own Bot API calls, as Telegram knows it.

- ``GET /sandbox/webapp/{uid}``: the panel, the Mini App in a phone-sized frame;
- ``GET /sandbox/api/users/{uid}/web_app``: the same as JSON (``url`` with the fragment, ``init_data``)
  for tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from bot.sandbox.keys import PAGES_KEY, SANDBOX_KEY
from bot.sandbox.state import SandboxLookupError

WEB_APP_VERSION = "8.0"


@dataclass
class BotToken:
    """The token the bot calls the sandbox with (None until its first call)."""

    value: str | None = None


TOKEN_KEY = web.AppKey("sandbox_bot_token", BotToken)


def sign_init_data(token: str, user: dict[str, Any], *, auth_date: int | None = None,
                   query_id: str | None = None, **fields: str) -> str:
    """``initData`` as Telegram makes it for ``user`` (a WebAppUser as a dict), signed with ``token``."""
    data = {"query_id": query_id or "AA" + secrets.token_urlsafe(12),
            "user": json.dumps(user, ensure_ascii=False, separators=(",", ":")),
            "auth_date": str(int(time.time()) if auth_date is None else auth_date), **fields}
    check = "\n".join(f"{key}={data[key]}" for key in sorted(data))
    secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    data["hash"] = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    return urlencode(data, quote_via=quote)


def launch_url(url: str, init_data: str, platform: str = "web") -> str:
    """The Mini App's URL with Telegram's launch parameters in the fragment."""
    fragment = urlencode({"tgWebAppData": init_data, "tgWebAppVersion": WEB_APP_VERSION,
                          "tgWebAppPlatform": platform}, quote_via=quote)
    return f"{url.split('#', 1)[0]}#{fragment}"


def _web_app_user(user: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": user.id, "first_name": user.first_name}
    for name in ("last_name", "username", "language_code"):
        if getattr(user, name, None):
            out[name] = getattr(user, name)
    out["allows_write_to_pm"] = True
    return out


def _launch(request: web.Request) -> tuple[Any, str | None, str | None]:
    """(the user, the launch URL, the initData) of the user's chat; URLs None without a Mini App."""
    sandbox = request.app[SANDBOX_KEY]
    try:
        user = sandbox.get_user(int(request.match_info["uid"]))
    except (SandboxLookupError, ValueError):
        raise web.HTTPNotFound() from None
    button = sandbox.get_menu_button(user.id)
    url = (button.get("web_app") or {}).get("url") if button.get("type") == "web_app" else None
    token = request.app[TOKEN_KEY].value
    if not url or not token:
        return user, None, None
    chat_instance = str(int(hashlib.sha256(f"sandbox-chat:{user.id}".encode()).hexdigest()[:15], 16))
    init_data = sign_init_data(token, _web_app_user(user), chat_type="sender", chat_instance=chat_instance)
    return user, launch_url(url, init_data), init_data


async def web_app_page(request: web.Request) -> web.Response:
    user, url, _init_data = _launch(request)
    html = request.app[PAGES_KEY].render("webapp.html", user.language_code, user=user.as_dict(), url=url)
    return web.Response(text=html, content_type="text/html")


async def web_app_json(request: web.Request) -> web.Response:
    _user, url, init_data = _launch(request)
    if url is None:
        return web.json_response({"error": "this chat has no Mini App menu button (or the bot never called)"},
                                 status=404)
    return web.json_response({"url": url, "init_data": init_data})


@web.middleware
async def remember_token(request: web.Request, handler) -> web.StreamResponse:
    response = await handler(request)
    token = request.match_info.get("token")
    if token and response.status == 200 and request.match_info.get("method"):
        request.app[TOKEN_KEY].value = token
    return response


def add_routes(app: web.Application) -> None:
    app[TOKEN_KEY] = BotToken()
    app.middlewares.append(remember_token)
    app.router.add_get("/sandbox/webapp/{uid}", web_app_page)
    app.router.add_get("/sandbox/api/users/{uid}/web_app", web_app_json)
