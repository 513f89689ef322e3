"""The segments, notices, polls, topics and verification pages in Chinese (the default) and English (the
language switch of a session): every page renders in its language, with no placeholder left unfilled."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from services import discussions as ds
from services import notices as ns
from services import polls
from services import verification as vs
from services.i18n import translate
from services.segments import save_segment
from tests.helpers import NOW, console_app, console_login, csrf_of, make_account, make_world

UNFILLED = re.compile(r"\{[a-z_]+\}|%\([a-z_]+\)s")


@pytest.fixture
async def world(sqlite_engine):
    from bot.db import session_factory

    async with session_factory(sqlite_engine)() as s:
        world = await make_world(s)
        await make_account(s, 100, world.residents["wang"])
        segment = await save_segment(s, world.dxyc_staff, "Aged 80+", "age >= 80", NOW)
        notice = await ns.create_notice(s, world.dxyc_staff, text="Water off on Tuesday", now=NOW,
                                        aud=await ns.audience(s, world.dxyc_staff, "committee", None))
        draft = await ns.save_draft(s, world.dxyc_staff, text="A draft", now=NOW,
                                    aud=await ns.audience(s, world.dxyc_staff, "segment", str(segment.id)))
        poll = await polls.create_poll(s, world.dxyc_staff, world.regions["DXYC"], polls.PollDraft(
            question="Which day?", options=["Sat", "Sun"], rule="plurality", closes_at=NOW + timedelta(days=3)),
            now=NOW, cfg=polls.PollConfig())
        topic = await ds.create_topic(s, world.dxyc_staff, ds.TopicDraft(title="Parking", body="Thoughts?"),
                                      now=NOW, cfg=ds.DiscussionConfig())
        requester = await make_account(s, 600)
        vs.give_consent(requester, NOW)
        await vs.request_review(s, requester, committee_id=world.regions["DXYC"].id, name="New Person",
                                address="7-101", now=NOW)
        await s.commit()
        world.paths = ["/segments", f"/segments/{segment.id}", "/segments?expression=age%20>%3D", "/notices",
                       "/notices/new", f"/notices/{notice.id}", f"/notices/{draft.id}", f"/notices/{notice.id}/calls",
                       "/polls", "/polls/new", f"/polls/{poll.id}", "/topics", f"/topics/{topic.topic.id}",
                       "/verification"]
        return world


@pytest.fixture(params=["zh_Hans", "en"])
async def app(request, sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path) as a:
        await console_login(a, world.dxyc_staff.account.id)
        if request.param == "en":
            csrf = csrf_of(await (await a.client.get("/console/")).text())
            switched = await a.client.post("/console/lang", data={"locale": "en", "next": "/console/", "csrf": csrf},
                                           allow_redirects=False)
            assert switched.status == 303
        a.locale = request.param
        yield a


async def test_every_page_renders_in_the_staff_members_language(app, world):
    words = {"/segments": "New segment", "/notices": "New notice", "/polls": "New poll", "/topics": "Open a topic",
             "/verification": "Verification requests"}
    for path in world.paths:
        response = await app.client.get("/console" + path)
        html = await response.text()
        assert response.status == 200, (path, html[-2000:])
        assert f'lang="{"en" if app.locale == "en" else "zh-Hans"}"' in html, path
        assert not UNFILLED.search(html), (path, UNFILLED.search(html))
        if path in words:
            expected = words[path] if app.locale == "en" else translate("zh_Hans", words[path])
            assert expected in html, path
            assert app.locale == "en" or expected != words[path], f"{words[path]!r} is not translated"
