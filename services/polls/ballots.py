"""Creating polls, who may vote, and voting: one ballot per unit, enforced by a unique key.

Eligibility is the poll's committee, active residents only, narrowed by an expression of the segment
language (compiled to SQL and asked of the database, exactly as segments count). Every value from a
button (poll id, option) is checked here; a refusal writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import (
    ColumnElement,
    Insert,
    String,
    and_,
    bindparam,
    case,
    delete,
    exists,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services.expressions import ExpressionError, compile_sql, parse
from services.ids import is_db_id
from services.models import (
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
    ResidentStatus,
)
from services.polls.common import PollError
from services.polls.config import PollConfig
from services.polls.rules import parse_fraction, parse_rule
from services.regions import committee_of_staff
from services.scope import Actor
from services.sql import rowcount

MAX_QUESTION = 300
MAX_OPTION = 60
MAX_OPTIONS = 10


@dataclass(slots=True)
class PollDraft:
    """A poll being made (the bot's guided flow fills it step by step; the CLI all at once)."""

    question: str = ""
    options: list[str] = field(default_factory=list)
    multiple: int = 1
    eligible: str | None = None
    unit: str = PollUnit.resident.value
    rule: str = "majority"
    quorum: str | None = None
    secret: bool = False
    allow_change: bool = True
    opens_at: datetime | None = None
    closes_at: datetime | None = None


def check_question(text: str) -> str:
    question = " ".join((text or "").split())
    if not question or len(question) > MAX_QUESTION:
        raise PollError("bad_question", limit=MAX_QUESTION)
    return question


def check_options(texts: list[str]) -> list[str]:
    options = [" ".join(o.split()) for o in texts if o and o.strip()]
    if not 2 <= len(options) <= MAX_OPTIONS or len(set(options)) != len(options):
        raise PollError("bad_options", limit=MAX_OPTIONS)
    for o in options:
        if len(o) > MAX_OPTION:
            raise PollError("bad_option_text", limit=MAX_OPTION, option=o[:MAX_OPTION])
    return options


def check_eligible(text: str | None, today: date) -> str | None:
    """The expression as typed (stripped), or None for the whole committee; ``bad_expression``."""
    if text is None or not text.strip():
        return None
    try:
        compile_sql(parse(text), today=today)
    except ExpressionError as err:
        raise PollError("bad_expression", error=str(err)) from None
    return text.strip()


def check_draft(draft: PollDraft, now: datetime, cfg: PollConfig) -> PollDraft:
    """The draft normalised, or the first ``PollError`` in it (nothing is written)."""
    question = check_question(draft.question)
    options = check_options(draft.options)
    try:
        unit = PollUnit(draft.unit)
    except ValueError:
        raise PollError("bad_combination", what="unit") from None
    rule = parse_rule(draft.rule)
    quorum = parse_fraction(draft.quorum) if draft.quorum not in (None, "") else None
    if not 1 <= draft.multiple <= len(options):
        raise PollError("bad_multiple", limit=len(options))
    if rule.civil_code and unit != PollUnit.owner:
        raise PollError("bad_combination", what="civil_owner")
    if rule.civil_code and quorum is not None:
        raise PollError("bad_combination", what="civil_quorum")
    if rule.has_proposal and draft.multiple != 1:
        raise PollError("bad_combination", what="rule_single")
    if draft.secret and draft.multiple != 1:
        raise PollError("bad_combination", what="secret_single")
    if draft.multiple > 1 and not draft.allow_change:
        raise PollError("bad_combination", what="multiple_change")
    opens = draft.opens_at or now
    closes = draft.closes_at
    if closes is None or closes <= max(now, opens) or closes - opens > cfg.max_duration:
        raise PollError("bad_times")
    eligible = check_eligible(draft.eligible, cfg.local(now).date())
    return PollDraft(question=question, options=options, multiple=draft.multiple, eligible=eligible,
                     unit=unit.value, rule=rule.text, quorum=str(quorum) if quorum is not None else None,
                     secret=draft.secret, allow_change=False if draft.secret else draft.allow_change,
                     opens_at=opens, closes_at=closes)


async def staff_committee(session: AsyncSession, actor: Actor, code: str | None = None) -> Region:
    """The committee a staff member makes polls for: ``code`` within their scope, else their own
    committee (``not_staff`` / ``not_committee``)."""
    if not actor.staff:
        raise PollError("not_staff")
    region = await committee_of_staff(session, actor, code)
    if region is None:
        raise PollError("not_committee", code=(code or "").strip()[:32])
    return region


async def create_poll(session: AsyncSession, actor: Actor, committee: Region, draft: PollDraft, *, now: datetime,
                      cfg: PollConfig) -> Poll:
    """Create a poll of ``committee`` (staff covering it only); it opens (and is announced by the tick)
    at ``opens_at``. Audited; nothing is written on a refusal."""
    if not actor.staff or not actor.covers_path(committee.path) or committee.level != RegionLevel.committee:
        raise PollError("not_committee", code=committee.code)
    d = check_draft(draft, now, cfg)
    assert d.opens_at is not None and d.closes_at is not None
    poll = Poll(committee_id=committee.id, question=d.question, options=d.options, multiple=d.multiple,
                eligible=d.eligible, unit=PollUnit(d.unit), rule=d.rule, quorum=d.quorum, secret=d.secret,
                allow_change=d.allow_change, opens_at=d.opens_at, closes_at=d.closes_at,
                status=PollStatus.open if d.opens_at <= now else PollStatus.scheduled,
                created_by_account_id=actor.account_id, created_at=now)
    session.add(poll)
    await session.flush()
    if poll.secret:
        session.add_all([PollTally(poll_id=poll.id, option=i, votes=0, area=Decimal(0))
                         for i in range(len(d.options))])
    audit.record(session, "poll.create", now=now, actor_account_id=actor.account_id, target_type="poll",
                 target_id=poll.id, region_id=committee.id,
                 detail={"question": d.question, "unit": d.unit, "rule": d.rule, "eligible": d.eligible,
                         "secret": d.secret})
    await session.flush()
    return poll


# --- who may vote ----------------------------------------------------------------------------------


def eligible_residents(poll: Poll, today: date) -> ColumnElement[bool]:
    """Filter over ``Resident``: the active residents of the poll's committee its expression selects
    (the registry's view: counted as eligible whether or not they use the bot)."""
    conds = [Resident.committee_id == poll.committee_id, Resident.status == ResidentStatus.active]
    if poll.eligible:
        conds.append(compile_sql(parse(poll.eligible), today=today))
    if poll.unit == PollUnit.household:
        conds.append(Resident.household_id.is_not(None))
    if poll.unit == PollUnit.owner:
        conds.append(exists().where(Household.id == Resident.household_id, Household.owner.is_(True)))
    return and_(*conds)


def unit_key(poll: Poll, resident: Resident) -> str:
    if poll.unit == PollUnit.resident:
        return f"r:{resident.id}"
    return f"h:{resident.household_id}"


async def get_poll(session: AsyncSession, poll_id: object) -> Poll | None:
    if not is_db_id(poll_id):
        return None
    return await session.get(Poll, poll_id)


async def staff_poll(session: AsyncSession, actor: Actor, poll_id: object) -> Poll:
    """A poll of a committee the staff member covers; ``no_poll`` for anything else (missing, forged,
    another committee's), so a foreign id learns nothing."""
    poll = await get_poll(session, poll_id) if actor.staff else None
    if poll is not None:
        region = await session.get(Region, poll.committee_id)
        if region is not None and actor.covers_path(region.path):
            return poll
    raise PollError("no_poll")


def poll_phase(poll: Poll, now: datetime) -> str:
    """``scheduled``, ``open`` or ``closed`` at ``now`` (a poll past its deadline is closed even
    before the tick has counted it)."""
    if poll.status == PollStatus.closed or now >= poll.closes_at:
        return "closed"
    if now < poll.opens_at:
        return "scheduled"
    return "open"


async def check_voter(session: AsyncSession, actor: Actor, poll: Poll,
                      today: date) -> tuple[Resident, str, Decimal | None]:
    """The resident voting, their unit's key and area, or the reason they may not vote."""
    if not actor.is_verified or actor.resident is None:
        raise PollError("not_verified")
    resident = actor.resident
    if resident.committee_id != poll.committee_id:
        raise PollError("not_eligible", eligible=None)
    household = None
    if resident.household_id is not None and poll.unit != PollUnit.resident:  # a resident's ballot is their own
        household = await session.get(Household, resident.household_id)
    if poll.unit != PollUnit.resident and household is None:
        raise PollError("no_household")
    if poll.unit == PollUnit.owner and not (household and household.owner):
        raise PollError("not_owner")
    if poll.eligible:
        match = await session.scalar(select(exists().where(Resident.id == resident.id,
                                                           eligible_residents(poll, today))))
        if not match:
            raise PollError("not_eligible", eligible=poll.eligible)
    area = household.floor_area if household is not None and poll.unit != PollUnit.resident else None
    return resident, unit_key(poll, resident), area


# --- voting --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoteResult:
    poll_id: int
    choices: tuple[int, ...]  # the unit's choice now (empty: withdrawn)
    changed: bool  # False: the same vote again (a redelivered update or a second tap)
    secret: bool
    poll: Poll | None = field(default=None, compare=False, repr=False)  # the poll voted in, for the answer


def unit_key_sql(resident: Resident) -> ColumnElement[str | None]:
    """``unit_key(poll, resident)`` as SQL over ``Poll`` (NULL for a household poll and a resident
    without a household)."""
    household = literal(f"h:{resident.household_id}") if resident.household_id is not None else null()
    return case((Poll.unit == PollUnit.resident, literal(f"r:{resident.id}")), else_=household)


# Every ballot button runs these two: built once, the values bound when they run (building a statement
# costs more Python than executing it). The unit's key as unit_key_sql makes it, from bound keys.
_POLL_AND_BALLOT = (
    select(Poll, PollVote)
    .outerjoin(PollVote, and_(PollVote.poll_id == Poll.id, PollVote.unit_key == case(
        (Poll.unit == PollUnit.resident, bindparam("resident_key", type_=String)),
        else_=bindparam("household_key", type_=String))))
    .where(Poll.id == bindparam("poll_id")))


def _ballot_insert(dialect) -> Insert:
    """A unit's first ballot, or nothing when another member of the household has just cast one."""
    table = PollVote.__table__
    return (dialect.insert(table).values({c: bindparam(c, type_=table.c[c].type) for c in (
        "poll_id", "unit_key", "resident_id", "choices", "area", "created_at", "updated_at")})
        .on_conflict_do_nothing(index_elements=["poll_id", "unit_key"]))


_BALLOT_INSERTS = {"postgresql": _ballot_insert(postgresql), "sqlite": _ballot_insert(sqlite)}


async def _poll_and_ballot(session: AsyncSession, actor: Actor, poll_id: object) -> tuple[Poll | None, PollVote | None]:
    """The poll and, in the same statement, the open ballot of the actor's unit in it."""
    if not is_db_id(poll_id):
        return None, None
    resident = actor.resident if actor.is_verified else None
    if resident is None:
        return await session.get(Poll, poll_id), None
    household = f"h:{resident.household_id}" if resident.household_id is not None else None
    row = (await session.execute(_POLL_AND_BALLOT, {"poll_id": poll_id, "resident_key": f"r:{resident.id}",
                                                    "household_key": household})).first()
    return (row[0], row[1]) if row is not None else (None, None)


def _insert(session: AsyncSession, table):
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)


