"""Notices end to end: compose → preview → send → receive → Received → report; scheduling, cancel,
scope, and unverified accounts never receiving community notices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services import notices as ns
from services.models import Notice, NoticeStatus
from tests.seed import ID_LI, ID_WANG, ID_ZHAO
from tests.test_verification import consent, make_staff, seed_registry, texts


@pytest.fixture
async def community(stack):
    await seed_registry(stack.sessions)
    residents = []
    for name, phone, idn, lang in (("王秀英", "+8613800138001", ID_WANG, "zh-hans"),
                                   ("李建国", "+8613800138002", ID_LI, "en"),
                                   ("赵桂兰", "+8613800138003", ID_ZHAO, "en")):
        user = await stack.client.create_user(name, language_code=lang, phone_number=phone)
        await consent(user, lang)
        await user.share_contact()
        await user.send(name)
        await user.send(idn[-4:])
        residents.append(user)
    outsider = await stack.client.create_user("Stranger", language_code="en")
    await outsider.send("/start")
    staff = await make_staff(stack, lang="en")
    return stack, staff, residents, outsider


async def test_compose_preview_send_receive_and_report(community):
    stack, staff, residents, outsider = community
    await staff.send("/menu")
    await staff.press("📢 New notice")
    assert "New notice. Send its text" in await texts(staff)
    await staff.send("Water will be off on Tuesday 9:00–12:00 in buildings 3 and 5.")
    await staff.press("Skip")
    await staff.press("Everyone in my area")
    preview = await texts(staff)
    assert "Audience: 5 residents, of whom 3 can be reached in the bot." in preview
    await staff.press("Send now")
    assert "is on its way to 3 people" in await texts(staff)
    for user in residents:
        msg = await user.wait_for_message(lambda m: "Water will be off" in (m["text"] or ""))
        assert msg["reply_markup"]["inline_keyboard"][0][0]["callback_data"].startswith("nr:")
    assert "Received ✓" in str(msg["reply_markup"])
    with pytest.raises(TimeoutError):
        await outsider.wait_for_message(lambda m: "Water" in (m["text"] or ""), timeout=1)
    zh_msg = (await residents[0].bot_messages())[-1]
    await residents[0].callback(zh_msg["message_id"], zh_msg["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    await residents[0].callback(zh_msg["message_id"], zh_msg["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    notice_id = int(zh_msg["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1])
    # the outsider forging the button is told politely and counts nothing
    await outsider.send("/help")
    forged = await outsider.callback((await outsider.last_message())["message_id"], f"nr:{notice_id}")
    assert "not sent to you" in stack.sandbox.callbacks[forged["callback_query_id"]].answer["text"]
    await staff.send(f"/notice_report {notice_id}")
    report = (await staff.last_message())["text"]
    assert "Recipients: 3" in report and "Sent: 3" in report and "Pressed Received: 1" in report
    await staff.press("Remind those who have not confirmed")
    for user in residents[1:]:
        await user.wait_for_message(lambda m: "Reminder" in (m["text"] or ""))
    await staff.press("Refresh")
    again = (await staff.last_message())["reply_markup"]
    assert "Remind those" not in str(again)  # only once


async def test_notice_to_a_tag_reaches_only_tagged_residents(community):
    stack, staff, residents, _ = community
    async with stack.session() as s:
        from services.tags import ensure_default_tags, recompute_rule_tags

        await ensure_default_tags(s)
        await recompute_rule_tags(s, datetime.now(UTC))
        await s.commit()
    await staff.send("/notice")
    await staff.send("Free health check for residents living alone")
    await staff.press("Skip")
    await staff.press("Residents with a tag")
    await staff.press("Lives alone")
    assert "Audience: 1 residents, of whom 1 can be reached" in await texts(staff)
    await staff.press("Send now")
    await residents[2].wait_for_message(lambda m: "health check" in (m["text"] or ""))
    with pytest.raises(TimeoutError):
        await residents[1].wait_for_message(lambda m: "health check" in (m["text"] or ""), timeout=1)


async def test_scheduled_notice_is_released_by_the_tick_and_can_be_cancelled(community):
    stack, staff, residents, _ = community
    later = (datetime.now(stack.settings.tz) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    for text in ("Meeting tomorrow", "Cancelled meeting"):
        await staff.send("/notice")
        await staff.send(text)
        await staff.press("Skip")
        await staff.press("Everyone in my area")
        await staff.press("Send later…")
        await staff.send(later)
        await staff.press("Confirm")
        assert "will be sent at" in await texts(staff)
    async with stack.session() as s:
        first, second = (await s.scalars(select(Notice).order_by(Notice.id))).all()
    await staff.send(f"/notice_cancel {second.id}")
    assert "is cancelled" in await texts(staff)
    await staff.send(f"/notice_cancel {second.id}")
    assert "not been sent yet" in await texts(staff)
    async with stack.session() as s:
        assert await ns.tick(s, datetime.now(UTC)) == 0  # not due yet
        # time passes: the send time is now in the past (the outbox sends by the real clock)
        (await s.get(Notice, first.id)).send_at = datetime.now(UTC) - timedelta(seconds=1)
        (await s.get(Notice, second.id)).send_at = datetime.now(UTC) - timedelta(seconds=1)
        await s.commit()
    async with stack.session() as s:
        assert await ns.tick(s, datetime.now(UTC)) == 1  # the cancelled one stays cancelled
    async with stack.session() as s:
        assert await ns.tick(s, datetime.now(UTC)) == 0  # released once
        assert (await s.get(Notice, first.id)).status == NoticeStatus.sent
    await residents[1].wait_for_message(lambda m: "Meeting tomorrow" in (m["text"] or ""))


async def test_bad_inputs_and_scope(community):
    stack, staff, residents, _ = community
    foreign = await make_staff(stack, "冯书记", "FLSQ", "en")
    await residents[1].send("/notice")
    assert "for committee staff only" in await texts(residents[1])
    await staff.send("/notice")
    await staff.send("x" * 4000)
    assert "too long" in await texts(staff)
    await staff.send("short")
    await staff.send("not a photo")
    assert "photo or a file" in await texts(staff)
    await staff.press("Skip")
    await staff.press("Everyone in my area")
    await staff.press("Send later…")
    await staff.send("next tuesday")
    assert "could not read that time" in await texts(staff)
    await staff.send("2001-01-01 09:00")
    assert "must be in the future" in await texts(staff)
    await staff.send("/cancel")
    await staff.send("/notice")
    await staff.send("Scoped")
    await staff.press("Skip")
    await staff.press("Everyone in my area")
    await staff.press("Send now")
    async with stack.session() as s:
        notice = await s.scalar(select(Notice))
    await foreign.send(f"/notice_report {notice.id}")
    assert f"no notice #{notice.id} in your area" in await texts(foreign)
    await foreign.send("/notice_report abc")
    assert "Usage" in await texts(foreign)


async def test_notice_with_a_file_reaches_residents_as_a_document(community):
    stack, staff, residents, _ = community
    await staff.send("/notice")
    await staff.send("Elevator vote: the plan is attached")
    await staff.send_document("plan.pdf", b"%PDF-1.4 elevator plan", mime_type="application/pdf")
    await staff.press("Everyone in my area")
    assert "with a file" in await texts(staff)
    await staff.press("Send now")
    msg = await residents[1].wait_for_message(lambda m: m["document"] is not None)
    assert "Elevator vote" in msg["caption"] and msg["document"]["file_name"] == "plan.pdf"
    assert stack.sandbox.get_file(msg["document"]["file_id"]).data == b"%PDF-1.4 elevator plan"
