"""The one render layer: every text a user sees is made here, and escapes by default.

Two ways in, one rule (nothing typed by a user or read from the registry reaches Telegram's HTML
parser unescaped):

- ``t(msgid, **values)`` for a one-line message in a handler: the msgid is translated in the
  current locale and trusted (it is ours, from the catalogue); every value is escaped unless it is
  already :class:`Markup` (made here). ``tn()`` is its plural form.
- ``render_template(name, **data)`` for anything longer: a Jinja2 template under
  ``notifications/templates/`` with autoescape and gettext (``{{ _("…") }}``, ``{% trans %}``).

Messages that leave the process later go through the outbox as *what to render*: services store
``{"message": name, "data": {…}, "locale": …}`` (see ``services.outbox.message_payload``) and the
sender renders them here with :func:`render_message` in the recipient's language, right before
sending. Services therefore never hold markup or callback strings, and a broadcast is rendered
per recipient in their own language.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Chat, FSInputFile, InlineKeyboardButton, InlineKeyboardMarkup, Message
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from services.i18n import gettext, ngettext, use_locale

__all__ = [
    "Markup",
    "Rendered",
    "escape",
    "join",
    "plain",
    "render_message",
    "render_template",
    "send_payload",
    "t",
    "tn",
    "to_reply_markup",
]

TEMPLATES = Path(__file__).resolve().parent / "templates"
Buttons = list[list[dict[str, str]]]


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
        auto_reload=False,  # templates ship with the code: no stat() of the file on every render
    )
    # newstyle: {{ _("Hello, %(name)s", name=x) }} escapes ``x`` like any other value.
    # jinja2.ext.i18n adds this method to the Environment at run time; the stubs cannot know.
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    return env


ENV = _environment()


def t(msgid: str, /, **values: Any) -> Markup:
    """Translate ``msgid`` (``{name}`` placeholders) and fill it with escaped ``values``."""
    return Markup(gettext(msgid)).format(**values)


def tn(singular: str, plural: str, n: int, /, **values: Any) -> Markup:
    """Plural form of :func:`t`; ``n`` is also available as ``{n}``."""
    return Markup(ngettext(singular, plural, n)).format(n=n, **values)


def plain(text: str) -> Markup:
    """Plain text made elsewhere (a service's translated refusal such as ``str(TagError)``) as HTML
    that shows exactly those characters."""
    return escape(text)


def join(parts: Iterable[Any], sep: str = "\n") -> Markup:
    """Join lines, escaping every part that is not already Markup."""
    return Markup(sep).join(parts)


def render_template(name: str, /, **data: Any) -> Markup:
    """Render ``notifications/templates/<name>`` (autoescaped) in the current locale."""
    return Markup(ENV.get_template(name).render(**data).strip())


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message ready to send: HTML text and neutral button rows."""

    text: str
    buttons: Buttons | None = None


MessageBuilder = Callable[[Mapping[str, Any]], Rendered]


def _builders() -> dict[str, MessageBuilder]:
    from notifications.messages import MESSAGES

    return MESSAGES


def render_message(name: str, data: Mapping[str, Any], locale: str) -> Rendered:
    """Render the outbox message ``name`` for a recipient speaking ``locale``.

    A name with a builder in ``notifications.messages`` uses it (text and buttons); any other name
    ``a.b`` renders the template ``a/b.html`` with ``data`` and no buttons.
    """
    with use_locale(locale):
        builder = _builders().get(name)
        if builder is not None:
            return builder(data)
        return Rendered(render_template(name.replace(".", "/") + ".html", **data))


def to_reply_markup(buttons: Sequence[Sequence[dict[str, str]]] | None) -> InlineKeyboardMarkup | None:
    """``[[{"text", "callback_data" | "url"}, …], …]`` → an inline keyboard, or None for no buttons."""
    if not buttons:
        return None
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=b["text"], callback_data=b.get("callback_data"), url=b.get("url"))
         for b in row]
        for row in buttons
    ])


def _input_file(ref: dict[str, str]) -> str | FSInputFile:
    # A file_id is reused as is (Telegram keeps the file); a path is uploaded.
    return ref["file_id"] if ref.get("file_id") else FSInputFile(ref["path"])


def resolve_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored payload with its text and buttons filled in (rendering a ``message`` payload)."""
    if "message" not in payload:
        return payload
    rest = {k: v for k, v in payload.items() if k not in ("message", "data", "locale")}
    rendered = render_message(payload["message"], payload.get("data") or {}, payload.get("locale") or "")
    return {**rest, "text": rendered.text, "buttons": rendered.buttons, "parse_mode": "HTML"}


async def send_payload(
    bot: Bot, chat_id: int, payload: dict[str, Any], *, request_timeout: int | None = None
) -> Message:
    """Send one payload: a photo or document (text as caption) or a text message."""
    payload = resolve_payload(payload)
    markup = to_reply_markup(payload.get("buttons"))
    parse_mode = payload.get("parse_mode")
    text = payload.get("text") or ""
    if payload.get("photo"):
        return await bot.send_photo(
            chat_id, _input_file(payload["photo"]), caption=text or None, parse_mode=parse_mode,
            reply_markup=markup, request_timeout=request_timeout)
    if payload.get("document"):
        return await bot.send_document(
            chat_id, _input_file(payload["document"]), caption=text or None, parse_mode=parse_mode,
            reply_markup=markup, request_timeout=request_timeout)
    if payload.get("edit_message_id"):
        return await _edit_text(bot, chat_id, int(payload["edit_message_id"]), text, parse_mode, markup,
                                request_timeout)
    return await bot.send_message(
        chat_id, text, parse_mode=parse_mode, reply_markup=markup, request_timeout=request_timeout)


async def _edit_text(bot: Bot, chat_id: int, message_id: int, text: str, parse_mode: str | None,
                     markup: InlineKeyboardMarkup | None, request_timeout: int | None) -> Message:
    """Edit a text message the bot sent (an outbox payload with ``edit_message_id``). An edit that
    changes nothing (two updates racing to the same state) is done, not an error."""
    try:
        edited = await bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id, parse_mode=parse_mode,
                                             reply_markup=markup, request_timeout=request_timeout)
    except TelegramBadRequest as err:
        if "message is not modified" not in err.message:
            raise
        edited = True
    if isinstance(edited, Message):
        return edited
    # Telegram answers an edit of a chat message with the message; without one (not modified), the
    # outbox records the id of the message that was to be edited.
    return Message(message_id=message_id, date=datetime.now(UTC), chat=Chat(id=chat_id, type="private"))
