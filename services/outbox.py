"""Enqueue messages into the outbox and ask how their delivery went.

A use case that wants to tell someone something calls :func:`enqueue` in the same transaction as
its state change; the sender (``notifications.sender``) delivers later. Payloads are neutral JSON,
built here without aiogram::

    {"text": "…", "parse_mode": "HTML" | None,
     "buttons": [[{"text": "…", "callback_data": "…"} | {"text": "…", "url": "…"}], …] | None,
     "photo": {"file_id": "…"} | {"path": "…"},          # optional; text becomes the caption
     "document": {"file_id": "…"} | {"path": "…"}}       # optional; text becomes the caption

or, from services (which never hold markup), what to render when it is sent::

    {"message": "checkins.alert", "data": {…plain JSON…}, "locale": "zh_Hans", "photo"/"document": …,
     "edit_message_id": 123}                              # optional: edit that message in place

rendered by ``notifications.render.render_message`` in the recipient's language.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.models.core import Account
from services.models.outbox import FINAL_STATUSES, OutboxMessage, OutboxStatus
from services.sql import rowcount

__all__ = [
    "OutboxItem",
    "OutboxStatus",
    "Priority",
    "button",
    "cancel",
    "delivery_counts",
    "delivery_statuses",
    "enqueue",
    "enqueue_many",
    "make_payload",
    "message_payload",
    "purge_finished",
    "redact_finished",
    "validate_payload",
]


class Priority(enum.IntEnum):
    """Lower goes first: an alert is never stuck behind a broadcast."""

    alert = 0
    checkin = 1
    reply = 2
    broadcast = 3


MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64  # bytes, Telegram's limit


def button(text: str, *, callback_data: str | None = None, url: str | None = None) -> dict[str, str]:
    """One inline button: exactly one of ``callback_data`` or ``url``."""
    if callback_data is not None and url is None:
        return {"text": text, "callback_data": callback_data}
    if url is not None and callback_data is None:
        return {"text": text, "url": url}
    raise ValueError("a button needs exactly one of callback_data or url")


def make_payload(
    text: str,
    *,
    parse_mode: str | None = "HTML",
    buttons: Sequence[Sequence[dict[str, str]]] | None = None,
    photo: dict[str, str] | None = None,
    document: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build (and check) a neutral payload."""
    payload: dict[str, Any] = {
        "text": text,
        "parse_mode": parse_mode,
        "buttons": [list(row) for row in buttons] if buttons else None,
    }
    if photo is not None:
        payload["photo"] = dict(photo)
    if document is not None:
        payload["document"] = dict(document)
    validate_payload(payload)
    return payload


def message_payload(
    message: str,
    data: dict[str, Any],
    *,
    locale: str,
    photo: dict[str, str] | None = None,
    document: dict[str, str] | None = None,
    edit_message_id: int | None = None,
) -> dict[str, Any]:
    """A payload saying what to render (``message`` + plain-JSON ``data``) in ``locale`` when sent.

    With ``edit_message_id`` (the Telegram id of a text message the bot sent to the same chat) the
    message is edited in place to the new text and buttons instead of sent anew."""
    payload: dict[str, Any] = {"message": message, "data": data, "locale": locale}
    if photo is not None:
        payload["photo"] = dict(photo)
    if document is not None:
        payload["document"] = dict(document)
    if edit_message_id is not None:
        payload["edit_message_id"] = edit_message_id
    validate_payload(payload)
    return payload


