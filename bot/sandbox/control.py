"""JSON control API (``/sandbox/api/...``) for tests, and the web chat pages for humans."""

from __future__ import annotations

import base64
import binascii
import functools
import mimetypes
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bot.sandbox.keys import PAGES_KEY, SANDBOX_KEY
from bot.sandbox.state import SandboxLookupError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_WAIT_SECONDS = 60.0


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _control(handler: Handler) -> Handler:
    """Map lookup failures to 404 and bad input to 400, always as JSON."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except SandboxLookupError as err:
            return _json_error(404, str(err.args[0]) if err.args else "not found")
        except (ValueError, TypeError, KeyError) as err:
            return _json_error(400, f"bad request: {err}")

    return wrapper


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    if request.content_type == "application/json":
        data = await request.json()
        if not isinstance(data, dict):
            raise ValueError("JSON body must be an object")
        return data
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _uid(request: web.Request) -> int:
    try:
        return int(request.match_info["uid"])
    except ValueError:
        raise SandboxLookupError(f"user {request.match_info['uid']} not found") from None


def _float_query(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    value = float(raw) if raw not in (None, "") else default
    return min(max(value, 0.0), MAX_WAIT_SECONDS)


def _optional_rate(value: Any) -> float | None:
    if value is None or value == "":
        return None
    rate = float(value)
    return rate if rate > 0 else None


# ---------------------------------------------------------------- users


@_control
async def list_users(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    return web.json_response([u.as_dict() for u in sandbox.users.values()])


@_control
async def create_user(request: web.Request) -> web.Response:
    body = await _body(request)
    user = request.app[SANDBOX_KEY].create_user(
        first_name=str(body.get("first_name") or ""),
        last_name=body.get("last_name") or None,
        username=body.get("username") or None,
        language_code=body.get("language_code") or None,
        phone_number=body.get("phone_number") or None,
    )
    return web.json_response(user.as_dict(), status=201)


@_control
async def get_user(request: web.Request) -> web.Response:
    return web.json_response(request.app[SANDBOX_KEY].get_user(_uid(request)).as_dict())


@_control
async def user_text(request: web.Request) -> web.Response:
    body = await _body(request)
    return web.json_response(request.app[SANDBOX_KEY].user_text(_uid(request), str(body.get("text") or "")))


@_control
async def user_contact(request: web.Request) -> web.Response:
    body = await _body(request)
    user_id = body.get("user_id")
    result = request.app[SANDBOX_KEY].user_contact(
        _uid(request),
        phone_number=body.get("phone_number") or None,
        user_id=int(user_id) if user_id not in (None, "") else None,
        first_name=body.get("first_name") or None,
        last_name=body.get("last_name") or None,
    )
    return web.json_response(result)


@_control
async def user_callback(request: web.Request) -> web.Response:
    body = await _body(request)
    data = body.get("data")
    result = request.app[SANDBOX_KEY].user_callback(
        _uid(request), int(body["message_id"]), None if data is None else str(data)
    )
    return web.json_response(result)


@_control
async def user_press(request: web.Request) -> web.Response:
    body = await _body(request)
    text = body.get("text")
    if not text:
        raise ValueError("text is required")
    return web.json_response(request.app[SANDBOX_KEY].press(_uid(request), str(text)))


@_control
async def user_document(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    uid = _uid(request)
    sandbox.get_user(uid)
    caption = None
    if request.content_type == "application/json":
        body = await request.json()
        try:
            data = base64.b64decode(body.get("content_base64") or "", validate=True)
        except binascii.Error:
            raise ValueError("content_base64 is not valid base64") from None
        filename = str(body.get("filename") or "file.bin")
        mime = body.get("mime_type")
        caption = body.get("caption")
    else:
        form = await request.post()
        field = form.get("file") or form.get("document")
        if not isinstance(field, web.FileField):
            raise ValueError("a multipart field 'file' is required")
        data = field.file.read()
        filename = field.filename or "file.bin"
        mime = field.content_type
        caption_field = form.get("caption")
        caption = caption_field if isinstance(caption_field, str) else None
    if not mime or mime == "application/octet-stream":
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return web.json_response(sandbox.user_document(uid, data, filename, mime, caption))


@_control
async def user_block(request: web.Request) -> web.Response:
    update_id = request.app[SANDBOX_KEY].set_blocked(_uid(request), True)
    return web.json_response({"blocked": True, "update_id": update_id})


@_control
async def user_unblock(request: web.Request) -> web.Response:
    update_id = request.app[SANDBOX_KEY].set_blocked(_uid(request), False)
    return web.json_response({"blocked": False, "update_id": update_id})


@_control
async def user_messages(request: web.Request) -> web.Response:
    after = int(request.query.get("after") or 0)
    return web.json_response(request.app[SANDBOX_KEY].messages(_uid(request), after))


@_control
async def user_wait_message(request: web.Request) -> web.Response:
    after = int(request.query.get("after") or 0)
    timeout = _float_query(request, "timeout", 5.0)
    return web.json_response(await request.app[SANDBOX_KEY].wait_message(_uid(request), after, timeout))


@_control
async def user_keyboard(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    uid = _uid(request)
    return web.json_response({"reply_keyboard": sandbox.reply_keyboard(uid), "seq": sandbox.seq})


# ---------------------------------------------------------------- updates


@_control
async def raw_update(request: web.Request) -> web.Response:
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("an update must be a JSON object")
    return web.json_response({"update_id": request.app[SANDBOX_KEY].enqueue_raw(body)})


@_control
async def redeliver_update(request: web.Request) -> web.Response:
    """Deliver an update again, same id and content (as Telegram after a timeout)."""
    update_id = int(request.match_info["update_id"])
    return web.json_response({"update_id": request.app[SANDBOX_KEY].redeliver(update_id)})


@_control
async def wait_update(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    update_id = int(request.match_info["update_id"])
    timeout = _float_query(request, "timeout", 10.0)
    confirmed = await sandbox.wait_until(
        lambda: sandbox.is_confirmed(update_id) or update_id in sandbox.dropped_update_ids, timeout
    )
    dropped = update_id in sandbox.dropped_update_ids
    return web.json_response({"confirmed": confirmed and not dropped, "dropped": dropped})


# ---------------------------------------------------------------- settings & stats


@_control
async def rate_limits(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    if request.method == "POST":
        body = await _body(request)
        current = sandbox.rate_limits()
        sandbox.set_rate_limits(
            _optional_rate(body["global"]) if "global" in body else current["global"],
            _optional_rate(body["per_chat"]) if "per_chat" in body else current["per_chat"],
        )
    return web.json_response(sandbox.rate_limits())


@_control
async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[SANDBOX_KEY].stats())


@_control
async def commands(request: web.Request) -> web.Response:
    return web.json_response(request.app[SANDBOX_KEY].commands_dict())


async def serve_file(request: web.Request) -> web.Response:
    stored = request.app[SANDBOX_KEY].files.get(request.match_info["file_id"])
    if stored is None:
        raise web.HTTPNotFound()
    headers = {}
    if stored.kind != "photo":
        # Quoted filename for the download link; non-ASCII names go in filename*.
        ascii_name = (stored.filename or "file").encode("ascii", "replace").decode().replace('"', "")
        headers["Content-Disposition"] = (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(stored.filename or 'file')}"
        )
    return web.Response(body=stored.data, content_type=stored.mime_type or "application/octet-stream", headers=headers)


# ---------------------------------------------------------------- pages


def _render(request: web.Request, template: str, language_code: str | None, **context: Any) -> web.Response:
    text = request.app[PAGES_KEY].render(template, language_code, **context)
    return web.Response(text=text, content_type="text/html")


def _browser_language(request: web.Request) -> str | None:
    """The first language of the browser's Accept-Language header (``en-GB;q=0.9`` → ``en-GB``)."""
    header = request.headers.get("Accept-Language", "")
    first = header.split(",", 1)[0].split(";", 1)[0].strip()
    return first if first and first != "*" else None


