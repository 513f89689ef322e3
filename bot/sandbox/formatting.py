"""Telegram's text formatting, as the Bot API applies it to what a bot sends.

A bot sends ``text`` with ``parse_mode="HTML"`` (or with explicit ``entities``); Telegram keeps and
returns plain text plus entities whose offsets and lengths count UTF-16 code units. The HTML
parser follows tdlib's ``parse_html`` (td/telegram/MessageEntity.cpp): the same supported tags,
the same treatment of attributes and HTML escapes, the same error messages with their byte
offsets. Afterwards, as in tdlib's ``fix_formatted_text``, control characters are removed, the
text is trimmed, entities are normalised (same-type styles merged, styles split at the edges of
links and code, nothing nested inside code) and links, mentions, hashtags, cashtags, e-mail
addresses and bot commands written in the text become entities of their own.

Simplified on purpose: bare domains (without ``https://``) are recognised for a short list of
top-level domains only, bank card and phone numbers are not detected, and the Markdown parse
modes are not implemented (the sandbox refuses them instead of guessing).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiogram import types
from aiogram.utils.text_decorations import html_decoration

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024

_SUPPORTED_TAGS = frozenset({
    "a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins",
    "tg-spoiler", "tg-emoji", "span", "pre", "code", "blockquote",
})
_SPACES = frozenset(" \t\r\n\v\f\0")  # tdlib's is_space; "\0" also ends its C string
_NAMED_ESCAPES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

SPLITTABLE = frozenset({"bold", "italic", "underline", "strikethrough", "spoiler"})
BLOCKQUOTES = frozenset({"blockquote", "expandable_blockquote"})
PRE_TYPES = frozenset({"pre", "code"})
# Entities a sender may give explicitly; the others Telegram finds in the text itself.
USER_TYPES = SPLITTABLE | BLOCKQUOTES | PRE_TYPES | {"text_link", "text_mention", "custom_emoji"}
FOUND_TYPES = frozenset({"mention", "hashtag", "cashtag", "bot_command", "url", "email"})

# tdlib's MessageEntity::get_type_priority: the order of entities sharing offset and length.
_PRIORITY = {
    "mention": 50, "hashtag": 50, "bot_command": 50, "url": 50, "email": 50, "cashtag": 50,
    "bold": 90, "italic": 91, "underline": 92, "strikethrough": 93, "spoiler": 94,
    "code": 20, "pre": 11, "text_link": 49, "text_mention": 49,
    "blockquote": 0, "expandable_blockquote": 0, "custom_emoji": 99,
}


class FormattingError(ValueError):
    """Telegram's refusal, worded as the Bot API words it (without the "Bad Request: " prefix)."""


@dataclass
class Entity:
    """An entity while it is being built: offsets in code points of the Python string."""

    type: str
    start: int
    end: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return self.end - self.start

    def sort_key(self) -> tuple[int, int, int]:
        priority = _PRIORITY.get(self.type, 50)
        if self.type == "pre" and self.extra.get("language"):
            priority = 10  # tdlib's PreCode sorts before Pre
        return self.start, -self.length, priority


def _sorted(entities: Iterable[Entity]) -> list[Entity]:
    return sorted(entities, key=Entity.sort_key)


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# ---------------------------------------------------------------------------------------- HTML


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode("utf-8", "surrogatepass"))


def _decode_escape(source: str, pos: int) -> tuple[str, int] | None:
    """The character of the HTML escape at ``source[pos] == "&"`` and the index after it."""
    n = len(source)
    end = pos + 1
    if end < n and source[end] == "#":
        end += 1
        code = 0
        if end < n and source[end] == "x":
            end += 1
            while end < n and source[end] in "0123456789abcdefABCDEF":
                code = code * 16 + int(source[end], 16)
                end += 1
        else:
            while end < n and source[end] in "0123456789":
                code = code * 10 + int(source[end])
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return None
        char = chr(code)
    else:
        while end < n and source[end].isascii() and source[end].isalpha():
            end += 1
        named = _NAMED_ESCAPES.get(source[pos + 1 : end])
        if named is None:
            return None  # unsupported named escapes stay literal text
        char = named
    if end < n and source[end] == ";":
        end += 1
    return char, end


