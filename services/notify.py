"""Telling people things outside their own update: what to render (message name + data) goes into the
outbox; the sender renders it in the recipient's language (``notifications.render``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.accounts import account_locale
from services.models import Account, Region, Staff, StaffRole
from services.outbox import Priority, enqueue, message_payload


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
