"""Translations without aiogram: gettext catalogues from ``locale/`` and a per-task locale.

Handlers, the console, the scheduler and services all call ``_()`` here. The current locale
lives in a context variable, set by the bot middleware per update and with ``use_locale()``
anywhere else (scheduler ticks, the console, rendering an outbox message for its recipient).
Catalogues are read from compiled ``.mo`` files; a missing or stale one is compiled from its
``.po`` in memory, so a fresh checkout works before ``pybabel compile`` has run.
"""

from __future__ import annotations

import contextlib
import contextvars
import gettext as _gettext
import io
from collections.abc import Iterator
from functools import cache
from pathlib import Path

LOCALES = ("zh_Hans", "en")
DEFAULT_LOCALE = "zh_Hans"
DOMAIN = "messages"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"

_current: contextvars.ContextVar[str] = contextvars.ContextVar("locale", default=DEFAULT_LOCALE)


def normalize_locale(code: str | None, default: str = DEFAULT_LOCALE) -> str:
    """Map a Telegram ``language_code`` (``en-US``, ``zh-hans``, ``zh``) to one of ours."""
    if not code:
        return default
    low = code.replace("-", "_").lower()
    if low.startswith("zh"):
        return "zh_Hans"
    if low.startswith("en"):
        return "en"
    return default


@cache
def translations(locale: str) -> _gettext.NullTranslations:
    po = LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    mo = po.with_suffix(".mo")
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as fh:
            return _gettext.GNUTranslations(fh)
    if po.exists():
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        with po.open("rb") as fh:
            catalog = read_po(fh, locale=locale.replace("_Hans", ""))
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        return _gettext.GNUTranslations(buf)
    return _gettext.NullTranslations()


def current_locale() -> str:
    return _current.get()


def set_locale(locale: str) -> contextvars.Token[str]:
    return _current.set(locale if locale in LOCALES else DEFAULT_LOCALE)


@contextlib.contextmanager
def use_locale(locale: str) -> Iterator[None]:
    token = set_locale(locale)
    try:
        yield
    finally:
        _current.reset(token)


def gettext(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


def translate(locale: str, message: str) -> str:
    return translations(locale).gettext(message)


def N_(message: str) -> str:
    """Mark a string for extraction; translate it later with ``_()``."""
    return message


_ = gettext