@dataclass
class _Open:
    tag: str
    argument: str
    start: int  # code point offset in the plain text
    source_pos: int


def _link_user_id(url: str) -> int | None:
    """tdlib's LinkManager::get_link_user_id: the id of a ``tg://user?id=`` link."""
    low = url.lower()
    if not low.startswith("tg:"):
        return None
    rest = low[3:].removeprefix("//")
    if not rest.startswith("user"):
        return None
    rest = rest[4:].removeprefix("/")
    if not rest.startswith("?"):
        return None
    for parameter in rest[1:].split("#", 1)[0].split("&"):
        key, _, value = parameter.partition("=")
        if key == "id":
            try:
                return int(value)
            except ValueError:
                return None
    return None


_HTTP_URL = re.compile(
    r"^(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?:(?P<userinfo>[^@/?#\s]*)@)?(?P<host>[^:/?#\s@]+)"
    r"(?::(?P<port>\d{1,5}))?(?P<path>[/?#]\S*)?$",
    re.IGNORECASE,
)
_TG_HOST = re.compile(r"^[A-Za-z0-9_-]+$")


def checked_link(url: str) -> str | None:
    """The link Telegram keeps for a text_link (LinkManager::check_link), or None if invalid."""
    url = url.strip()
    low = url.lower()
    for scheme in ("tg", "ton"):
        if low.startswith(scheme + ":"):
            rest = url[len(scheme) + 1 :].removeprefix("//")
            host, query = _split_host(rest)
            if not host or not _TG_HOST.match(host):
                return None
            query = query or "/"
            if query.startswith("/?"):
                query = query[1:]
            return f"{scheme}://{host.lower()}{query}"
    match = _HTTP_URL.match(url)
    if match is None:
        return None
    scheme = (match["scheme"] or "http").lower()
    if scheme not in ("http", "https"):
        return None
    host = match["host"].lower()
    if "." not in host or host.startswith(".") or ".." in host:
        return None
    userinfo = f"{match['userinfo']}@" if match["userinfo"] else ""
    port = f":{match['port']}" if match["port"] else ""
    path = match["path"] or "/"
    if not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{userinfo}{host}{port}{path}"


def _split_host(rest: str) -> tuple[str, str]:
    for i, ch in enumerate(rest):
        if ch in "/?#":
            return rest[:i], rest[i:]
    return rest, ""