async def vote(session: AsyncSession, actor: Actor, poll_id: object, option: object, *, on: bool = True,
               now: datetime, cfg: PollConfig) -> VoteResult:
    """Record the actor's unit choosing (``on``) or unchoosing ``option`` of ``poll_id``.

    One ballot per unit (unique key; two household members at the same moment make one ballot); the
    same vote again changes nothing; a changed vote replaces the unit's ballot while the poll allows
    it; a secret ballot is final. Every refusal is a ``PollError`` and writes nothing.
    """
    poll, ballot = await _poll_and_ballot(session, actor, poll_id)
    if poll is None:
        raise PollError("no_poll")
    if not isinstance(option, int) or isinstance(option, bool) or not 0 <= option < len(poll.options):
        raise PollError("bad_option")
    resident, key, area = await check_voter(session, actor, poll, cfg.local(now).date())
    phase = poll_phase(poll, now)
    if phase != "open":
        raise PollError("not_open" if phase == "scheduled" else "closed")
    if poll.secret:
        return await _secret_vote(session, poll, key, area, option, on)
    existing = ballot
    if existing is None:
        if not on:
            return VoteResult(poll.id, (), False, False, poll)
        inserted = await session.execute(
            _BALLOT_INSERTS["postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"],
            {"poll_id": poll.id, "unit_key": key, "resident_id": resident.id, "choices": [option], "area": area,
             "created_at": now, "updated_at": now})
        if rowcount(inserted) == 1:
            return VoteResult(poll.id, (option,), True, False, poll)
        # Another member of the household voted at the same moment: theirs is the household's ballot.
        existing = await session.scalar(
            select(PollVote).where(PollVote.poll_id == poll.id, PollVote.unit_key == key))
        assert existing is not None
    if poll.unit != PollUnit.resident and existing.resident_id != resident.id:
        raise PollError("household_voted")
    current = tuple(existing.choices)
    if poll.multiple == 1:
        wanted = (option,) if on else current  # a single choice is replaced, never emptied
    elif on:
        wanted = tuple(sorted(set(current) | {option}))
    else:
        wanted = tuple(c for c in current if c != option)
    if wanted == current:
        return VoteResult(poll.id, current, False, False, poll)
    if not poll.allow_change:
        raise PollError("final")
    if len(wanted) > poll.multiple:
        raise PollError("too_many", limit=poll.multiple)
    if not wanted:
        await session.execute(delete(PollVote).where(PollVote.id == existing.id))
    else:
        await session.execute(update(PollVote).where(PollVote.id == existing.id)
                              .values(choices=list(wanted), updated_at=now))
    return VoteResult(poll.id, wanted, True, False, poll)