async def index_page(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    return _render(
        request,
        "index.html",
        _browser_language(request),
        users=[u.as_dict() for u in sandbox.users.values()],
        bot=sandbox.bot_user,
    )


async def create_user_form(request: web.Request) -> web.Response:
    form = await request.post()

    def text(name: str) -> str | None:
        value = form.get(name)
        return value.strip() or None if isinstance(value, str) else None

    first_name = text("first_name")
    if not first_name:
        raise web.HTTPFound("/")
    language = text("language_code")
    user = request.app[SANDBOX_KEY].create_user(
        first_name=first_name,
        last_name=text("last_name"),
        username=text("username"),
        language_code=language if language in ("zh-hans", "en") else "zh-hans",
        phone_number=text("phone_number"),
    )
    raise web.HTTPFound(f"/chat/{user.id}")


async def chat_page(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    try:
        user = sandbox.get_user(_uid(request))
    except SandboxLookupError:
        raise web.HTTPNotFound() from None
    # The page's own words follow the simulated user's Telegram language, as a Telegram app would.
    return _render(request, "chat.html", user.language_code, user=user.as_dict(), bot=sandbox.bot_user)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", index_page)
    r.add_post("/users", create_user_form)
    r.add_get("/chat/{uid}", chat_page)
    r.add_get("/sandbox/files/{file_id}", serve_file)
    r.add_get("/sandbox/api/users", list_users)
    r.add_post("/sandbox/api/users", create_user)
    r.add_get("/sandbox/api/users/{uid}", get_user)
    r.add_post("/sandbox/api/users/{uid}/text", user_text)
    r.add_post("/sandbox/api/users/{uid}/contact", user_contact)
    r.add_post("/sandbox/api/users/{uid}/callback", user_callback)
    r.add_post("/sandbox/api/users/{uid}/press", user_press)
    r.add_post("/sandbox/api/users/{uid}/document", user_document)
    r.add_post("/sandbox/api/users/{uid}/block", user_block)
    r.add_post("/sandbox/api/users/{uid}/unblock", user_unblock)
    r.add_get("/sandbox/api/users/{uid}/messages", user_messages)
    r.add_get("/sandbox/api/users/{uid}/wait_message", user_wait_message)
    r.add_get("/sandbox/api/users/{uid}/keyboard", user_keyboard)
    r.add_post("/sandbox/api/raw_update", raw_update)
    r.add_get("/sandbox/api/updates/{update_id}/wait", wait_update)
    r.add_post("/sandbox/api/updates/{update_id}/redeliver", redeliver_update)
    r.add_get("/sandbox/api/rate_limits", rate_limits)
    r.add_post("/sandbox/api/rate_limits", rate_limits)
    r.add_get("/sandbox/api/stats", stats)
    r.add_get("/sandbox/api/commands", commands)
