"""Verification use cases on a real database (SQLite file and PostgreSQL): the lock counts per account,
registry entry and phone and survives /forget; a refused redemption uses nothing up; ids from outside
are bounded; the ID number's last four are compared as keyed hashes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services import privacy
from services import verification as vs
from services.accounts import TelegramUser, resolve_actor, touch_account
from services.models import Account, HouseholdInvite, Resident, StaffRole, VerificationAttempt, VerificationRequest
from services.regions import ensure_demo_regions, get_region
from services.registry import import_registry, read_text_rows
from services.scope import load_staff_grants
from tests.conftest import NOW
from tests.seed import DXYC_CSV, FLSQ_CSV, ID_LI, ID_WANG, SECRET

WANG_PHONE = "+8613800138001"
TOO_BIG = 2**64  # beyond every database's integer: OverflowError if it ever reached the driver


@pytest.fixture
async def registry(session):
    await ensure_demo_regions(session)
    await session.commit()
    for code, text in (("DXYC", DXYC_CSV), ("FLSQ", FLSQ_CSV)):
        await import_registry(session, await get_region(session, code), read_text_rows(text), secret_key=SECRET,
                              now=NOW)
    return session


async def new_account(session, telegram_id: int) -> Account:
    account = await touch_account(session, TelegramUser(id=telegram_id, first_name="x"), NOW)
    vs.give_consent(account, NOW)
    await session.commit()
    return account


async def resident(session, name: str) -> Resident:
    return await session.scalar(select(Resident).where(Resident.name == name))


async def guess_wrong(session, account: Account, times: int, at=NOW) -> vs.VerificationError:
    """Share the own contact of Wang's phone, then answer the knowledge check wrongly ``times`` times."""
    err = None
    for i in range(times):
        found = await vs.match_contact(session, account, contact_user_id=account.telegram_id, phone=WANG_PHONE,
                                       now=at + timedelta(minutes=i))
        with pytest.raises(vs.VerificationError) as caught:
            await vs.knowledge_check(session, account, resident_id=found.id, full_name="王秀英",
                                     id_last4=f"{i:04d}", secret_key=SECRET, now=at + timedelta(minutes=i))
        err = caught.value
        await session.commit()
    return err


async def test_knowledge_check_compares_keyed_hashes_of_the_last_four(registry):
    session = registry
    account = await new_account(session, 1001)
    found = await vs.match_contact(session, account, contact_user_id=1001, phone="8613800138002", now=NOW)
    with pytest.raises(vs.VerificationError):  # the right last four, but hashed with another key
        await vs.knowledge_check(session, account, resident_id=found.id, full_name="李建国", id_last4=ID_LI[-4:],
                                 secret_key="another-key", now=NOW)
    linked = await vs.knowledge_check(session, account, resident_id=found.id, full_name="李 建国",
                                      id_last4=ID_LI[-4:].lower(), secret_key=SECRET, now=NOW)
    assert linked.name == "李建国" and account.resident_id == linked.id


async def test_five_failures_lock_the_entry_and_phone_for_every_account_even_after_forget(registry):
    session = registry
    first = await new_account(session, 2001)
    err = await guess_wrong(session, first, 5)
    # the lock ends when the oldest of the five leaves the window
    assert err.reason == "wrong_answer" and err.info["until"] == NOW + vs.LOCK_WINDOW
    # /forget erases the account, but not the count against the registry entry and the phone number
    actor = await resolve_actor(session, first, language_code="en", default_locale="en")
    await privacy.forget(session, actor, NOW + timedelta(minutes=10))
    await session.commit()
    kept = (await session.scalars(select(VerificationAttempt))).all()
    assert len(kept) == 5 and all(a.account_id is None and a.success is False for a in kept)
    assert all(len(a.phone_index) == 64 and WANG_PHONE not in a.phone_index for a in kept)
    # a second Telegram account with the same phone starts locked, and the right answer does not help
    second = await new_account(session, 2002)
    later = NOW + timedelta(hours=1)
    with pytest.raises(vs.VerificationError) as locked:
        await vs.match_contact(session, second, contact_user_id=2002, phone=WANG_PHONE, now=later)
    assert locked.value.reason == "locked" and locked.value.info["scope"] == "entry"
    wang = await resident(session, "王秀英")
    with pytest.raises(vs.VerificationError) as locked:
        await vs.knowledge_check(session, second, resident_id=wang.id, full_name="王秀英", id_last4=ID_WANG[-4:],
                                 secret_key=SECRET, now=later)
    assert locked.value.reason == "locked" and second.resident_id is None
    # the lock ends after its window, as it says
    done = NOW + vs.LOCK_WINDOW + timedelta(seconds=1)
    found = await vs.match_contact(session, second, contact_user_id=2002, phone=WANG_PHONE, now=done)
    await vs.knowledge_check(session, second, resident_id=found.id, full_name="王秀英", id_last4=ID_WANG[-4:],
                             secret_key=SECRET, now=done)
    assert second.resident_id == wang.id


