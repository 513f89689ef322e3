"""End to end through the sandbox: the verification lock survives /forget and a new account; forged
buttons (another committee's member, ids beyond 64 bits) are refused politely and change nothing; long
input is clipped in replies, long lists are paged — never a message Telegram would refuse."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from services.i18n import translate
from services.models import Account, HouseholdInvite, Resident, StaffRole
from tests.seed import household_codes, seed_registry, staff_code

HUGE = "9" * 30  # beyond any 64-bit integer


def tr(lang: str, msgid: str) -> str:
    return translate("zh_Hans" if lang.startswith("zh") else "en", msgid)


@pytest.fixture
async def seeded(stack):
    await seed_registry(stack.sessions)
    return stack


async def consent(user, lang="en"):
    await user.send("/start")
    await user.press(tr(lang, "I agree"))


async def staff_user(stack, name="张书记", region="DXYC"):
    user = await stack.client.create_user(name, language_code="en")
    await user.send(f"/start staff_{await staff_code(stack.sessions, region, StaffRole.committee)}")
    return user


async def answer_of(stack, user, data: str) -> str:
    """Press forged callback data on the user's last message; what the bot answered it with."""
    msg = await user.last_message()
    result = await user.callback(msg["message_id"], data)
    return stack.sandbox.callbacks[result["callback_query_id"]].answer["text"]


async def test_forget_and_a_new_account_do_not_reset_the_lock(seeded):
    first = await seeded.client.create_user("Mallory", language_code="en", phone_number="+8613800138001")
    await consent(first)
    await first.share_contact()
    for attempt in range(5):
        await first.send("王秀英")
        await first.send(f"{attempt:04d}")
    assert "locked" in await first.texts_since_last_action()
    await first.send("/forget")
    await first.press("Yes, delete my data")
    assert "Your data has been deleted" in await first.texts_since_last_action()
    # the same phone in a second Telegram account: still locked, and pointed at the other ways
    second = await seeded.client.create_user("Mallory2", language_code="en", phone_number="+8613800138001")
    await consent(second)
    await second.share_contact()
    out = await second.texts_since_last_action()
    assert "verification is locked" in out and "invite code" in out
    assert "type your full name" not in out  # no knowledge check offered: the right answer cannot help
    async with seeded.session() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == second.id))
        assert account.resident_id is None


@pytest.mark.parametrize("lang", ["zh-hans", "en"])
async def test_a_forged_member_button_leaves_the_invite_unused(seeded, lang):
    (code,) = await household_codes(seeded.sessions, "DX-3-2-201")
    user = await seeded.client.create_user("建国", language_code=lang)
    await user.send(f"/start inv_{code}")
    await user.press(tr(lang, "I agree"))
    async with seeded.session() as s:
        foreign = await s.scalar(select(Resident).where(Resident.name == "冯志强"))  # another committee
    await user.callback((await user.last_message())["message_id"], f"vf:member:{foreign.id}")
    assert tr(lang, "Sorry, that is no longer available.") in await user.texts_since_last_action()
    assert await answer_of(seeded, user, f"vf:member:{HUGE}") == tr(lang, "This button is no longer valid.")
    async with seeded.session() as s:
        invite = await s.scalar(select(HouseholdInvite))
        assert invite.used_at is None and invite.used_by_account_id is None
        assert (await s.scalar(select(Account).where(Account.telegram_id == user.id))).resident_id is None
    # the code still works for the right member
    await user.press(tr(lang, "I am {name}").format(name="李建国"))
    assert tr(lang, "You are verified. Welcome to your community!") in await user.texts_since_last_action()


async def test_ids_beyond_64_bits_in_staff_buttons_are_no_longer_valid(seeded):
    staff = await staff_user(seeded)
    await staff.send("/pending")
    for data in (f"vr:{HUGE}:a", f"rc:{HUGE}", f"tg:1:{HUGE}:aged_80", f"nr:{HUGE}", f"nt:seg:{HUGE}"):
        text = await answer_of(seeded, staff, data)
        assert "went wrong" not in text, data
    assert await answer_of(seeded, staff, f"vr:{HUGE}:a") == "This button is no longer valid."
    await staff.send(f"/report {HUGE}")
    out = await staff.texts_since_last_action()
    assert out and "went wrong" not in out


async def test_long_input_is_clipped_and_long_lists_paged(seeded):
    staff = await staff_user(seeded)
    junk = "王" * 4000
    for command in (f"/invite {junk}", f"/whois {junk}", f"/segment age >= 80 and {'x' * 3900}",
                    f"/segment monthly_income > 1{'0' * 3000}.5", "/invite DX-3-2-201 ²"):
        await staff.send(command)
        messages = await staff.bot_messages_since_last_action()
        assert messages, command
        for m in messages:
            assert len(m["text"]) < 1000 and "went wrong" not in m["text"], command
    await staff.send(f"/whois {junk}")
    assert "王" * 99 + "…" in await staff.texts_since_last_action()
    await staff.send(f"/segment monthly_income > 1{'0' * 1500}.5")  # within the 2,000 characters allowed
    out = await staff.texts_since_last_action()
    assert "too large" in out and "…" in out and "^" in out
    # many residents: /whois answers within Telegram's limits, however long the names
    rows = "\n".join(f"长名字{'长' * 90}{i},1390000{i:04d},,丁香苑,9,1,{100 + i},DX-9-{i},否" for i in range(60))
    from services.regions import get_region
    from services.registry import import_registry, read_text_rows

    async with seeded.session() as s:
        report = await import_registry(s, await get_region(s, "DXYC"), read_text_rows(
            "姓名,手机,身份证号,小区,楼号,单元,室,户号,独居\n" + rows), secret_key="test-secret-key",
            now=datetime.now(UTC), flag_missing=False)
    assert report.imported == 60
    await staff.send("/whois 长名字")
    messages = await staff.bot_messages_since_last_action()
    assert messages and all(len(m["text"]) <= 4096 for m in messages)
    assert "长名字" in messages[0]["text"]


@pytest.mark.parametrize("lang", ["zh-hans", "en"])
async def test_mydata_says_the_id_number_is_held_only_as_a_hash(seeded, lang):
    from services.privacy import ID_NUMBER_HELD_AS
    from tests.seed import ID_LI

    user = await seeded.client.create_user("建国", language_code=lang, phone_number="+8613800138002")
    await consent(user, lang)
    await user.share_contact()
    await user.send("李建国")
    await user.send(ID_LI[-4:])
    await user.send("/mydata")
    out = await user.texts_since_last_action()
    held = f'{tr(lang, "ID number")}: {tr(lang, ID_NUMBER_HELD_AS)}'
    assert held in out and "13800138002" not in out
    assert ID_LI[-4:] not in out.replace(str(user.id), "")  # (the Telegram id may hold those digits)
