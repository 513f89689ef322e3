"""Notices end to end: compose → preview → send → receive → Received → report; scheduling, cancel,
scope, and unverified accounts never receiving community notices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services import notices as ns
from services.models import Notice, NoticeStatus, OutboxMessage
from tests.helpers import body, consent, make_staff, messages_with, outbox_sent, texts
from tests.seed import ID_LI, ID_WANG, ID_ZHAO, seed_registry


async def notice_chats(stack) -> set[int]:
    """The chats the notices were written to (their outbox rows: what the sender sends)."""
    async with stack.session() as s:
        return set(await s.scalars(select(OutboxMessage.chat_id).where(OutboxMessage.ref_type == ns.REF)))


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
    # exactly the three verified residents were written to, the unverified outsider not
    assert await notice_chats(stack) == {u.id for u in residents}
    zh_msg = (await residents[0].bot_messages())[-1]
    await residents[0].callback(zh_msg["message_id"], zh_msg["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    await residents[0].callback(zh_msg["message_id"], zh_msg["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    notice_id = int(zh_msg["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1])
    # the outsider forging the button is told politely and counts nothing
    await outsider.send("/help")
    forged = await outsider.callback((await outsider.last_message())["message_id"], f"nr:{notice_id}")
    assert "not sent to you" in stack.sandbox.callbacks[forged["callback_query_id"]].answer["text"]
    # the sender marks each row sent after Telegram's answer, which the residents see first
    await outbox_sent(stack.sessions, OutboxMessage.ref_type == ns.REF)
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
    assert "Audience: 1 resident, of whom 1 can be reached" in await texts(staff)
    await staff.press("Send now")
    await residents[2].wait_for_message(lambda m: "health check" in (m["text"] or ""))
    assert await notice_chats(stack) == {residents[2].id}  # 赵桂兰 lives alone; 李建国 does not


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


async def test_notice_list_and_cancel_are_scoped_to_the_committee(community):
    stack, staff, _residents, _ = community
    foreign = await make_staff(stack, "冯书记", "FLSQ", "en")
    later = (datetime.now(stack.settings.tz) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    await staff.send("/notice")
    await staff.send("<b>Bold</b> & a rather long first line about the elevator vote on Friday")
    await staff.press("Skip")
    await staff.press("Everyone in my area")
    await staff.press("Send later…")
    await staff.send(later)
    await staff.press("Confirm")
    scheduled = await texts(staff)
    assert f"will be sent at {later} Shanghai time" in scheduled  # the zone is said
    async with stack.session() as s:
        notice = await s.scalar(select(Notice))
    await staff.send("/notices")
    [listed] = await staff.bot_messages_since_last_action()
    # number · status · recipients (none until released) · its first words, as text, cut at 40
    assert body(listed) == f"#{notice.id} · scheduled · 0 · <b>Bold</b> & a rather long first line…"
    assert not listed["entities"]
    await foreign.send("/notices")
    assert "No notices yet" in await texts(foreign)
    # another committee's staff can neither see nor cancel it
    await foreign.send(f"/notice_cancel {notice.id}")
    assert f"There is no notice #{notice.id} in your area." in await texts(foreign)
    async with stack.session() as s:
        assert (await s.get(Notice, notice.id)).status == NoticeStatus.scheduled
    await staff.send(f"/notice_cancel {notice.id}")
    assert "is cancelled" in await texts(staff)
    await staff.send("/notices")
    assert f"#{notice.id} · cancelled · 0 ·" in await texts(staff)


async def _segment(stack, name: str, expression: str) -> None:
    from services.segments import save_segment
    from tests.helpers import staff_actor

    async with stack.session() as s:
        await save_segment(s, await staff_actor(s, "DXYC"), name, expression, datetime.now(UTC))
        await s.commit()


async def test_an_audience_nobody_can_be_reached_in_is_warned_and_gets_a_call_list(community):
    stack, staff, _residents, _ = community
    await _segment(stack, "六号楼", 'building == "6"')  # 孙一 and 孙二: in the registry, not in the bot
    await staff.send("/notice")
    await staff.send("Stairwell painting on Monday")
    await staff.press("Skip")
    await staff.press("A saved segment")
    await staff.press("六号楼")
    preview = await texts(staff)
    assert "Audience: 2 residents, of whom 0 can be reached in the bot." in preview
    assert "Nobody in this audience can be reached in the bot" in preview
    await staff.press("📞 Call list: 2 not reachable in the bot")
    [calls] = await messages_with(staff, "cannot reach")
    assert body(calls).splitlines()[1:] == ["孙一 · 6-1-101 · +8613800138009", "孙二 · 6-1-102 · +8613800138009"]
    assert calls["reply_markup"] is None  # one page
    await staff.press("Send now")
    assert "reached nobody" in await texts(staff)
    assert await notice_chats(stack) == set()


async def test_the_call_list_is_paged_under_telegrams_limit(community):
    from notifications.limits import MAX_MESSAGE, tg_len
    from services.models import Region, Resident

    stack, staff, _residents, _ = community
    async with stack.session() as s:
        committee = await s.scalar(select(Region).where(Region.code == "DXYC"))
        now = datetime.now(UTC)
        s.add_all([Resident(committee_id=committee.id, name=f"{n:03d}" + "长" * 90, building="9", unit="1",
                            room=f"{n:03d}", phone=f"+86139{n:08d}", created_at=now, updated_at=now)
                   for n in range(150)])
        await s.commit()
    await _segment(stack, "九号楼", 'building == "9"')
    await staff.send("/notice")
    await staff.send("Water tank cleaning")
    await staff.press("Skip")
    await staff.press("A saved segment")
    await staff.press("九号楼")
    await staff.press("📞 Call list: 150 not reachable in the bot")
    seen: list[str] = []
    while True:
        page = (await messages_with(staff, "cannot reach"))[-1]  # the newest (pressing marks the older one)
        assert tg_len(page["text"]) <= MAX_MESSAGE
        seen += page["text"].splitlines()[1:]
        if page["reply_markup"] is None:
            break
        await staff.press("Next page")
    assert [line[:3] for line in seen] == [f"{n:03d}" for n in range(150)]  # all, in room order, once each
    assert len(seen) > 60  # more than one fetch, so more than one page
