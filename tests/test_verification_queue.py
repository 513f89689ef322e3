"""The staff review queue (the bot's /pending and the console's page): scoped, paged, counted, and a
decision that tells the requester exactly once, whoever decides it and however often it is pressed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services import verification as vs
from services.models import Account, OutboxMessage, RequestStatus
from tests.helpers import NOW, make_account, make_world


async def queue(session):
    world = await make_world(session)
    accounts = [await make_account(session, 500 + i) for i in range(3)]
    for account in accounts:
        vs.give_consent(account, NOW)
    reqs = [await vs.request_review(session, accounts[0], committee_id=world.regions["DXYC"].id, name="新居民",
                                    address="7号楼101", now=NOW),
            await vs.request_review(session, accounts[1], committee_id=world.regions["DXYC"].id, name="第二位",
                                    address="7号楼102", now=NOW),
            await vs.request_review(session, accounts[2], committee_id=world.regions["FLSQ"].id, name="别处",
                                    address="1号楼", now=NOW)]
    await session.commit()
    return world, accounts, reqs


async def test_the_queue_is_scoped_paged_and_counted(session):
    world, _accounts, reqs = await queue(session)
    assert [r.id for r in await vs.pending_requests(session, world.dxyc_staff)] == [reqs[0].id, reqs[1].id]
    assert [r.id for r in await vs.pending_requests(session, world.dxyc_staff, limit=1, offset=1)] == [reqs[1].id]
    assert await vs.count_pending_requests(session, world.dxyc_staff) == 2
    assert await vs.count_pending_requests(session, world.street_staff) == 2  # FLSQ is another street's
    assert await vs.count_pending_requests(session, world.flsq_staff) == 1
    with pytest.raises(vs.NotFoundInScope):
        await vs.decide_request(session, world.dxyc_staff, reqs[2].id, approve=True, now=NOW)
    assert (await session.get(type(reqs[2]), reqs[2].id)).status == RequestStatus.pending


async def test_a_decision_tells_the_requester_once(session):
    world, accounts, reqs = await queue(session)
    _req, account = await vs.decide_request(session, world.dxyc_staff, reqs[0].id, approve=True, now=NOW)
    await session.commit()
    assert account is not None and account.id == accounts[0].id
    assert (await session.get(Account, accounts[0].id)).verified_at is not None
    with pytest.raises(vs.VerificationError) as again:
        await vs.decide_request(session, world.street_staff, reqs[0].id, approve=False, now=NOW)
    assert again.value.reason == "already_decided"
    told = await session.scalars(select(OutboxMessage).where(OutboxMessage.account_id == accounts[0].id))
    assert [(m.payload["message"], m.payload["data"]) for m in told] == [
        ("verification.decision", {"approved": True})]
    await vs.decide_request(session, world.dxyc_staff, reqs[1].id, approve=False, now=NOW)
    await session.commit()
    assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 2
    assert await vs.count_pending_requests(session, world.dxyc_staff) == 0
