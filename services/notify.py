"""Telling people things outside their own update: rendered in their language, sent via the outbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.accounts import account_locale
from services.i18n import use_locale
from services.models import Account, Region, Staff, StaffRole
from services.outbox import Priority, enqueue, make_payload, message_payload

Render = Callable[[], tuple[str, Sequence[Sequence[dict[str, str]]] | None]]


async def notify(session: AsyncSession, account: Account, key: str, render: Render, *, now: datetime,
                 priority: int = Priority.reply, ref_type: str | None = None, ref_id: int | None = None) -> bool:
    """Enqueue one message for ``account``, rendered in its language, in the caller's transaction."""
    with use_locale(account_locale(account)):
        text, buttons = render()
    return await enqueue(session, key=key, chat_id=account.chat_id, account_id=account.id,
                         payload=make_payload(text, buttons=buttons), priority=priority, now=now,
                         ref_type=ref_type, ref_id=ref_id)


async def tell(session: AsyncSession, account: Account, key: str, message: str, data: dict[str, Any], *,
               now: datetime, priority: int = Priority.reply, ref_type: str | None = None,
               ref_id: int | None = None) -> bool:
    """Enqueue message ``message`` (rendered when sent, in the account's language) for ``account``,
    in the caller's transaction; idempotent by ``key``."""
    return await enqueue(session, key=key, chat_id=account.chat_id, account_id=account.id,
                         payload=message_payload(message, data, locale=account_locale(account)),
                         priority=priority, now=now, ref_type=ref_type, ref_id=ref_id)


async def committee_staff(session: AsyncSession, committee: Region, *, role: StaffRole = StaffRole.committee
                          ) -> list[Account]:
    """Active staff accounts of ``role`` whose region covers the committee (its own staff first)."""
    prefixes = [committee.path[: i + 1] for i, ch in enumerate(committee.path) if ch == "/" and i > 0]
    rows = await session.execute(
        select(Account, Region.path).join(Staff, Staff.account_id == Account.id)
        .join(Region, Region.id == Staff.region_id)
        .where(Staff.active.is_(True), Staff.role == role, Region.path.in_(prefixes))
    )
    ordered = sorted(rows.all(), key=lambda r: -len(r[1]))
    seen, out = set(), []
    for account, _path in ordered:
        if account.id not in seen:
            seen.add(account.id)
            out.append(account)
    return out
