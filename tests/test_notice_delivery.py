"""A notice's delivery as the console shows it: who has not received it (and where their message is),
audiences of several tags, and nothing of another committee's notice."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from services import notices as ns
from services.i18n import use_locale
from services.models import AuditLog, OutboxMessage, OutboxStatus
from services.scope import Actor
from services.tags import tag_resident
from tests.helpers import NOW, TODAY, make_account, make_world


@pytest.fixture(autouse=True)
def english():
    with use_locale("en"):
        yield


async def released_notice(session):
    """DXYC's four linked residents get a notice to everyone; the sender has delivered some of it."""
    world = await make_world(session)
    r = world.residents
    accounts = {key: await make_account(session, 100 + i, r[key]) for i, key in
                enumerate(("wang", "li", "zhao", "young"))}
    await make_account(session, 200, r["feng"])  # FLSQ: never a recipient of DXYC's notice
    await session.commit()
    aud = await ns.audience(session, world.dxyc_staff, "committee", None)
    notice = await ns.create_notice(session, world.dxyc_staff, text="Water is off on Tuesday.", aud=aud, now=NOW)
    await session.commit()
    for key, status in (("wang", OutboxStatus.sent), ("li", OutboxStatus.sent), ("zhao", OutboxStatus.failed),
                        ("young", OutboxStatus.unreachable)):
        await session.execute(update(OutboxMessage).where(OutboxMessage.ref_type == ns.REF,
                                                          OutboxMessage.account_id == accounts[key].id)
                              .values(status=status))
    wang = Actor(account=accounts["wang"], resident=r["wang"])
    assert await ns.mark_received(session, wang, notice.id, NOW)
    await session.commit()
    return world, notice, accounts


async def test_who_has_not_received_lists_failures_first_then_by_room(session):
    world, notice, accounts = await released_notice(session)
    rows = await ns.unconfirmed_recipients(session, world.dxyc_staff, notice.id)
    assert [(row.name, row.delivery) for row in rows] == [
        ("赵桂兰", "failed"), ("王小明", "unreachable"), ("李建国", "sent")]
    zhao = rows[0]
    assert (zhao.building, zhao.unit, zhao.room, zhao.phone) == ("5", "1", "102", "+8613800138003")
    assert zhao.account_id == accounts["zhao"].id and zhao.resident_id == world.residents["zhao"].id
    page = await ns.unconfirmed_recipients(session, world.dxyc_staff, notice.id, limit=2, offset=2)
    assert [row.name for row in page] == ["李建国"]
    report = await ns.report(session, world.dxyc_staff, notice.id)
    assert (report.recipients, report.received, report.failed, report.unreachable) == (4, 1, 1, 1)
    # the street above sees the same list; another committee's staff are told there is no such notice
    assert len(await ns.unconfirmed_recipients(session, world.street_staff, notice.id)) == 3
    with pytest.raises(ns.NoticeError):
        await ns.unconfirmed_recipients(session, world.flsq_staff, notice.id)
    with pytest.raises(ns.NoticeError):
        await ns.unconfirmed_recipients(session, world.dxyc_staff, 2**64)


async def test_an_audience_of_several_tags_reaches_residents_with_any_of_them(session):
    world = await make_world(session)
    r = world.residents
    await tag_resident(session, world.dxyc_staff, r["wang"].id, "volunteer", NOW)
    await tag_resident(session, world.dxyc_staff, r["young"].id, "party_member", NOW)
    await tag_resident(session, world.dxyc_staff, r["li"].id, "building_leader", NOW)
    await session.commit()
    aud = await ns.audience(session, world.dxyc_staff, "tag", "volunteer,party_member")
    assert aud.expression == 'has_tag("volunteer") or has_tag("party_member")'
    assert await ns.count_recipients(session, world.dxyc_staff, aud, TODAY) == (2, 0)
    assert [e.name for e in await ns.unreachable_residents(session, world.dxyc_staff, aud, TODAY)] == [
        "王秀英", "王小明"]
    for ref in ("volunteer,volunteer", "no_such_tag", 'volunteer") or age > 0 or has_tag("x',
                ",".join(["volunteer"] * 6), "volunteer,"):
        with pytest.raises(ns.NoticeError):
            await ns.audience(session, world.dxyc_staff, "tag", ref)


async def test_showing_a_list_with_phone_numbers_is_audited_with_its_size_only(session):
    world, notice, _accounts = await released_notice(session)
    ns.record_list_view(session, world.dxyc_staff, notice, "call_list", rows=2, now=NOW, export=True)
    await session.commit()
    rows = (await session.execute(select(AuditLog.action, AuditLog.actor_account_id, AuditLog.target_id,
                                         AuditLog.region_id, AuditLog.detail)
                                  .where(AuditLog.action == "notice.call_list"))).all()
    assert rows == [("notice.call_list", world.dxyc_staff.account_id, notice.id, world.regions["DXYC"].id,
                     {"rows": 2, "export": True})]
