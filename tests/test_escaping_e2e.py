"""Text from people and from the registry reaches Telegram as text, in every message that shows it.

A hostile value (an HTML link that Telegram would turn into a "mention" of user 1) is typed by users
and imported into the registry; each message that repeats it must arrive with the characters as
typed and no link entity — through the real dispatcher, the outbox sender and the sandbox, which
parses the bot's HTML into text and entities as Telegram does.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select, update

from services.identity import make_id_number
from services.models import Region, Resident, StaffRole, TagKind
from services.regions import get_region
from services.registry import import_registry, read_text_rows
from services.tags import define_tag, ensure_default_tags
from tests.helpers import (
    HOSTILE,
    assert_shown_as_text,
    body,
    make_staff,
    messages_with,
    staff_actor,
    texts,
    verify,
)
from tests.seed import SECRET, seed_registry, staff_code

SHORT = '<a href="tg://user?id=1">1</a>'  # fits the registry's 32-character room fields
ID_HOSTILE = make_id_number("310104", date(1948, 4, 4), 41, "F")
PHONE = "+8613800138777"
NO_EQUALS = "<b>Evil</b> & <i>Co"  # markup without "=", for /segment_save name = expression


def _csv(*rows: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["姓名", "手机", "身份证号", "小区", "楼号", "单元", "室", "户号", "独居"])
    writer.writerows(rows)
    return out.getvalue()


@pytest.fixture
async def world(stack):
    """The seed registry plus a resident whose name, compound, room and household code are hostile."""
    await seed_registry(stack.sessions)
    async with stack.session() as s:
        await import_registry(s, await get_region(s, "DXYC"),
                              read_text_rows(_csv([HOSTILE, PHONE, ID_HOSTILE, HOSTILE, SHORT, SHORT, SHORT, HOSTILE,
                                                   "是"])),
                              secret_key=SECRET, now=datetime.now(UTC), flag_missing=False)
        await ensure_default_tags(s)
        await s.commit()
    return stack


async def test_hostile_registry_values_and_names_arrive_as_text_for_the_resident(world):
    user = await world.client.create_user(HOSTILE, last_name=SHORT, language_code="en", phone_number=PHONE)
    await user.send("/start")
    [welcome] = await messages_with(user, "Welcome")
    assert_shown_as_text(welcome, HOSTILE)
    assert_shown_as_text(welcome, SHORT)
    await verify(user, HOSTILE, ID_HOSTILE, "en")
    await user.send("/mydata")
    [card] = await messages_with(user, "What we hold about you")
    for value in (HOSTILE, SHORT):
        assert_shown_as_text(card, value)
    assert body(card).count(SHORT) >= 4  # last name, building, unit, room


async def test_hostile_invite_household_is_text_in_the_code_message(world):
    from tests.seed import household_codes

    (code,) = await household_codes(world.sessions, HOSTILE)
    user = await world.client.create_user("Neighbour", language_code="en")
    await user.send(f"/start inv_{code}")
    await user.press("I agree")
    [who] = await messages_with(user, "Who are you?")
    assert_shown_as_text(who, HOSTILE)
    # the member's name is a button: plain text, shown exactly (no &lt; either)
    labels = [b["text"] for row in who["reply_markup"]["inline_keyboard"] for b in row]
    assert f"I am {HOSTILE}" in labels


async def test_a_typed_review_request_reaches_staff_as_text_everywhere(world):
    staff = await make_staff(world, lang="en")
    user = await world.client.create_user("Wu", language_code="en")
    await user.send("/start")
    await user.press("I agree")
    await user.press("Ask staff to verify me")
    await user.send(HOSTILE + "吴")  # a name of its own: approving files a new registry row
    await user.send(HOSTILE)  # the address
    await user.send("丁香")
    await user.press("丁香迎春居委会")
    alert = await staff.wait_for_message(lambda m: "New verification request" in body(m))
    assert_shown_as_text(alert, HOSTILE)
    assert body(alert).count(HOSTILE) == 2  # name and address
    await staff.send("/pending")
    [line] = await messages_with(staff, HOSTILE)
    assert_shown_as_text(line, HOSTILE)
    await staff.press("Approve")
    [decided] = await messages_with(staff, "Approved")
    assert_shown_as_text(decided, HOSTILE)
    # the new registry row keeps the typed address as its room (cut to 32 characters), shown as text
    await staff.send("/whois 吴")
    [found] = await messages_with(staff, "Call 110")
    assert_shown_as_text(found, f"{HOSTILE}吴 · {HOSTILE[:32]} ·")


async def test_staff_lookups_echo_and_list_hostile_values_as_text(world):
    staff = await make_staff(world, lang="en")
    await staff.send(f"/whois {HOSTILE}")
    [found] = await messages_with(staff, "Call 110")
    assert_shown_as_text(found, HOSTILE)
    assert_shown_as_text(found, f"{HOSTILE} · {SHORT}-{SHORT}-{SHORT} · +86138****8777")
    await staff.send(f"/whois {SHORT}x")
    [nobody] = await messages_with(staff, "Nobody matching")
    assert_shown_as_text(nobody, SHORT + "x")
    await staff.send(f"/invite {SHORT}x")
    [no_household] = await messages_with(staff, "No household")
    assert_shown_as_text(no_household, SHORT + "x")
    await staff.send(f"/invite {HOSTILE}")
    [codes] = await messages_with(staff, "Invite codes for household")
    assert_shown_as_text(codes, HOSTILE)


async def test_tags_and_segments_show_hostile_names_and_typed_text_as_text(world):
    staff = await make_staff(world, lang="en")
    async with world.session() as s:
        actor = await staff_actor(s, "DXYC")
        await define_tag(s, actor, code="helper", name_zh=HOSTILE, name_en=HOSTILE, kind=TagKind.manual,
                         now=datetime.now(UTC))
        await s.commit()
    await staff.send("/tags")
    [dictionary] = await messages_with(staff, "Tag dictionary")
    assert_shown_as_text(dictionary, HOSTILE)
    await staff.send(f"/tag {SHORT}x volunteer")
    assert_shown_as_text((await messages_with(staff, "Nobody matching"))[0], SHORT + "x")
    await staff.send("/tag 王秀英 <b>x&y</b>")  # a tag is one word: the last one
    assert_shown_as_text((await messages_with(staff, "Unknown tag"))[0], "<b>x&y</b>")
    await staff.send(f"/tag {HOSTILE} volunteer")
    assert "Tag volunteer added." in await texts(staff)
    await staff.send('/segment has_tag("volunteer")')
    [segment] = await messages_with(staff, "resident matches")
    assert_shown_as_text(segment, f"{HOSTILE} ({SHORT}-{SHORT}-{SHORT})")
    await staff.send(f'/segment name == "{SHORT}" and')
    [error] = await messages_with(staff, "column")
    assert_shown_as_text(error, f'name == "{SHORT}" and')
    await staff.send(f'/segment_save {NO_EQUALS} = has_tag("volunteer")')  # the name ends at the first "="
    assert_shown_as_text((await messages_with(staff, "saved"))[0], NO_EQUALS)
    await staff.send("/segments")
    assert_shown_as_text((await messages_with(staff, "Evil"))[0], NO_EQUALS)


async def test_region_names_and_notices_are_text_for_staff(world):
    async with world.session() as s:
        await s.execute(update(Region).where(Region.code == "FLSQ").values(name=HOSTILE))
        await s.execute(update(Region).where(Region.code == "RJXC").values(name=SHORT))
        await s.commit()
    foreign = await make_staff(world, "冯书记", "FLSQ", "en")
    enrolled = (await foreign.bot_messages())[-1]
    assert_shown_as_text(enrolled, HOSTILE)
    await foreign.send("/export")
    assert_shown_as_text((await foreign.bot_messages_since_last_action())[-1], HOSTILE)  # one committee
    street = await world.client.create_user("街道", language_code="en")
    await street.send(f"/start staff_{await staff_code(world.sessions, '310104003', StaffRole.street)}")
    await street.send("/export")
    assert_shown_as_text((await messages_with(street, "Which committee?"))[0], f"{SHORT} (RJXC)")
    staff = await make_staff(world, lang="en")
    await staff.send("/notice")
    await staff.send(f"Meeting {HOSTILE}")
    await staff.press("Skip")
    await staff.press("Everyone in my area")
    [preview] = await messages_with(staff, "Preview")
    assert_shown_as_text(preview, HOSTILE)
    await staff.press("📞 Call list: 6 not reachable in the bot")
    [calls] = await messages_with(staff, "cannot reach")
    assert_shown_as_text(calls, f"{HOSTILE} · {SHORT}-{SHORT}-{SHORT} · {PHONE}")
    await staff.press("Send now")
    await staff.send("/notices")
    [listed] = await messages_with(staff, "Meeting")
    assert_shown_as_text(listed, "Meeting <a href=")
    async with world.session() as s:
        hostile = await s.scalar(select(Resident).where(Resident.name == HOSTILE))
    assert hostile.room == SHORT