def parse_html(source: str) -> tuple[str, list[Entity]]:
    """Plain text and entities of ``parse_mode=HTML`` text, or :class:`FormattingError`."""
    n = len(source)

    def at(i: int) -> str:
        return source[i] if i < n else "\0"

    def space(ch: str) -> bool:
        return ch in _SPACES

    def fail(message: str) -> FormattingError:
        return FormattingError(f"can't parse entities: {message}")

    out: list[str] = []  # one character (code point) per item
    entities: list[Entity] = []
    stack: list[_Open] = []
    i = 0
    while i < n:
        c = source[i]
        if c == "&":
            decoded = _decode_escape(source, i)
            if decoded is not None:
                char, i = decoded
                if 0xD800 <= ord(char) <= 0xDFFF:
                    raise fail(
                        "Text contains invalid Unicode characters after decoding HTML entities, "
                        "check for unmatched surrogate code units"
                    )
                out.append(char)
                continue
        if c != "<":
            out.append(c)
            i += 1
            continue

        begin = i
        i += 1
        if at(i) != "/":
            while not space(at(i)) and at(i) != ">":
                i += 1
            if at(i) == "\0":
                raise fail(f"Unclosed start tag at byte offset {_byte_offset(source, begin)}")
            tag = source[begin + 1 : i].lower()
            if tag not in _SUPPORTED_TAGS:
                raise fail(f'Unsupported start tag "{tag}" at byte offset {_byte_offset(source, begin)}')
            argument = ""
            while at(i) != ">":
                while at(i) != "\0" and space(at(i)):
                    i += 1
                if at(i) == ">":
                    break
                name_start = i
                while not space(at(i)) and at(i) not in "=>/\"'":
                    i += 1
                name = source[name_start:i]
                if not name:
                    raise fail(f'Empty attribute name in the tag "{tag}" at byte offset {_byte_offset(source, begin)}')
                while at(i) != "\0" and space(at(i)):
                    i += 1
                if at(i) != "=":
                    if at(i) == "\0":
                        raise fail(f'Unclosed start tag "{tag}" at byte offset {_byte_offset(source, begin)}')
                    if tag == "blockquote" and name == "expandable":
                        argument = "1"
                    continue
                i += 1
                while at(i) != "\0" and space(at(i)):
                    i += 1
                if at(i) == "\0":
                    raise fail(f'Unclosed start tag "{tag}" at byte offset {_byte_offset(source, begin)}')
                if at(i) not in "'\"":
                    # A name token: letters, digits, periods and hyphens, not case sensitive.
                    token_start = i
                    while (at(i).isascii() and at(i).isalnum()) or at(i) in ".-":
                        i += 1
                    value = source[token_start:i].lower()
                    if not space(at(i)) and at(i) != ">":
                        raise fail(f"Unexpected end of name token at byte offset {_byte_offset(source, token_start)}")
                else:
                    quote = at(i)
                    i += 1
                    chars: list[str] = []
                    while at(i) != quote and at(i) != "\0":
                        if at(i) == "&":
                            decoded = _decode_escape(source, i)
                            if decoded is not None:
                                chars.append(decoded[0])
                                i = decoded[1]
                                continue
                        chars.append(source[i])
                        i += 1
                    if at(i) == quote:
                        i += 1
                    value = "".join(chars)
                if at(i) == "\0":
                    raise fail(f"Unclosed start tag at byte offset {_byte_offset(source, begin)}")
                if tag == "a" and name == "href":
                    argument = value
                elif tag == "code" and name == "class" and value.startswith("language-"):
                    argument = value[9:]
                elif tag == "span" and name == "class" and value.startswith("tg-"):
                    argument = value[3:]
                elif tag == "tg-emoji" and name == "emoji-id":
                    argument = value
                elif tag == "blockquote" and name == "expandable":
                    argument = "1"
            if tag == "span" and argument != "spoiler":
                raise fail(f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(source, begin)}')
            stack.append(_Open(tag, argument, len(out), begin))
            i += 1  # the closing ">"
            continue

        # an end tag
        if not stack:
            raise fail(f"Unexpected end tag at byte offset {_byte_offset(source, begin)}")
        while not space(at(i)) and at(i) != ">":
            i += 1
        end_tag = source[begin + 2 : i].lower()
        while space(at(i)) and at(i) != "\0":
            i += 1
        if at(i) != ">":
            raise fail(f"Unclosed end tag at byte offset {_byte_offset(source, begin)}")
        top = stack[-1]
        if end_tag and end_tag != top.tag:
            raise fail(
                f"Unmatched end tag at byte offset {_byte_offset(source, begin)}, "
                f'expected "</{top.tag}>", found "</{end_tag}>"'
            )
        end = len(out)
        if end > top.start:
            _close_tag(top, end, out, entities, fail)
        stack.pop()
        i += 1
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    for entity in entities:
        if entity.type == "code":
            entity.extra.pop("language", None)
    return "".join(out), _sorted(entities)


_SIMPLE_TAGS = {
    "i": "italic", "em": "italic", "b": "bold", "strong": "bold",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "u": "underline", "ins": "underline", "tg-spoiler": "spoiler", "span": "spoiler",
}


