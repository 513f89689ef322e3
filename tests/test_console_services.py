"""The services behind the staff console, on SQLite and PostgreSQL: sign-in links and sessions, the
residents list and card, the audit log as staff read it, tag usage, and the dashboard's figures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bot.db import session_factory
from notifications.reports import table_sheet
from services import audit, console_auth
from services import checkins as cs
from services import residents as rs
from services import segments as seg
from services import tags as ts
from services.accounts import TelegramUser
from services.console_auth import ConsoleAuthError, ConsoleConfig
from services.dashboard import dashboard
from services.models import AuditLog, ConsoleLink, ConsoleSession, Resident, ResidentStatus, Staff
from tests.helpers import NOW, TODAY, make_account, make_world

CFG = ConsoleConfig(public_url="https://desk.example.org")


@pytest.fixture
async def world(engine):
    async with session_factory(engine)() as s:
        return await make_world(s)


@pytest.fixture
async def db(engine):
    async with session_factory(engine)() as s:
        yield s


def token_of(link: console_auth.LoginLink) -> str:
    return link.url.split("#t=", 1)[1]


# --- sign-in ------------------------------------------------------------------------------------


async def test_a_link_is_stored_hashed_and_spent_once(db, world):
    link = await console_auth.issue_link(db, world.dxyc_staff, now=NOW, cfg=CFG)
    token = token_of(link)
    assert link.url.startswith("https://desk.example.org/console/login#t=") and link.expires_at == NOW + CFG.link_ttl
    stored = await db.scalar(select(ConsoleLink))
    assert stored.token_hash == console_auth.token_hash(token) and token not in stored.token_hash
    opened = await console_auth.redeem_link(db, token, now=NOW + timedelta(minutes=1), cfg=CFG)
    assert opened.account_id == world.dxyc_staff.account.id
    with pytest.raises(ConsoleAuthError) as err:
        await console_auth.redeem_link(db, token, now=NOW + timedelta(minutes=2), cfg=CFG)
    assert err.value.reason == "used"
    assert await db.scalar(select(func.count()).select_from(ConsoleSession)) == 1
    session_row = await db.scalar(select(ConsoleSession))
    assert session_row.token_hash == console_auth.token_hash(opened.token)


async def test_a_link_expires_and_nobody_but_staff_gets_one(db, world):
    link = await console_auth.issue_link(db, world.dxyc_staff, now=NOW, cfg=CFG)
    with pytest.raises(ConsoleAuthError) as err:
        await console_auth.redeem_link(db, token_of(link), now=NOW + CFG.link_ttl, cfg=CFG)
    assert err.value.reason == "expired"
    with pytest.raises(ConsoleAuthError) as err:
        await console_auth.redeem_link(db, "nonsense", now=NOW, cfg=CFG)
    assert err.value.reason == "unknown"
    resident = await make_account(db, 500, world.residents["wang"])
    from services.accounts import resolve_actor

    actor = await resolve_actor(db, resident, language_code="zh-hans", default_locale="zh_Hans")
    with pytest.raises(ConsoleAuthError) as err:
        await console_auth.issue_link(db, actor, now=NOW, cfg=CFG)
    assert err.value.reason == "not_staff"
    assert await db.scalar(select(func.count()).select_from(ConsoleSession)) == 0
    # Expired links of the same person are cleared when a new one is made.
    await console_auth.issue_link(db, world.dxyc_staff, now=NOW + timedelta(hours=1), cfg=CFG)
    assert await db.scalar(select(func.count()).select_from(ConsoleLink)) == 1


async def test_sessions_resume_until_idle_and_end_when_staff_leave(db, world):
    link = await console_auth.issue_link(db, world.dxyc_staff, now=NOW, cfg=CFG)
    opened = await console_auth.redeem_link(db, token_of(link), now=NOW, cfg=CFG)
    later = NOW + timedelta(hours=7, minutes=59)
    signed_in = await console_auth.resume(db, opened.token, now=later, cfg=CFG)
    assert signed_in is not None and signed_in.actor.is_staff and signed_in.session.last_seen_at == later
    assert await console_auth.resume(db, opened.token, now=later + timedelta(seconds=30), cfg=CFG) is not None
    assert signed_in.session.last_seen_at == later  # touched at most once a minute
    assert await console_auth.resume(db, opened.token, now=later + timedelta(hours=8), cfg=CFG) is None
    assert (await db.scalar(select(ConsoleSession))).ended_at == later + timedelta(hours=8)
    assert await console_auth.resume(db, opened.token, now=later, cfg=CFG) is None  # ended for good
    assert await console_auth.resume(db, None, now=NOW, cfg=CFG) is None

    link = await console_auth.issue_link(db, world.dxyc_staff, now=NOW, cfg=CFG)
    opened = await console_auth.redeem_link(db, token_of(link), now=NOW, cfg=CFG)
    await db.execute(update(Staff).where(Staff.account_id == world.dxyc_staff.account.id).values(active=False))
    assert await console_auth.resume(db, opened.token, now=NOW + timedelta(minutes=5), cfg=CFG) is None


async def test_csrf_tokens_belong_to_one_session(db, world):
    one = await console_auth.redeem_link(db, token_of(await console_auth.issue_link(db, world.dxyc_staff, now=NOW,
                                                                                    cfg=CFG)), now=NOW, cfg=CFG)
    two = await console_auth.redeem_link(db, token_of(await console_auth.issue_link(db, world.flsq_staff, now=NOW,
                                                                                    cfg=CFG)), now=NOW, cfg=CFG)
    a = (await console_auth.resume(db, one.token, now=NOW, cfg=CFG)).session
    b = (await console_auth.resume(db, two.token, now=NOW, cfg=CFG)).session
    token = console_auth.csrf_token(a, "secret")
    assert console_auth.check_csrf(a, "secret", token)
    assert not console_auth.check_csrf(b, "secret", token)
    assert not console_auth.check_csrf(a, "other secret", token)
    assert not console_auth.check_csrf(a, "secret", None) and not console_auth.check_csrf(a, "secret", "")


async def test_a_mini_app_session_needs_fresh_signed_data_and_staff(db, world):
    staff = TelegramUser(world.dxyc_staff.account.telegram_id, "staff")
    opened = await console_auth.open_mini_app_session(db, staff, signed_at=NOW - timedelta(minutes=9), now=NOW,
                                                      cfg=CFG)
    assert (await db.get(ConsoleSession, opened.session_id)).via == "mini_app"
    for signed_at in (NOW - timedelta(minutes=11), NOW + timedelta(minutes=5)):
        with pytest.raises(ConsoleAuthError) as err:
            await console_auth.open_mini_app_session(db, staff, signed_at=signed_at, now=NOW, cfg=CFG)
        assert err.value.reason == "expired"
    with pytest.raises(ConsoleAuthError) as err:
        await console_auth.open_mini_app_session(db, TelegramUser(424242, "stranger"), signed_at=NOW, now=NOW,
                                                 cfg=CFG)
    assert err.value.reason == "not_staff"


def test_the_console_config_knows_https_and_the_mini_app():
    assert CFG.secure and CFG.mini_app
    local = ConsoleConfig(public_url="http://127.0.0.1:8080")
    assert not local.secure and local.mini_app  # the sandbox plays Telegram on loopback
    lan = ConsoleConfig(public_url="http://192.168.1.10:8080")
    assert not lan.secure and not lan.mini_app  # Telegram would refuse a plain-http Mini App


# --- residents ------------------------------------------------------------------------------------


async def test_the_residents_list_is_scoped_filtered_and_paged(db, world):
    flt = rs.ResidentFilter()
    page = await rs.list_residents(db, world.dxyc_staff, flt, today=TODAY)
    assert page.total == 5 and {r.name for r in page.rows} == {"王秀英", "李建国", "赵桂兰", "王小明", "钱八十"}
    street = await rs.list_residents(db, world.street_staff, flt, today=TODAY)
    assert street.total == 6 and "冯志强" not in {r.name for r in street.rows}
    assert (await rs.list_residents(db, world.dxyc_staff, rs.ResidentFilter(query="王"), today=TODAY)).total == 2
    assert [r.name for r in (await rs.list_residents(db, world.dxyc_staff, rs.ResidentFilter(query="5-102"),
                                                     today=TODAY)).rows] == ["赵桂兰"]
    two = await rs.list_residents(db, world.dxyc_staff, flt, today=TODAY, page=2, per_page=2)
    assert two.page == 2 and two.pages == 3 and len(two.rows) == 2
    last = await rs.list_residents(db, world.dxyc_staff, flt, today=TODAY, page=50, per_page=2)
    assert last.page == 3 and len(last.rows) == 1
    # A committee outside the scope gives nobody, not its residents.
    foreign = rs.ResidentFilter(committee_id=world.regions["FLSQ"].id)
    assert (await rs.list_residents(db, world.dxyc_staff, foreign, today=TODAY)).total == 0


async def test_the_residents_list_by_tag_segment_and_status(db, world):
    await ts.recompute_rule_tags(db, NOW)
    await ts.tag_resident(db, world.dxyc_staff, world.residents["young"].id, "volunteer", NOW)
    volunteers = await rs.list_residents(db, world.dxyc_staff, rs.ResidentFilter(tag="volunteer"), today=TODAY)
    assert [r.name for r in volunteers.rows] == ["王小明"]
    alone = await seg.save_segment(db, world.dxyc_staff, "独居", "living_alone == true", NOW)
    by_segment = await rs.list_residents(db, world.dxyc_staff, rs.ResidentFilter(segment_id=alone.id), today=TODAY)
    assert {r.name for r in by_segment.rows} == {"李建国", "赵桂兰"}
    theirs = await seg.save_segment(db, world.flsq_staff, "枫林", "living_alone == true", NOW)
    with pytest.raises(rs.ResidentListError) as err:
        await rs.list_residents(db, world.dxyc_staff, rs.ResidentFilter(segment_id=theirs.id), today=TODAY)
    assert err.value.field == "segment"
    with pytest.raises(rs.ResidentListError) as err:
        await rs.list_residents(db, world.dxyc_staff, rs.ResidentFilter(tag="a b"), today=TODAY)
    assert err.value.field == "tag"
    (await db.get(Resident, world.residents["turning"].id)).status = ResidentStatus.moved_out
    await db.flush()
    moved = await rs.list_residents(db, world.dxyc_staff, rs.ResidentFilter(status=ResidentStatus.moved_out),
                                    today=TODAY)
    assert [r.name for r in moved.rows] == ["钱八十"]
    everyone = await rs.list_residents(db, world.dxyc_staff, rs.ResidentFilter(status=None), today=TODAY)
    assert everyone.total == 5


async def test_verified_residents_are_counted_per_committee(db, world):
    await make_account(db, 600, world.residents["wang"])
    await make_account(db, 601, world.residents["rj"])
    counts = await rs.resident_counts(db, world.street_staff)
    assert [(c.name, c.residents, c.verified) for c in counts] == [("丁香迎春居委会", 5, 1), ("日晖新村居委会", 1, 1)]
    assert await rs.resident_counts(db, rs.Actor()) == []
    rows = (await rs.list_residents(db, world.dxyc_staff, rs.ResidentFilter(query="王秀英"), today=TODAY)).rows
    assert [r.verified for r in rows] == [True]


async def test_age_bands_count_birthdays_on_the_day(db, world):
    bands = dict(await rs.age_bands(db, world.dxyc_staff, TODAY))
    # 王小明 36; 李建国 76; 王秀英 81 and 钱八十 79 (80 tomorrow); 赵桂兰 88.
    assert bands[(18, 59)] == 1 and bands[(70, 79)] == 2 and bands[(80, 89)] == 2 and bands[(90, None)] == 0
    tomorrow = dict(await rs.age_bands(db, world.dxyc_staff, TODAY + timedelta(days=1)))
    assert tomorrow[(70, 79)] == 1 and tomorrow[(80, 89)] == 3


async def test_a_residents_card_audits_the_view_and_shows_the_history(db, world):
    wang = world.residents["wang"]
    await ts.tag_resident(db, world.dxyc_staff, wang.id, "volunteer", NOW)
    card = await rs.resident_card(db, world.dxyc_staff, wang.id, now=NOW + timedelta(minutes=1))
    assert card is not None and card.committee.code == "DXYC" and card.verification is None
    assert [t.tag.code for t in card.tags] == ["volunteer"] and card.tags[0].source == "manual"
    assert [e.action for e in card.history] == ["resident.view", "tag.add"]
    assert card.history[0].actor_name == "staff" and card.history[0].actor_account_id == world.dxyc_staff.account.id
    # Out of scope: nothing, and nothing recorded.
    assert await rs.resident_card(db, world.dxyc_staff, world.residents["feng"].id, now=NOW) is None
    assert await rs.resident_card(db, world.dxyc_staff, 10**30, now=NOW) is None
    views = await db.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "resident.view"))
    assert views == 1
    # Another committee's staff never see who looked at our residents.
    assert await audit.resident_history(db, world.flsq_staff, wang.id) == []


async def test_a_card_shows_the_household(db, world):
    from services.models import Household

    household = Household(committee_id=world.regions["DXYC"].id, code="DX-3-2-201", building="3", unit="2",
                          room="201")
    db.add(household)
    await db.flush()
    for key in ("wang", "li"):
        (await db.get(Resident, world.residents[key].id)).household_id = household.id
    await db.flush()
    card = await rs.resident_card(db, world.dxyc_staff, world.residents["wang"].id, now=NOW)
    assert card.household.code == "DX-3-2-201" and [m.name for m in card.members] == ["李建国"]


async def test_an_export_is_audited_without_its_rows(db, world):
    rows = await rs.export_residents(db, world.dxyc_staff, rs.ResidentFilter(query="王"), today=TODAY, now=NOW)
    assert sorted(r.name for r in rows) == ["王小明", "王秀英"]
    entry = await db.scalar(select(AuditLog).where(AuditLog.action == "resident.export"))
    assert entry.detail["rows"] == 2 and "王秀英" not in str(entry.detail)


# --- the audit log and tags -----------------------------------------------------------------------


async def test_the_audit_log_is_read_per_scope_newest_first(db, world):
    await ts.tag_resident(db, world.dxyc_staff, world.residents["wang"].id, "volunteer", NOW)
    await ts.tag_resident(db, world.flsq_staff, world.residents["feng"].id, "volunteer", NOW + timedelta(minutes=1))
    await ts.untag_resident(db, world.dxyc_staff, world.residents["wang"].id, "volunteer", NOW + timedelta(minutes=2))
    mine = await audit.entries(db, world.dxyc_staff)
    assert [e.action for e in mine.entries] == ["tag.remove", "tag.add"] and mine.total == 2
    assert mine.entries[0].region == "丁香迎春居委会"
    assert [e.action for e in (await audit.entries(db, world.dxyc_staff, action="tag.add")).entries] == ["tag.add"]
    assert (await audit.entries(db, world.dxyc_staff, action="tag.")).total == 2
    assert (await audit.entries(db, world.street_staff)).total == 2  # the street sees its committees
    assert [e.target_id for e in (await audit.entries(db, world.flsq_staff)).entries] == [world.residents["feng"].id]
    assert (await audit.entries(db, rs.Actor())).total == 0
    assert await audit.actions_in_scope(db, world.dxyc_staff) == ["tag.add", "tag.remove"]
    paged = await audit.entries(db, world.dxyc_staff, per_page=1, page=2)
    assert paged.pages == 2 and [e.action for e in paged.entries] == ["tag.add"]


async def test_tag_usage_counts_active_residents_in_scope(db, world):
    await ts.recompute_rule_tags(db, NOW)
    usage = await ts.tag_usage(db, world.dxyc_staff)
    assert usage["aged_80"] == 2 and usage["living_alone"] == 2 and "volunteer" not in usage
    assert (await ts.tag_usage(db, world.flsq_staff))["living_alone"] == 1
    (await db.get(Resident, world.residents["zhao"].id)).status = ResidentStatus.moved_out
    await db.flush()
    assert (await ts.tag_usage(db, world.dxyc_staff))["aged_80"] == 1
    with pytest.raises(ts.NotInScope):
        await ts.resident_tags(db, world.dxyc_staff, world.residents["feng"].id)


# --- the dashboard --------------------------------------------------------------------------------


async def test_the_dashboard_counts_what_the_bot_counts(engine, world):
    sessions = session_factory(engine)
    cfg = cs.CheckinConfig(secret_key="test-secret-key")
    async with sessions() as s:
        zhao = await s.get(Resident, world.residents["zhao"].id)
        await make_account(s, 700, zhao)
        await cs.enrol_resident(s, zhao, now=NOW - timedelta(days=1), cfg=cfg, minute=9 * 60)
        await s.commit()
    await cs.tick(sessions, cfg, NOW)
    await cs.tick(sessions, cfg, NOW + timedelta(minutes=91))  # no answer: reminded, then alerted
    async with sessions() as s:
        board = await dashboard(s, world.dxyc_staff, now=NOW + timedelta(minutes=92), today=TODAY, checkin_cfg=cfg)
        assert board.residents == 5 and board.verified == 1 and board.verified_share == pytest.approx(0.2)
        assert board.open_alerts == 1 and board.checkins.alerted == 1 and board.checkins.total == 1
        assert await cs.count_open_alerts(s, world.street_staff) == 1
        assert await cs.count_open_alerts(s, world.flsq_staff) == 0
        other = await dashboard(s, world.flsq_staff, now=NOW, today=TODAY, checkin_cfg=cfg)
        assert other.residents == 1 and other.open_alerts == 0 and other.checkins.total == 0
        assert other.verified_share == 0
        nobody = await dashboard(s, rs.Actor(), now=NOW, today=TODAY, checkin_cfg=cfg)
        assert nobody.residents == 0 and nobody.verified_share is None and nobody.open_polls == []


def test_any_list_becomes_a_sheet():
    from io import BytesIO

    from openpyxl import load_workbook

    data = table_sheet("居民", ["姓名", "年龄"], [("王秀英", 81), ("李建国", None)])
    rows = list(load_workbook(BytesIO(data)).active.iter_rows(values_only=True))
    assert rows == [("居民", None), ("姓名", "年龄"), ("王秀英", 81), ("李建国", None)]
