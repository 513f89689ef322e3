"""The console's topics and moderation over HTTP: the lists (topics, proposals, comments hidden by
reports), a topic as staff see it, publishing a proposal once, locking, hiding and restoring with a
reason, muting a comment's author; CSRF, polite refusals, and nothing of another committee's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from services import discussions as ds
from services.models import AuditLog, Comment, DiscussionMute, Topic, TopicStatus
from services.scope import Actor
from tests.helpers import NOW, console_app, console_login, csrf_of, make_account, make_world, zh

CFG = ds.DiscussionConfig()


@pytest.fixture
async def world(sqlite_engine):
    from bot.db import session_factory

    async with session_factory(sqlite_engine)() as s:
        world = await make_world(s)
        people = {key: Actor(account=await make_account(s, 400 + i, world.residents[key]),
                             resident=world.residents[key], locale="en")
                  for i, key in enumerate(("wang", "li", "feng"))}
        opened = await ds.create_topic(s, world.dxyc_staff, ds.TopicDraft(title="小区停车", body="大家怎么看？"),
                                       now=NOW, cfg=CFG)
        comment = await ds.add_comment(s, people["wang"], opened.topic.id, "晚上车太多了", now=NOW, cfg=CFG)
        proposed = await ds.create_topic(s, people["li"], ds.TopicDraft(title="增设快递柜", body="放在3号楼下"),
                                         now=NOW, cfg=CFG)
        foreign = await ds.create_topic(s, world.flsq_staff, ds.TopicDraft(title="枫林的事", body="FLSQ"),
                                        now=NOW, cfg=CFG)
        foreign_comment = await ds.add_comment(s, people["feng"], foreign.topic.id, "FLSQ comment", now=NOW, cfg=CFG)
        await s.commit()
        world.ids = {"topic": opened.topic.id, "comment": comment.comment.id, "proposal": proposed.topic.id,
                     "foreign": foreign.topic.id, "foreign_comment": foreign_comment.comment.id}
        return world


@pytest.fixture
async def app(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path) as a:
        await console_login(a, world.dxyc_staff.account.id)
        yield a


async def csrf(app) -> str:
    return csrf_of(await (await app.client.get("/console/topics")).text())


async def test_the_lists_show_the_committees_topics_and_proposals_only(app, world):
    html = await (await app.client.get("/console/topics")).text()
    assert "小区停车" in html and "增设快递柜" in html and "枫林的事" not in html
    topic = await (await app.client.get(f"/console/topics/{world.ids['topic']}")).text()
    assert "晚上车太多了" in topic and "王秀英" in topic  # staff see who wrote what
    for path in (f"/console/topics/{world.ids['foreign']}", "/console/topics/99999999999999999999"):
        assert (await app.client.get(path)).status == 404


async def test_a_proposal_is_published_once_through_the_csrf_check(app, world):
    proposal = world.ids["proposal"]
    assert (await app.client.post(f"/console/topics/{proposal}/approve", allow_redirects=False)).status == 403
    token = await csrf(app)
    done = await app.client.post(f"/console/topics/{proposal}/approve", data={"csrf": token}, allow_redirects=False)
    assert done.status == 303
    again = await app.client.post(f"/console/topics/{proposal}/reject", data={"csrf": token})
    assert again.status == 400 and zh("This proposal has already been decided.") in await again.text()
    async with app.sessions() as s:
        assert (await s.get(Topic, proposal)).status == TopicStatus.open
    assert (await app.client.post(f"/console/topics/{world.ids['foreign']}/lock", data={"csrf": token})).status == 404


async def test_hiding_needs_a_reason_and_restoring_brings_it_back(app, world):
    token = await csrf(app)
    topic, comment = world.ids["topic"], world.ids["comment"]
    path = f"/console/topics/{topic}/comments/{comment}"
    assert (await app.client.post(f"{path}/hide", data={"reason": "广告"}, allow_redirects=False)).status == 403
    no_reason = await app.client.post(f"{path}/hide", data={"reason": " ", "csrf": token})
    assert no_reason.status == 400
    assert zh("Please give a reason (at most {limit} characters).").format(limit=200) in await no_reason.text()
    hidden = await app.client.post(f"{path}/hide", data={"reason": "广告", "csrf": token}, allow_redirects=False)
    assert hidden.status == 303
    page = await (await app.client.get(f"/console/topics/{topic}")).text()
    assert "广告" in page and "晚上车太多了" in page  # staff still read it, and why it is hidden
    restored = await app.client.post(f"{path}/restore", data={"reason": "误判", "csrf": token}, allow_redirects=False)
    assert restored.status == 303
    async with app.sessions() as s:
        assert (await s.get(Comment, comment)).hidden_at is None
        actions = list(await s.scalars(select(AuditLog.action).where(AuditLog.action.like("comment.%"))))
        assert actions[-2:] == ["comment.hide", "comment.restore"]
    foreign = f"/console/topics/{topic}/comments/{world.ids['foreign_comment']}/hide"
    assert (await app.client.post(foreign, data={"reason": "x", "csrf": token})).status == 404


async def test_locking_and_muting_the_author(app, world):
    token = await csrf(app)
    topic, comment = world.ids["topic"], world.ids["comment"]
    assert (await app.client.post(f"/console/topics/{topic}/lock", data={"csrf": token},
                                  allow_redirects=False)).status == 303
    again = await app.client.post(f"/console/topics/{topic}/lock", data={"csrf": token})
    assert again.status == 400 and zh("Nothing to change: it is already so.") in await again.text()
    assert (await app.client.post(f"/console/topics/{topic}/unlock", data={"csrf": token},
                                  allow_redirects=False)).status == 303
    path = f"/console/topics/{topic}/comments/{comment}"
    bad = await app.client.post(f"{path}/mute", data={"for": "forever", "csrf": token})
    assert bad.status == 400
    muted = await app.client.post(f"{path}/mute", data={"for": "7d", "reason": "刷屏", "csrf": token},
                                  allow_redirects=False)
    assert muted.status == 303
    async with app.sessions() as s:
        mute = await s.scalar(select(DiscussionMute))
        assert mute.until == NOW + timedelta(days=7) and mute.reason == "刷屏"
    assert (await app.client.post(f"{path}/unmute", data={"csrf": token}, allow_redirects=False)).status == 303
    async with app.sessions() as s:
        assert (await s.scalar(select(DiscussionMute))).until == NOW


async def test_staff_open_a_topic_and_an_over_long_title_is_refused(app):
    token = await csrf(app)
    long = await app.client.post("/console/topics", data={"title": "长" * 200, "body": "x", "csrf": token})
    assert long.status == 400
    assert zh("That is too long: at most {limit} characters. Nothing was posted.").format(limit=120) \
        in await long.text()
    opened = await app.client.post("/console/topics", data={"title": "楼道照明", "body": "3号楼灯坏了",
                                                            "building": "3", "csrf": token}, allow_redirects=False)
    assert opened.status == 303
    async with app.sessions() as s:
        topic = await s.scalar(select(Topic).where(Topic.title == "楼道照明"))
        assert topic.building == "3" and topic.status == TopicStatus.open
