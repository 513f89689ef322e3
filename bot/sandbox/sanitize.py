"""Turn a bot message into HTML that is safe to inject into the chat page.

Telegram's HTML parse mode accepts a small set of tags; everything else the bot sends must be
shown as text, never interpreted by the browser.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser

# Telegram's tag aliases are normalised to one tag each.
_TAGS = {
    "b": "b",
    "strong": "b",
    "i": "i",
    "em": "i",
    "u": "u",
    "ins": "u",
    "s": "s",
    "strike": "s",
    "del": "s",
    "code": "code",
    "pre": "pre",
    "a": "a",
    "tg-spoiler": "tg-spoiler",
    "blockquote": "blockquote",
}
_SAFE_URL_SCHEMES = ("http://", "https://", "tg://", "mailto:")


class _Sanitizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "span" and ("class", "tg-spoiler") in attrs:
            tag = "tg-spoiler"
        name = _TAGS.get(tag)
        if name is None:
            self.out.append(html.escape(self.get_starttag_text() or ""))
            return
        if name == "a":
            href = dict(attrs).get("href") or ""
            if href.strip().lower().startswith(_SAFE_URL_SCHEMES):
                safe_href = html.escape(href.strip(), quote=True)
                self.out.append(f'<a href="{safe_href}" target="_blank" rel="noopener noreferrer">')
            else:
                self.out.append("<a>")
        else:
            self.out.append(f"<{name}>")
        self.open.append(name)

    def handle_endtag(self, tag: str) -> None:
        name = _TAGS.get(tag, "tg-spoiler" if tag == "span" else None)
        if name is None or name not in self.open:
            self.out.append(html.escape(f"</{tag}>"))
            return
        # Close anything left open inside, so the output is always well nested.
        while self.open:
            top = self.open.pop()
            self.out.append(f"</{top}>")
            if top == name:
                break

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.append(html.escape(self.get_starttag_text() or ""))

    def handle_data(self, data: str) -> None:
        self.out.append(html.escape(data, quote=False))

    def handle_comment(self, data: str) -> None:
        self.out.append(html.escape(f"<!--{data}-->", quote=False))

    def handle_decl(self, decl: str) -> None:
        self.out.append(html.escape(f"<!{decl}>", quote=False))

    def handle_pi(self, data: str) -> None:
        self.out.append(html.escape(f"<?{data}>", quote=False))

    def unknown_decl(self, data: str) -> None:
        self.out.append(html.escape(f"<![{data}]>", quote=False))

    def result(self) -> str:
        self.close()
        while self.open:
            self.out.append(f"</{self.open.pop()}>")
        return "".join(self.out)


def telegram_html_to_safe_html(text: str, parse_mode: str | None) -> str:
    """HTML for the chat page: Telegram's formatting tags kept, everything else escaped."""
    if (parse_mode or "").upper() != "HTML":
        return html.escape(text, quote=False)
    parser = _Sanitizer()
    parser.feed(text)
    return parser.result()
