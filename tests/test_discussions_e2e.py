"""Discussions through the real dispatcher and the sandbox: a resident proposes a topic and staff
publish it; neighbours comment and reply and see each other by building only (a hostile name arrives
as text, and only staff see it); a subscriber gets one digest for several comments; three reports
hide a comment and its reply stays; staff restore it with a reason; a locked topic and a muted
resident are refused politely; forged and repeated buttons change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bot.conversations import DatabaseStorage
from bot.middlewares import PENDING_WRITES
from bot.runtime import discussions_tick
from handlers.discussions.residents import Writing
from services.models import Account, AuditLog, Comment, CommentReport, OutboxMessage, Topic
from tests.harness import running_stack
from tests.helpers import PacedClock, answer_to, assert_shown_as_text, body, dxyc_member, tr

PINNED = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
HOSTILE = '<a href="tg://user?id=1">x</a>'


def _button(message: dict, starts: str) -> str:
    for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
        for b in row:
            if b["text"].startswith(starts):
                return b["callback_data"]
    raise AssertionError((starts, message.get("reply_markup")))


def _has_button(message: dict, starts: str) -> bool:
    return any(b["text"].startswith(starts) for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
               for b in row)


async def _open_topic(user, title: str) -> dict:
    """/topics, then press the topic: the topic's page (its last message, with the buttons)."""
    await user.send("/topics")
    await user.press(next(b["text"] for row in (await user.last_message())["reply_markup"]["inline_keyboard"]
                          for b in row if title in b["text"]))
    return await user.last_message()


async def _comment(stack, user, page: dict, text: str, reply_to: int | None = None) -> int:
    data = _button(page, f"↩ Reply #{reply_to}") if reply_to else _button(page, "💬")
    assert await answer_to(stack, user, page, data) is None
    assert "Send your" in body(await user.last_message()) or "请发送" in body(await user.last_message())
    await user.send(text)
    async with stack.session() as s:
        return await s.scalar(select(func.max(Comment.id)))