def _close_tag(
    top: _Open, end: int, text: list[str], entities: list[Entity], fail: Callable[[str], FormattingError]
) -> None:
    start, tag, argument = top.start, top.tag, top.argument
    last = entities[-1] if entities else None
    same_range = last is not None and (last.start, last.end) == (start, end)
    if tag in _SIMPLE_TAGS:
        entities.append(Entity(_SIMPLE_TAGS[tag], start, end))
    elif tag == "tg-emoji":
        try:
            emoji_id = int(argument)
        except ValueError:
            emoji_id = 0
        if emoji_id == 0:
            raise fail("Invalid custom emoji identifier specified")
        entities.append(Entity("custom_emoji", start, end, {"custom_emoji_id": str(emoji_id)}))
    elif tag == "a":
        url = argument or "".join(text[start:end])
        user_id = _link_user_id(url)
        if user_id is not None:
            entities.append(Entity("text_mention", start, end, {"user_id": user_id}))
        else:
            link = checked_link(url)
            if link:
                entities.append(Entity("text_link", start, end, {"url": link}))
    elif tag == "pre":
        if last is not None and same_range and last.type == "code" and last.extra.get("language"):
            last.type = "pre"
        else:
            entities.append(Entity("pre", start, end))
    elif tag == "code":
        if last is not None and same_range and last.type == "pre" and argument:
            last.extra["language"] = argument
        else:
            extra = {"language": argument} if argument else {}
            entities.append(Entity("code", start, end, extra))
    elif tag == "blockquote":
        entities.append(Entity("expandable_blockquote" if argument else "blockquote", start, end))


# ------------------------------------------------------------------------------- explicit entities


def _code_point_index(text: str) -> list[int]:
    """``index[u]`` is the code point index of UTF-16 offset ``u`` (rounded up inside a pair)."""
    index: list[int] = []
    for i, ch in enumerate(text):
        index.append(i)
        if ord(ch) > 0xFFFF:
            index.append(i + 1)
    index.append(len(text))
    return index


def entities_from_api(text: str, raw: Any) -> list[Entity]:
    """The ``entities`` / ``caption_entities`` parameter, converted to code point offsets.

    Like Telegram, only the entities a sender may set are kept: mentions, links, hashtags and
    commands are found in the text again afterwards.
    """
    if raw is None or raw == "":
        return []
    if not isinstance(raw, list):
        raise FormattingError("can't parse entities JSON object")
    index = _code_point_index(text)
    result: list[Entity] = []
    for item in raw:
        try:
            model = types.MessageEntity.model_validate(item)
        except ValueError:
            raise FormattingError("can't parse MessageEntity") from None
        if model.offset < 0 or model.offset > 1000000:
            raise FormattingError(f"Receive an entity with incorrect offset {model.offset}")
        if model.length < 0 or model.length > 1000000:
            raise FormattingError(f"Receive an entity with incorrect length {model.length}")
        if model.type not in USER_TYPES:
            continue
        last = len(index) - 1
        start = index[min(model.offset, last)]
        end = index[min(model.offset + model.length, last)]
        extra: dict[str, Any] = {}
        if model.type == "text_link":
            link = checked_link(model.url or "")
            if link is None:
                user_id = _link_user_id(model.url or "")
                if user_id is None:
                    raise FormattingError(f"entity URL '{model.url or ''}' is invalid: Wrong HTTP URL")
                result.append(Entity("text_mention", start, end, {"user_id": user_id}))
                continue
            extra["url"] = link
        elif model.type == "text_mention":
            if model.user is None:
                raise FormattingError("can't parse MessageEntity: field \"user\" must be of type Object")
            extra["user_id"] = model.user.id
        elif model.type == "pre" and model.language:
            extra["language"] = model.language
        elif model.type == "custom_emoji":
            try:
                extra["custom_emoji_id"] = str(int(model.custom_emoji_id or ""))
            except ValueError:
                raise FormattingError("Invalid custom emoji identifier specified") from None
        result.append(Entity(model.type, start, end, extra))
    return _sorted(result)


# ------------------------------------------------------------------------------- fix_formatted_text