def validate_payload(payload: dict[str, Any]) -> None:
    """Raise ``ValueError`` if the payload cannot be sent (caught at enqueue, not in the sender)."""
    if not isinstance(payload, dict):
        raise ValueError("payload must be a dict")
    if "message" in payload:
        if not isinstance(payload["message"], str) or not isinstance(payload.get("data"), dict):
            raise ValueError("a message payload needs a name and a data dict")
        if not isinstance(payload.get("locale"), str):
            raise ValueError("a message payload needs the recipient's locale")
        edit = payload.get("edit_message_id")
        if edit is not None and (not isinstance(edit, int) or isinstance(edit, bool) or edit < 1
                                 or payload.get("photo") or payload.get("document")):
            raise ValueError("edit_message_id must be the id of a text message")
        return
    text = payload.get("text")
    if not isinstance(text, str):
        raise ValueError("payload.text must be a string")
    media = [k for k in ("photo", "document") if payload.get(k) is not None]
    if len(media) > 1:
        raise ValueError("a payload carries at most one of photo or document")
    if media:
        ref = payload[media[0]]
        if not isinstance(ref, dict) or len([k for k in ("file_id", "path") if ref.get(k)]) != 1:
            raise ValueError(f"payload.{media[0]} needs exactly one of file_id or path")
        if len(text) > MAX_CAPTION:
            raise ValueError(f"caption longer than {MAX_CAPTION} characters")
    else:
        if not text.strip():
            raise ValueError("payload.text is empty")
        if len(text) > MAX_TEXT:
            raise ValueError(f"text longer than {MAX_TEXT} characters")
    if payload.get("parse_mode") not in (None, "HTML"):
        raise ValueError("parse_mode must be 'HTML' or None")
    buttons = payload.get("buttons")
    if buttons is None:
        return
    if not isinstance(buttons, list) or not all(isinstance(row, list) and row for row in buttons):
        raise ValueError("buttons must be a list of non-empty rows")
    for row in buttons:
        for b in row:
            if not isinstance(b, dict) or not isinstance(b.get("text"), str):
                raise ValueError("each button needs a text")
            if ("callback_data" in b) == ("url" in b):
                raise ValueError("each button needs exactly one of callback_data or url")
            if "callback_data" in b and len(b["callback_data"].encode()) > MAX_CALLBACK_DATA:
                raise ValueError(f"callback_data longer than {MAX_CALLBACK_DATA} bytes")


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One message for :func:`enqueue_many`."""

    key: str
    chat_id: int
    payload: dict[str, Any]
    priority: int = Priority.broadcast
    account_id: int | None = None
    not_before: datetime | None = None
    ref_type: str | None = None
    ref_id: int | None = None


def _row(item: OutboxItem, now: datetime) -> dict[str, Any]:
    validate_payload(item.payload)
    return {
        "idempotency_key": item.key,
        "chat_id": item.chat_id,
        "account_id": item.account_id,
        "priority": int(item.priority),
        "payload": item.payload,
        "status": OutboxStatus.pending,
        "not_before": item.not_before or now,
        "attempts": 0,
        "ref_type": item.ref_type,
        "ref_id": item.ref_id,
        "created_at": now,
    }


def _insert(session: AsyncSession):
    dialect = session.get_bind().dialect.name
    module = {"postgresql": postgresql, "sqlite": sqlite}.get(dialect)
    if module is None:
        raise NotImplementedError(f"outbox needs PostgreSQL or SQLite, not {dialect}")
    return module.insert(OutboxMessage).on_conflict_do_nothing(index_elements=["idempotency_key"])


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    chat_id: int,
    payload: dict[str, Any],
    priority: int,
    account_id: int | None = None,
    not_before: datetime | None = None,
    ref_type: str | None = None,
    ref_id: int | None = None,
    now: datetime,
) -> bool:
    """Add one message in the caller's transaction (no commit). Idempotent on ``key``.

    Returns True if a row was inserted, False if that key was already queued.
    """
    item = OutboxItem(key, chat_id, payload, priority, account_id, not_before, ref_type, ref_id)
    result = await session.execute(_insert(session).values(_row(item, now)))
    return rowcount(result) == 1


async def enqueue_many(session: AsyncSession, items: Iterable[OutboxItem], *, now: datetime) -> int:
    """Add many messages in one batched statement (no commit). Idempotent on each key.

    Returns how many rows were new.
    """
    rows = [_row(item, now) for item in items]
    if not rows:
        return 0
    # RETURNING makes SQLAlchemy batch the rows into multi-VALUES statements ("insertmanyvalues"),
    # which is both the fastest path on both drivers and an exact count of what was new.
    result = await session.execute(_insert(session).returning(OutboxMessage.id), rows)
    return len(result.all())


# Built once (an elder's every answer cancels their round's reminder): the refs bound when it runs.
# Outbox rows are never loaded as objects where they are cancelled, so there are none to synchronise
# (the ORM could not evaluate bound criteria against them anyway).
_CANCEL = (update(OutboxMessage)
           .where(OutboxMessage.ref_type == bindparam("cancel_ref_type"),  # an UPDATE keeps column names for SET
                  OutboxMessage.ref_id.in_(bindparam("cancel_ref_ids", expanding=True)),
                  OutboxMessage.status == OutboxStatus.pending)
           .values(status=OutboxStatus.cancelled, claimed_by=None, claimed_until=None)
           .execution_options(synchronize_session=False))


async def cancel(session: AsyncSession, ref_type: str, ref_ids: Iterable[int]) -> int:
    """Cancel what is still pending for these refs (rows already being sent go out). No commit."""
    ids = list(ref_ids)
    if not ids:
        return 0
    return rowcount(await session.execute(_CANCEL, {"cancel_ref_type": ref_type, "cancel_ref_ids": ids}))


async def delivery_counts(
    session: AsyncSession, ref_type: str, ref_ids: Iterable[int]
) -> dict[OutboxStatus, int]:
    """How many rows of these refs are in each status (every status present, zero if none)."""
    counts = dict.fromkeys(OutboxStatus, 0)
    ids = list(ref_ids)
    if not ids:
        return counts
    rows = await session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.ref_type == ref_type, OutboxMessage.ref_id.in_(ids))
        .group_by(OutboxMessage.status)
    )
    for status, n in rows:
        counts[OutboxStatus(status)] = n
    return counts


async def delivery_statuses(
    session: AsyncSession, ref_type: str, ref_ids: Iterable[int]
) -> dict[int, OutboxStatus]:
    """The status of each ref's message (per-person delivery report). Refs with no row are absent.

    If a ref has several rows, the most advanced one wins (sent over pending over failed).
    """
    ids = list(ref_ids)
    if not ids:
        return {}
    rank = {OutboxStatus.sent: 0, OutboxStatus.sending: 1, OutboxStatus.pending: 2,
            OutboxStatus.unreachable: 3, OutboxStatus.failed: 4, OutboxStatus.cancelled: 5}
    result: dict[int, OutboxStatus] = {}
    rows = await session.execute(
        select(OutboxMessage.ref_id, OutboxMessage.status)
        .where(OutboxMessage.ref_type == ref_type, OutboxMessage.ref_id.in_(ids))
    )
    for ref_id, status in rows:
        if ref_id is None:  # not selected by the IN above; ref_id is nullable in the table
            continue
        status = OutboxStatus(status)
        if ref_id not in result or rank[status] < rank[result[ref_id]]:
            result[ref_id] = status
    return result


REDACTED_PAYLOAD: dict[str, Any] = {"redacted": True}


async def redact_finished(session: AsyncSession, *, older_than: timedelta, now: datetime) -> int:
    """Blank the payloads of finished messages (sent, failed, unreachable, cancelled) made before
    ``now - older_than``: an alert's text holds names, addresses and phone numbers, and nothing reads
    a finished payload again. Status, times, chat and idempotency key stay (delivery reports, no
    duplicate on a late retry). Idempotent; returns how many rows it blanked."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status.in_(FINAL_STATUSES), OutboxMessage.redacted_at.is_(None),
               OutboxMessage.created_at < now - older_than)
        .values(payload=REDACTED_PAYLOAD, redacted_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


async def purge_finished(session: AsyncSession, *, older_than: timedelta, now: datetime) -> int:
    """Delete finished rows (sent, failed, unreachable, cancelled) created before ``now - older_than``.

    The idempotency key is forgotten with the row, so keep rows longer than any retry of an enqueue.
    """
    result = await session.execute(
        delete(OutboxMessage).where(OutboxMessage.status.in_(FINAL_STATUSES),
                                    OutboxMessage.created_at < now - older_than)
    )
    return rowcount(result)


# --- The sender's side: claim → send → mark. Database only; the sending lives in notifications/. ---


async def claim(
    session: AsyncSession,
    *,
    worker_id: str,
    limit: int,
    lease: timedelta,
    now: datetime,
    skip_chats: Iterable[int] = (),
) -> list[OutboxMessage]:
    """Take up to ``limit`` due rows, highest priority first, at most one per chat. No commit.

    The rows become ``sending`` with a lease until ``now + lease``. On PostgreSQL the candidates are
    read with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers never get the same row; on SQLite the
    caller's transaction is a ``BEGIN IMMEDIATE`` (one writer), so select-then-update is safe.
    ``skip_chats`` are chats the caller may not send to yet (per-chat rate).
    """
    skip = list(skip_chats)
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.pending, OutboxMessage.not_before <= now)
        .order_by(OutboxMessage.priority, OutboxMessage.not_before, OutboxMessage.id)
        # Twice the limit: rows beyond the first per chat are left alone (and unlocked at commit).
        .limit(limit * 2)
        .with_for_update(skip_locked=True)
    )
    if skip:
        query = query.where(OutboxMessage.chat_id.not_in(skip))
    chosen: list[OutboxMessage] = []
    seen: set[int] = set()
    for row in (await session.execute(query)).scalars():
        if row.chat_id in seen:
            continue
        seen.add(row.chat_id)
        chosen.append(row)
        if len(chosen) == limit:
            break
    if not chosen:
        return []
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_([row.id for row in chosen]))
        .values(status=OutboxStatus.sending, claimed_by=worker_id, claimed_until=now + lease),
    )
    return chosen


