"""What a live check-in board needs besides the board itself: one committee in reach, a cheap
fingerprint of its board that changes whenever the board or its alerts change, and one alert as
staff see it (all scoped, as data).

The console's event stream asks :func:`board_version` every few seconds in a short transaction of its
own, instead of holding a database connection (or a LISTEN) per open page: two aggregate queries
over one committee's plans, today's rounds and its recent alerts, by their indexes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, time

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.checkins.alerts import AlertCard, alert_card
from services.checkins.config import CheckinConfig
from services.models import Alert, AlertStatus, CheckinPlan, CheckinRound, Region, RegionLevel
from services.scope import Actor, committee_ids_in_scope


async def committee_in_reach(session: AsyncSession, actor: Actor, committee_id: int | None) -> Region | None:
    """The committee ``committee_id`` if it lies in the actor's staff scope, else None (missing and
    "not yours" look the same)."""
    scope = committee_ids_in_scope(actor)
    if committee_id is None or scope is None or not actor.is_staff:
        return None
    return await session.scalar(select(Region).where(Region.id == committee_id, Region.level == RegionLevel.committee,
                                                     Region.id.in_(scope)))


async def board_version(session: AsyncSession, actor: Actor, committee_id: int, *, now: datetime,
                        cfg: CheckinConfig) -> str | None:
    """A short fingerprint of the committee's board today and of its alerts (open ones, and those closed
    today): it changes when an elder is enrolled, paused or stopped, a round opens or moves on, an alert
    opens, escalates, is taken or closed. None when the committee is not in the actor's staff scope.
    Read only."""
    if await committee_in_reach(session, actor, committee_id) is None:
        return None
    today = cfg.today(now)
    day_start = datetime.combine(today, time(0), cfg.tz)
    rounds = (await session.execute(
        select(CheckinRound.status, func.count(CheckinPlan.id), func.count(CheckinRound.id),
               func.max(CheckinPlan.updated_at), func.max(CheckinRound.id), func.max(CheckinRound.answered_at),
               func.max(CheckinRound.reminded_at), func.max(CheckinRound.alerted_at),
               func.max(CheckinRound.helper_asked_at), func.max(CheckinRound.helper_reminded_at))
        .select_from(CheckinPlan)
        .outerjoin(CheckinRound, and_(CheckinRound.plan_id == CheckinPlan.id, CheckinRound.local_date == today))
        .where(CheckinPlan.committee_id == committee_id)
        .group_by(CheckinRound.status).order_by(CheckinRound.status))).all()
    alerts = (await session.execute(
        select(Alert.status, func.count(), func.max(Alert.id), func.sum(Alert.generation), func.max(Alert.level_at),
               func.max(Alert.acknowledged_at), func.max(Alert.resolved_at), func.max(Alert.opened_at))
        .where(Alert.committee_id == committee_id,
               or_(Alert.status != AlertStatus.resolved, Alert.resolved_at >= day_start))
        .group_by(Alert.status).order_by(Alert.status))).all()
    text = repr((today.isoformat(), [tuple(r) for r in rounds], [tuple(a) for a in alerts]))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class StaffAlert:
    """An alert as the console shows it: its card and the committee it belongs to."""

    card: AlertCard
    committee_id: int


async def staff_alert(session: AsyncSession, actor: Actor, alert_id: int | None, *, cfg: CheckinConfig
                      ) -> StaffAlert | None:
    """One alert (open or closed) if its committee lies in the actor's staff scope, else None. Read
    only (the buttons act through ``acknowledge`` and ``resolve``)."""
    scope = committee_ids_in_scope(actor)
    if alert_id is None or scope is None or not actor.is_staff:
        return None
    alert = await session.scalar(select(Alert).where(Alert.id == alert_id, Alert.committee_id.in_(scope)))
    return None if alert is None else StaffAlert(await alert_card(session, cfg, alert), alert.committee_id)


BOARD_STATES = ("help", "alerted", "handled", "helper_wait", "reminded", "pending", "answered", "paused", "later",
                "not_on_bot")
