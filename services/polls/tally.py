"""Counting a poll (results as data) and the tick that opens, reminds and closes polls.

The tick claims each step with a conditional ``UPDATE`` (announced_at / reminded_at / status), so
every process may run it at any moment: a poll is announced, reminded and closed once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import String, cast, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import audit
from services.accounts import account_locale
from services.expressions import parse
from services.models import (
    Account,
    Household,
    Poll,
    PollStatus,
    PollTally,
    PollUnit,
    PollVote,
    PollVoter,
    Region,
    RegionLevel,
    Resident,
)
from services.notify import committee_staff
from services.outbox import OutboxItem, Priority, enqueue_many, message_payload
from services.polls.ballots import as_fraction, eligible_residents, get_poll
from services.polls.common import REF_POLL, PollError
from services.polls.config import PollConfig
from services.polls.rules import Counts, OptionCount, parse_fraction, parse_rule, verdict
from services.scope import Actor
from services.sql import rowcount


@dataclass(frozen=True, slots=True)
class OptionResult:
    text: str
    votes: int | None  # None: a secret ballot still open
    area: float | None


@dataclass(frozen=True, slots=True)
class PollResults:
    """A poll's count as data (the CLI prints it as JSON; the bot renders it and draws the chart)."""

    id: int
    question: str
    status: str
    unit: str
    rule: str
    quorum: str | None
    secret: bool
    closes_at: str  # ISO, UTC
    eligible_units: int
    voted_units: int
    eligible_area: float | None  # household and owner units (m²)
    voted_area: float | None
    options: list[OptionResult]
    quorum_met: bool | None  # None while a secret ballot is open
    passed: bool | None  # None: no verdict (plurality, or a secret ballot still open)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def turnout(self) -> float | None:
        return self.voted_units / self.eligible_units if self.eligible_units else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PollResults:
        return cls(**{**data, "options": [OptionResult(**o) for o in data["options"]]})


def _area(value: Fraction) -> float:
    return round(float(value), 2)


async def eligible_counts(session: AsyncSession, poll: Poll, today: date) -> tuple[int, Fraction]:
    """Eligible units and their exclusive area, from the registry as it stands."""
    cond = eligible_residents(poll, today)
    if poll.unit == PollUnit.resident:
        return await session.scalar(select(func.count()).select_from(Resident).where(cond)) or 0, Fraction(0)
    households = select(Resident.household_id).where(cond)
    units, area = (await session.execute(
        select(func.count(Household.id), func.sum(Household.floor_area)).where(Household.id.in_(households)))).one()
    return units or 0, as_fraction(area)


async def eligible_units(session: AsyncSession, actor: Actor, committee: Region, eligible: str | None, unit: str,
                         today: date) -> int:
    """How many units a poll of ``committee`` for ``eligible`` (None: everyone) and ``unit`` would count
    as eligible now, exactly as its tally will (the form's live figure). ``ExpressionError`` for a
    mistake (with its column); ``not_committee`` outside the staff member's scope. Reads only."""
    if not actor.staff or not actor.covers_path(committee.path) or committee.level != RegionLevel.committee:
        raise PollError("not_committee", code=committee.code)
    try:
        kind = PollUnit(unit)
    except ValueError:
        raise PollError("bad_combination", what="unit") from None
    if eligible is not None and eligible.strip():
        parse(eligible)  # the mistake with its column, before the database is asked
    draft = Poll(committee_id=committee.id, eligible=(eligible or "").strip() or None, unit=kind)
    units, _area = await eligible_counts(session, draft, today)
    return units


async def ballot_counts(session: AsyncSession, poll: Poll) -> tuple[list[OptionCount], int, Fraction]:
    """Per-option ballots and area, voted units and their area."""
    n = len(poll.options)
    if poll.secret:
        tallies = {t.option: t for t in await session.scalars(select(PollTally).where(PollTally.poll_id == poll.id))}
        options = [OptionCount(tallies[i].votes, as_fraction(tallies[i].area)) if i in tallies else OptionCount(0)
                   for i in range(n)]
        voted, area = (await session.execute(select(func.count(), func.sum(PollVoter.area))
                                             .where(PollVoter.poll_id == poll.id))).one()
        return options, voted or 0, as_fraction(area)
    votes = [0] * n
    areas = [Fraction(0)] * n
    voted, voted_area = 0, Fraction(0)
    rows = await session.execute(select(PollVote.choices, PollVote.area).where(PollVote.poll_id == poll.id))
    for choices, area in rows:
        a = as_fraction(area)
        voted += 1
        voted_area += a
        for c in set(choices):
            if isinstance(c, int) and 0 <= c < n:
                votes[c] += 1
                areas[c] += a
    return [OptionCount(v, a) for v, a in zip(votes, areas, strict=True)], voted, voted_area


