"""Logging set-up: the update id on every record of an update, JSON lines (LOG_FORMAT=json), and a
filter that keeps phone and ID numbers out of the logs whatever a message, its arguments or an
exception say. Database drivers log SQL parameters (phones!) at DEBUG: they stay at WARNING.

``configure_logging`` puts :class:`UpdateIdFilter` and :class:`RedactFilter` on every root handler
(filters on a handler see the records of every logger, filters on a logger only its own), and
``bot.app.build_dispatcher`` registers :class:`UpdateLogContext` as the outermost update middleware.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject

QUIET = ("aiosqlite", "sqlalchemy.engine", "asyncpg", "aiohttp.access", "alembic.runtime.plugins",
         "apscheduler.executors.default", "apscheduler.scheduler")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(update)s: %(message)s"

# The update being handled (None outside one); tasks an update starts inherit it (asyncio copies
# the context).
current_update_id: ContextVar[int | None] = ContextVar("current_update_id", default=None)


class UpdateLogContext(BaseMiddleware):
    """Outermost update middleware: every record logged while an update is handled carries its id."""

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        token = current_update_id.set(getattr(event, "update_id", None))
        try:
            return await handler(event, data)
        finally:
            current_update_id.reset(token)


class UpdateIdFilter(logging.Filter):
    """Adds ``record.update_id`` (None outside an update) and ``record.update`` (" [update N]" or "")."""

    def filter(self, record: logging.LogRecord) -> bool:
        update_id = getattr(record, "update_id", None) or current_update_id.get()
        record.update_id = update_id
        record.update = f" [update {update_id}]" if update_id is not None else ""
        return True


# Digits as people type them: ASCII or full-width; a number is not part of a longer digit run.
_D = "[0-9\uff10-\uff19]"
# What people put between digit groups: spaces (also as repr() writes them) and dashes.
_SEP = r"(?:[ \u00a0\u3000-]|\\xa0|\\u3000)"
# A mobile number is also grouped with dots, underscores or tabs (138.0013.8000); not the others,
# where a dot would make decimals (2345.6789 ms) look like local numbers.
_SEP_MOBILE = r"(?:[ \u00a0\u3000\t._-]|\\xa0|\\u3000|\\t)"
# Not after a digit, unless that digit ends an escape of repr() ("\x90" + "13800138001").
_START = rf"(?:(?<!{_D})|(?<=\\x[0-9a-fA-F]{{2}})|(?<=\\u[0-9a-fA-F]{{4}})|(?<=\\U[0-9a-fA-F]{{8}}))"
_END = f"(?!{_D})"
_PREFIX = r"(?:(?:\+|＋|00)?(?:86|８６)|[(（](?:\+|＋)?(?:86|８６)[)）])"  # +86, 0086, 86, (+86)
_PATTERNS = (
    # Resident ID: 18 characters (the last may be X), in groups 6-8-4 at most; the old 15 digits.
    (re.compile(f"{_START}{_D}{{6}}{_SEP}?{_D}{{8}}{_SEP}?{_D}{{3}}(?:{_D}|[XxＸｘ]){_END}"), "[id]"),
    (re.compile(f"{_START}{_D}{{15}}{_END}"), "[id]"),
    # Mobile: 1[3-9] and nine digits, any grouping, with an optional +86 / 0086 / 86 / (+86).
    (re.compile(f"{_START}(?:{_PREFIX}{_SEP_MOBILE}?)?[1１]{_SEP_MOBILE}?[3-9３-９](?:{_SEP_MOBILE}?{_D}){{9}}{_END}"),
     "[phone]"),
    # Fixed line with its area code: 021-6437 1234, (0755) 1234567, +86 21 6437 1234.
    (re.compile(f"{_START}(?:{_PREFIX}{_SEP}?[(（]?[1-9１-９]{_D}{{1,2}}[)）]?|[(（]?[0０][1-9１-９]{_D}{{1,2}}[)）]?)"
                f"{_SEP}?[2-9２-９](?:{_SEP}?{_D}){{6,7}}{_END}"), "[phone]"),
    # A local number written as a phone number (6437 1234, 6437-1234); a bare 8-digit run is not.
    (re.compile(f"{_START}[2-9２-９]{_D}{{3}}{_SEP}{_D}{{4}}{_END}"), "[phone]"),
)


def redact(text: str) -> str:
    """``text`` with every mobile, fixed-line and resident ID number replaced by [phone] / [id]."""
    for pattern, mask in _PATTERNS:
        text = pattern.sub(mask, text)
    return text


def _redact_value(value: Any, depth: int = 0) -> Any:
    """Strings masked, inside the containers repr() shows (other objects are left to the message)."""
    if isinstance(value, str):
        return redact(value)
    if depth > 5:
        return value
    if isinstance(value, dict):
        return {_redact_value(k, depth + 1): _redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        try:
            return type(value)(_redact_value(v, depth + 1) for v in value)
        except TypeError:  # a named tuple or another sequence that is not built from one iterable
            return value
    return value


class RedactFilter(logging.Filter):
    """Masks phone and ID numbers in the message, its arguments, the exception and the stack text.

    The message is formatted with its arguments here and the arguments dropped, so no formatter
    sees a raw argument; the exception is formatted here too (and ``exc_info`` dropped), so no
    handler formats the traceback again from the exception objects."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        # Arguments first, before repr() escapes what is around a number (then the whole message).
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = _redact_value(record.args)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is, masked
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info:
            record.exc_text = record.exc_text or self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "update"):
            record.update = ""
        return super().format(record)


_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, update_id, exc, stack."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        update_id = getattr(record, "update_id", None)
        if update_id is not None:
            entry["update_id"] = update_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # Characters that some readers take for a line break are escaped too: one object, one line.
        return json.dumps(entry, ensure_ascii=False, default=str).translate(_LINE_BREAKS)


def install(handler: logging.Handler, log_format: str = "text") -> logging.Handler:
    """Give ``handler`` the update id, the number filter and the LOG_FORMAT formatter."""
    if not any(isinstance(f, UpdateIdFilter) for f in handler.filters):
        handler.addFilter(UpdateIdFilter())
    if not any(isinstance(f, RedactFilter) for f in handler.filters):
        handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    return handler


def quiet_drivers() -> None:
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(verbose: bool = False, log_format: str = "text") -> None:
    """Root logging for the CLI: INFO (DEBUG with -v), text or JSON lines, numbers masked."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    for handler in logging.getLogger().handlers:
        install(handler, log_format)
    quiet_drivers()
