"""What every check-in module shares: the refusal type, outbox references, history events, labels."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, overload

from sqlalchemy import JSON, ColumnElement, Integer, String, case, cast, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.i18n import LOCALES
from services.models import Account, CheckinPlan, Resident, ResidentStatus, RoundEvent

REF_ROUND = "checkin"  # outbox ref_type of prompts and reminders (ref_id = round id)
REF_ALERT = "checkin_alert"  # outbox ref_type of alert messages (ref_id = alert id)
REF_REPORT = "checkin_report"  # weekly reports (ref_id = committee id)
REF_PLAN = "checkin_plan"  # enrolment, pause and stop notices (ref_id = plan id)
REF_LIST = "checkin_list"  # a helper's list of elders to answer for (ref_id = the recipient's account id)
REF_LIST_EDIT = "checkin_list_edit"  # an edit of such a list, in place (ref_id = the recipient's account id)
REF_HELPER = "checkin_helper"  # helper assignments and hand-over notices (ref_id = plan or hand-over id)
BATCH = 500  # alerts / escalations handled per step and tick (each needs its own messages)


class CheckinError(Exception):
    """A refusal with a machine-readable reason; nothing was changed (handlers word it politely)."""

    def __init__(self, reason: str, **info: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.info = info


def record_event(session: AsyncSession, round_id: int, kind: str, now: datetime, *, alert_id: int | None = None,
                 actor: int | None = None, target: int | None = None, detail: dict | None = None) -> None:
    """Add one line to a round's history (in the caller's transaction)."""
    session.add(RoundEvent(round_id=round_id, alert_id=alert_id, at=now, kind=kind, actor_account_id=actor,
                           target_account_id=target, detail=detail))


def insert_into(session: AsyncSession, table):
    """``INSERT`` of the session's dialect, with ``ON CONFLICT`` (PostgreSQL or SQLite)."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)


def is_postgres(session: AsyncSession) -> bool:
    """Whether the session talks to PostgreSQL (SKIP LOCKED, planner settings) rather than SQLite."""
    return session.get_bind().dialect.name == "postgresql"


def account_name(account: Account | None) -> str:
    """A person as staff and family see them: Telegram name, and @username when there is one (plain text)."""
    if account is None:
        return "—"
    name = " ".join(p for p in (account.first_name, account.last_name) if p) or "?"
    return f"{name} (@{account.username})" if account.username else name


def room_of(resident: Resident) -> str:
    """Where a resident lives, as plain text: ``compound building-unit-room`` or ``—``."""
    parts = [p for p in (resident.building, resident.unit, resident.room) if p]
    place = "-".join(parts) if parts else "—"
    return f"{resident.compound} {place}" if resident.compound else place


def plans_due(today: date) -> list[ColumnElement[bool]]:
    """Plans with a round on local date ``today``, whatever the time of day (joined with their
    resident): active, a day of theirs, started, not paused, the resident active."""
    bit = 1 << today.weekday()
    return [CheckinPlan.active.is_(True), CheckinPlan.days.op("&")(bit) != 0, CheckinPlan.starts_on <= today,
            or_(CheckinPlan.paused_until.is_(None), CheckinPlan.paused_until < today),
            Resident.status == ResidentStatus.active]


async def elder_phone(session: AsyncSession, resident: Resident) -> tuple[str | None, str | None]:
    """The number to call an elder on and where it comes from: the registry's ("registry"), else the
    one their account shared as its own Telegram contact while verifying ("telegram")."""
    if resident.phone:
        return resident.phone, "registry"
    # No number in the registry (e.g. verified by staff review).
    phone = await session.scalar(select(Account.phone).where(Account.resident_id == resident.id))
    return (phone, "telegram") if phone else (None, None)


@overload
def local_iso(when: datetime, tz) -> str: ...


@overload
def local_iso(when: datetime | None, tz) -> str | None: ...


def local_iso(when: datetime | None, tz) -> str | None:
    """An instant as local ISO text for message data (rendered as a local time when sent)."""
    return when.astimezone(tz).isoformat() if when is not None else None


def locale_sql(default: str) -> ColumnElement[str]:
    """SQL twin of ``services.accounts.account_locale``: chosen language, else Telegram's, else default."""
    lang = func.lower(func.coalesce(Account.language_code, ""))
    return case((Account.locale.in_(LOCALES), Account.locale), (lang.like("zh%"), "zh_Hans"),
                (lang.like("en%"), "en"), else_=default)


def message_payload_sql(session: AsyncSession, message: str, data: dict[str, Any], locale: ColumnElement[str]):
    """``services.outbox.message_payload`` built by the database for an ``INSERT … SELECT``.

    Values of ``data`` are JSON literals, integer SQL expressions (a round id, a minute) or date
    columns (quoted); the locale is one of ours. The JSON text is spliced together in SQL, so a bulk step queues 100,000
    messages in one statement without a row of Python per elder.
    """
    parts: list[Any] = ['{"message": ', json.dumps(message), ', "data": {']
    for i, (key, value) in enumerate(data.items()):
        parts.append((", " if i else "") + json.dumps(key) + ": ")
        if hasattr(value, "__clause_element__"):  # a mapped attribute, e.g. CheckinRound.id
            value = value.__clause_element__()
        if not isinstance(value, ColumnElement):
            parts.append(json.dumps(value, ensure_ascii=False))
        elif isinstance(value.type, Integer):
            parts.append(cast(value, String))
        else:  # a date: digits and dashes, quoted
            parts += ['"', cast(value, String), '"']
    parts += ['}, "locale": "', locale, '"}']
    expr: ColumnElement[str] | None = None
    text_run = ""
    for part in parts:
        if isinstance(part, str):
            text_run += part
            continue
        piece = literal(text_run, String) + part if text_run else part
        expr = piece if expr is None else expr + piece
        text_run = ""
    if text_run:
        expr = literal(text_run, String) if expr is None else expr + literal(text_run, String)
    if is_postgres(session):
        return cast(expr, JSON)
    return expr  # SQLite keeps JSON as text