async def count_poll(session: AsyncSession, poll: Poll, today: date) -> PollResults:
    """The poll counted now (live while open; a closed poll's frozen results are in ``poll.results``)."""
    eligible, eligible_area = await eligible_counts(session, poll, today)
    options, voted, voted_area = await ballot_counts(session, poll)
    rule = parse_rule(poll.rule)
    quorum = parse_fraction(poll.quorum) if poll.quorum else None
    v = verdict(Counts(tuple(options), voted, voted_area, eligible, eligible_area), rule, quorum)
    hide = poll.secret and poll.status != PollStatus.closed
    with_area = poll.unit != PollUnit.resident
    return PollResults(
        id=poll.id, question=poll.question, status=poll.status.value, unit=poll.unit.value, rule=poll.rule,
        quorum=poll.quorum, secret=poll.secret, closes_at=poll.closes_at.isoformat(),
        eligible_units=eligible, voted_units=voted,
        eligible_area=_area(eligible_area) if with_area else None,
        voted_area=_area(voted_area) if with_area else None,
        options=[OptionResult(text, None if hide else o.votes, None if hide or not with_area else _area(o.area))
                 for text, o in zip(poll.options, options, strict=True)],
        quorum_met=None if hide else v.quorum_met, passed=None if hide else v.passed)


async def poll_results(session: AsyncSession, actor: Actor | None, poll_id: object, *, now: datetime,
                       cfg: PollConfig) -> PollResults:
    """Results of a poll: frozen once closed, live for staff (or the CLI, ``actor`` None) while open;
    a resident sees them only after closing. ``PollError("no_poll")`` outside the actor's scope."""
    poll = await get_poll(session, poll_id)
    if poll is None:
        raise PollError("no_poll")
    if actor is not None:
        from services.models import Region

        region = await session.get(Region, poll.committee_id)
        staff_sees = actor.staff and region is not None and actor.covers_path(region.path)
        resident_sees = (actor.is_verified and actor.resident is not None
                         and actor.resident.committee_id == poll.committee_id)
        if not staff_sees and not resident_sees:
            raise PollError("no_poll")
        if not staff_sees and poll.status != PollStatus.closed:
            raise PollError("not_closed")
    if poll.status == PollStatus.closed and poll.results:
        return PollResults.from_json(poll.results)
    return await count_poll(session, poll, cfg.local(now).date())


# --- the tick ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollTickReport:
    opened: int = 0
    announced: int = 0
    reminded: int = 0
    closed: int = 0

    def __bool__(self) -> bool:
        return any((self.opened, self.announced, self.reminded, self.closed))


def poll_card(poll: Poll, cfg: PollConfig) -> dict[str, Any]:
    """What an announcement or reminder shows, as plain JSON for the outbox."""
    return {"id": poll.id, "question": poll.question, "options": list(poll.options), "multiple": poll.multiple,
            "unit": poll.unit.value, "rule": poll.rule, "secret": poll.secret, "allow_change": poll.allow_change,
            "closes": cfg.local(poll.closes_at).isoformat()}


async def _voter_accounts(session: AsyncSession, poll: Poll, today: date, *, not_voted: bool = False) -> list[Account]:
    """Reachable accounts of the verified residents eligible for ``poll`` (optionally: whose unit has
    not voted yet)."""
    query = (select(Account).join(Resident, Resident.id == Account.resident_id)
             .where(eligible_residents(poll, today), Account.unreachable_at.is_(None)))
    if not_voted:
        key = (literal("r:", String) + cast(Resident.id, String) if poll.unit == PollUnit.resident
               else literal("h:", String) + cast(Resident.household_id, String))
        table = PollVoter if poll.secret else PollVote
        query = query.where(~select(table.unit_key).where(table.poll_id == poll.id, table.unit_key == key).exists())
    return list(await session.scalars(query.order_by(Account.id)))


async def _tell_all(session: AsyncSession, accounts: list[Account], poll: Poll, message: str, data: dict, kind: str,
                    now: datetime, cfg: PollConfig, priority: int = Priority.broadcast,
                    photo: dict[str, str] | None = None) -> int:
    items = [OutboxItem(key=f"poll:{poll.id}:{kind}:{a.id}", chat_id=a.chat_id, account_id=a.id,
                        payload=message_payload(message, data, locale=account_locale(a, cfg.default_locale),
                                                photo=photo),
                        priority=priority, ref_type=REF_POLL, ref_id=poll.id)
             for a in accounts]
    return await enqueue_many(session, items, now=now)


async def _claim(session: AsyncSession, poll_id: int, column, now: datetime) -> bool:
    done = await session.execute(update(Poll).where(Poll.id == poll_id, column.is_(None)).values({column: now}))
    return rowcount(done) == 1


ChartWriter = Callable[[PollResults], str | None]