async def reclaim_expired(session: AsyncSession, *, now: datetime) -> int:
    """Put rows whose lease ran out (their worker died mid-send) back to pending. No commit.

    Such a row may or may not have reached Telegram: this is where the in-flight window of
    duplicates comes from. Attempts are not counted, so a crash never turns into a lost message.
    """
    ids = (await session.scalars(
        select(OutboxMessage.id)
        .where(OutboxMessage.status == OutboxStatus.sending, OutboxMessage.claimed_until < now)
        .with_for_update(skip_locked=True)
    )).all()
    if not ids:
        return 0
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id.in_(ids))
        .values(status=OutboxStatus.pending, claimed_by=None, claimed_until=None,
                last_error="lease expired: the sender stopped while sending")
        .execution_options(synchronize_session=False)
    )
    return len(ids)


_IN_FLIGHT = (OutboxStatus.sending, OutboxStatus.pending)


async def _finish(session: AsyncSession, message_id: int, values: dict[str, Any]) -> Row[Any] | None:
    # Only a row not yet final is marked, so two workers racing on an expired lease (or a cancel)
    # report an outcome once: the loser gets None and fires no listener. claimed_by is kept: it
    # tells which sender handled the row last. Core, not ORM: this runs once per message.
    table = cast(Table, OutboxMessage.__table__)  # a declarative class over one Table
    result = await session.execute(
        update(table)
        .where(table.c.id == message_id, table.c.status.in_(_IN_FLIGHT))
        .values(claimed_until=None, **values)
        .returning(*table.c)
    )
    return result.one_or_none()


