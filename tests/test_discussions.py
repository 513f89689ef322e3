"""Discussion services on a real database (SQLite file; PostgreSQL when configured): who sees a topic,
proposals and approval, neutral names, one level of replies, the limits with their reasons, reports
that hide a comment (not counted, its replies kept), staff moderation with the audit trail, forged
ids, redelivered updates, and digests at most once per interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, func, select, update

from bot.db import session_factory
from services import discussions as ds
from services.discussions import DiscussionConfig, DiscussionError, TopicDraft
from services.models import (
    Account,
    AuditLog,
    Comment,
    CommentReport,
    DiscussionMute,
    DiscussionSetting,
    OutboxMessage,
    Region,
    RegionLevel,
    Resident,
    ResidentStatus,
    Staff,
    StaffRole,
    Topic,
    TopicStatus,
    TopicSubscription,
)
from services.scope import Actor, StaffGrant
from tests.helpers import make_account

NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
CFG = DiscussionConfig()


class Town:
    committee: Region
    other: Region
    staff: Actor
    people: dict[str, Actor]


async def make_town(session) -> Town:
    """Committee DT (residents in buildings 3 and 5), committee OT (one resident), staff of DT."""
    town = Town()
    town.committee = Region(code="DT", name="讨论居委", level=RegionLevel.committee, path="/DT/")
    town.other = Region(code="OT", name="别的居委", level=RegionLevel.committee, path="/OT/")
    session.add_all([town.committee, town.other])
    await session.flush()
    town.people = {}
    tid = 100
    for name, committee, building in [("a", town.committee, "3"), ("b", town.committee, "3"),
                                      ("c", town.committee, "3"), ("d", town.committee, "3"),
                                      ("e", town.committee, "5"), ("o", town.other, "3")]:
        r = Resident(committee_id=committee.id, name=f"居民{name}", building=building, unit="1", room="101",
                     phone="+8613800000000", status=ResidentStatus.active, created_at=NOW, updated_at=NOW)
        session.add(r)
        await session.flush()
        tid += 1
        town.people[name] = Actor(account=await make_account(session, tid, r), resident=r, locale="en")
    staff_account = await make_account(session, 999, first_name="书记")
    session.add(Staff(account_id=staff_account.id, region_id=town.committee.id, role=StaffRole.committee,
                      created_at=NOW))
    town.staff = Actor(account=staff_account, locale="en", staff=[
        StaffGrant(1, "committee", town.committee.id, town.committee.path, town.committee.code,
                   town.committee.name)])
    await session.commit()
    return town


async def staff_topic(session, town: Town, **kw) -> Topic:
    draft = TopicDraft(title=kw.pop("title", "小区停车"), body=kw.pop("body", "大家怎么看？"), **kw)
    result = await ds.create_topic(session, town.staff, draft, now=NOW, cfg=CFG)
    await session.commit()
    return result.topic


async def audit_actions(session) -> list[str]:
    return list(await session.scalars(select(AuditLog.action).order_by(AuditLog.id)))


async def refused(coro, reason: str) -> DiscussionError:
    with pytest.raises(DiscussionError) as info:
        await coro
    assert info.value.reason == reason, info.value.info
    return info.value


async def test_a_proposal_waits_for_staff_who_are_told_and_the_author_hears_the_decision(session):
    town = await make_town(session)
    a, b = town.people["a"], town.people["b"]
    result = await ds.create_topic(session, a, TopicDraft(title="加装电梯", body="3号楼要不要装电梯？"), now=NOW,
                                   cfg=CFG)
    await session.commit()
    topic = result.topic
    assert (result.created, result.published, topic.status) == (True, False, TopicStatus.pending)
    # Pending: the author sees it, neighbours do not; it is not in the list.
    await ds.topic_view(session, a, topic.id, cfg=CFG)
    await refused(ds.topic_view(session, b, topic.id, cfg=CFG), "no_topic")
    assert (await ds.list_topics(session, b, cfg=CFG)).total == 0
    await refused(ds.add_comment(session, a, topic.id, "先说一句", now=NOW, cfg=CFG), "pending")
    staff_told = await session.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.chat_id == 999, OutboxMessage.payload["message"].as_string() == "discussions.proposed"))
    assert staff_told == 1
    assert [t.id for t in (await ds.list_topics(session, town.staff, cfg=CFG, pending=True)).items] == [topic.id]
    await refused(ds.decide_topic(session, a, topic.id, True, now=NOW), "not_staff")
    await ds.decide_topic(session, town.staff, topic.id, True, now=NOW)
    await session.commit()
    # A second tap changes nothing.
    await refused(ds.decide_topic(session, town.staff, topic.id, False, now=NOW), "not_pending")
    await session.refresh(topic)
    assert topic.status == TopicStatus.open
    page = await ds.list_topics(session, b, cfg=CFG)
    assert [(t.id, t.comments) for t in page.items] == [(topic.id, 0)]
    told = list(await session.scalars(select(OutboxMessage.payload).where(OutboxMessage.chat_id == a.account.chat_id)))
    assert [p["message"] for p in told] == ["discussions.decided"] and told[0]["data"]["approved"] is True
    assert await audit_actions(session) == ["topic.create", "topic.approve"]


async def test_where_the_committee_allows_it_residents_publish_directly(session):
    town = await make_town(session)
    await refused(ds.set_residents_publish(session, town.people["a"], True, now=NOW), "not_staff")
    await ds.set_residents_publish(session, town.staff, True, now=NOW)
    await ds.set_residents_publish(session, town.staff, True, now=NOW)  # the same again: one audit row
    await session.commit()
    assert await ds.residents_publish(session, town.committee.id)
    result = await ds.create_topic(session, town.people["a"], TopicDraft(title="跳蚤市场", body="周六？"), now=NOW,
                                   cfg=CFG)
    assert result.published and result.topic.status == TopicStatus.open
    assert (await audit_actions(session)).count("discussion.residents_publish") == 1
    assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0  # nothing to approve


async def test_a_building_topic_is_seen_only_there_and_another_committee_sees_nothing(session):
    town = await make_town(session)
    topic = await staff_topic(session, town, scope="building", building="3")
    for name in ("a", "b"):
        assert [t.id for t in (await ds.list_topics(session, town.people[name], cfg=CFG)).items] == [topic.id]
    for name in ("e", "o"):
        assert (await ds.list_topics(session, town.people[name], cfg=CFG)).items == []
        await refused(ds.topic_view(session, town.people[name], topic.id, cfg=CFG), "no_topic")
        await refused(ds.add_comment(session, town.people[name], topic.id, "我也说", now=NOW, cfg=CFG), "no_topic")
        await refused(ds.subscribe(session, town.people[name], topic.id, True, now=NOW), "no_topic")
    # A resident's own building topic.
    own = await ds.create_topic(session, town.people["e"], TopicDraft(title="5号楼", body="楼道灯", scope="building"),
                                now=NOW, cfg=CFG)
    assert own.topic.building == "5"
    assert await session.scalar(select(func.count()).select_from(Comment)) == 0


async def test_residents_see_each_other_by_building_and_staff_see_names(session):
    town = await make_town(session)
    topic = await staff_topic(session, town)
    first = await ds.add_comment(session, town.people["a"], topic.id, "我住3号楼", now=NOW, cfg=CFG)
    await ds.add_comment(session, town.staff, topic.id, "居委会回复", now=NOW, cfg=CFG, parent_id=first.comment.id)
    await session.commit()
    seen = await ds.topic_view(session, town.people["b"], topic.id, cfg=CFG)
    [c] = seen.comments
    assert (c.author.building, c.author.role, c.author.name, c.author.account_id) == ("3", None, None, None)
    assert (c.replies[0].author.role, c.replies[0].author.name) == ("committee", None)
    assert seen.author.role == "committee" and not seen.moderator
    by_staff = await ds.topic_view(session, town.staff, topic.id, cfg=CFG)
    assert by_staff.comments[0].author.name == "居民a" and by_staff.moderator
    assert seen.count == 2


async def test_a_reply_to_a_reply_joins_the_thread_one_level(session):
    town = await make_town(session)
    topic = await staff_topic(session, town)
    root = (await ds.add_comment(session, town.people["a"], topic.id, "一", now=NOW, cfg=CFG)).comment
    reply = (await ds.add_comment(session, town.people["b"], topic.id, "二", now=NOW, cfg=CFG,
                                  parent_id=root.id)).comment
    deeper = (await ds.add_comment(session, town.people["c"], topic.id, "三", now=NOW, cfg=CFG,
                                   parent_id=reply.id)).comment
    assert (reply.parent_id, deeper.parent_id) == (root.id, root.id)
    view = await ds.topic_view(session, town.people["d"], topic.id, cfg=CFG)
    assert [[r.body for r in c.replies] for c in view.comments] == [["二", "三"]]


async def test_limits_each_have_a_reason_and_change_nothing(session):
    town = await make_town(session)
    cfg = DiscussionConfig(comments_per_window=2, topics_per_day=1)
    topic = await staff_topic(session, town)
    a = town.people["a"]
    e = await refused(ds.add_comment(session, a, topic.id, "长" * 2001, now=NOW, cfg=cfg), "too_long")
    assert e.info["limit"] == 2000
    await refused(ds.add_comment(session, a, topic.id, "   ", now=NOW, cfg=cfg), "empty")
    await ds.add_comment(session, a, topic.id, "长" * 2000, now=NOW, cfg=cfg)
    await ds.add_comment(session, a, topic.id, "二", now=NOW + timedelta(minutes=1), cfg=cfg)
    e = await refused(ds.add_comment(session, a, topic.id, "三", now=NOW + timedelta(minutes=2), cfg=cfg),
                      "too_many_comments")
    assert (e.info["limit"], e.info["minutes"]) == (2, 10)
    await ds.add_comment(session, a, topic.id, "三", now=NOW + timedelta(minutes=11), cfg=cfg)
    # Topics per day.
    await ds.create_topic(session, a, TopicDraft(title="一", body="一"), now=NOW, cfg=cfg)
    await refused(ds.create_topic(session, a, TopicDraft(title="二", body="二"), now=NOW + timedelta(hours=1),
                                  cfg=cfg), "too_many_topics")
    await ds.create_topic(session, a, TopicDraft(title="二", body="二"), now=NOW + timedelta(days=1, minutes=1),
                          cfg=cfg)
    # Locked.
    await ds.set_locked(session, town.staff, topic.id, True, now=NOW, reason="讨论结束", cfg=cfg)
    await refused(ds.set_locked(session, town.staff, topic.id, True, now=NOW, reason=None, cfg=cfg), "already")
    await refused(ds.add_comment(session, town.people["b"], topic.id, "还想说", now=NOW, cfg=cfg), "locked")
    await ds.set_locked(session, town.staff, topic.id, False, now=NOW, reason=None, cfg=cfg)
    # Muted until a time, in the committee's clock.
    comment = (await ds.add_comment(session, town.people["b"], topic.id, "吵架", now=NOW, cfg=cfg)).comment
    until = NOW + timedelta(hours=24)
    await refused(ds.mute_author(session, town.staff, comment.id, NOW - timedelta(minutes=1), now=NOW, cfg=cfg),
                  "bad_until")
    await ds.mute_author(session, town.staff, comment.id, until, now=NOW, cfg=cfg, reason="人身攻击")
    await session.commit()
    e = await refused(ds.add_comment(session, town.people["b"], topic.id, "再说", now=NOW + timedelta(hours=1),
                                     cfg=cfg), "muted")
    assert e.info["until"] == "2026-11-29 09:00"
    await refused(ds.create_topic(session, town.people["b"], TopicDraft(title="x", body="y"), now=NOW, cfg=cfg),
                  "muted")
    await ds.add_comment(session, town.people["b"], topic.id, "好了", now=until + timedelta(minutes=1), cfg=cfg)
    texts = list(await session.scalars(select(Comment.body).where(Comment.author_account_id == town.people["b"]
                                                                  .account_id).order_by(Comment.id)))
    assert texts == ["吵架", "好了"]
    assert await session.scalar(select(func.count()).select_from(DiscussionMute)) == 1
    actions = await audit_actions(session)
    assert {"topic.lock", "topic.unlock", "discussion.mute"} <= set(actions)


async def test_three_reports_hide_a_comment_its_replies_stay_and_staff_restore_it(session):
    town = await make_town(session)
    topic = await staff_topic(session, town)
    bad = (await ds.add_comment(session, town.people["a"], topic.id, "难听的话", now=NOW, cfg=CFG)).comment
    reply = (await ds.add_comment(session, town.people["b"], topic.id, "请文明", now=NOW, cfg=CFG,
                                  parent_id=bad.id)).comment
    await session.commit()
    await refused(ds.report_comment(session, town.people["a"], bad.id, now=NOW, cfg=CFG), "own_comment")
    assert not (await ds.report_comment(session, town.people["b"], bad.id, now=NOW, cfg=CFG)).hidden
    await refused(ds.report_comment(session, town.people["b"], bad.id, now=NOW, cfg=CFG), "reported")
    await refused(ds.report_comment(session, town.people["o"], bad.id, now=NOW, cfg=CFG), "no_comment")
    await refused(ds.report_comment(session, town.staff, bad.id, now=NOW, cfg=CFG), "not_verified")
    assert not (await ds.report_comment(session, town.people["c"], bad.id, now=NOW, cfg=CFG)).hidden
    assert (await ds.report_comment(session, town.people["d"], bad.id, now=NOW, cfg=CFG)).hidden
    await session.commit()
    await refused(ds.report_comment(session, town.people["e"], bad.id, now=NOW, cfg=CFG), "no_comment")
    view = await ds.topic_view(session, town.people["e"], topic.id, cfg=CFG)
    [c] = view.comments
    assert (c.hidden, c.body, [r.body for r in c.replies], view.count) == (True, None, ["请文明"], 1)
    assert (await ds.list_topics(session, town.people["e"], cfg=CFG)).items[0].comments == 1
    # A reply to a hidden comment is refused; its existing replies can still be reported.
    await refused(ds.add_comment(session, town.people["e"], topic.id, "回", now=NOW, cfg=CFG, parent_id=bad.id),
                  "no_comment")
    await ds.report_comment(session, town.people["e"], reply.id, now=NOW, cfg=CFG)
    staff_view = await ds.topic_view(session, town.staff, topic.id, cfg=CFG)
    assert (staff_view.comments[0].body, staff_view.comments[0].hidden_reason) == ("难听的话", "reports")
    assert [h.id for h in await ds.hidden_by_reports(session, town.staff)] == [bad.id]
    await refused(ds.restore_comment(session, town.staff, bad.id, "  ", now=NOW, cfg=CFG), "bad_reason")
    await ds.restore_comment(session, town.staff, bad.id, "没有违规", now=NOW, cfg=CFG)
    await refused(ds.restore_comment(session, town.staff, bad.id, "again", now=NOW, cfg=CFG), "already")
    await session.commit()
    assert (await ds.topic_view(session, town.people["e"], topic.id, cfg=CFG)).count == 2
    # The old reports no longer count: one new report does not hide it again.
    assert not (await ds.report_comment(session, town.people["e"], bad.id, now=NOW, cfg=CFG)).hidden
    await ds.hide_comment(session, town.staff, bad.id, "确认违规", now=NOW, cfg=CFG)
    await refused(ds.hide_comment(session, town.staff, bad.id, "again", now=NOW, cfg=CFG), "already")
    actions = await audit_actions(session)
    assert actions.count("comment.report") == 5
    assert [a for a in actions if a.startswith("comment.") and a != "comment.report" and a != "comment.create"] == [
        "comment.auto_hide", "comment.restore", "comment.hide"]
    told = await session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.chat_id == 999))
    assert told == 1  # staff heard of the hidden comment once


async def test_forged_and_stale_ids_are_refused_and_change_nothing(session):
    town = await make_town(session)
    topic = await staff_topic(session, town)
    elsewhere = Topic(committee_id=town.other.id, title="别处", body="别处", status=TopicStatus.open, created_at=NOW,
                      last_activity_at=NOW)
    session.add(elsewhere)
    await session.commit()
    a = town.people["a"]
    for bad in (2**63, 2**64 + 1, -1, 0, True, "1"):
        await refused(ds.topic_view(session, a, bad, cfg=CFG), "no_topic")
        await refused(ds.add_comment(session, a, bad, "x", now=NOW, cfg=CFG), "no_topic")
        await refused(ds.add_comment(session, a, topic.id, "x", now=NOW, cfg=CFG, parent_id=bad), "no_comment")
        await refused(ds.report_comment(session, a, bad, now=NOW, cfg=CFG), "no_comment")
        await refused(ds.hide_comment(session, town.staff, bad, "r", now=NOW, cfg=CFG), "no_comment")
        await refused(ds.decide_topic(session, town.staff, bad, True, now=NOW), "no_topic")
    for page in (-1, 10**20, True):
        await refused(ds.topic_view(session, a, topic.id, page, cfg=CFG), "bad_page")
        await refused(ds.list_topics(session, a, page, cfg=CFG), "bad_page")
    await refused(ds.topic_view(session, a, elsewhere.id, cfg=CFG), "no_topic")
    await refused(ds.set_locked(session, town.staff, elsewhere.id, True, now=NOW, reason=None, cfg=CFG), "no_topic")
    # A comment of another topic named as the parent.
    other_topic = await staff_topic(session, town, title="二")
    stray = (await ds.add_comment(session, a, other_topic.id, "彼处", now=NOW, cfg=CFG)).comment
    await refused(ds.add_comment(session, a, topic.id, "x", now=NOW, cfg=CFG, parent_id=stray.id), "no_comment")
    assert await session.scalar(select(func.count()).select_from(Comment)) == 1
    assert await session.scalar(select(func.count()).select_from(CommentReport)) == 0


async def test_the_same_update_twice_makes_one_comment_and_one_topic(session):
    town = await make_town(session)
    topic = await staff_topic(session, town)
    a = town.people["a"]
    first = await ds.add_comment(session, a, topic.id, "一次", now=NOW, cfg=CFG, client_key="101:55")
    again = await ds.add_comment(session, a, topic.id, "一次", now=NOW, cfg=CFG, client_key="101:55")
    assert (first.created, again.created, again.comment.id) == (True, False, first.comment.id)
    t1 = await ds.create_topic(session, a, TopicDraft(title="t", body="b"), now=NOW, cfg=CFG, client_key="101:56")
    t2 = await ds.create_topic(session, a, TopicDraft(title="t", body="b"), now=NOW, cfg=CFG, client_key="101:56")
    assert (t1.created, t2.created, t2.topic.id) == (True, False, t1.topic.id)
    assert await ds.subscribe(session, town.people["b"], topic.id, True, now=NOW)
    assert not await ds.subscribe(session, town.people["b"], topic.id, True, now=NOW)
    assert await session.scalar(select(func.count()).select_from(Comment)) == 1
    assert await session.scalar(select(func.count()).select_from(Topic)) == 2


async def test_a_comment_comes_with_its_page_and_writes_the_topics_row_last(session):
    """A comment's write of its topic's row (the last activity, when a minute old) is its last
    statement, after the page is read, so on PostgreSQL another comment on the topic waits for the row
    only until this one commits. The page comes from the checks' read and one more; the same update
    again gets the page too, and writes nothing."""
    town = await make_town(session)
    topic = await staff_topic(session, town)
    await session.commit()
    statements: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        statements.append(" ".join(statement.split()))

    sync_engine = session.bind.sync_engine
    event.listen(sync_engine, "before_cursor_execute", note)
    try:
        made = await ds.add_comment(session, town.people["a"], topic.id, "我住3号楼", now=NOW, cfg=CFG,
                                    client_key="101:7", view=True)
        first = list(statements)
        again = await ds.add_comment(session, town.people["a"], topic.id, "我住3号楼", now=NOW, cfg=CFG,
                                     client_key="101:7", view=True)
    finally:
        event.remove(sync_engine, "before_cursor_execute", note)
    assert made.created and made.view is not None
    assert [c.body for c in made.view.comments] == ["我住3号楼"] and made.view.count == 1
    assert first[-1].startswith("UPDATE topics SET last_activity_at")
    # The checks' read also counts the topic's comments, so the page needs one read more, not two.
    assert [s.split()[0] for s in first] == ["SELECT", "INSERT", "INSERT", "SELECT", "UPDATE"], first
    writes = [s.split()[2 if s.startswith("INSERT") else 1] for s in first if s.startswith(("INSERT", "UPDATE"))]
    assert writes == ["comments", "audit_log", "topics"], writes
    assert not any(s.startswith(("INSERT", "UPDATE")) for s in statements[len(first):])  # again: no write
    assert not again.created and again.view is not None and again.view.count == 1
    b = town.people["b"]
    reply = await ds.add_comment(session, b, topic.id, "我也是", now=NOW, cfg=CFG, parent_id=made.comment.id,
                                 view=True)
    assert reply.view == await ds.topic_view(session, b, topic.id, cfg=CFG)  # as if read afresh
    assert reply.view is not None and reply.view.count == 2 and len(reply.view.comments[0].replies) == 1
    by_staff = await ds.add_comment(session, town.staff, topic.id, "居委会回复", now=NOW, cfg=CFG, view=True)
    assert by_staff.view == await ds.topic_view(session, town.staff, topic.id, cfg=CFG)
    assert by_staff.view is not None and by_staff.view.moderator and by_staff.view.count == 3
    plain = await ds.add_comment(session, b, topic.id, "再说一句", now=NOW, cfg=CFG)
    assert plain.view is None


async def test_a_comment_moves_its_topic_up_the_list_to_the_minute(session):
    """The topic lists put the latest activity first; a comment writes its topic's last activity when
    that is a minute old or more, so the comments of a busy topic do not all write the one row."""
    town = await make_town(session)
    older = await staff_topic(session, town)
    newer = await staff_topic(session, town)
    for topic, idle in ((older, timedelta(hours=1)), (newer, timedelta(minutes=30))):
        await session.execute(update(Topic).where(Topic.id == topic.id).values(last_activity_at=NOW - idle))
    a = town.people["a"]

    async def listed() -> list[int]:
        return [item.id for item in (await ds.list_topics(session, a, cfg=CFG)).items]

    async def last_activity(topic: Topic) -> datetime:
        return await session.scalar(select(Topic.last_activity_at).where(Topic.id == topic.id))

    assert await listed() == [newer.id, older.id]
    await ds.add_comment(session, a, older.id, "一", now=NOW, cfg=CFG)
    assert await listed() == [older.id, newer.id]
    await ds.add_comment(session, a, older.id, "二", now=NOW + timedelta(seconds=30), cfg=CFG)
    assert await last_activity(older) == NOW  # not a minute old: not written
    await ds.add_comment(session, a, newer.id, "三", now=NOW + timedelta(seconds=30), cfg=CFG)
    assert await listed() == [newer.id, older.id]
    await ds.add_comment(session, a, older.id, "四", now=NOW + timedelta(minutes=1), cfg=CFG)
    assert await listed() == [older.id, newer.id]
    assert await last_activity(older) == NOW + timedelta(minutes=1)


async def test_subscribers_get_one_digest_per_interval_never_their_own_comments(engine):
    sessions = session_factory(engine)
    async with sessions() as session:
        town = await make_town(session)
        topic = await staff_topic(session, town)
        b, c = town.people["b"], town.people["c"]
        assert await ds.subscribe(session, b, topic.id, True, now=NOW)
        for i, who in enumerate(["a", "b", "c", "a"]):
            await ds.add_comment(session, town.people[who], topic.id, f"第{i}条", now=NOW, cfg=CFG)
        await session.commit()
        b_chat, staff_chat = b.account.chat_id, town.staff.account.chat_id
    report = await ds.tick(sessions, CFG, NOW)
    # b (subscribed) and the staff author (subscribed when opening) each get one digest.
    assert report.sent == 2
    assert (await ds.tick(sessions, CFG, NOW)).sent == 0
    async with sessions() as session:
        rows = list(await session.scalars(select(OutboxMessage.payload).where(OutboxMessage.chat_id == b_chat)))
        assert len(rows) == 1
        # Not their own, and not what came before it (they wrote after reading it).
        assert [x["body"] for x in rows[0]["data"]["comments"]] == ["第2条", "第3条"]
        # Another comment soon after: not before the interval has passed.
        await ds.add_comment(session, c, topic.id, "再一条", now=NOW + timedelta(minutes=5), cfg=CFG)
        await session.commit()
    assert (await ds.tick(sessions, CFG, NOW + timedelta(minutes=5))).sent == 0
    assert (await ds.tick(sessions, CFG, NOW + CFG.digest_interval)).sent == 2
    async with sessions() as session:
        rows = list(await session.scalars(select(OutboxMessage.payload).where(OutboxMessage.chat_id == b_chat)
                                          .order_by(OutboxMessage.id)))
        assert [[x["body"] for x in r["data"]["comments"]] for r in rows] == [["第2条", "第3条"], ["再一条"]]
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)
                                    .where(OutboxMessage.chat_id == staff_chat)) == 2
        # Unsubscribed: no more digests.
        assert await ds.subscribe(session, b, topic.id, False, now=NOW)
        await ds.add_comment(session, c, topic.id, "又一条", now=NOW + timedelta(hours=2), cfg=CFG)
        await session.commit()
    await ds.tick(sessions, CFG, NOW + timedelta(hours=3))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)
                                    .where(OutboxMessage.chat_id == b_chat)) == 2
        assert await session.scalar(select(func.count()).select_from(TopicSubscription)) == 1


# --- the property: hidden comments are not counted and do not hide their replies ---------------------

OPS = st.lists(st.tuples(st.sampled_from(["report", "hide", "restore"]), st.integers(0, 5), st.integers(0, 4)),
               max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(parents=st.lists(st.one_of(st.none(), st.integers(0, 4)), min_size=1, max_size=6), ops=OPS,
       threshold=st.integers(1, 3))
async def test_counts_equal_a_brute_force_count_over_reports_hides_and_restores(engine, parents, ops, threshold):
    cfg = DiscussionConfig(reports_to_hide=threshold, comments_per_window=100)
    async with session_factory(engine)() as session:
        for model in (AuditLog, OutboxMessage, CommentReport, Comment, TopicSubscription, DiscussionMute,
                      DiscussionSetting, Topic, Staff, Account, Resident, Region):
            await session.execute(delete(model))
        await session.commit()
        town = await make_town(session)
        topic = await staff_topic(session, town)
        writers = ["a", "b", "c", "d", "e"]
        ids: list[int] = []
        parent_of: dict[int, int | None] = {}
        author_of: dict[int, str] = {}
        for i, p in enumerate(parents):
            parent = ids[p] if p is not None and p < len(ids) else None
            who = writers[i % len(writers)]
            c = (await ds.add_comment(session, town.people[who], topic.id, f"c{i}", now=NOW, cfg=cfg,
                                      parent_id=parent)).comment
            ids.append(c.id)
            author_of[c.id] = who
            # One level: a reply to a reply joins its thread.
            parent_of[c.id] = None if parent is None else (parent_of[parent] or parent)
        await session.commit()
        # The brute-force model.
        hidden = dict.fromkeys(ids, False)
        by_staff = dict.fromkeys(ids, False)
        reports: dict[int, set[str]] = {i: set() for i in ids}
        reviewed = dict.fromkeys(ids, 0)
        for op, k, r in ops:
            cid = ids[k % len(ids)]
            reporter = writers[r]
            try:
                if op == "report":
                    await ds.report_comment(session, town.people[reporter], cid, now=NOW, cfg=cfg)
                elif op == "hide":
                    await ds.hide_comment(session, town.staff, cid, "r", now=NOW, cfg=cfg)
                else:
                    await ds.restore_comment(session, town.staff, cid, "r", now=NOW, cfg=cfg)
                ok = True
            except DiscussionError:
                ok = False
            await session.commit()
            if op == "report":
                expect = not hidden[cid] and reporter != author_of[cid] and reporter not in reports[cid]
                if expect:
                    reports[cid].add(reporter)
                    if len(reports[cid]) - reviewed[cid] >= threshold:
                        hidden[cid] = True
            elif op == "hide":
                expect = not by_staff[cid]
                if expect:
                    hidden[cid] = by_staff[cid] = True
            else:
                expect = hidden[cid]
                if expect:
                    hidden[cid] = by_staff[cid] = False
                    reviewed[cid] = len(reports[cid])
            assert ok == expect, (op, cid, reporter)
        visible = sum(1 for i in ids if not hidden[i])
        cfg_all = DiscussionConfig(comments_page=100)
        reader = town.people["e"]
        view = await ds.topic_view(session, reader, topic.id, cfg=cfg_all)
        assert view.count == visible == await ds.comment_count(session, topic.id)
        assert (await ds.list_topics(session, reader, cfg=cfg)).items[0].comments == visible
        shown = {c.id: c for c in view.comments}
        shown.update({r.id: r for c in view.comments for r in c.replies})
        assert set(shown) == set(ids)  # every comment has its place, hidden ones as placeholders
        for i in ids:
            assert shown[i].hidden == hidden[i]
            assert (shown[i].body is None) == hidden[i]
            assert shown[i].parent_id == parent_of[i]  # a reply keeps its place under a hidden parent


class Statements:
    """The SQL statements an engine runs while counted (a SQLite BEGIN left out)."""

    def __init__(self, engine) -> None:
        self.engine, self.seen = engine, []

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            self.seen.append(statement)

    def __enter__(self) -> Statements:
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._seen)

    def take(self) -> int:
        n, self.seen = len(self.seen), []
        return n


async def test_pages_beyond_the_last_are_the_last_and_each_read_takes_one_or_two_statements(engine):
    sessions = session_factory(engine)
    cfg = DiscussionConfig(topics_page=2, comments_page=2)
    async with sessions() as session:
        town = await make_town(session)
        quiet = await staff_topic(session, town, title="话题0")
        for i in (1, 2):
            await staff_topic(session, town, title=f"话题{i}")
        topic = await staff_topic(session, town, title="话题3")
        a, b = town.people["a"], town.people["b"]
        roots = [(await ds.add_comment(session, a, topic.id, f"第{i}条", now=NOW, cfg=cfg)).comment.id
                 for i in range(3)]
        reply = (await ds.add_comment(session, b, topic.id, "回复", now=NOW, cfg=cfg, parent_id=roots[2])).comment.id
        await ds.subscribe(session, b, topic.id, True, now=NOW)
        await session.commit()
    async with sessions() as session:
        with Statements(engine) as seen:
            first = await ds.list_topics(session, b, 0, cfg=cfg)
            assert seen.take() == 1  # the page and the count together
            assert ([t.title for t in first.items], first.page, first.pages, first.total) == \
                (["话题3", "话题2"], 0, 2, 4)
            assert first.items[0].comments == 4
            last = await ds.list_topics(session, b, 7, cfg=cfg)
            assert ([t.title for t in last.items], last.page, last.pages, last.total) == (["话题1", "话题0"], 1, 2, 4)
            seen.take()
            view = await ds.topic_view(session, b, topic.id, cfg=cfg)
            assert seen.take() == 2  # the topic with its counts, then the page with its replies
            assert [c.id for c in view.comments] == roots[1:] and [r.id for r in view.comments[1].replies] == [reply]
            assert (view.count, view.page, view.pages, view.subscribed) == (4, 0, 2, True)
            staff = await ds.topic_view(session, town.staff, topic.id, cfg=cfg)
            assert seen.take() == 3  # and every name on the page, for staff, in one more
            assert (staff.author.name, [c.author.name for c in staff.comments],
                    staff.comments[1].replies[0].author.name) == ("书记", ["居民a", "居民a"], "居民b")
            beyond = await ds.topic_view(session, a, topic.id, 9, cfg=cfg)
            assert ([c.id for c in beyond.comments], beyond.page, beyond.subscribed) == (roots[:1], 1, False)
            assert seen.take() == 2
            empty = await ds.topic_view(session, b, quiet.id, 3, cfg=cfg)
            assert (empty.comments, empty.count, empty.page, empty.pages) == ([], 0, 0, 1)
            assert seen.take() == 1
            assert (await ds.check_can_comment(session, b, topic.id, now=NOW, cfg=cfg)).id == topic.id
            assert seen.take() == 1  # topic, committee, mute and recent comments together
            # A comment and the page shown after it: seven statements, the audit line included; six when
            # the writer is not subscribed (no digest of theirs to move on).
            made = await ds.add_comment(session, b, topic.id, "再说一句", now=NOW, cfg=cfg, client_key="102:9")
            after = await ds.topic_view(session, b, topic.id, cfg=cfg)
            assert seen.take() == 7
            assert [c.id for c in after.comments] == [roots[2], made.comment.id] and after.count == 5
            other = await ds.add_comment(session, a, topic.id, "我也说", now=NOW, cfg=cfg, client_key="101:9")
            await ds.topic_view(session, a, topic.id, cfg=cfg)
            assert seen.take() == 6
        await session.commit()
    async with sessions() as session:
        seen_ids = dict((await session.execute(select(TopicSubscription.account_id, TopicSubscription.seen_comment_id)
                                                .where(TopicSubscription.topic_id == topic.id))).all())
        assert seen_ids[b.account_id] == made.comment.id and a.account_id not in seen_ids
        assert other.created