async def close_poll(session: AsyncSession, poll: Poll, *, now: datetime, cfg: PollConfig,
                     chart: ChartWriter | None = None, actor: Actor | None = None) -> PollResults | None:
    """Close ``poll`` now if still open (claimed: once across processes), freeze its results and tell
    its voters and the committee's staff (with the chart when ``chart`` draws one). None when it was
    already closed."""
    claimed = await session.execute(update(Poll).where(Poll.id == poll.id, Poll.status != PollStatus.closed)
                                    .values(status=PollStatus.closed, closed_at=now))
    if rowcount(claimed) != 1:
        return None
    await session.refresh(poll)
    today = cfg.local(now).date()
    results = await count_poll(session, poll, today)
    await session.execute(update(Poll).where(Poll.id == poll.id).values(results=results.to_json()))
    photo = None
    if chart is not None:
        path = chart(results)
        photo = {"path": path} if path else None
    data = {"results": results.to_json()}
    # Voters: every verified account of a unit that voted (for a secret ballot, its voter rows).
    accounts = await _voter_accounts(session, poll, today)
    voted = await _voted_keys(session, poll)
    recipients = [a for a in accounts if a.resident_id is not None and a.resident_id in voted]
    staff = await committee_staff(session, await _region(session, poll.committee_id))
    seen = {a.id for a in recipients}
    recipients += [a for a in staff if a.id not in seen]
    await _tell_all(session, recipients, poll, "polls.results", data, "results", now, cfg, Priority.reply, photo)
    audit.record(session, "poll.close", now=now, actor_account_id=actor.account_id if actor else None,
                 target_type="poll", target_id=poll.id, region_id=poll.committee_id,
                 detail={"voted_units": results.voted_units, "eligible_units": results.eligible_units,
                         "passed": results.passed})
    return results


async def _region(session: AsyncSession, region_id: int):
    from services.models import Region

    return await session.get(Region, region_id)


async def _voted_keys(session: AsyncSession, poll: Poll) -> set[int]:
    """Resident ids whose unit voted."""
    table = PollVoter if poll.secret else PollVote
    keys = list(await session.scalars(select(table.unit_key).where(table.poll_id == poll.id)))
    residents = {int(k[2:]) for k in keys if k.startswith("r:")}
    households = [int(k[2:]) for k in keys if k.startswith("h:")]
    if households:
        residents |= set(await session.scalars(select(Resident.id).where(Resident.household_id.in_(households))))
    return residents


async def close_now(session: AsyncSession, actor: Actor | None, poll_id: object, *, now: datetime, cfg: PollConfig,
                    chart: ChartWriter | None = None) -> PollResults:
    """Staff (or the CLI, ``actor`` None) close a poll before its deadline; ``no_poll`` / ``closed``."""
    poll = await get_poll(session, poll_id)
    if poll is None:
        raise PollError("no_poll")
    if actor is not None:
        region = await _region(session, poll.committee_id)
        if not actor.staff or region is None or not actor.covers_path(region.path):
            raise PollError("no_poll")
    results = await close_poll(session, poll, now=now, cfg=cfg, chart=chart, actor=actor)
    if results is None:
        raise PollError("closed")
    return results


async def tick(sessions: async_sessionmaker[AsyncSession], cfg: PollConfig, now: datetime, *,
               chart: ChartWriter | None = None) -> PollTickReport:
    """Open due polls, announce open ones, remind once before the deadline, close due ones. Idempotent;
    each poll's step in its own transaction."""
    opened = announced = reminded = closed = 0
    today = cfg.local(now).date()
    async with sessions() as session, session.begin():
        done = await session.execute(update(Poll).where(Poll.status == PollStatus.scheduled, Poll.opens_at <= now,
                                                        Poll.closes_at > now).values(status=PollStatus.open))
        opened = rowcount(done)
    async with sessions() as session:
        due = list(await session.scalars(select(Poll.id).where(
            Poll.status == PollStatus.open, Poll.closes_at > now,
            or_(Poll.announced_at.is_(None), Poll.reminded_at.is_(None)))))
    for poll_id in due:
        async with sessions() as session, session.begin():
            poll = await session.get(Poll, poll_id)
            if poll is None:
                continue
            if poll.announced_at is None and await _claim(session, poll.id, Poll.announced_at, now):
                accounts = await _voter_accounts(session, poll, today)
                await _tell_all(session, accounts, poll, "polls.announce", poll_card(poll, cfg), "open", now, cfg)
                announced += 1
            elif (poll.reminded_at is None and poll.announced_at is not None
                  and now >= poll.closes_at - cfg.reminder_before
                  and await _claim(session, poll.id, Poll.reminded_at, now)):
                accounts = await _voter_accounts(session, poll, today, not_voted=True)
                await _tell_all(session, accounts, poll, "polls.reminder", poll_card(poll, cfg), "remind", now, cfg)
                reminded += 1
    async with sessions() as session:
        ending = list(await session.scalars(select(Poll.id).where(Poll.status != PollStatus.closed,
                                                                  Poll.closes_at <= now)))
    for poll_id in ending:
        async with sessions() as session, session.begin():
            poll = await session.get(Poll, poll_id)
            if poll is not None and await close_poll(session, poll, now=now, cfg=cfg, chart=chart) is not None:
                closed += 1
    return PollTickReport(opened, announced, reminded, closed)
