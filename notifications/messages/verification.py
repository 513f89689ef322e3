"""Outbox messages of verification: a new request for the committee's staff (with its decision
buttons). The resident's "verification.decision" is a plain template."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifications.callbacks import ReviewCb
from notifications.render import MessageBuilder, Rendered, t
from services.i18n import _


def request(data: Mapping[str, Any]) -> Rendered:
    """data: ``id``, ``name``, ``address`` (as typed by the person: escaped here)."""
    text = t("New verification request #{id}: {name}, {address}. Send /pending to review.",
             id=data["id"], name=data["name"], address=data.get("address") or "—")
    return Rendered(text, [[{"text": _("Approve"), "callback_data": ReviewCb(id=data["id"], decision="a").pack()},
                            {"text": _("Reject"), "callback_data": ReviewCb(id=data["id"], decision="r").pack()}]])


MESSAGES: dict[str, MessageBuilder] = {"verification.request": request}
