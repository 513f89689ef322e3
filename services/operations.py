"""Figures for operating a deployment: what ``/healthz`` and ``/metrics`` read from the database.

Every figure is one aggregate query over an index (the outbox's claim index, the alerts' status
index), so a scrape every few seconds costs the database next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import OutboxMessage, OutboxStatus
from services.models.checkins import Alert, AlertStatus
from services.outbox import Priority


@dataclass(frozen=True)
class OutboxFigures:
    """Messages due now and not sent (pending, or claimed by a sender whose lease ran out, or in
    flight), per priority name; ``lag`` is the age in seconds of the oldest of them."""

    depth: dict[str, int] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)

    def lag_above(self, priority: Priority) -> float:
        """The longest wait among priorities more urgent than ``priority``."""
        return max((self.lag.get(p.name, 0.0) for p in Priority if p < priority), default=0.0)


def _due(now: datetime):
    return or_(
        and_(OutboxMessage.status == OutboxStatus.pending, OutboxMessage.not_before <= now),
        OutboxMessage.status == OutboxStatus.sending,
    )


async def outbox_figures(session: AsyncSession, now: datetime) -> OutboxFigures:
    """Depth and lag of the outbox by priority, as of ``now`` (every priority is named, 0 if empty)."""
    rows = (await session.execute(
        select(OutboxMessage.priority, func.count(), func.min(OutboxMessage.not_before))
        .where(_due(now))
        .group_by(OutboxMessage.priority)
    )).all()
    depth = {p.name: 0 for p in Priority}
    lag = {p.name: 0.0 for p in Priority}
    for priority, count, oldest in rows:
        name = Priority(priority).name
        depth[name] = int(count)
        if oldest is not None:
            lag[name] = max(0.0, (now - oldest).total_seconds())
    return OutboxFigures(depth, lag)


async def unresolved_alerts(session: AsyncSession) -> dict[str, int]:
    """Check-in alerts nobody has resolved yet: how many are open and how many acknowledged."""
    rows = (await session.execute(
        select(Alert.status, func.count())
        .where(Alert.status.in_((AlertStatus.open, AlertStatus.acknowledged)))
        .group_by(Alert.status)
    )).all()
    counts = {AlertStatus.open.value: 0, AlertStatus.acknowledged.value: 0}
    for status, count in rows:
        counts[AlertStatus(status).value] = int(count)
    return counts