async def mark_sent(
    session: AsyncSession, message_id: int, *, telegram_message_id: int | None, now: datetime
) -> Row[Any] | None:
    """Record a delivery. Returns the row's new values, or None if it was already final. No commit.

    The ``mark_*`` functions return a Core row (attribute access: ``.status``, ``.ref_id``, …).
    """
    return await _finish(session, message_id, {
        "status": OutboxStatus.sent, "sent_at": now, "telegram_message_id": telegram_message_id,
        "last_error": None})


async def mark_unreachable(
    session: AsyncSession, message_id: int, *, error: str, now: datetime
) -> Row[Any] | None:
    """The user blocked the bot: the row is unreachable and so is the account. No commit."""
    row = await _finish(session, message_id, {"status": OutboxStatus.unreachable, "last_error": error})
    if row is None:
        return None
    by_chat = row.account_id is None
    target = Account.chat_id == row.chat_id if by_chat else Account.id == row.account_id
    await session.execute(
        update(Account).where(target, Account.unreachable_at.is_(None)).values(unreachable_at=now)
        .execution_options(synchronize_session=False)
    )
    return row


async def mark_failed(
    session: AsyncSession, message_id: int, *, error: str, now: datetime
) -> Row[Any] | None:
    """Give up on a row (permanent error). No commit."""
    return await _finish(session, message_id, {
        "status": OutboxStatus.failed, "last_error": error, "attempts": OutboxMessage.__table__.c.attempts + 1})


async def mark_retry(
    session: AsyncSession,
    message_id: int,
    *,
    error: str,
    now: datetime,
    max_attempts: int = 5,
    base_delay: timedelta = timedelta(seconds=2),
    max_delay: timedelta = timedelta(minutes=10),
) -> Row[Any] | None:
    """Count a failed attempt: back to pending after an exponential backoff, or failed after
    ``max_attempts``. Returns the row (check its status), or None if it was already final. No commit."""
    attempts = await session.scalar(
        select(OutboxMessage.attempts).where(OutboxMessage.id == message_id))
    if attempts is None:
        return None
    attempts += 1
    if attempts >= max_attempts:
        return await _finish(session, message_id, {
            "status": OutboxStatus.failed, "attempts": attempts,
            "last_error": f"gave up after {attempts} attempts: {error}"})
    delay = min(base_delay * 2 ** (attempts - 1), max_delay)
    return await _finish(session, message_id, {
        "status": OutboxStatus.pending, "attempts": attempts, "not_before": now + delay,
        "last_error": error})


async def release(session: AsyncSession, message_ids: Iterable[int], *, not_before: datetime | None = None,
                  chat_id: int | None = None) -> int:
    """Hand claimed rows back untouched (flood wait, shutdown, chat migrated). No commit."""
    ids = list(message_ids)
    if not ids:
        return 0
    values: dict[str, Any] = {"status": OutboxStatus.pending, "claimed_by": None, "claimed_until": None}
    if not_before is not None:
        values["not_before"] = not_before
    if chat_id is not None:
        values["chat_id"] = chat_id
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.status == OutboxStatus.sending)
        .values(**values).execution_options(synchronize_session=False)
    )
    return rowcount(result)
