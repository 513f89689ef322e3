"""The audit log: every verification attempt, staff decision and data-rights request, and who viewed
which resident in the staff console; read back per staff scope (``entries``, ``resident_history``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Account, AuditLog, Region
from services.scope import Actor, committee_ids_in_scope


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


# --- reading the log (staff console) -------------------------------------------------------------


MAX_PER_PAGE = 10_000  # a page, or an export


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit row as staff read it (plain data)."""

    id: int
    at: datetime
    action: str
    actor_account_id: int | None
    actor_name: str | None  # the Telegram name of who did it (None: the system or a deleted account)
    target_type: str | None
    target_id: int | None
    region: str | None
    outcome: str
    detail: dict | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _regions_in_scope(actor: Actor):
    """Audit rows are filed under a region; staff read those of their regions and everything below
    (the regions ``services.scope`` lets them see residents of)."""
    return committee_ids_in_scope(actor)


def _entries_select(conds: list):
    return (select(AuditLog, Account.first_name, Account.last_name, Account.username, Region.name)
            .outerjoin(Account, Account.id == AuditLog.actor_account_id)
            .outerjoin(Region, Region.id == AuditLog.region_id)
            .where(*conds).order_by(AuditLog.at.desc(), AuditLog.id.desc()))


def _entry(row) -> AuditEntry:
    log, first, last, username, region = row
    name = None
    if log.actor_account_id is not None:
        name = " ".join(p for p in (first, last) if p) or "?"
        if username:
            name = f"{name} (@{username})"
    return AuditEntry(log.id, log.at, log.action, log.actor_account_id, name, log.target_type, log.target_id,
                      region, log.outcome, log.detail)


async def entries(session: AsyncSession, actor: Actor, *, action: str | None = None, page: int = 1,
                  per_page: int = 50) -> AuditPage:
    """The audit log of the actor's staff scope (rows filed under their regions or below), newest
    first, optionally one action (``tag.add``) or a family of them (``tag.``); empty for non-staff."""
    if not actor.is_staff:
        return AuditPage([], 0, 1, per_page)
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    conds: list[ColumnElement[bool]] = [AuditLog.region_id.in_(_regions_in_scope(actor))]
    if action:
        action = action.strip()[:64]
        conds.append(AuditLog.action.startswith(action, autoescape=True) if action.endswith(".")
                     else AuditLog.action == action)
    total = await session.scalar(select(func.count()).select_from(AuditLog).where(*conds)) or 0
    page = min(max(page, 1), max(1, -(-total // per_page)))
    rows = await session.execute(_entries_select(conds).limit(per_page).offset((page - 1) * per_page))
    return AuditPage([_entry(row) for row in rows.all()], total, page, per_page)


async def actions_in_scope(session: AsyncSession, actor: Actor) -> list[str]:
    """The distinct actions recorded in the actor's staff scope (for a filter), alphabetically."""
    if not actor.is_staff:
        return []
    return list(await session.scalars(select(AuditLog.action).where(AuditLog.region_id.in_(_regions_in_scope(actor)))
                                      .distinct().order_by(AuditLog.action)))


async def resident_history(session: AsyncSession, actor: Actor, resident_id: int, *, limit: int = 30
                           ) -> list[AuditEntry]:
    """Who viewed or changed a resident, newest first: the audit rows about it filed in the actor's
    staff scope (the caller has checked the resident is in scope)."""
    if not actor.is_staff:
        return []
    conds = [AuditLog.target_type == "resident", AuditLog.target_id == resident_id,
             AuditLog.region_id.in_(_regions_in_scope(actor))]
    rows = await session.execute(_entries_select(conds).limit(limit))
    return [_entry(row) for row in rows.all()]
