"""Outbox messages of notices: the notice itself (and its reminder) with its "Received" button."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifications.callbacks import ReceivedCb
from notifications.render import Markup, MessageBuilder, Rendered, render_template
from services.i18n import _


def notice(data: Mapping[str, Any]) -> Rendered:
    """data: ``id``, ``text`` and ``reminder``. The text is the author's message as Telegram HTML
    (``Message.html_text``: their bold and italics, everything else already escaped), so it is
    trusted as markup; nothing else in it comes from a resident or the registry."""
    text = render_template("notices/notice.html", text=Markup(data["text"]), reminder=bool(data.get("reminder")))
    return Rendered(text, [[{"text": _("Received ✓"), "callback_data": ReceivedCb(id=data["id"]).pack()}]])


MESSAGES: dict[str, MessageBuilder] = {"notices.notice": notice}
