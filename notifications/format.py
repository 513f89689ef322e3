"""Values as a person reads them, in the current locale: names, local times, yes/no, registry codes.

These return plain text (the templates and ``t()`` escape it). Services hand over typed values
(``bool``, ``datetime``, codes such as ``"M"`` or ``"local"``); this module is where they become words.
"""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.i18n import N_, _, normalize_locale
from services.identity import mask_phone

LANGUAGE_NAMES = {"zh_Hans": "简体中文", "en": "English"}
ZONE_NAMES = {"Asia/Shanghai": N_("Shanghai time")}
GENDERS = {"M": N_("male"), "F": N_("female")}
HUKOU = {"local": N_("local (this city)"), "nonlocal": N_("from another city")}
RESIDENT_STATUSES = {"active": N_("lives here"), "moved_out": N_("moved out? (missing from the last import)"),
                     "withdrawn": N_("withdrew (/forget)")}
VERIFICATION_METHODS = {"contact": N_("phone number and registry check"), "invite": N_("household invite code"),
                        "review": N_("checked by committee staff")}
ROLE_NAMES = {"committee": N_("committee"), "street": N_("street"), "district": N_("district"), "admin": N_("admin")}


def _is_cjk(text: str) -> bool:
    return bool(text) and all(unicodedata.name(ch, "").startswith(("CJK", "HANGUL")) or ch in "·・"
                              for ch in text.replace(" ", ""))


def person_name(first_name: str | None, last_name: str | None = None, *, fallback: str = "") -> str:
    """A Telegram user's whole name: ``first last``, or family name first without a space when both
    parts are Chinese (Telegram's "四" + "张" is 张四)."""
    first, last = (first_name or "").strip(), (last_name or "").strip()
    if first and last:
        return last + first if _is_cjk(first) and _is_cjk(last) else f"{first} {last}"
    return first or last or fallback


def zone_name(tz: ZoneInfo) -> str:
    key = getattr(tz, "key", str(tz))
    return _(ZONE_NAMES[key]) if key in ZONE_NAMES else _("{zone} time").format(zone=key)


def local_time(when: datetime, tz: ZoneInfo, *, with_zone: bool = True) -> str:
    """``2026-11-29 17:05 Shanghai time``: minutes, in the committee's zone, saying which zone."""
    text = when.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    return f"{text} {zone_name(tz)}" if with_zone else text


def yes_no(value: bool) -> str:
    return _("yes") if value else _("no")


def language_name(code: str | None) -> str:
    return LANGUAGE_NAMES.get(normalize_locale(code), code or "")


def role_name(role: Any) -> str:
    key = str(getattr(role, "value", role))
    return _(ROLE_NAMES[key]) if key in ROLE_NAMES else key


def resident_status(status: Any) -> str:
    key = str(getattr(status, "value", status))
    return _(RESIDENT_STATUSES[key]) if key in RESIDENT_STATUSES else key


def room_text(building: str | None, unit: str | None, room: str | None) -> str:
    """``3-2-201`` (building-unit-room; unknown parts left out)."""
    return "-".join(p for p in (building, unit, room) if p)


def field_value(field: str, value: Any, tz: ZoneInfo) -> str:
    """One registry or account field as a person reads it (phones masked: the file has them whole)."""
    if value is None or value == "":
        return "—"
    if field.endswith("phone"):
        return mask_phone(str(value))
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, datetime):
        return local_time(value, tz)
    if isinstance(value, date):
        return value.isoformat()
    match field:
        case "gender":
            return _(GENDERS[value]) if value in GENDERS else str(value)
        case "hukou":
            return _(HUKOU[value]) if value in HUKOU else str(value)
        case "language":
            return language_name(value)
        case "status":
            return resident_status(value)
        case "verification_method":
            return _(VERIFICATION_METHODS[value]) if value in VERIFICATION_METHODS else str(value)
        case "disability_level":
            return _("level {n}").format(n=value)
        case "monthly_income":
            return _("{n} yuan").format(n=value)
        case "floor_area":
            return f"{float(value):.2f}"  # m², as the label says
    return str(getattr(value, "value", value))
