"""The audit log: every verification attempt, staff decision and data-rights request."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.models import AuditLog


def record(
    session: AsyncSession,
    action: str,
    *,
    now: datetime,
    actor_account_id: int | None = None,
    target_type: str | None = None,
    target_id: int | None = None,
    region_id: int | None = None,
    outcome: str = "ok",
    detail: dict | None = None,
) -> AuditLog:
    """Add one audit row to the caller's transaction. Callers never put phone or ID numbers in it."""
    row = AuditLog(
        at=now,
        action=action,
        actor_account_id=actor_account_id,
        target_type=target_type,
        target_id=target_id,
        region_id=region_id,
        outcome=outcome,
        detail=detail,
    )
    session.add(row)
    return row
