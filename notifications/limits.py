"""Telegram's size limits, and the two ways to stay within them: clip what is echoed, page what is long.

Telegram refuses a message over 4096 characters (a caption over 1024) with "message is too long";
the bot must never ask. Two rules:

- a value the user typed (or a registry field) that a reply repeats is cut with :func:`clip` *before*
  it is escaped and put into the text: ``t("No household {q}", q=clip(query))`` (services that
  quote input in an error text use the same function from ``services.limits``);
- a list that may grow (search results, rejected lines) is sent as :func:`pages`, one message each.

Lengths are counted in UTF-16 code units, as Telegram counts them (an emoji outside the BMP is two);
that is never less than Python's ``len``, so what fits here fits there. For HTML text the count is
taken on the markup, which is never shorter than the text Telegram counts after parsing it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.limits import ELLIPSIS, MAX_ECHO, clip, tg_len
from services.limits import cut_point as _cut

MAX_MESSAGE = 4096
MAX_CAPTION = 1024

__all__ = ["ELLIPSIS", "MAX_CAPTION", "MAX_ECHO", "MAX_MESSAGE", "clip", "excerpt", "pages", "tg_len"]


def excerpt(text: str, position: int, width: int = MAX_ECHO) -> tuple[str, int]:
    """The part of ``text`` around ``position`` (1-based, as errors report it; one past the end is
    allowed), at most ``width`` characters with "…" where it was cut, and the position of the same
    character in the excerpt: for a ``^`` marker under an error in an expression too long to repeat."""
    if width < 5:
        raise ValueError("width must be at least 5")
    index = min(max(position - 1, 0), len(text))
    if len(text) <= width:
        return text, index + 1
    start = max(0, min(index - width // 2, len(text) - width))
    end = start + width
    piece = text[start:end]
    if start > 0:
        piece = ELLIPSIS + piece[1:]
    if end < len(text):
        piece = piece[:-1] + ELLIPSIS
    return piece, index - start + 1


_OPEN_MARKUP = re.compile(r"<[^>]*$|&[#\w]*$")  # a tag or an entity cut in the middle


def _split_long(line: str, limit: int) -> list[str]:
    """A line too long for one message, in pieces that do not cut a tag or an entity in two."""
    pieces = []
    while tg_len(line) > limit:
        n = _cut(line, limit)
        if (m := _OPEN_MARKUP.search(line[:n])) is not None and m.start() > 0:
            n = m.start()
        pieces.append(line[:n])
        line = line[n:]
    if line:
        pieces.append(line)
    return pieces


def pages(lines: Iterable[str], limit: int = MAX_MESSAGE, *, header: str | None = None) -> list[str]:
    """Lines joined with newlines into as few messages as possible, each at most ``limit`` long.

    A line is never split unless it alone is longer than ``limit``; ``header`` (e.g. a bold title)
    starts the first page. An empty input gives no pages.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    out: list[str] = []
    current = ""
    items = ([header] if header else []) + list(lines)
    for line in items:
        for piece in _split_long(line, limit) if tg_len(line) > limit else [line]:
            candidate = f"{current}\n{piece}" if current else piece
            if current and tg_len(candidate) > limit:
                if current.strip():  # Telegram refuses an empty message
                    out.append(current)
                current = piece
            else:
                current = candidate
    if current.strip():
        out.append(current)
    return out