async def test_a_neighbourhood_discussion_end_to_end(tmp_path):
    clock = PacedClock(PINNED)
    async with running_stack(tmp_path, clock=clock) as stack:
        hostile = await dxyc_member(stack, HOSTILE)  # registry and Telegram name both hostile
        b, c, d = await dxyc_member(stack, "b"), await dxyc_member(stack, "c"), await dxyc_member(stack, "d")
        e = await dxyc_member(stack, "e", building="5")
        staff = await dxyc_member(stack, "staff", staff=True)

        # A resident proposes; staff are told and publish it; the author hears.
        await hostile.send("/topic_new")
        await hostile.send("加装电梯 <b>3号楼</b>")
        await hostile.send("大家同意吗？")
        await hostile.press("Whole committee")
        assert "goes to the committee for approval" in body(await hostile.last_message())
        await b.send("/topics")
        assert "There are no open topics for you yet" in body(await b.last_message())
        proposal = await staff.wait_for_message(lambda m: "New topic proposed" in body(m))
        assert "加装电梯 <b>3号楼</b>" in body(proposal) and "Resident of building 3" in body(proposal)
        publish = _button(proposal, "✅ Publish")
        assert await answer_to(stack, staff, proposal, publish) == "Published."
        assert await answer_to(stack, staff, proposal, publish) == "This proposal has already been decided."
        await hostile.wait_for_message(lambda m: "is published" in body(m))
        async with stack.session() as s:
            topic_id = await s.scalar(select(Topic.id))

        # Neighbours comment and reply; residents appear by building, the hostile name never.
        page = await _open_topic(hostile, "加装电梯")
        assert "加装电梯 <b>3号楼</b>" in body(page) and "0 comments" in body(page)
        bad = await _comment(stack, hostile, page, f"难听的话 {HOSTILE}")
        assert f"Posted as comment #{bad}" in "\n".join(body(m) for m in await hostile.bot_messages())
        page = await _open_topic(c, "加装电梯")
        reply = await _comment(stack, c, page, "请文明", reply_to=bad)
        page = await _open_topic(b, "加装电梯")
        await _comment(stack, b, page, "我同意")
        page = await _open_topic(e, "加装电梯")
        text = body(page)
        assert "3 comments" in text and "Resident of building 3: 我同意" in text
        assert f"↳ #{reply} Resident of building 3: 请文明" in text
        assert_shown_as_text(page, f"难听的话 {HOSTILE}")
        assert text.count(HOSTILE) == 1  # the comment's text; the name is not shown to residents
        staff_page = await _open_topic(staff, "加装电梯")
        assert_shown_as_text(staff_page, f"Resident of building 3 ({HOSTILE}, account")

        # The author is subscribed: one digest for the three comments, and no second one.
        await discussions_tick(stack.runtime, clock())
        digest = await hostile.wait_for_message(lambda m: "New in topic" in body(m))
        assert "请文明" in body(digest) and "我同意" in body(digest) and "难听的话" not in body(digest)
        await discussions_tick(stack.runtime, clock())
        async with stack.session() as s:  # the outbox's rows: a second digest could still be on its way
            assert await s.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.idempotency_key.like(f"topic:{topic_id}:digest:%"))) == 1

        # Three reports hide the comment; its reply elsewhere stays; repeated and own reports change nothing.
        pages = {name: await _open_topic(user, "加装电梯") for name, user in [("b", b), ("c", c), ("d", d), ("e", e)]}
        report = _button(pages["b"], f"⚠ #{bad}")
        assert await answer_to(stack, b, pages["b"], report) == "Thank you. The committee will look at it."
        assert await answer_to(stack, b, pages["b"], report) == "You have already reported this comment. Thank you."
        own = await _open_topic(hostile, "加装电梯")
        assert not _has_button(own, f"⚠ #{bad}")
        assert await answer_to(stack, hostile, own, report) == "You cannot report your own comment."
        assert await answer_to(stack, c, pages["c"], report) == "Thank you. The committee will look at it."
        assert "hidden until the committee reviews it" in await answer_to(stack, d, pages["d"], report)
        assert "not available" in await answer_to(stack, e, pages["e"], report)
        async with stack.session() as s:
            assert await s.scalar(select(func.count()).select_from(CommentReport)) == 3
        await staff.wait_for_message(lambda m: f"Comment #{bad}" in body(m) and "reported 3 times" in body(m))
        page = await _open_topic(e, "加装电梯")
        assert "2 comments" in body(page) and f"#{bad} (hidden by moderators)" in body(page)
        assert "难听的话" not in body(page) and f"↳ #{reply} Resident of building 3: 请文明" in body(page)

        # Staff restore it with a reason (a reason is required).
        await staff.send(f"/comment_restore {bad}")
        assert "Please give a reason" in body(await staff.last_message())
        await staff.send(f"/comment_restore {bad} 没有违规")
        assert f"Comment #{bad} is shown again." in body(await staff.last_message())
        page = await _open_topic(e, "加装电梯")
        assert "3 comments" in body(page) and "难听的话" in body(page)

        # Forged buttons: another topic, an id beyond 64 bits, a comment of this topic named under another.
        assert "does not exist" in await answer_to(stack, e, page, f"dt:view:{topic_id + 99}:0")
        assert await answer_to(stack, e, page, f"dc:report:{topic_id}:{2**64}") == "This button is no longer valid."
        assert "does not exist" in await answer_to(stack, e, page, f"dt:say:{2**63 - 1}:0")

        # A locked topic refuses a comment being typed, politely.
        assert await answer_to(stack, b, pages["b"], _button(pages["b"], "💬 Comment")) is None
        await staff.send(f"/topic_lock {topic_id} 讨论结束")
        assert "is locked" in body(await staff.last_message())
        await b.send("还有一句")
        assert "This topic is locked" in body(await b.last_message())
        assert "This topic is locked" in await answer_to(stack, c, pages["c"], _button(pages["c"], "💬 Comment"))
        await staff.send(f"/topic_unlock {topic_id}")

        # A muted resident is told until when, and nothing is posted.
        await staff.send(f"/mute {bad} 24h 人身攻击")
        assert "cannot write in discussions until 2026-11-29 09:" in body(await staff.last_message())
        told = await hostile.wait_for_message(lambda m: "paused your writing" in body(m))
        assert "until 2026-11-29 09:" in body(told) and "人身攻击" in body(told)
        page = await _open_topic(hostile, "加装电梯")
        refusal = await answer_to(stack, hostile, page, _button(page, "💬 Comment"))
        assert "paused your writing in discussions until 2026-11-29 09:" in refusal
        async with stack.session() as s:
            assert await s.scalar(select(func.count()).select_from(Comment)) == 3
            actions = set(await s.scalars(select(AuditLog.action)))
        assert {"topic.create", "topic.approve", "comment.report", "comment.auto_hide", "comment.restore",
                "topic.lock", "topic.unlock", "discussion.mute"} <= actions