async def test_failures_spread_over_accounts_add_up_on_the_entry(registry):
    session = registry
    for n, telegram_id in enumerate((3001, 3002, 3003)):
        account = await new_account(session, telegram_id)
        err = await guess_wrong(session, account, 2 if n < 2 else 1, at=NOW + timedelta(minutes=10 * n))
    assert err.info["until"] is not None  # 2 + 2 + 1: the entry is locked though no account reached 5
    assert await vs.remaining_attempts(session, None, NOW + timedelta(hours=1), phone=WANG_PHONE) == 0


async def test_the_phone_counter_locks_a_new_entry_with_the_same_number(registry):
    session = registry
    account = await new_account(session, 4001)
    await guess_wrong(session, account, 5)
    other_entry = (await resident(session, "李建国")).id  # say the registry listed the phone again elsewhere
    until = await vs.lock_until(session, None, NOW + timedelta(hours=1), resident_id=other_entry, phone=WANG_PHONE)
    assert until is not None
    assert await vs.lock_until(session, None, NOW + timedelta(hours=1), resident_id=other_entry) is None


async def test_a_refused_redemption_leaves_the_invite_unused(registry):
    session = registry
    household = await session.scalar(select(Resident.household_id).where(Resident.name == "李建国"))
    from services.models import Household

    hh = await session.get(Household, household)
    (code,) = await vs.create_household_invites(session, household=hh, count=1, secret_key=SECRET,
                                                ttl=timedelta(days=30), now=NOW)
    await session.commit()
    account = await new_account(session, 5001)
    foreign = await resident(session, "冯志强")  # another committee's resident: a forged member button
    for resident_id, name in ((foreign.id, None), (TOO_BIG, None), (-1, None), (None, "   ")):
        with pytest.raises(vs.VerificationError):
            await vs.redeem_invite(session, account, code, secret_key=SECRET, now=NOW, resident_id=resident_id,
                                   new_member_name=name)
        await session.commit()
        invite = await session.scalar(select(HouseholdInvite))
        assert invite.used_at is None and invite.used_by_account_id is None
        assert account.resident_id is None
        assert await session.scalar(select(func.count()).select_from(VerificationRequest)) == 0
    li = await resident(session, "李建国")
    linked = await vs.redeem_invite(session, account, code, secret_key=SECRET, now=NOW, resident_id=li.id)
    assert linked.id == li.id and (await session.scalar(select(HouseholdInvite))).used_at is not None


async def test_ids_from_outside_beyond_64_bits_are_refused_politely(registry):
    session = registry
    account = await new_account(session, 6001)
    with pytest.raises(vs.VerificationError) as err:
        await vs.knowledge_check(session, account, resident_id=TOO_BIG, full_name="x", id_last4="1234",
                                 secret_key=SECRET, now=NOW)
    assert err.value.reason == "no_match"
    with pytest.raises(vs.VerificationError) as err:
        await vs.request_review(session, account, committee_id=TOO_BIG, name="x", address="y", now=NOW)
    assert err.value.reason == "not_found"
    committee = await get_region(session, "DXYC")
    code = await vs.create_staff_invite(session, region=committee, role=StaffRole.committee, secret_key=SECRET,
                                        ttl=timedelta(days=1), now=NOW)
    staff_account = await new_account(session, 6002)
    await vs.redeem_staff_invite(session, staff_account, code, secret_key=SECRET, now=NOW)
    actor = await resolve_actor(session, staff_account, language_code="en", default_locale="en")
    assert actor.staff == await load_staff_grants(session, staff_account.id)
    for request_id in (TOO_BIG, 0, -5):
        with pytest.raises(vs.NotFoundInScope):
            await vs.decide_request(session, actor, request_id, approve=True, now=NOW)
