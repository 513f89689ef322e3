"""Poll services on a real database (SQLite file; PostgreSQL when configured): creating, who may vote,
one ballot per unit, the rules counted exactly (Civil Code art. 278 double majority), the tick, and
secret ballots that keep "who voted" apart from "what was chosen"."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, func, inspect, select

from bot.db import session_factory
from services import polls
from services.models import (
    Account,
    Household,
    OutboxMessage,
    Poll,
    PollStatus,
    PollTally,
    PollVote,
    PollVoter,
    Region,
    RegionLevel,
    Resident,
    ResidentStatus,
)
from services.polls import PollConfig, PollDraft, PollError
from services.scope import Actor, StaffGrant
from tests.helpers import make_account

NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
CFG = PollConfig()


class Town:
    """One committee: building 3 with owner households (with areas) and a renter household,
    building 5 with one owner household; accounts linked to residents."""

    def __init__(self) -> None:
        self.committee: Region
        self.staff: Actor
        self.people: dict[str, Actor] = {}
        self.households: dict[str, Household] = {}


async def make_town(session) -> Town:
    town = Town()
    committee = Region(code="PT", name="测试居委", level=RegionLevel.committee, path="/PT/")
    session.add(committee)
    await session.flush()
    town.committee = committee
    # household key: (building, owner, area m²)
    for key, building, owner, area in [("A", "3", True, "100.00"), ("B", "3", True, "60.50"),
                                       ("C", "3", True, "80.00"), ("R", "3", False, "70.00"),
                                       ("E", "5", True, "90.00")]:
        hh = Household(committee_id=committee.id, code=f"PT-{key}", building=building, owner=owner,
                       floor_area=Decimal(area))
        session.add(hh)
        town.households[key] = hh
    await session.flush()
    tid = 1000
    # person: household key; two members in household A
    for name, hh in [("a1", "A"), ("a2", "A"), ("b", "B"), ("c", "C"), ("renter", "R"), ("e", "E")]:
        h = town.households[hh]
        r = Resident(committee_id=committee.id, household_id=h.id, name=name, building=h.building, unit="1",
                     room="101", status=ResidentStatus.active, created_at=NOW, updated_at=NOW)
        session.add(r)
        await session.flush()
        tid += 1
        account = await make_account(session, tid, r)
        town.people[name] = Actor(account=account, resident=r, locale="en")
    staff_account = await make_account(session, 999)
    town.staff = Actor(account=staff_account, locale="en", staff=[
        StaffGrant(1, "committee", committee.id, committee.path, committee.code, committee.name)])
    await session.commit()
    return town


def draft(**kw) -> PollDraft:
    base = dict(question="加装电梯？", options=["同意", "反对", "弃权"], closes_at=NOW + timedelta(days=3))
    base.update(kw)
    return PollDraft(**base)


async def test_elevator_vote_passes_by_head_but_fails_by_area(session):
    town = await make_town(session)
    poll = await polls.create_poll(session, town.staff, town.committee,
                                   draft(eligible='building == "3"', unit="owner", rule="civil-code-major"),
                                   now=NOW, cfg=CFG)
    await session.commit()
    # Owners of building 3: A 100, B 60.5, C 80 (total 240.5 m², 3 owners); R rents.
    await polls.vote(session, town.people["a1"], poll.id, 1, now=NOW, cfg=CFG)  # A rejects: 100 m²
    await polls.vote(session, town.people["b"], poll.id, 0, now=NOW, cfg=CFG)  # B agrees: 60.5 m²
    await polls.vote(session, town.people["c"], poll.id, 0, now=NOW, cfg=CFG)  # C agrees: 80 m²
    await session.commit()
    results = await polls.close_now(session, None, poll.id, now=NOW + timedelta(hours=1), cfg=CFG)
    await session.commit()
    assert (results.eligible_units, results.voted_units) == (3, 3)
    assert (results.eligible_area, results.voted_area) == (240.5, 240.5)
    assert [(o.votes, o.area) for o in results.options] == [(2, 140.5), (1, 100.0), (0, 0.0)]
    # By head 2/3 < 3/4 already fails; by area 140.5/240.5 < 3/4 fails too.
    assert results.quorum_met is True and results.passed is False
    # The same ballots under the ordinary rule: 2 of 3 owners (> 1/2) and 140.5 of 240.5 m² (> 1/2).
    ordinary = polls.verdict(polls.Counts((polls.OptionCount(2, Fraction("140.5")), polls.OptionCount(1, 100)),
                                          3, Fraction("240.5"), 3, Fraction("240.5")),
                             polls.parse_rule("civil-code-ordinary"), None)
    assert ordinary == polls.Verdict(True, True)


def test_ordinary_matter_by_head_but_not_by_area_fails():
    # Two small owners agree, one large owner rejects: more than half by head, not by area.
    counts = polls.Counts((polls.OptionCount(2, Fraction(50)), polls.OptionCount(1, Fraction(150))),
                          3, Fraction(200), 3, Fraction(200))
    assert polls.verdict(counts, polls.parse_rule("civil-code-ordinary"), None) == polls.Verdict(True, False)
    # Participation short of 2/3 of the area: not decided at all.
    low = polls.Counts((polls.OptionCount(2, Fraction(50)),), 2, Fraction(50), 3, Fraction(200))
    assert polls.verdict(low, polls.parse_rule("civil-code-ordinary"), None) == polls.Verdict(False, False)


async def test_renters_other_buildings_and_unverified_are_refused_and_nothing_is_recorded(session):
    town = await make_town(session)
    poll = await polls.create_poll(session, town.staff, town.committee,
                                   draft(eligible='building == "3"', unit="owner", rule="civil-code-major"),
                                   now=NOW, cfg=CFG)
    await session.commit()
    stranger = Actor(account=await make_account(session, 5000), locale="en")
    cases = [(town.people["renter"], "not_owner"), (town.people["e"], "not_eligible"), (stranger, "not_verified")]
    for actor, reason in cases:
        with pytest.raises(PollError) as err:
            await polls.vote(session, actor, poll.id, 0, now=NOW, cfg=CFG)
        assert err.value.reason == reason
    assert await session.scalar(select(func.count()).select_from(PollVote)) == 0


async def test_a_household_votes_once_however_many_members_tap(session):
    town = await make_town(session)
    poll = await polls.create_poll(session, town.staff, town.committee, draft(unit="household"), now=NOW, cfg=CFG)
    await session.commit()
    first = await polls.vote(session, town.people["a1"], poll.id, 0, now=NOW, cfg=CFG)
    assert first.changed
    with pytest.raises(PollError) as err:
        await polls.vote(session, town.people["a2"], poll.id, 1, now=NOW, cfg=CFG)
    assert err.value.reason == "household_voted"
    rows = (await session.execute(select(PollVote.unit_key, PollVote.choices))).all()
    assert rows == [(f"h:{town.households['A'].id}", [0])]


async def test_the_same_vote_twice_has_one_effect_and_a_change_replaces_it(session):
    town = await make_town(session)
    poll = await polls.create_poll(session, town.staff, town.committee, draft(), now=NOW, cfg=CFG)
    await session.commit()
    assert (await polls.vote(session, town.people["b"], poll.id, 1, now=NOW, cfg=CFG)).changed
    again = await polls.vote(session, town.people["b"], poll.id, 1, now=NOW, cfg=CFG)
    assert not again.changed and again.choices == (1,)
    changed = await polls.vote(session, town.people["b"], poll.id, 0, now=NOW, cfg=CFG)
    assert changed.changed and changed.choices == (0,)
    results = await polls.count_poll(session, poll, NOW.date())
    assert [o.votes for o in results.options] == [1, 0, 0] and results.voted_units == 1


async def test_no_change_polls_keep_the_first_vote(session):
    town = await make_town(session)
    poll = await polls.create_poll(session, town.staff, town.committee, draft(allow_change=False), now=NOW, cfg=CFG)
    await polls.vote(session, town.people["b"], poll.id, 1, now=NOW, cfg=CFG)
    assert not (await polls.vote(session, town.people["b"], poll.id, 1, now=NOW, cfg=CFG)).changed
    with pytest.raises(PollError) as err:
        await polls.vote(session, town.people["b"], poll.id, 0, now=NOW, cfg=CFG)
    assert err.value.reason == "final"
    assert (await session.scalar(select(PollVote.choices))) == [1]


async def test_multiple_choice_up_to_k(session):
    town = await make_town(session)
    poll = await polls.create_poll(session, town.staff, town.committee,
                                   draft(options=["周六", "周日", "周一"], multiple=2, rule="plurality"),
                                   now=NOW, cfg=CFG)
    b = town.people["b"]
    await polls.vote(session, b, poll.id, 0, now=NOW, cfg=CFG)
    assert (await polls.vote(session, b, poll.id, 2, now=NOW, cfg=CFG)).choices == (0, 2)
    with pytest.raises(PollError) as err:
        await polls.vote(session, b, poll.id, 1, now=NOW, cfg=CFG)
    assert err.value.reason == "too_many" and err.value.info["limit"] == 2
    assert (await polls.vote(session, b, poll.id, 0, on=False, now=NOW, cfg=CFG)).choices == (2,)


async def test_forged_values_and_late_votes_are_refused(session):
    town = await make_town(session)
    poll = await polls.create_poll(session, town.staff, town.committee, draft(), now=NOW, cfg=CFG)
    await session.commit()
    b = town.people["b"]
    for poll_id, option, reason in [(poll.id + 99, 0, "no_poll"), (2**70, 0, "no_poll"), (poll.id, 3, "bad_option"),
                                    (poll.id, -1, "bad_option"), (poll.id, True, "bad_option")]:
        with pytest.raises(PollError) as err:
            await polls.vote(session, b, poll_id, option, now=NOW, cfg=CFG)
        assert err.value.reason == reason
    with pytest.raises(PollError) as err:
        await polls.vote(session, b, poll.id, 0, now=poll.closes_at, cfg=CFG)
    assert err.value.reason == "closed"
    assert await session.scalar(select(func.count()).select_from(PollVote)) == 0


@pytest.mark.parametrize(("changes", "reason"), [
    ({"question": " "}, "bad_question"),
    ({"options": ["同意"]}, "bad_options"),
    ({"options": ["a", "a"]}, "bad_options"),
    ({"options": ["a", "b" * 61]}, "bad_option_text"),
    ({"rule": "most"}, "bad_rule"),
    ({"rule": "fraction:3/2"}, "bad_fraction"),
    ({"quorum": "0"}, "bad_fraction"),
    ({"rule": "civil-code-major"}, "bad_combination"),  # needs --unit owner
    ({"secret": True, "multiple": 2, "rule": "plurality"}, "bad_combination"),
    ({"multiple": 4, "rule": "plurality"}, "bad_multiple"),
    ({"eligible": 'building == '}, "bad_expression"),
    ({"closes_at": NOW}, "bad_times"),
])
def test_a_bad_draft_is_refused_with_its_reason(changes, reason):
    with pytest.raises(PollError) as err:
        polls.check_draft(draft(**changes), NOW, CFG)
    assert err.value.reason == reason


async def test_tick_announces_reminds_and_closes_once_each(engine):
    sessions = session_factory(engine)
    async with sessions() as session:
        town = await make_town(session)
        poll = await polls.create_poll(session, town.staff, town.committee,
                                       draft(eligible='building == "3"', unit="owner", rule="civil-code-major",
                                             opens_at=NOW + timedelta(hours=1)),
                                       now=NOW, cfg=CFG)
        await session.commit()
        poll_id = poll.id
    assert not await polls.tick(sessions, CFG, NOW)  # not open yet
    report = await polls.tick(sessions, CFG, NOW + timedelta(hours=1))
    assert (report.opened, report.announced) == (1, 1)
    assert not await polls.tick(sessions, CFG, NOW + timedelta(hours=2))  # announced once
    async with sessions() as session:
        kinds = list(await session.scalars(select(OutboxMessage.idempotency_key).order_by(OutboxMessage.id)))
        # Owners of building 3 with accounts: a1, a2 (household A), b, c. Not the renter, not building 5.
        assert len(kinds) == 4 and all(":open:" in k for k in kinds)
        await polls.vote(session, town.people["a1"], poll_id, 0, now=NOW + timedelta(hours=2), cfg=CFG)
        await session.commit()
    closes = NOW + timedelta(days=3)
    report = await polls.tick(sessions, CFG, closes - timedelta(hours=23))
    assert report.reminded == 1
    async with sessions() as session:
        reminded = list(await session.scalars(select(OutboxMessage.account_id)
                                              .where(OutboxMessage.idempotency_key.like("%:remind:%"))))
        # Household A voted: neither of its members is reminded.
        assert sorted(reminded) == sorted([town.people["b"].account_id, town.people["c"].account_id])
    assert (await polls.tick(sessions, CFG, closes)).closed == 1
    assert not await polls.tick(sessions, CFG, closes + timedelta(minutes=1))
    async with sessions() as session:
        closed = await session.get(Poll, poll_id)
        assert closed.status == PollStatus.closed and closed.results["voted_units"] == 1
        told = list(await session.scalars(select(OutboxMessage.account_id)
                                          .where(OutboxMessage.idempotency_key.like("%:results:%"))))
        # Both members of the household that voted (not the owners who did not vote); no staff account
        # covers this committee through the staff table here.
        assert sorted(told) == sorted([town.people["a1"].account_id, town.people["a2"].account_id])


async def test_secret_ballot_keeps_who_apart_from_what(session):
    town = await make_town(session)
    poll = await polls.create_poll(session, town.staff, town.committee, draft(unit="household", secret=True),
                                   now=NOW, cfg=CFG)
    await session.commit()
    for name, option in [("a1", 0), ("b", 1), ("c", 0)]:
        await polls.vote(session, town.people[name], poll.id, option, now=NOW, cfg=CFG)
    with pytest.raises(PollError) as err:  # secret ballots are final
        await polls.vote(session, town.people["b"], poll.id, 0, now=NOW, cfg=CFG)
    assert err.value.reason == "household_voted"
    await session.commit()
    # The schema: voters hold the poll, the unit and its area; tallies the poll, an option and sums.
    # No id, no time, no foreign key between them.
    voters, tallies = PollVoter.__table__, PollTally.__table__
    assert {c.name for c in voters.columns} == {"poll_id", "unit_key", "area"}
    assert {c.name for c in tallies.columns} == {"poll_id", "option", "votes", "area"}
    for table in (voters, tallies):
        assert all(fk.column.table.name == "polls" for fk in table.foreign_keys)
        assert not any(c.autoincrement is True for c in table.columns)

    def reflected(conn):
        insp = inspect(conn)
        return ({c["name"] for c in insp.get_columns("poll_voters")},
                {c["name"] for c in insp.get_columns("poll_tallies")})

    conn = await session.connection()
    assert await conn.run_sync(reflected) == ({"poll_id", "unit_key", "area"}, {"poll_id", "option", "votes", "area"})
    # The rows: no per-ballot choice anywhere, only sums; no open-ballot rows at all.
    assert await session.scalar(select(func.count()).select_from(PollVote)) == 0
    assert [(t.option, t.votes) for t in await session.scalars(select(PollTally).order_by(PollTally.option))] \
        == [(0, 2), (1, 1), (2, 0)]
    # Results are hidden until the poll closes.
    live = await polls.poll_results(session, None, poll.id, now=NOW, cfg=CFG)
    assert live.voted_units == 3 and all(o.votes is None for o in live.options) and live.passed is None
    done = await polls.close_now(session, town.staff, poll.id, now=NOW, cfg=CFG)
    assert [o.votes for o in done.options] == [2, 1, 0] and done.passed is True


async def test_two_members_of_a_household_pressing_at_once_give_one_ballot(engine):
    sessions = session_factory(engine)
    async with sessions() as session:
        town = await make_town(session)
        poll = await polls.create_poll(session, town.staff, town.committee, draft(unit="household"), now=NOW, cfg=CFG)
        await session.commit()
        poll_id = poll.id

    async def press(name: str, option: int) -> str:
        async with sessions() as s:
            actor = town.people[name]
            actor = Actor(account=actor.account, resident=await s.get(Resident, actor.resident.id), locale="en")
            try:
                await polls.vote(s, actor, poll_id, option, now=NOW, cfg=CFG)
                await s.commit()
                return "ok"
            except PollError as err:
                await s.rollback()
                return err.reason

    outcomes = await asyncio.gather(press("a1", 0), press("a2", 1))
    assert sorted(outcomes) == ["household_voted", "ok"]
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(PollVote)) == 1


# --- property: the tally and the verdict equal an independent brute-force count ---------------------


def brute_force(rule: str, quorum: Fraction | None, eligible: list[tuple[int, Fraction]],
                ballots: dict[int, int]) -> tuple[list[int], list[Fraction], bool, bool | None]:
    """Count by hand, unit by unit: ``eligible`` (unit, area), ``ballots`` unit → option."""
    votes = [0, 0, 0]
    areas = [Fraction(0)] * 3
    for unit, option in ballots.items():
        votes[option] += 1
        areas[option] += dict(eligible)[unit]
    n_units = len(eligible)
    total_area = sum((a for _u, a in eligible), Fraction(0))
    n_voted = len(ballots)
    voted_area = sum((dict(eligible)[u] for u in ballots), Fraction(0))
    if rule.startswith("civil"):
        took_part = n_units > 0 and total_area > 0 and 3 * n_voted >= 2 * n_units and 3 * voted_area >= 2 * total_area
        if not took_part:
            return votes, areas, False, False
        if rule == "civil-code-major":
            return votes, areas, True, 4 * votes[0] >= 3 * n_voted and 4 * areas[0] >= 3 * voted_area
        return votes, areas, True, 2 * votes[0] > n_voted and 2 * areas[0] > voted_area
    met = quorum is None or (n_units > 0 and n_voted >= quorum * n_units)
    if rule == "plurality":
        return votes, areas, met, None
    if rule == "fraction:2/3":
        return votes, areas, met, met and n_units > 0 and 3 * votes[0] >= 2 * n_units
    return votes, areas, met, met and votes[0] > votes[1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data(), rule=st.sampled_from(["majority", "plurality", "fraction:2/3", "civil-code-ordinary",
                                             "civil-code-major"]),
       quorum=st.sampled_from([None, "1/2", "2/3"]), secret=st.booleans(),
       homes=st.lists(st.tuples(st.booleans(), st.integers(1, 20000), st.integers(1, 3)), min_size=1, max_size=7))
async def test_tally_and_verdict_equal_a_brute_force_count(engine, data, rule, quorum, secret, homes):
    unit = "owner" if rule.startswith("civil") else data.draw(st.sampled_from(["household", "owner"]))
    if rule.startswith("civil"):
        quorum = None
    async with session_factory(engine)() as session:
        for model in (PollVote, PollVoter, PollTally, Poll, Account, Resident, Household, Region):
            await session.execute(delete(model))
        committee = Region(code="PP", name="PP", level=RegionLevel.committee, path="/PP/")
        session.add(committee)
        await session.flush()
        staff = Actor(account=None, staff=[StaffGrant(1, "committee", committee.id, committee.path, "PP", "PP")])
        poll = await polls.create_poll(session, staff, committee, draft(rule=rule, quorum=quorum, unit=unit,
                                                                        secret=secret), now=NOW, cfg=CFG)
        eligible, members = [], {}
        tid = 1
        for n, (owner, centi_m2, size) in enumerate(homes):
            area = Decimal(centi_m2) / 100
            hh = Household(committee_id=committee.id, code=f"H{n}", owner=owner, floor_area=area)
            session.add(hh)
            await session.flush()
            if owner or unit == "household":
                eligible.append((hh.id, Fraction(area)))
            members[hh.id] = []
            for _m in range(size):
                r = Resident(committee_id=committee.id, household_id=hh.id, name="x", status=ResidentStatus.active,
                             created_at=NOW, updated_at=NOW)
                session.add(r)
                await session.flush()
                a = await make_account(session, tid, r)
                tid += 1
                members[hh.id].append(Actor(account=a, resident=r, locale="en"))
        await session.commit()
        ballots: dict[int, int] = {}
        # Random taps by random members, some repeated (a redelivered update), some refused.
        taps = data.draw(st.lists(st.tuples(st.integers(0, len(homes) - 1), st.integers(0, 2), st.integers(0, 2)),
                                  max_size=12))
        hh_ids = list(members)
        for home, member, option in taps:
            hh_id = hh_ids[home]
            people = members[hh_id]
            actor = people[member % len(people)]
            try:
                await polls.vote(session, actor, poll.id, option, now=NOW, cfg=CFG)
            except PollError:
                continue
            ballots[hh_id] = option
        await session.commit()
        got = await polls.close_now(session, None, poll.id, now=NOW, cfg=CFG)
        votes, areas, met, passed = brute_force(rule, Fraction(quorum) if quorum else None, eligible, ballots)
        assert [o.votes for o in got.options] == votes
        assert [o.area for o in got.options] == [round(float(a), 2) for a in areas]
        assert (got.eligible_units, got.voted_units) == (len(eligible), len(ballots))
        assert (got.quorum_met, got.passed) == (met, passed), (rule, quorum, eligible, ballots)


async def test_open_polls_show_each_units_ballot_read_in_one_statement_and_a_vote_takes_two(engine):
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            seen.append(statement)

    sessions = session_factory(engine)
    async with sessions() as session:
        town = await make_town(session)
        made = {}
        for day, (name, kw) in enumerate([("resident", {}), ("household", {"unit": "household"}),
                                          ("secret", {"unit": "household", "secret": True}),
                                          ("owner", {"unit": "owner"}), ("five", {"eligible": 'building == "5"'})]):
            made[name] = await polls.create_poll(session, town.staff, town.committee,
                                                 draft(closes_at=NOW + timedelta(days=day + 1), **kw), now=NOW, cfg=CFG)
        await session.commit()
        await polls.vote(session, town.people["a1"], made["resident"].id, 1, now=NOW, cfg=CFG)
        await polls.vote(session, town.people["a2"], made["household"].id, 0, now=NOW, cfg=CFG)
        await polls.vote(session, town.people["a2"], made["secret"].id, 2, now=NOW, cfg=CFG)
        lodger = Resident(committee_id=town.committee.id, name="lodger", building="7", unit="1", room="1",
                          status=ResidentStatus.active, created_at=NOW, updated_at=NOW)  # no household
        session.add(lodger)
        await session.flush()
        alone = Actor(account=await make_account(session, 1100, lodger), resident=lodger, locale="en")
        await session.commit()
    ids = {p.id: name for name, p in made.items()}
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with sessions() as session:
            mine = await polls.my_open_polls(session, town.people["a1"], now=NOW, cfg=CFG)
            # The polls with the unit's ballots, the household once, the one expression asked of the database.
            assert len(seen) == 3
            assert [(ids[m.poll.id], m.choices, m.voted, m.by_me) for m in mine] == [
                ("resident", (1,), True, True), ("household", (0,), True, False), ("secret", (), True, False),
                ("owner", (), False, False)]
            renter = await polls.my_open_polls(session, town.people["renter"], now=NOW, cfg=CFG)
            assert [ids[m.poll.id] for m in renter] == ["resident", "household", "secret"]
            assert [ids[m.poll.id] for m in await polls.my_open_polls(session, town.people["e"], now=NOW, cfg=CFG)] \
                == ["resident", "household", "secret", "owner", "five"]
            assert [ids[m.poll.id] for m in await polls.my_open_polls(session, alone, now=NOW, cfg=CFG)] == ["resident"]
            assert (await polls.vote(session, alone, made["resident"].id, 2, now=NOW, cfg=CFG)).changed
            with pytest.raises(PollError) as err:
                await polls.vote(session, alone, made["household"].id, 0, now=NOW, cfg=CFG)
            assert err.value.reason == "no_household"
            assert [m.choices for m in await polls.my_open_polls(session, alone, now=NOW, cfg=CFG)] == [(2,)]
        async with sessions() as session:
            seen.clear()
            result = await polls.vote(session, town.people["b"], made["resident"].id, 0, now=NOW, cfg=CFG)
            assert len(seen) == 2 and result.changed and result.poll is not None  # the poll and ballot; the insert
            seen.clear()
            again = await polls.vote(session, town.people["a2"], made["household"].id, 0, now=NOW, cfg=CFG)
            assert not again.changed and again.choices == (0,)
            assert len(seen) == 2  # the poll and the household's ballot; the household for its key
            await session.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
