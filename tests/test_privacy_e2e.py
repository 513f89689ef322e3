"""Personal data in the bot: /mydata as a person reads it, /forget only when asked and confirmed, and
/export of a committee's registry only to its own staff."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from services.models import Account, Resident, StaffRole
from services.tags import ensure_default_tags, recompute_rule_tags
from tests.helpers import account_of, body, consent, make_staff, messages_with, texts, tr, verify
from tests.seed import ID_FENG, ID_LI, ID_WANG, ID_ZHAO, seed_registry, staff_code


@pytest.fixture
async def seeded(stack):
    await seed_registry(stack.sessions)
    async with stack.session() as s:
        await s.execute(update(Resident).where(Resident.name == "李建国").values(hukou="local"))
        await ensure_default_tags(s)
        await recompute_rule_tags(s, datetime.now(UTC))
        await s.commit()
    return stack


async def test_before_sharing_anything_the_other_ways_are_offered_not_a_no_match(seeded):
    user = await seeded.client.create_user("Kim", language_code="en")
    await consent(user, "en")
    out = await texts(user)
    assert "Share your phone number" in out and "Other ways to join:" in out and "No match" not in out


@pytest.mark.parametrize(("lang", "expected", "raw"), [
    ("en", ["gender: male", "lives alone: no", "hukou: local (this city)", "language: English",
            "verification method: phone number and registry check", "birth date: 1950-07-09",
            "Tags: Aged 60+, Aged 70+"],
     ["False", ": M\n", "local\n", "en-", "aged_70", "zh-hans"]),
    ("zh-hans", ["性别: 男", "独居: 否", "户籍: 本市户籍", "简体中文", "手机号与登记信息核对",
                 "标签: 老年人、七十岁以上老人"],
     ["False", ": M\n", "local", "zh-hans", "aged_60", "aged_70"]),
])
async def test_mydata_shows_values_as_a_person_reads_them(seeded, lang, expected, raw):
    user = await seeded.client.create_user("建国", last_name="李", language_code=lang, phone_number="+8613800138002")
    await verify(user, "李建国", ID_LI, lang)
    await user.send("/mydata")
    [card] = await messages_with(user, tr(lang, "What we hold about you"))
    text = body(card)
    for shown in expected:
        assert shown in text, (shown, text)
    for code in raw:
        assert code not in text, (code, text)
    # times are local minutes with their zone, never ISO text with microseconds
    zone = tr(lang, "Shanghai time")
    assert re.search(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d {zone}", text) and "T0" not in text and "+00:00" not in text
    assert "****8002" in text and "13800138002" not in text  # the phone masked in the chat …
    [file] = [m for m in await user.bot_messages_since_last_action() if m["document"]]
    assert b"+8613800138002" in seeded.sandbox.get_file(file["document"]["file_id"]).data  # … whole in the file


async def test_forget_deletes_only_after_the_person_asked_and_confirmed(seeded):
    user = await seeded.client.create_user("秀英", language_code="en", phone_number="+8613800138001")
    await verify(user, "王秀英", ID_WANG, "en")
    await user.send("/help")
    help_message = await user.last_message()
    # a "Yes, delete" that was never offered (forged, or replayed later) deletes nothing
    for forged in ("forget:1", "forget:true"):
        result = await user.callback(help_message["message_id"], forged)
        answer = seeded.sandbox.callbacks[result["callback_query_id"]].answer
        assert answer["text"] == "This button is no longer valid." and answer["show_alert"]
    assert (await account_of(seeded, user)).resident_id is not None
    await user.send("/forget")
    await user.press("No, keep it")
    offered = (await user.bot_messages())[-1]
    result = await user.callback(offered["message_id"], "forget:1")  # the "Yes" of an answered question
    assert "no longer valid" in seeded.sandbox.callbacks[result["callback_query_id"]].answer["text"]
    assert (await account_of(seeded, user)).resident_id is not None
    await user.send("/forget")
    await user.press("Yes, delete my data")
    assert "Your data has been deleted" in await texts(user)
    async with seeded.session() as s:
        assert await s.scalar(select(Account).where(Account.telegram_id == user.id)) is None


def _sheet(stack, message) -> list[tuple]:
    data = stack.sandbox.get_file(message["document"]["file_id"]).data
    return list(load_workbook(io.BytesIO(data), read_only=True).active.iter_rows(values_only=True))


async def test_export_gives_staff_their_own_committees_registry_without_id_numbers(seeded):
    staff = await make_staff(seeded, lang="en")
    await staff.send("/export")
    [sent] = [m for m in await staff.bot_messages_since_last_action() if m["document"]]
    assert sent["document"]["file_name"] == "registry-DXYC.xlsx" and "丁香迎春居委会" in sent["caption"]
    rows = _sheet(seeded, sent)
    names = {row[0] for row in rows[1:]}
    assert names == {"王秀英", "李建国", "赵桂兰", "孙一", "孙二"}  # DXYC only: not 冯志强 of FLSQ
    cells = " ".join(str(c) for row in rows for c in row)
    for id_number in (ID_WANG, ID_LI, ID_ZHAO):
        assert id_number not in cells and id_number[-4:] not in cells
    # staff of another committee get theirs; a street's staff choose among their committees
    foreign = await make_staff(seeded, "冯书记", "FLSQ", "en")
    await foreign.send("/export")
    [theirs] = [m for m in await foreign.bot_messages_since_last_action() if m["document"]]
    assert {row[0] for row in _sheet(seeded, theirs)[1:]} == {"冯志强"} and ID_FENG not in str(_sheet(seeded, theirs))
    await foreign.send("/export DXYC")
    assert "Which committee?" in await texts(foreign)  # DXYC is not in their area: only their own is listed
    street = await seeded.client.create_user("街道", language_code="en")
    await street.send(f"/start staff_{await staff_code(seeded.sessions, '310104003', StaffRole.street)}")
    await street.send("/export")
    choice = await texts(street)
    assert "Which committee?" in choice and "DXYC" in choice and "FLSQ" not in choice
    await street.send("/export DXYC")
    assert [m["document"]["file_name"] for m in await street.bot_messages_since_last_action() if m["document"]] == [
        "registry-DXYC.xlsx"]
    resident = await seeded.client.create_user("Res", language_code="en")
    await resident.send("/export")
    assert "for committee staff only" in await texts(resident)
