"""The check-in board and alerts, policies and registry import pages in Chinese (the default) and English
(the session's language switch): every page renders in its language, with no placeholder left unfilled,
and the words of each are translated."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from services import checkins as cs
from services import policies as pol
from services.i18n import translate
from services.models import Alert, RegistryImport
from tests.helpers import NOW, console_app, console_login, csrf_of, make_account, make_world

UNFILLED = re.compile(r"\{[a-z_]+\}|%\([a-z_]+\)s")
SAMPLE = Path(__file__).resolve().parent.parent / "policies" / "sample"


@pytest.fixture
async def world(sqlite_engine):
    from bot.db import session_factory

    sessions = session_factory(sqlite_engine)
    async with sessions() as s:
        world = await make_world(s)
        await make_account(s, 100, world.residents["zhao"])
        await cs.enrol_resident(s, world.residents["zhao"], now=NOW - timedelta(days=1), cfg=cs.CheckinConfig())
        await pol.load_catalogue(s, SAMPLE, NOW)
        s.add(RegistryImport(committee_id=world.regions["DXYC"].id, filename="名册.xlsx", flag_missing=True,
                             locale="zh_Hans", status="done", total_rows=3, done_rows=3, created_at=NOW,
                             updated_at=NOW, finished_at=NOW, report={
                                 "counts": {"imported": 2, "updated": 0, "unchanged": 0, "flagged": 1, "restored": 0,
                                            "households_updated": 0, "rejected": 1},
                                 "rejected": [[3, "the name is missing"]]}))
        await s.commit()
    for minutes in (0, 31, 95):
        await cs.tick(sessions, cs.CheckinConfig(), NOW + timedelta(minutes=minutes))
    async with sessions() as s:
        alert = await s.scalar(select(Alert.id))
        job = await s.scalar(select(RegistryImport.id))
    dxyc, zhao = world.regions["DXYC"].id, world.residents["zhao"].id
    world.paths = {f"/checkins/{dxyc}": "Open alerts", f"/checkins/{dxyc}/live": "Open alerts",
                   f"/checkins/alerts/{alert}": "History", "/policies": "Take-up report",
                   "/policies/meal_assistance": "Who qualifies in your area",
                   f"/policies/meal_assistance?resident={zhao}": "Try the rule on a resident",
                   "/policies/take-up": "Take-up report", "/registry": "Import a registry file",
                   f"/registry/imports/{job}": "What the import did"}
    return world


@pytest.fixture(params=["zh_Hans", "en"])
async def app(request, sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path, clock=None) as a:
        a.clock.set(NOW + timedelta(minutes=100))
        await console_login(a, world.dxyc_staff.account.id)
        if request.param == "en":
            csrf = csrf_of(await (await a.client.get("/console/")).text())
            switched = await a.client.post("/console/lang", data={"locale": "en", "next": "/console/", "csrf": csrf},
                                           allow_redirects=False)
            assert switched.status == 303
        a.locale = request.param
        yield a


async def test_every_page_renders_in_the_staff_members_language(app, world):
    for path, word in world.paths.items():
        response = await app.client.get("/console" + path)
        html = await response.text()
        assert response.status == 200, (path, html[-2000:])
        if not path.endswith("/live"):
            assert f'lang="{"en" if app.locale == "en" else "zh-Hans"}"' in html, path
        assert not UNFILLED.search(html), (path, UNFILLED.search(html))
        expected = word if app.locale == "en" else translate("zh_Hans", word)
        assert expected in html, (path, expected)
        assert app.locale == "en" or expected != word, f"{word!r} is not translated"
