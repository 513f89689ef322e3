"""Verification end to end through the sandbox: contact + knowledge, invite codes, manual review,
the lock, scope, re-import flags, /mydata and /forget — in Chinese and English."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.logs import quiet_drivers
from services.models import Account, Resident, ResidentStatus, VerificationRequest
from services.privacy import ID_NUMBER_HELD_AS
from services.regions import get_region
from services.registry import import_registry, read_text_rows
from tests.helpers import account_of, consent, make_staff, texts, tr, zh
from tests.seed import (
    DXYC_CSV,
    ID_LI,
    ID_WANG,
    ID_ZHAO,
    SECRET,
    household_codes,
    seed_registry,
)

t = tr  # the catalogue of a Telegram language code


@pytest.fixture
async def seeded(stack):
    await seed_registry(stack.sessions)
    return stack


@pytest.mark.parametrize("lang", ["zh-hans", "en"])
async def test_contact_and_knowledge_check_verifies(seeded, lang, caplog):
    stack = seeded
    caplog.set_level(logging.DEBUG)
    quiet_drivers()  # the product's logging policy (bot.logs), as `communitybot -v` applies it
    user = await stack.client.create_user("秀英", language_code=lang, phone_number="+8613800138001")
    await user.send("/start")
    out = await user.texts_since_last_action(html=True)
    # what is kept, why, and how to see and delete it, in the user's language, the heading in bold
    heading = {"en": "Before you join: your privacy", "zh-hans": "加入之前：关于您的隐私"}[lang]
    assert f"<b>{heading}</b>" in out and "/mydata" in out and "/forget" in out
    assert ("registry" in out) == (lang == "en") and ("登记" in out) == (lang != "en")
    await user.press(t(lang, "I agree"))
    keyboard = await user.reply_keyboard()
    assert keyboard and keyboard["keyboard"][0][0]["request_contact"]
    await user.press(t(lang, "📱 Share my phone number"))
    assert t(lang, "Thank you. Please type your full name as it is in the registry.") in await texts(user)
    await user.send("王秀英")
    await user.send(ID_WANG[-4:])
    assert t(lang, "You are verified. Welcome to your community!") in await texts(user)
    account = await account_of(stack, user)
    assert account.resident_id is not None and account.verification_method == "contact"
    # no phone or ID number in any log line of the whole flow
    logged = caplog.text
    for secret in ("13800138001", "138 0013 8001", ID_WANG, ID_WANG[-4:] + "\n"):
        assert secret not in logged


async def test_someone_elses_contact_is_refused(seeded):
    user = await seeded.client.create_user("Mallory", language_code="en", phone_number="+8613800138001")
    other = await seeded.client.create_user("Victim", language_code="en")
    await consent(user, "en")
    await user.share_contact(phone_number="+8613800138001", user_id=other.id)
    assert "your own contact" in await texts(user)
    assert (await account_of(seeded, user)).resident_id is None


async def test_unknown_and_ambiguous_phone_offer_other_methods(seeded):
    user = await seeded.client.create_user("Nobody", language_code="en", phone_number="+8613999999999")
    await consent(user, "en")
    await user.share_contact()
    out = await texts(user)
    assert "could not find this phone number" in out and "invite code" in out
    twin = await seeded.client.create_user("孙", language_code="en", phone_number="+8613800138009")
    await consent(twin, "en")
    await twin.share_contact()
    assert "Several registry entries share this phone number" in await texts(twin)


async def test_five_failures_lock_verification_with_end_time(seeded):
    user = await seeded.client.create_user("秀英", language_code="en", phone_number="+8613800138001")
    await consent(user, "en")
    await user.share_contact()
    for attempt in range(5):
        await user.send("王秀英")
        await user.send("0000")
        out = await texts(user)
        if attempt < 4:  # told how many are left, and asked for the name again
            assert f"Attempts left: {4 - attempt} (failed attempts count for 24 hours)." in out
            assert out.endswith("Please type your full name again.")
    # the lock says how long, and until when in which time zone (not "today")
    assert re.search(r"\(five within 24 hours\)\. For your safety, verification is locked until "
                     r"\d{4}-\d\d-\d\d \d\d:\d\d Shanghai time\.", out), out
    assert "today" not in out
    # even the right answer is refused while locked
    await user.share_contact()
    assert "verification is locked until" in await texts(user)
    assert (await account_of(seeded, user)).resident_id is None


async def test_household_invite_deep_link_verifies_member(seeded):
    (code,) = await household_codes(seeded.sessions, "DX-3-2-201")
    user = await seeded.client.create_user("建国", language_code="zh-hans")
    await user.send(f"/start inv_{code}")
    await user.press(zh("I agree"))
    assert "DX-3-2-201" in await texts(user)
    await user.press(zh("I am {name}").format(name="李建国"))
    assert zh("You are verified. Welcome to your community!") in await texts(user)
    account = await account_of(seeded, user)
    assert account.verification_method == "invite"
    # the same code cannot be used again by someone else
    other = await seeded.client.create_user("Other", language_code="en")
    await consent(other, "en")
    await other.press("I have an invite code")
    await other.send(code)
    assert "already been used" in await texts(other)


async def test_expired_and_unknown_invite_codes_are_refused(seeded):
    (code,) = await household_codes(seeded.sessions, "YC-5-1-102",
                                    now=datetime.now(UTC) - timedelta(days=40))
    user = await seeded.client.create_user("Kim", language_code="en")
    await consent(user, "en")
    await user.press("I have an invite code")
    await user.send(code)
    assert "has expired" in await texts(user)
    await user.press("I have an invite code")
    await user.send("ABCD-EFGH-JKLM")
    out = await texts(user)
    assert "not valid" in out and "Attempts left: 3" in out


async def test_new_household_member_goes_to_staff_and_is_approved(seeded):
    staff = await make_staff(seeded, lang="en")
    (code,) = await household_codes(seeded.sessions, "DX-3-2-201")
    user = await seeded.client.create_user("Newbie", language_code="en")
    await user.send(f"/start inv_{code}")
    await user.press("I agree")
    await user.press("I am not listed (new household member)")
    await user.send("王小明")
    assert "committee staff will confirm you" in await texts(user)
    await staff.send("/pending")
    assert "王小明" in await texts(staff)
    await staff.press("Approve")
    # Not last_message(): the outbox's "new verification request" notice may land after the edit.
    assert "Approved" in await texts(staff)
    account = await account_of(seeded, user)
    assert account.resident_id is not None and account.verification_method == "review"


async def test_manual_review_and_scope_of_decisions(seeded):
    own_staff = await make_staff(seeded, "张书记", "DXYC", "en")
    foreign_staff = await make_staff(seeded, "冯书记", "FLSQ", "en")
    user = await seeded.client.create_user("Wu", language_code="en")
    await consent(user, "en")
    await user.press("Ask staff to verify me")
    await user.send("吴美玲")
    await user.send("丁香苑 3号楼 2单元 202")
    await user.send("丁香")
    await user.press("丁香迎春居委会")
    assert "sent to the committee staff" in await texts(user)
    async with seeded.session() as s:
        req = await s.scalar(select(VerificationRequest).where(VerificationRequest.name == "吴美玲"))
    # staff of another committee: neither sees it nor can decide it with forged callback data
    await foreign_staff.send("/pending")
    assert "No verification requests are waiting." in await texts(foreign_staff)
    msg = await foreign_staff.last_message()
    result = await foreign_staff.callback(msg["message_id"], f"vr:{req.id}:a")
    answers = seeded.sandbox.callbacks[result["callback_query_id"]].answer
    assert "outside your area" in answers["text"]
    # a resident cannot use staff commands at all
    await user.send("/pending")
    assert "for committee staff only" in await texts(user)
    # own staff rejects
    await own_staff.send("/pending")
    await own_staff.press("Reject")
    async with seeded.session() as s:
        assert (await s.get(VerificationRequest, req.id)).status.value == "rejected"
    # deciding twice is refused politely
    msg = await own_staff.last_message()
    result = await own_staff.callback(msg["message_id"], f"vr:{req.id}:a")
    assert "already been decided" in seeded.sandbox.callbacks[result["callback_query_id"]].answer["text"]


async def test_reimport_flags_moved_out_resident_and_removes_rights(seeded):
    user = await seeded.client.create_user("桂兰", language_code="en", phone_number="+8613800138003")
    await consent(user, "en")
    await user.share_contact()
    await user.send("赵桂兰")
    await user.send(ID_ZHAO[-4:])
    assert "You are verified" in await texts(user)
    without_zhao = "\n".join(line for line in DXYC_CSV.splitlines() if "赵桂兰" not in line)
    async with seeded.session() as s:
        report = await import_registry(s, await get_region(s, "DXYC"), read_text_rows(without_zhao),
                                       secret_key=SECRET, now=datetime.now(UTC))
    assert report.flagged == 1 and report.unchanged == 4
    async with seeded.session() as s:
        resident = await s.scalar(select(Resident).where(Resident.name == "赵桂兰"))
        assert resident.status == ResidentStatus.moved_out
    await user.send("/start")
    # no longer greeted as a resident: welcomed as a newcomer and offered the ways to join again
    out = await texts(user)
    assert out.startswith("Welcome to Community Cloud, 桂兰!") and "Share your phone number" in out
    assert (await account_of(seeded, user)).resident_id is not None  # the link stays for staff to confirm


@pytest.mark.parametrize("lang", ["zh-hans", "en"])
async def test_mydata_and_forget(seeded, lang):
    user = await seeded.client.create_user("建国", language_code=lang, phone_number="+8613800138002")
    await consent(user, lang)
    await user.share_contact()
    await user.send("李建国")
    await user.send(ID_LI[-4:].lower())
    await user.send("/mydata")
    messages = await user.bot_messages_since_last_action()
    assert "李建国" in messages[0]["text"] and "13800138002" not in messages[0]["text"]
    doc = messages[1]["document"]
    data = json.loads(seeded.sandbox.get_file(doc["file_id"]).data)
    assert data["resident"]["name"] == "李建国" and data["resident"]["id_number"] == t(lang, ID_NUMBER_HELD_AS)
    assert ID_LI not in json.dumps(data) and ID_LI[-4:] not in json.dumps(data)
    from services.models import OutboxMessage, OutboxStatus
    from services.outbox import enqueue, make_payload

    async with seeded.session() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == user.id))
        await enqueue(s, key="later", chat_id=user.id, account_id=account.id, payload=make_payload("later"),
                      priority=3, not_before=datetime.now(UTC) + timedelta(days=1), now=datetime.now(UTC))
        await s.commit()
    await user.send("/forget")
    await user.press(t(lang, "Yes, delete my data"))
    async with seeded.session() as s:
        row = await s.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == "later"))
        assert row.status == OutboxStatus.cancelled and row.account_id is None
    assert t(lang, "Your data has been deleted. Goodbye, and thank you.") in await texts(user)
    async with seeded.session() as s:
        assert await s.scalar(select(Account).where(Account.telegram_id == user.id)) is None
        resident = await s.scalar(select(Resident).where(Resident.name == "李建国"))
        assert resident.status == ResidentStatus.withdrawn


async def test_staff_are_notified_of_requests_and_residents_of_decisions(seeded):
    staff = await make_staff(seeded, lang="en")
    user = await seeded.client.create_user("Qian", language_code="zh-hans")
    await consent(user)
    await user.press(zh("Ask staff to verify me"))
    await user.send("钱多多")
    await user.send("迎春小区 5号楼 1单元 301")
    await user.send("迎春")
    await user.press("丁香迎春居委会")
    alert = await staff.wait_for_message(lambda m: "钱多多" in (m["text"] or ""))
    assert "New verification request" in alert["text"]
    await staff.callback(alert["message_id"], alert["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    told = await user.wait_for_message(lambda m: zh("Good news: the committee staff verified you. Welcome to "
                                                     "your community! Send /menu.") in m["text"])
    assert zh("Good news: the committee staff verified you. Welcome to your community! Send /menu.") == told["text"]
    await user.send("/start")
    assert zh("Welcome back, {name}! You are a verified resident of your community.").format(name="Qian") in (
        await user.bot_messages_since_last_action())[0]["text"]
    account = await account_of(seeded, user)
    assert account.resident_id is not None


async def test_staff_invite_whois_and_confirm_a_moved_out_resident(seeded):
    staff = await make_staff(seeded, lang="en")
    await staff.send("/invite DX-3-2-201 2")
    out = await texts(staff)
    assert out.count("start=inv_") == 2 and "valid 30 days" in out
    await staff.send("/invite 99-9-999")
    assert "No household 99-9-999 in your area." in await texts(staff)
    await staff.send("/invite")
    assert "Usage: /invite" in await texts(staff)
    without_zhao = "\n".join(line for line in DXYC_CSV.splitlines() if "赵桂兰" not in line)
    async with seeded.session() as s:
        await import_registry(s, await get_region(s, "DXYC"), read_text_rows(without_zhao), secret_key=SECRET,
                              now=datetime.now(UTC))
    await staff.send("/whois 赵")
    out = await texts(staff)
    assert "赵桂兰" in out and "moved out?" in out and "+86138****8003" in out and "13800138003" not in out
    await staff.press("✓ 赵桂兰 still lives here")
    async with seeded.session() as s:
        assert (await s.scalar(select(Resident).where(Resident.name == "赵桂兰"))).status == ResidentStatus.active
    foreign = await make_staff(seeded, "冯书记", "FLSQ", "en")
    await foreign.send("/whois 赵")
    assert "Nobody matching" in await texts(foreign)


async def test_second_claim_of_a_resident_goes_to_review_as_conflict(seeded):
    first = await seeded.client.create_user("Wang1", language_code="en", phone_number="+8613800138001")
    second = await seeded.client.create_user("Wang2", language_code="en", phone_number="+8613800138001")
    for user in (first, second):
        await consent(user, "en")
        await user.share_contact()
        await user.send("王秀英")
        await user.send(ID_WANG[-4:])
    assert "already linked to another account" in await texts(second)
    assert (await account_of(seeded, second)).resident_id is None
    staff = await make_staff(seeded, lang="en")
    await staff.send("/pending")
    assert "conflicting claim: 王秀英" in await texts(staff)