async def _asked_for_a_comment(stack):
    """Staff publish a topic; resident b opens it and presses "Comment": (b, the topic's page)."""
    staff = await dxyc_member(stack, "staff", staff=True)
    b = await dxyc_member(stack, "b")
    await staff.send("/topic_new")
    await staff.send("垃圾分类")
    await staff.send("新规定")
    await staff.press("Whole committee")
    assert "is published" in "\n".join(body(m) for m in await staff.bot_messages())
    page = await _open_topic(b, "垃圾分类")
    assert await answer_to(stack, b, page, _button(page, "💬 Comment")) is None
    return b, page


async def test_the_same_comment_update_delivered_twice_posts_once(tmp_path):
    clock = PacedClock(PINNED)
    async with running_stack(tmp_path, clock=clock) as stack:
        b, page = await _asked_for_a_comment(stack)
        await b.send("好的")
        async with stack.session() as s:
            [(comment_id, key)] = (await s.execute(select(Comment.id, Comment.client_key))).all()
        # Telegram delivers the message again after a crash that lost the conversation state's clearing:
        # the same chat and message id, a new update id, the conversation waiting for a comment again.
        chat, message_id = (int(x) for x in key.split(":"))
        fsm = FSMContext(stack.dp.fsm.storage, StorageKey(bot_id=stack.bot.id, chat_id=chat, user_id=b.id))
        await fsm.set_state(Writing.comment)
        await fsm.update_data(topic=page_topic(page), parent=None)
        await stack.client.raw_update({"message": {
            "message_id": message_id, "date": 0, "text": "好的", "chat": {"id": chat, "type": "private"},
            "from": {"id": b.id, "is_bot": False, "first_name": "b", "language_code": "en"}}}, wait=True)
        # Answered as the first time (the same comment), and nothing new is posted.
        said = [body(m) for m in await b.bot_messages() if body(m).startswith("Posted as comment")]
        assert [s.split("\n")[0] for s in said] == [f"Posted as comment #{comment_id}."] * 2
        assert all("垃圾分类" in s and "好的" in s for s in said)  # each opens the topic's page, with it
        async with stack.session() as s:
            assert await s.scalar(select(func.count()).select_from(Comment)) == 1
            assert await s.scalar(select(func.count()).select_from(AuditLog)
                                  .where(AuditLog.action == "comment.create")) == 1


async def test_a_comment_begun_before_a_restart_is_posted_after_it(tmp_path):
    """Without Redis the conversation is kept in the database: a process started afresh on it (a new
    storage, its memory empty) takes the text as the comment the resident was asked for."""
    clock = PacedClock(PINNED)
    async with running_stack(tmp_path, clock=clock) as stack:
        b, _ = await _asked_for_a_comment(stack)
        assert isinstance(stack.dp.fsm.storage, DatabaseStorage)
        stack.dp.fsm.storage = DatabaseStorage(stack.sessions, ttl=stack.settings.fsm_ttl, clock=clock)
        await b.send("周三收厨余垃圾吗？")
        assert body(await b.last_message()).startswith("Posted as comment #")
        async with stack.session() as s:
            assert await s.scalar(select(Comment.body)) == "周三收厨余垃圾吗？"