# tdlib's clean_input_string drops control characters (but tab and newline), "\r", the line and
# paragraph separators and bidirectional embeddings U+2028–U+202E, and three combining marks.
_DROPPED = frozenset(
    [chr(c) for c in range(32) if c not in (9, 10)]
    + [chr(c) for c in range(0x2028, 0x202F)]
    + ["\u0333", "\u033f", "\u030a"]
)


def _clean(text: str, entities: list[Entity]) -> str:
    if not any(ch in _DROPPED for ch in text):
        return text
    kept_before = [0]
    chars: list[str] = []
    for ch in text:
        if ch not in _DROPPED:
            chars.append(ch)
        kept_before.append(len(chars))
    for entity in entities:
        entity.start, entity.end = kept_before[entity.start], kept_before[entity.end]
    return "".join(chars)


def _valid(entities: Iterable[Entity]) -> list[Entity]:
    """tdlib's remove_empty_entities."""
    return [
        e for e in entities
        if e.length > 0
        and not (e.type == "text_link" and not e.extra.get("url"))
        and not (e.type == "text_mention" and e.extra.get("user") is None)
    ]


def _remove_intersecting(entities: list[Entity]) -> list[Entity]:
    """Keep, in sorted order, each entity that starts after the previous kept one ends."""
    kept: list[Entity] = []
    last_end = 0
    for entity in _sorted(entities):
        if entity.start >= last_end:
            kept.append(entity)
            last_end = entity.end
    return kept


def _crosses_quote(entity: Entity, quotes: list[Entity]) -> bool:
    for quote in quotes:
        if quote.end <= entity.start:
            continue
        return quote.end < entity.end or entity.start < quote.start < entity.end
    return False


def _split(splittable: list[Entity], others: list[Entity]) -> list[Entity]:
    """tdlib's split_entities: styles merged per type, cut at the edges of ``others``, none in code."""
    order = ("bold", "italic", "underline", "strikethrough", "spoiler")
    begin = dict.fromkeys(order, 0)
    end = dict.fromkeys(order, 0)  # 0: no open range of that type
    styles = _sorted(splittable)
    result: list[Entity] = []
    position = 0

    def flush(offset: int) -> None:
        for kind in order:
            if end[kind] != 0 and begin[kind] < offset:
                if end[kind] <= offset:
                    result.append(Entity(kind, begin[kind], end[kind]))
                    begin[kind] = end[kind] = 0
                else:
                    result.append(Entity(kind, begin[kind], offset))
                    begin[kind] = offset

    def add(upto: int) -> None:
        nonlocal position
        while position < len(styles) and styles[position].start < upto:
            style = styles[position]
            if end[style.type] != 0 and style.start <= end[style.type]:
                end[style.type] = max(end[style.type], style.end)
            else:
                flush(style.start)
                begin[style.type], end[style.type] = style.start, style.end
            position += 1
        flush(upto)

    stack: list[Entity] = []

    def add_offset(offset: int) -> None:
        while stack and offset >= stack[-1].end:
            before = len(result)
            add(stack[-1].end)
            if stack[-1].type in PRE_TYPES:
                del result[before:]
            stack.pop()
        add(offset)

    for other in _sorted(others):
        add_offset(other.start)
        stack.append(other)
    add_offset(1 << 62)
    return _sorted(result + list(others))


def _partition(entities: list[Entity]) -> tuple[list[Entity], list[Entity], list[Entity]]:
    styles = [e for e in entities if e.type in SPLITTABLE]
    quotes = [e for e in entities if e.type in BLOCKQUOTES]
    rest = [e for e in entities if e.type not in SPLITTABLE and e.type not in BLOCKQUOTES]
    return styles, quotes, rest


def normalise(entities: list[Entity]) -> list[Entity]:
    """tdlib's fix_entities: a well-nested, sorted set of entities Telegram would keep."""
    styles, quotes, continuous = _partition(_valid(entities))
    continuous = _remove_intersecting(continuous)
    if quotes:
        quotes = _remove_intersecting(quotes)
        continuous = [e for e in continuous if not _crosses_quote(e, quotes)] + quotes
    return _split(styles, continuous)


