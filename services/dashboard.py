"""The staff console's dashboard: the figures of a staff member's area at a glance.

Nothing is counted here that a feature does not already count: this module only calls the public,
scoped functions of residents, check-ins, polls and notices, so the dashboard can never disagree
with the bot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services import checkins, notices, polls
from services.checkins import CheckinConfig
from services.models import Notice, Poll
from services.residents import CommitteeCount, age_bands, resident_counts
from services.scope import Actor

POLLS_LOOKED_AT = 100  # the latest polls of the area: the open ones are among them


@dataclass(frozen=True, slots=True)
class CheckinsToday:
    """Today's daily check-ins in the area, by where each elder stands."""

    answered: int = 0
    waiting: int = 0  # asked, no answer yet (reminded included)
    alerted: int = 0  # asked for help, or an alert is open
    handled: int = 0  # an alert was closed by staff or family
    paused: int = 0
    later: int = 0  # today's time not reached yet
    not_on_bot: int = 0

    @property
    def total(self) -> int:
        return (self.answered + self.waiting + self.alerted + self.handled + self.paused + self.later
                + self.not_on_bot)


@dataclass(frozen=True, slots=True)
class Dashboard:
    committees: list[CommitteeCount]
    ages: list[tuple[tuple[int, int | None], int]]
    open_alerts: int
    checkins: CheckinsToday
    open_polls: list[Poll] = field(default_factory=list)
    recent_notices: list[Notice] = field(default_factory=list)

    @property
    def residents(self) -> int:
        return sum(c.residents for c in self.committees)

    @property
    def verified(self) -> int:
        return sum(c.verified for c in self.committees)

    @property
    def verified_share(self) -> float | None:
        return self.verified / self.residents if self.residents else None


async def checkins_today(session: AsyncSession, actor: Actor, *, now: datetime, cfg: CheckinConfig) -> CheckinsToday:
    """Today's board of the area (``services.checkins.board``), counted."""
    counts = dict.fromkeys(("answered", "waiting", "alerted", "handled", "paused", "later", "not_on_bot"), 0)
    for b in (await checkins.board(session, actor, now=now, cfg=cfg)).committees:
        counts["answered"] += len(b.answered)
        counts["waiting"] += b.waiting
        counts["alerted"] += len(b.help) + len(b.alerted)
        counts["handled"] += len(b.handled)
        counts["paused"] += len(b.paused)
        counts["later"] += len(b.later)
        counts["not_on_bot"] += len(b.not_on_bot)
    return CheckinsToday(**counts)


async def dashboard(session: AsyncSession, actor: Actor, *, now: datetime, today: date,
                    checkin_cfg: CheckinConfig, notices_shown: int = 5) -> Dashboard:
    """The figures of the actor's staff scope at ``now`` (all empty for anyone but staff)."""
    latest = await polls.committee_polls(session, actor, limit=POLLS_LOOKED_AT)
    return Dashboard(
        committees=await resident_counts(session, actor),
        ages=await age_bands(session, actor, today),
        open_alerts=await checkins.count_open_alerts(session, actor),
        checkins=await checkins_today(session, actor, now=now, cfg=checkin_cfg),
        open_polls=[p for p in latest if polls.poll_phase(p, now) == "open"],
        recent_notices=await notices.list_notices(session, actor, limit=notices_shown),
    )
