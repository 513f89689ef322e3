"""How much of a value a message may repeat: :func:`clip`, shared by services (error texts that
quote the input) and the render layer (``notifications.limits`` re-exports it, with ``pages``).

Lengths are counted in UTF-16 code units, as Telegram counts them (an emoji outside the BMP is two);
that is never less than Python's ``len``, so what fits here fits there.
"""

from __future__ import annotations

MAX_ECHO = 100  # characters of user input repeated in a reply
ELLIPSIS = "…"

__all__ = ["ELLIPSIS", "MAX_ECHO", "clip", "cut_point", "tg_len"]


def tg_len(text: str) -> int:
    """The length of ``text`` as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def cut_point(text: str, units: int) -> int:
    """The largest prefix length (in characters) of ``text`` that is at most ``units`` long."""
    if tg_len(text) <= units:
        return len(text)
    n = min(len(text), units)  # every character is one or two units
    while n and tg_len(text[:n]) > units:
        n -= 1
    return n


def clip(text: str | None, limit: int = MAX_ECHO) -> str:
    """``text`` unchanged if it fits in ``limit``, else its start followed by "…", ``limit`` in all.

    Meant for plain text (clip, then escape): a cut never leaves half of a surrogate pair.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    text = text or ""
    if tg_len(text) <= limit:
        return text
    return text[:cut_point(text, limit - tg_len(ELLIPSIS))].rstrip() + ELLIPSIS