def _merge_found(entities: list[Entity], found: list[Entity]) -> list[Entity]:
    """tdlib's merge_new_entities: found entities that clash with given ones are dropped."""
    styles, quotes, continuous = _partition(entities)
    found = [e for e in found if not _crosses_quote(e, quotes)]
    kept = [e for e in found if not any(e.start < c.end and c.start < e.end for c in continuous)]
    return _split(styles, continuous + kept + quotes)


class EmptyTextError(FormattingError):
    """Nothing but spaces and newlines is left of the text."""


def _trim(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    last = len(text) - 1
    while last >= 0 and text[last] in " \n":
        last -= 1
    if last < 0:
        raise EmptyTextError("text must be non-empty")
    cut = last + 1
    kept = [e for e in entities if e.start < cut]
    for entity in kept:
        entity.end = min(entity.end, cut)
    first = min((e.start for e in kept), default=cut)
    lead = 0
    while lead < first and text[lead] in " \n":
        lead += 1
    for entity in kept:
        entity.start -= lead
        entity.end -= lead
    return text[lead:cut], _sorted(kept)


# ------------------------------------------------------------------------------- found entities

_ASCII_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SHORT_USERNAMES = frozenset({"gif", "vid", "pic"})


def _is_word(ch: str) -> bool:
    return ch == "_" or unicodedata.category(ch)[0] in "LN"


def _is_hashtag_letter(ch: str) -> bool:
    if ch in "_\u200c\u00b7" or "\u0d80" <= ch <= "\u0dff":
        return True
    category = unicodedata.category(ch)
    return category[0] == "L" or category == "Nd"


def _scan(text: str, marker: str) -> Iterable[int]:
    i = text.find(marker)
    while i != -1:
        yield i
        i = text.find(marker, i + 1)


def _find_mentions(text: str) -> list[Entity]:
    found: list[Entity] = []
    for i in _scan(text, "@"):
        if i > 0 and _is_word(text[i - 1]):
            continue
        j = i + 1
        while j < len(text) and text[j] in _ASCII_WORD:
            j += 1
        size = j - i - 1
        if not 2 <= size <= 32 or (j < len(text) and _is_word(text[j])):
            continue
        if size >= 4 or text[i + 1 : j].lower() in _SHORT_USERNAMES:
            found.append(Entity("mention", i, j))
    return found


def _find_bot_commands(text: str) -> list[Entity]:
    found: list[Entity] = []
    n = len(text)
    for i in _scan(text, "/"):
        if i > 0 and (_is_word(text[i - 1]) or text[i - 1] in "/<>"):
            continue
        j = i + 1
        while j < n and text[j] in _ASCII_WORD:
            j += 1
        if not 1 <= j - i - 1 <= 64:
            continue
        if j < n and text[j] == "@":
            k = j + 1
            while k < n and text[k] in _ASCII_WORD:
                k += 1
            if not 3 <= k - j - 1 <= 32:
                continue
            j = k
        if j < n and (_is_word(text[j]) or text[j] in "/<>"):
            continue
        found.append(Entity("bot_command", i, j))
    return found


def _find_hashtags(text: str) -> list[Entity]:
    found: list[Entity] = []
    n = len(text)
    for i in _scan(text, "#"):
        if i > 0 and _is_hashtag_letter(text[i - 1]):
            continue
        j = i + 1
        has_letter = False
        while j < n and _is_hashtag_letter(text[j]):
            if j - i <= 256:
                has_letter = has_letter or unicodedata.category(text[j])[0] == "L"
            j += 1
        if j == i + 1 or (j < n and text[j] == "#") or not has_letter:
            continue
        found.append(Entity("hashtag", i, min(j, i + 257)))
    return found


def _find_cashtags(text: str) -> list[Entity]:
    found: list[Entity] = []
    n = len(text)
    for i in _scan(text, "$"):
        if i > 0 and (_is_hashtag_letter(text[i - 1]) or text[i - 1] == "$"):
            continue
        j = i + 1
        if text.startswith("1INCH", j):
            j += 5
        else:
            while j < n and "A" <= text[j] <= "Z":
                j += 1
        if not 1 <= j - i - 1 <= 8 or (j < n and (_is_hashtag_letter(text[j]) or text[j] == "$")):
            continue
        found.append(Entity("cashtag", i, j))
    return found


# Top-level domains recognised without "https://" (tdlib knows ~1,500; these cover the usual ones).
_COMMON_TLDS = frozenset({
    "com", "net", "org", "info", "biz", "name", "pro", "mobi", "asia", "app", "dev", "io", "ai", "co", "me",
    "tv", "cc", "to", "ly", "gl", "gg", "xyz", "top", "site", "online", "tech", "cloud", "shop", "store",
    "blog", "news", "wiki", "link", "live", "page", "edu", "gov", "mil", "int", "eu", "uk", "de", "fr", "it",
    "es", "nl", "ru", "ua", "by", "kz", "us", "ca", "au", "nz", "jp", "kr", "cn", "hk", "tw", "mo", "sg",
    "in", "br", "mx", "ar", "ch", "at", "be", "se", "no", "fi", "dk", "pl", "cz", "tr", "il", "ir", "sa",
    "ae", "中国", "中國", "公司", "网络", "網絡",
})
_BAD_PATH_END = ".:;,('?!`"
_URL_RE = re.compile(
    r"(?:(?<![\w+-])(?P<scheme>https?|ftp|tonsite)://|(?<![\w/#@.~-]))"
    r"(?:(?P<user>[^\s/\[\]{}()'`<>\"@«»]+)@)?"
    r"(?P<host>[\w~-]+(?:\.[\w~-]+)+)"
    r"(?::(?P<port>\d{1,5})(?!\d))?"
    r"(?P<path>[/?#][^\s<>\"«»]*)?",
    re.IGNORECASE,
)
_TG_URL_RE = re.compile(r"(?i)(?:tg|ton|tonsite)://[a-z0-9_-]{1,253}(?P<path>[/?#][^\s<>\"«»]*)?")
_EMAIL_RE = re.compile(
    r"^(?:[a-z0-9_-]{0,26}[.+]){0,10}[a-z0-9_-]{1,35}@(?:(?:[a-z0-9][a-z0-9_-]{0,28})?[a-z0-9][.]){1,6}[a-z]{2,8}$",
    re.IGNORECASE,
)


def _trim_path(path: str) -> str:
    """tdlib's fix_url: a path ends at an unbalanced bracket and never with punctuation."""
    depth = {"(": 0, "[": 0, "{": 0}
    closing = {")": "(", "]": "[", "}": "{"}
    cut = len(path)
    for i, ch in enumerate(path):
        if ch in depth:
            depth[ch] += 1
        elif ch in closing:
            depth[closing[ch]] -= 1
            if depth[closing[ch]] < 0:
                cut = i
                break
    path = path[:cut]
    while path and path[-1] in _BAD_PATH_END:
        path = path[:-1]
    return path


def _valid_host(host: str, has_scheme: bool) -> bool:
    parts = host.split(".")
    if any(not part or len(part) >= 64 or part.endswith("-") for part in parts):
        return False
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return True
    if all(p.isdigit() for p in parts):
        return False
    tld = parts[-1]
    if len(tld) <= 1:
        return False
    if tld.lower().startswith("xn--"):
        return len(tld) > 5 and tld[4:].isascii() and tld[4:].isalnum()
    if "_" in tld or "-" in tld or "_" in parts[-2]:
        return False
    return has_scheme or tld.lower() in _COMMON_TLDS


def _find_urls(text: str) -> list[Entity]:
    found: list[Entity] = []
    for match in _URL_RE.finditer(text):
        has_scheme = match["scheme"] is not None
        if not _valid_host(match["host"], has_scheme):
            continue
        end = match.end("port") if match["port"] else match.end("host")
        if match["path"]:
            end = match.start("path") + len(_trim_path(match["path"]))
        start = match.start()
        is_email = not has_scheme and match["user"] and not match["port"] and not match["path"]
        if is_email and _EMAIL_RE.match(text[start:end]):
            found.append(Entity("email", start, end))
        else:
            found.append(Entity("url", start, end))
    for match in _TG_URL_RE.finditer(text):
        end = match.start("path") + len(_trim_path(match["path"])) if match["path"] else match.end()
        found.append(Entity("url", match.start(), end))
    return found


def find_entities(text: str) -> list[Entity]:
    """Mentions, hashtags, cashtags, bot commands, links and e-mail addresses written in ``text``."""
    found = (
        _find_mentions(text) + _find_bot_commands(text) + _find_hashtags(text)
        + _find_cashtags(text) + _find_urls(text)
    )
    return _remove_intersecting(found)


# ------------------------------------------------------------------------------- the whole path


def to_api(text: str, entities: list[Entity]) -> list[dict[str, Any]]:
    """Bot API ``MessageEntity`` dicts with offsets and lengths in UTF-16 code units."""
    units = [0]
    for ch in text:
        units.append(units[-1] + (2 if ord(ch) > 0xFFFF else 1))
    result: list[dict[str, Any]] = []
    for entity in _sorted(entities):
        item: dict[str, Any] = {
            "type": entity.type,
            "offset": units[entity.start],
            "length": units[entity.end] - units[entity.start],
        }
        if entity.type == "text_link":
            item["url"] = entity.extra["url"]
        elif entity.type == "text_mention":
            item["user"] = entity.extra["user"]
        elif entity.type == "pre" and entity.extra.get("language"):
            item["language"] = entity.extra["language"]
        elif entity.type == "custom_emoji":
            item["custom_emoji_id"] = entity.extra["custom_emoji_id"]
        result.append(item)
    return result


def format_text(
    source: str | None,
    parse_mode: str | None,
    raw_entities: Any,
    *,
    find_user: Callable[[int], dict[str, Any] | None],
    allow_empty: bool = False,
) -> tuple[str, list[dict[str, Any]]]:
    """What Telegram keeps of a bot's text: ``(plain text, entities)``.

    Raises :class:`FormattingError` for markup Telegram refuses and :class:`EmptyTextError` when
    nothing is left (unless ``allow_empty``, as for captions). ``find_user`` turns the id of a
    ``tg://user?id=`` link into the mentioned user (or None: the mention is dropped).
    """
    text = source or ""
    mode = (parse_mode or "").strip().lower()
    if text and mode and mode != "none":
        if mode == "html":
            text, entities = parse_html(text)
        elif mode in ("markdown", "markdownv2"):
            raise FormattingError(f"the sandbox does not implement parse_mode {parse_mode}; use HTML")
        else:
            raise FormattingError("unsupported parse_mode")
    else:
        entities = entities_from_api(text, raw_entities)
    for entity in entities:
        if entity.type == "text_mention":
            entity.extra["user"] = find_user(entity.extra.pop("user_id"))
    entities = normalise(entities)
    text = _clean(text, entities)
    try:
        text, entities = _trim(text, normalise(entities))
    except EmptyTextError:
        if allow_empty:
            return "", []
        raise
    if not text.strip():
        if allow_empty:
            return "", []
        raise EmptyTextError("text must be non-empty")
    entities = _merge_found(entities, find_entities(text))
    return text, to_api(text, entities)


def found_entities(text: str) -> list[dict[str, Any]] | None:
    """The entities Telegram finds in a text a user typed (commands, links, …), or None."""
    entities = to_api(text, find_entities(text))
    return entities or None


def to_html(text: str | None, entities: list[dict[str, Any]] | None) -> str:
    """HTML rebuilt from text and entities, exactly as aiogram's ``Message.html_text`` builds it."""
    if not text:
        return ""
    models = [types.MessageEntity.model_validate(e) for e in entities or []]
    return html_decoration.unparse(text, models)