async def test_a_comment_that_could_not_be_saved_is_still_awaited(tmp_path):
    """The conversation ends in the comment's own transaction: when that commit fails the resident is
    told it did not work, nothing is posted, and their next message is taken as the comment."""
    clock = PacedClock(PINNED)
    async with running_stack(tmp_path, clock=clock) as stack:
        b, _ = await _asked_for_a_comment(stack)
        failures = []

        def noting(state) -> None:
            if state.is_insert and getattr(state.statement.table, "name", "") == "comments":
                state.session.info["writes a comment"] = True

        def disk_full_once(session: Session) -> None:  # the first commit of a comment fails
            if not failures and session.info.get("writes a comment"):
                failures.append(session.info.get(PENDING_WRITES))
                raise OperationalError("COMMIT", {}, Exception("database or disk is full"))

        event.listen(Session, "do_orm_execute", noting)
        event.listen(Session, "before_commit", disk_full_once)
        try:
            await b.send("周三收厨余垃圾吗？")
        finally:
            event.remove(Session, "do_orm_execute", noting)
            event.remove(Session, "before_commit", disk_full_once)
        assert len(failures) == 1 and failures[0]  # the conversation's end was in that commit
        assert [body(m) for m in await b.bot_messages_since_last_action()] == [
            tr("en", "Sorry, that did not work: it could not be saved. Please try again in a moment.")]
        async with stack.session() as s:
            assert await s.scalar(select(func.count()).select_from(Comment)) == 0
        await b.send("周三收厨余垃圾吗？")
        assert body(await b.last_message()).startswith("Posted as comment #")
        async with stack.session() as s:
            assert await s.scalar(select(Comment.body)) == "周三收厨余垃圾吗？"


def page_topic(page: dict) -> int:
    return int(_button(page, "💬 Comment").split(":")[2])


async def test_topics_are_paged_with_buttons_and_neighbours_read_as_building_residents_in_chinese(tmp_path):
    from services import discussions as ds
    from services.scope import Actor, load_staff_grants

    clock = PacedClock(PINNED)
    async with running_stack(tmp_path, clock=clock) as stack:
        staff = await dxyc_member(stack, "staff", staff=True)
        writer = await dxyc_member(stack, "王秀英", lang="zh-hans")
        reader = await dxyc_member(stack, "李建国", lang="zh-hans")
        cfg: ds.DiscussionConfig = stack.dp["discussion_config"]
        async with stack.session() as s:
            account = await s.scalar(select(Account).where(Account.telegram_id == staff.id))
            actor = Actor(account=account, staff=await load_staff_grants(s, account.id))
            for i in range(cfg.topics_page + 1):
                await ds.create_topic(s, actor, ds.TopicDraft(title=f"话题{i}", body="正文"),
                                      now=clock() + timedelta(seconds=i), cfg=cfg)
            await s.commit()
        # The menu's button does what /topics does; the newest topics come first, six do not fit one page.
        await reader.send("/menu")
        await reader.press("🗣 议事厅")
        listing = await reader.last_message()
        assert "议事厅" in body(listing) and "第 1 页，共 2 页" in body(listing)
        assert f"话题{cfg.topics_page}" in body(listing) and "话题0" not in body(listing)
        await reader.press("下一页 »")
        second = await reader.last_message()
        assert "话题0" in body(second) and f"话题{cfg.topics_page}" not in body(second)
        assert "第 2 页，共 2 页" in body(second)
        # A forged page number is answered and changes nothing.
        assert await answer_to(stack, reader, second, "dl:99999999999999999999999") == "该页不存在。"
        newest = f"话题{cfg.topics_page}"
        page = await _open_topic(writer, newest)
        await _comment(stack, writer, page, "我住三号楼")
        page = await _open_topic(reader, newest)
        assert "3号楼居民: 我住三号楼" in body(page) and "王秀英" not in body(page)
        assert "居委会工作人员" in body(page)  # staff opened it: shown by role