async def _secret_vote(session: AsyncSession, poll: Poll, key: str, area: Decimal | None, option: int,
                       on: bool) -> VoteResult:
    if not on:
        raise PollError("final")
    inserted = await session.execute(
        _insert(session, PollVoter).values(poll_id=poll.id, unit_key=key, area=area)
        .on_conflict_do_nothing(index_elements=["poll_id", "unit_key"]))
    if rowcount(inserted) != 1:
        raise PollError("household_voted" if poll.unit != PollUnit.resident else "final")
    await session.execute(update(PollTally).where(PollTally.poll_id == poll.id, PollTally.option == option)
                          .values(votes=PollTally.votes + 1, area=PollTally.area + (area or Decimal(0))))
    return VoteResult(poll.id, (option,), True, True, poll)


# --- what a resident sees ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MyPoll:
    poll: Poll
    choices: tuple[int, ...]  # the unit's current open ballot
    voted: bool  # the unit has voted (for a secret ballot: nothing more is known)
    by_me: bool  # this resident cast the unit's ballot


async def my_open_polls(session: AsyncSession, actor: Actor, *, now: datetime, cfg: PollConfig) -> list[MyPoll]:
    """The open polls the actor may vote in, soonest deadline first, with their unit's ballot."""
    if not actor.is_verified or actor.resident is None:
        return []
    resident = actor.resident
    key = unit_key_sql(resident)
    voted_secretly = exists().where(PollVoter.poll_id == Poll.id, PollVoter.unit_key == key).correlate(Poll)
    rows = (await session.execute(
        select(Poll, PollVote, voted_secretly)
        .outerjoin(PollVote, and_(PollVote.poll_id == Poll.id, PollVote.unit_key == key))
        .where(Poll.committee_id == resident.committee_id, Poll.status == PollStatus.open,
               Poll.opens_at <= now, Poll.closes_at > now).order_by(Poll.closes_at, Poll.id).limit(20))).all()
    # Held while checking: check_voter's lookups of the household then come from the identity map.
    _household = (await session.get(Household, resident.household_id)
                  if resident.household_id is not None and any(p.unit != PollUnit.resident for p, _, _ in rows)
                  else None)
    out = []
    for poll, ballot, voted in rows:
        try:
            await check_voter(session, actor, poll, cfg.local(now).date())
        except PollError:
            continue
        if poll.secret:
            out.append(MyPoll(poll, (), bool(voted), False))
        elif ballot is not None:
            out.append(MyPoll(poll, tuple(ballot.choices), True, ballot.resident_id == resident.id))
        else:
            out.append(MyPoll(poll, (), False, False))
    return out


