"""Bot API routes: ``/bot{token}/{method}`` and ``/file/bot{token}/{file_path}``.

Handlers only parse parameters the way Telegram does (form fields carry JSON for objects,
files arrive as multipart fields or ``attach://name``) and delegate to :class:`Sandbox`.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import types
from aiohttp import web
from multidict import MultiDictProxy

from bot.sandbox.keys import SANDBOX_KEY
from bot.sandbox.state import Sandbox, SandboxApiError, dump

_TOKEN_RE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")


class Params:
    """Bot API parameters from a query string, a form, or a JSON body."""

    def __init__(self, values: dict[str, Any], files: dict[str, web.FileField], *, typed: bool) -> None:
        self._values = values
        self._files = files
        # JSON bodies carry real types; form fields carry strings holding JSON for non-strings.
        self._typed = typed

    def raw(self, name: str) -> Any:
        return self._values.get(name)

    def str(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def chat_id(self, name: str = "chat_id") -> Any:
        value = self._values.get(name)
        if value is None or value == "":
            raise SandboxApiError(400, f"Bad Request: there is no {name} in the request")
        return value

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self._values.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SandboxApiError(400, f'Bad Request: field "{name}" must be a valid Number') from None

    def bool(self, name: str) -> bool:
        value = self._values.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1")
        return bool(value)

    def json(self, name: str) -> Any:
        value = self._values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str) and not self._typed:
            try:
                return json.loads(value)
            except ValueError:
                raise SandboxApiError(400, f"Bad Request: can't parse {name} JSON object") from None
        return value

    def file(self, name: str) -> tuple[tuple[bytes, str | None, str | None] | None, str | None]:
        """``(upload, None)`` for an uploaded file, ``(None, file_id)`` for a reused one."""
        field = self._files.get(name)
        value = self._values.get(name)
        if field is None and isinstance(value, str) and value.startswith("attach://"):
            field = self._files.get(value.removeprefix("attach://"))
            if field is None:
                raise SandboxApiError(400, f"Bad Request: file {value} not found in the request")
        if field is not None:
            data = field.file.read()
            mime = field.content_type
            if not mime or mime == "application/octet-stream":
                mime = _guess_mime(field.filename) or mime
            return (data, field.filename, mime), None
        if isinstance(value, str) and value:
            return None, value
        return None, None


def _guess_mime(filename: str | None) -> str | None:
    if not filename:
        return None
    return mimetypes.guess_type(filename)[0]


async def read_params(request: web.Request) -> Params:
    values: dict[str, Any] = dict(request.query)
    files: dict[str, web.FileField] = {}
    typed = False
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise SandboxApiError(400, "Bad Request: can't parse JSON body") from None
            if not isinstance(body, dict):
                raise SandboxApiError(400, "Bad Request: JSON body must be an object")
            values.update(body)
            typed = True
        else:
            form: MultiDictProxy[str | bytes | web.FileField] = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = value
                elif isinstance(value, bytes):
                    values[key] = value.decode("utf-8", "replace")
                else:
                    values[key] = value
    return Params(values, files, typed=typed)


Result = Any
Method = Callable[[Sandbox, Params], Awaitable[Result] | Result]


def _get_me(sb: Sandbox, p: Params) -> Result:
    return sb.bot_user


async def _get_updates(sb: Sandbox, p: Params) -> Result:
    timeout = p.int("timeout", 0) or 0
    limit = p.int("limit", 100) or 100
    return await sb.get_updates(p.int("offset"), limit, float(min(max(timeout, 0), 50)))


def _send_message(sb: Sandbox, p: Params) -> Result:
    return sb.send_message(
        p.chat_id(),
        p.str("text"),
        parse_mode=p.str("parse_mode"),
        entities=p.json("entities"),
        reply_markup=p.json("reply_markup"),
    )


def _send_media(kind: str) -> Method:
    def send(sb: Sandbox, p: Params) -> Result:
        chat_id = p.chat_id()
        upload, file_id = p.file(kind)
        return sb.send_media(
            kind,
            chat_id,
            upload=upload,
            file_id=file_id,
            caption=p.str("caption"),
            parse_mode=p.str("parse_mode"),
            caption_entities=p.json("caption_entities"),
            reply_markup=p.json("reply_markup"),
        )

    return send


def _edit_text(sb: Sandbox, p: Params) -> Result:
    return sb.edit_text(
        p.raw("chat_id"),
        p.raw("message_id"),
        p.str("text"),
        inline_message_id=p.raw("inline_message_id"),
        parse_mode=p.str("parse_mode"),
        entities=p.json("entities"),
        reply_markup=p.json("reply_markup"),
    )


def _edit_caption(sb: Sandbox, p: Params) -> Result:
    return sb.edit_caption(
        p.raw("chat_id"),
        p.raw("message_id"),
        p.str("caption"),
        inline_message_id=p.raw("inline_message_id"),
        parse_mode=p.str("parse_mode"),
        caption_entities=p.json("caption_entities"),
        reply_markup=p.json("reply_markup"),
    )


def _edit_markup(sb: Sandbox, p: Params) -> Result:
    return sb.edit_reply_markup(
        p.raw("chat_id"),
        p.raw("message_id"),
        inline_message_id=p.raw("inline_message_id"),
        reply_markup=p.json("reply_markup"),
    )


def _answer_callback(sb: Sandbox, p: Params) -> Result:
    return sb.answer_callback(
        p.str("callback_query_id"), text=p.str("text"), show_alert=p.bool("show_alert"), url=p.str("url")
    )


def _delete_message(sb: Sandbox, p: Params) -> Result:
    return sb.delete_message(p.chat_id(), p.raw("message_id"))


def _get_file(sb: Sandbox, p: Params) -> Result:
    stored = sb.get_file(p.str("file_id") or "")
    return types.File(
        file_id=stored.file_id,
        file_unique_id=stored.file_unique_id,
        file_size=len(stored.data),
        file_path=stored.file_path,
    )


def _set_commands(sb: Sandbox, p: Params) -> Result:
    return sb.set_commands(p.json("commands"), p.json("scope"), p.str("language_code"))


def _get_commands(sb: Sandbox, p: Params) -> Result:
    return sb.get_commands(p.json("scope"), p.str("language_code"))


def _delete_commands(sb: Sandbox, p: Params) -> Result:
    return sb.delete_commands(p.json("scope"), p.str("language_code"))


def _set_menu_button(sb: Sandbox, p: Params) -> Result:
    return sb.set_menu_button(p.raw("chat_id"), p.json("menu_button"))


def _get_menu_button(sb: Sandbox, p: Params) -> Result:
    return sb.get_menu_button(p.raw("chat_id"))


def _chat_action(sb: Sandbox, p: Params) -> Result:
    return sb.chat_action(p.chat_id(), p.str("action"))


def _get_chat(sb: Sandbox, p: Params) -> Result:
    return sb.chat_full_info(p.chat_id())


def _set_webhook(sb: Sandbox, p: Params) -> Result:
    if p.raw("url") is None:
        raise SandboxApiError(400, "Bad Request: parameter \"url\" is required")
    allowed = p.json("allowed_updates")
    return sb.set_webhook(
        p.str("url"),
        secret_token=p.str("secret_token"),
        max_connections=p.int("max_connections"),
        allowed_updates=allowed if isinstance(allowed, list) else None,
        drop_pending_updates=p.bool("drop_pending_updates"),
    )


def _delete_webhook(sb: Sandbox, p: Params) -> Result:
    return sb.delete_webhook(p.bool("drop_pending_updates"))


def _webhook_info(sb: Sandbox, p: Params) -> Result:
    return sb.webhook_info()


def _bot_text(kind: str, field: str) -> Method:
    def setter(sb: Sandbox, p: Params) -> Result:
        return sb.set_bot_text(kind, p.str("language_code"), p.str(field))

    return setter


def _get_bot_text(kind: str, model: type[types.TelegramObject], field: str) -> Method:
    def getter(sb: Sandbox, p: Params) -> Result:
        return model(**{field: sb.get_bot_text(kind, p.str("language_code"))})

    return getter


def _true(sb: Sandbox, p: Params) -> Result:
    return True


METHODS: dict[str, Method] = {
    "getme": _get_me,
    "getupdates": _get_updates,
    "setwebhook": _set_webhook,
    "deletewebhook": _delete_webhook,
    "getwebhookinfo": _webhook_info,
    "sendmessage": _send_message,
    "sendphoto": _send_media("photo"),
    "senddocument": _send_media("document"),
    "editmessagetext": _edit_text,
    "editmessagecaption": _edit_caption,
    "editmessagereplymarkup": _edit_markup,
    "answercallbackquery": _answer_callback,
    "deletemessage": _delete_message,
    "getfile": _get_file,
    "setmycommands": _set_commands,
    "getmycommands": _get_commands,
    "deletemycommands": _delete_commands,
    "setchatmenubutton": _set_menu_button,
    "getchatmenubutton": _get_menu_button,
    "sendchataction": _chat_action,
    "getchat": _get_chat,
    "setmydescription": _bot_text("description", "description"),
    "getmydescription": _get_bot_text("description", types.BotDescription, "description"),
    "setmyshortdescription": _bot_text("short_description", "short_description"),
    "getmyshortdescription": _get_bot_text("short_description", types.BotShortDescription, "short_description"),
    "setmyname": _bot_text("name", "name"),
    "getmyname": _get_bot_text("name", types.BotName, "name"),
    # Accepted and ignored: the sandbox has no sessions to log out of.
    "close": _true,
    "logout": _true,
}


def _to_json(result: Result) -> Any:
    if isinstance(result, types.TelegramObject):
        return dump(result)
    if isinstance(result, list):
        return [_to_json(item) for item in result]
    return result


def _error(err: SandboxApiError) -> web.Response:
    return web.json_response(err.payload(), status=err.error_code)


async def handle_method(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    if not _TOKEN_RE.match(request.match_info["token"]):
        return _error(SandboxApiError(401, "Unauthorized"))
    name = request.match_info["method"].lower()
    method = METHODS.get(name)
    if method is None:
        return _error(SandboxApiError(404, "Not Found: method not found"))
    sandbox.record_call(name)
    try:
        params = await read_params(request)
        result = method(sandbox, params)
        if isinstance(result, Awaitable):
            result = await result
    except SandboxApiError as err:
        sandbox.record_refusal(name, err)
        return _error(err)
    return web.json_response({"ok": True, "result": _to_json(result)})


async def handle_file_download(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX_KEY]
    if not _TOKEN_RE.match(request.match_info["token"]):
        raise web.HTTPUnauthorized()
    stored = sandbox.file_by_path(request.match_info["file_path"])
    if stored is None:
        raise web.HTTPNotFound()
    return web.Response(body=stored.data, content_type=stored.mime_type or "application/octet-stream")


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", "/bot{token}/{method}", handle_method)
    app.router.add_get("/file/bot{token}/{file_path:.+}", handle_file_download)
