"""What the console shows of a poll: the poll itself only to staff covering its committee, and the
open ballots (who chose what) for its export; a secret ballot has no such list."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services import polls
from services.expressions import ExpressionError
from services.models import AuditLog
from services.polls import PollConfig, PollDraft, PollError
from services.scope import Actor
from tests.helpers import NOW, make_account, make_world

CFG = PollConfig()


async def dxyc_poll(session, **kw):
    world = await make_world(session)
    people = {key: Actor(account=await make_account(session, 300 + i, world.residents[key]),
                         resident=world.residents[key], locale="en")
              for i, key in enumerate(("wang", "li", "zhao"))}
    draft = PollDraft(question="周末义诊放在哪天？", options=["周六", "周日"], rule="plurality",
                      closes_at=NOW + timedelta(days=3), **kw)
    poll = await polls.create_poll(session, world.dxyc_staff, world.regions["DXYC"], draft, now=NOW, cfg=CFG)
    await session.commit()
    return world, people, poll


async def test_staff_see_their_committees_polls_and_nobody_elses(session):
    world, _people, poll = await dxyc_poll(session)
    assert (await polls.staff_poll(session, world.dxyc_staff, poll.id)).id == poll.id
    assert (await polls.staff_poll(session, world.street_staff, poll.id)).id == poll.id
    for actor, poll_id in ((world.flsq_staff, poll.id), (world.dxyc_staff, poll.id + 1),
                           (world.dxyc_staff, 2**64), (Actor(), poll.id)):
        with pytest.raises(PollError) as err:
            await polls.staff_poll(session, actor, poll_id)
        assert err.value.reason == "no_poll"
    assert [p.id for p in await polls.committee_polls(session, world.dxyc_staff, limit=5, offset=0)] == [poll.id]
    assert await polls.committee_polls(session, world.dxyc_staff, limit=5, offset=1) == []


async def test_open_ballots_list_who_chose_what_by_room(session):
    world, people, poll = await dxyc_poll(session)
    await polls.vote(session, people["zhao"], poll.id, 1, now=NOW, cfg=CFG)
    await polls.vote(session, people["wang"], poll.id, 0, now=NOW, cfg=CFG)
    await session.commit()
    rows = await polls.poll_ballots(session, world.dxyc_staff, poll.id)
    assert [(r.name, r.building, r.room, r.choices) for r in rows] == [("王秀英", "3", "201", (0,)),
                                                                         ("赵桂兰", "5", "102", (1,))]
    with pytest.raises(PollError):
        await polls.poll_ballots(session, world.flsq_staff, poll.id)
    assert await session.scalar(select(func.count()).select_from(AuditLog)
                                .where(AuditLog.action == "poll.ballots_export")) == 0  # a view is not a download
    await polls.poll_ballots(session, world.dxyc_staff, poll.id, exported_at=NOW)
    assert (await session.execute(select(AuditLog.target_id, AuditLog.detail).where(
        AuditLog.action == "poll.ballots_export"))).all() == [(poll.id, {"rows": 2})]


async def test_a_secret_ballot_has_no_list_of_who_chose_what(session):
    world, people, poll = await dxyc_poll(session, secret=True)
    await polls.vote(session, people["li"], poll.id, 0, now=NOW, cfg=CFG)
    with pytest.raises(PollError) as err:
        await polls.poll_ballots(session, world.dxyc_staff, poll.id)
    assert err.value.reason == "secret"


async def test_a_drafts_eligible_units_are_counted_as_its_tally_will_and_mistakes_keep_their_column(session):
    world = await make_world(session)
    dxyc, today = world.regions["DXYC"], NOW.date()
    assert await polls.eligible_units(session, world.dxyc_staff, dxyc, None, "resident", today) == 5
    assert await polls.eligible_units(session, world.dxyc_staff, dxyc, 'building == "3"', "resident", today) == 2
    assert await polls.eligible_units(session, world.dxyc_staff, dxyc, None, "household", today) == 0
    with pytest.raises(ExpressionError) as mistake:
        await polls.eligible_units(session, world.dxyc_staff, dxyc, "building ==", "resident", today)
    assert mistake.value.position == 12
    for actor, unit in ((world.flsq_staff, "resident"), (world.dxyc_staff, "tenant")):
        with pytest.raises(PollError):
            await polls.eligible_units(session, actor, dxyc, None, unit, today)