async def committee_polls(session: AsyncSession, actor: Actor, *, limit: int = 20, offset: int = 0) -> list[Poll]:
    """Staff: the latest polls of the committees in their scope (pages by ``offset``)."""
    if not actor.staff:
        return []
    from services.scope import committee_ids_in_scope

    return list(await session.scalars(select(Poll).where(Poll.committee_id.in_(committee_ids_in_scope(actor)))
                                      .order_by(Poll.id.desc()).limit(limit).offset(offset)))


@dataclass(frozen=True, slots=True)
class BallotRow:
    """One open ballot as staff see it: the unit, who cast it and what it chose (option indexes)."""

    unit_key: str
    resident_id: int | None
    name: str | None
    building: str | None
    unit: str | None
    room: str | None
    choices: tuple[int, ...]
    area: Decimal | None
    updated_at: datetime


async def poll_ballots(session: AsyncSession, actor: Actor, poll_id: object, *, limit: int = 10_000,
                       exported_at: datetime | None = None) -> list[BallotRow]:
    """Staff covering the poll: its open ballots by building, unit, room and name. A secret ballot has
    none to show (``secret``: only *that* a unit voted is kept); ``no_poll`` outside the scope. With
    ``exported_at`` (a download of who chose what) it is audited (``poll.ballots_export``, the count)."""
    poll = await staff_poll(session, actor, poll_id)
    if poll.secret:
        raise PollError("secret")
    rows = await session.execute(
        select(PollVote.unit_key, Resident.id, Resident.name, Resident.building, Resident.unit, Resident.room,
               PollVote.choices, PollVote.area, PollVote.updated_at)
        .outerjoin(Resident, Resident.id == PollVote.resident_id).where(PollVote.poll_id == poll.id)
        .order_by(Resident.building, Resident.unit, Resident.room, Resident.name, PollVote.id).limit(limit))
    ballots = [BallotRow(key, rid, name, building, unit, room, tuple(c for c in choices if isinstance(c, int)),
                         area, updated)
               for key, rid, name, building, unit, room, choices, area, updated in rows.all()]
    if exported_at is not None:
        audit.record(session, "poll.ballots_export", now=exported_at, actor_account_id=actor.account_id,
                     target_type="poll", target_id=poll.id, region_id=poll.committee_id, detail={"rows": len(ballots)})
    return ballots


def as_fraction(value: Decimal | None) -> Fraction:
    return Fraction(value) if value is not None else Fraction(0)
