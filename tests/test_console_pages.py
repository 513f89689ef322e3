"""The console's first pages over HTTP: dashboard, residents (list, card, tags), tag dictionary, audit
log and their XLSX exports; every one scoped (another committee's id is a 404, never its data) and
every change guarded by the session's CSRF token (403, nothing changed)."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.db import session_factory
from services import segments as seg
from services.models import AuditLog, Resident, ResidentTag, Tag
from tests.helpers import HOSTILE, NOW, console_app, console_login, csrf_of, make_actor, make_world, zh


@pytest.fixture
async def world(sqlite_engine):
    async with session_factory(sqlite_engine)() as s:
        return await make_world(s)


@pytest.fixture
async def app(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path) as a:
        await console_login(a, world.dxyc_staff.account.id)
        yield a


async def _page(app, path: str, status: int = 200) -> str:
    response = await app.client.get(path, allow_redirects=False)
    text = await response.text()
    assert response.status == status, (path, response.status, text[:500])
    return text


def _xlsx_rows(data: bytes) -> list[tuple]:
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(data), read_only=True).active
    return [tuple(row) for row in sheet.iter_rows(values_only=True)]


async def test_the_dashboard_shows_the_committees_figures(app, world):
    html = await _page(app, "/console/")
    assert zh("Dashboard") in html and zh("Residents by age") in html
    assert 'data-figure="residents">5<' in html  # DXYC's five, not RJXC's or FLSQ's
    assert 'data-figure="verified">0<' in html and 'data-figure="open-alerts">0<' in html
    assert "<svg" in html and 'role="img"' in html  # the charts, drawn on the server
    assert 'aria-current="page"' in html  # the menu marks where we are


async def test_street_staff_see_every_committee_of_their_street(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path) as app:
        await console_login(app, world.street_staff.account.id)
        html = await _page(app, "/console/")
        assert 'data-figure="residents">6<' in html  # DXYC 5 + RJXC 1; FLSQ is another street
        listing = await _page(app, "/console/residents")
        assert "周八五" in listing and "冯志强" not in listing
        assert zh("Verified residents per committee") in html


async def test_residents_search_filter_and_pages(app, world):
    html = await _page(app, "/console/residents")
    assert "王秀英" in html and "赵桂兰" in html and "冯志强" not in html and "周八五" not in html
    html = await _page(app, "/console/residents?q=3-201")  # building-room, as /whois reads it
    assert "王秀英" in html and "李建国" not in html and "赵桂兰" not in html
    html = await _page(app, "/console/residents?q=3%E5%8F%B7%E6%A5%BC2%E5%8D%95%E5%85%83202")  # 3号楼2单元202
    assert "李建国" in html and "王秀英" not in html
    html = await _page(app, "/console/residents?q=%E8%B5%B5")  # 赵
    assert "赵桂兰" in html and "王秀英" not in html
    html = await _page(app, "/console/residents?tag=aged_80")  # none yet: rule tags are computed nightly
    assert "王秀英" not in html
    async with app.sessions() as s:
        from services.tags import recompute_rule_tags

        await recompute_rule_tags(s, NOW)
        await s.commit()
    html = await _page(app, "/console/residents?tag=aged_80")
    assert "王秀英" in html and "赵桂兰" in html and "王小明" not in html  # born 1945, 1938; 1990
    bad = await _page(app, "/console/residents?tag=not%20a%20code", status=400)
    assert "王秀英" not in bad


async def test_residents_are_paged(app, world):
    async with app.sessions() as s:
        dxyc = world.regions["DXYC"].id
        for i in range(60):
            s.add(Resident(committee_id=dxyc, name=f"居民{i:02d}", building="9", unit="1", room=f"{i:03d}",
                           created_at=NOW, updated_at=NOW))
        await s.commit()
    first = await _page(app, "/console/residents?q=%E5%B1%85%E6%B0%91")  # 居民
    assert "居民00" in first and "居民49" in first and "居民50" not in first
    assert 'rel="next"' in first and "page=2" in first
    second = await _page(app, "/console/residents?q=%E5%B1%85%E6%B0%91&page=2")
    assert "居民50" in second and "居民59" in second and "居民00" not in second
    beyond = await _page(app, "/console/residents?q=%E5%B1%85%E6%B0%91&page=99")  # the last page
    assert "居民59" in beyond


async def test_a_saved_segment_filters_and_another_committees_segment_is_404(app, world):
    async with app.sessions() as s:
        mine = await seg.save_segment(s, world.dxyc_staff, "独居老人", "living_alone == true and age >= 70", NOW)
        theirs = await seg.save_segment(s, world.flsq_staff, "枫林独居", "living_alone == true", NOW)
        await s.commit()
    html = await _page(app, f"/console/residents?segment={mine.id}")
    assert "李建国" in html and "赵桂兰" in html and "王秀英" not in html
    html = await _page(app, f"/console/residents?segment={theirs.id}", status=404)
    assert "冯志强" not in html and "枫林独居" not in html


async def test_a_residents_card_is_audited_and_shows_who_viewed_it(app, world):
    wang = world.residents["wang"]
    html = await _page(app, f"/console/residents/{wang.id}")
    assert "王秀英" in html and "3-2-201" in html
    assert "+86138****8001" in html and "+8613800138001" not in html  # the phone masked
    async with app.sessions() as s:
        views = list(await s.scalars(select(AuditLog).where(AuditLog.action == "resident.view")))
    assert [(v.actor_account_id, v.target_type, v.target_id) for v in views] == [
        (world.dxyc_staff.account.id, "resident", wang.id)]
    again = await _page(app, f"/console/residents/{wang.id}")
    assert zh("viewed a resident") in again and zh("Who viewed or changed this resident") in again


async def test_another_committees_resident_is_404_and_unaudited(app, world):
    feng = world.residents["feng"]
    for path in (f"/console/residents/{feng.id}", "/console/residents/99999999", "/console/residents/0"):
        html = await _page(app, path, status=404)
        assert "冯志强" not in html and zh("Not found, or not in your area.") in html
    async with app.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "resident.view")) == 0


async def test_tagging_from_the_card_needs_the_csrf_token(app, world):
    wang = world.residents["wang"]
    html = await _page(app, f"/console/residents/{wang.id}")
    csrf = csrf_of(html)
    path = f"/console/residents/{wang.id}/tags"

    async def tags_of_wang() -> list[str]:
        async with app.sessions() as s:
            return list(await s.scalars(select(Tag.code).join(ResidentTag, ResidentTag.tag_id == Tag.id)
                                        .where(ResidentTag.resident_id == wang.id)))

    for data in ({"code": "volunteer", "action": "add"}, {"code": "volunteer", "action": "add", "csrf": "x" * 64},
                 {"code": "volunteer", "action": "add", "csrf": ""}):
        response = await app.client.post(path, data=data, allow_redirects=False)
        assert response.status == 403, data
        assert zh("You may not do this here.") in await response.text()
    assert await tags_of_wang() == []
    ok = await app.client.post(path, data={"code": "volunteer", "action": "add", "csrf": csrf}, allow_redirects=False)
    assert ok.status == 303 and ok.headers["Location"] == f"/console/residents/{wang.id}?done=added"
    assert await tags_of_wang() == ["volunteer"]
    # The same token in a header (what consoleFetch sends) works as well.
    removed = await app.client.post(path, data={"code": "volunteer", "action": "remove"},
                                    headers={"X-CSRF-Token": csrf}, allow_redirects=False)
    assert removed.status == 303 and await tags_of_wang() == []
    computed = await app.client.post(path, data={"code": "aged_80", "action": "add", "csrf": csrf})
    assert computed.status == 400  # a rule tag cannot be set by hand, said on the card
    assert await tags_of_wang() == []


async def test_a_token_of_another_session_is_refused(sqlite_engine, tmp_path, world):
    async with app_for(sqlite_engine, tmp_path) as (one, two):
        await console_login(one, world.dxyc_staff.account.id)
        async with one.sessions() as s:
            second = await make_actor(s, 77, world.regions["DXYC"], world.dxyc_staff.staff[0].role)
            await s.commit()
        await console_login(two, second.account.id)
        theirs = csrf_of(await _page(two, "/console/"))
        wang = world.residents["wang"]
        response = await one.client.post(f"/console/residents/{wang.id}/tags",
                                         data={"code": "volunteer", "action": "add", "csrf": theirs})
        assert response.status == 403


def app_for(engine, tmp_path):
    """Two browsers on one console (two test clients of two servers over the same database)."""
    import contextlib

    @contextlib.asynccontextmanager
    async def both():
        async with console_app(engine, tmp_path) as one, console_app(engine, tmp_path) as two:
            yield one, two

    return both()


async def test_tagging_another_committees_resident_is_404_and_changes_nothing(app, world):
    csrf = csrf_of(await _page(app, "/console/"))
    feng = world.residents["feng"]
    response = await app.client.post(f"/console/residents/{feng.id}/tags",
                                     data={"code": "volunteer", "action": "add", "csrf": csrf})
    assert response.status == 404 and "冯志强" not in await response.text()
    async with app.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ResidentTag)) == 0
        assert await s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "tag.add")) == 0


async def test_the_tag_dictionary_lists_counts_and_defines_with_csrf(app, world):
    html = await _page(app, "/console/tags")
    assert "aged_80" in html and "高龄老人" in html and zh("built-in") in html
    csrf = csrf_of(html)
    form = {"code": "dance_team", "name_zh": "舞蹈队", "name_en": "Dance team", "kind": "manual"}
    refused = await app.client.post("/console/tags", data=form, allow_redirects=False)
    assert refused.status == 403
    done = await app.client.post("/console/tags", data={**form, "csrf": csrf}, allow_redirects=False)
    assert done.status == 303
    html = await _page(app, done.headers["Location"])
    assert "舞蹈队" in html and "丁香迎春居委会" in html  # defined by the staff member's committee
    bad_rule = await app.client.post("/console/tags", data={**form, "code": "odd", "kind": "rule",
                                                            "rule": "age >>= 3", "csrf": csrf})
    assert bad_rule.status == 400 and "第 6 个字符处" in await bad_rule.text()  # the error and where it is
    async with app.sessions() as s:
        assert await s.scalar(select(Tag.id).where(Tag.code == "odd")) is None


async def test_the_audit_log_is_the_committees_own(app, world):
    async with app.sessions() as s:
        from services.tags import tag_resident

        await tag_resident(s, world.dxyc_staff, world.residents["wang"].id, "volunteer", NOW)
        await tag_resident(s, world.flsq_staff, world.residents["feng"].id, "volunteer", NOW)
        await s.commit()
    html = await _page(app, "/console/audit")
    assert zh("added a tag") in html and zh("signed in to the console") in html
    assert f"/console/residents/{world.residents['wang'].id}" in html
    assert f"/console/residents/{world.residents['feng'].id}" not in html  # FLSQ's row is not ours
    only = await _page(app, "/console/audit?action=tag.add")
    assert zh("signed in to the console") not in only.split("<tbody>", 1)[1]


async def test_every_list_exports_as_xlsx(app, world):
    response = await app.client.get("/console/residents/export.xlsx?q=%E7%8E%8B")  # 王
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = _xlsx_rows(await response.read())
    names = [row[0] for row in rows[2:]]
    assert rows[1][0] == zh("Name") and sorted(names) == sorted(["王秀英", "王小明"])
    async with app.sessions() as s:
        exported = await s.scalar(select(AuditLog).where(AuditLog.action == "resident.export"))
    assert exported.detail["rows"] == 2 and exported.detail["query"] == "王"
    tags = _xlsx_rows(await (await app.client.get("/console/tags/export.xlsx")).read())
    assert any(row[0] == "aged_80" for row in tags[2:])
    audit_rows = _xlsx_rows(await (await app.client.get("/console/audit/export.xlsx")).read())
    assert any(row[2] == zh("exported residents") for row in audit_rows[2:])


async def test_registry_text_is_escaped_on_every_page(app, world):
    async with app.sessions() as s:
        r = Resident(committee_id=world.regions["DXYC"].id, name=HOSTILE, building="7", unit="1", room="1",
                     created_at=NOW, updated_at=NOW)
        s.add(r)
        await s.commit()
    for path in ("/console/residents?q=Call", f"/console/residents/{r.id}"):
        html = await _page(app, path)
        assert HOSTILE not in html and "&lt;a href=&#34;tg://user?id=1&#34;&gt;Call 110&lt;/a&gt;" in html


async def test_the_language_switch_and_security_headers(app, world):
    html = await _page(app, "/console/residents")
    assert zh("Residents") in html and 'lang="zh-Hans"' in html
    switched = await app.client.post("/console/lang", data={"locale": "en", "next": "/console/residents",
                                                             "csrf": csrf_of(html)}, allow_redirects=False)
    assert switched.status == 303 and switched.headers["Location"] == "/console/residents"
    html = await _page(app, "/console/residents")
    assert ">Residents<" in html and 'lang="en"' in html
    away = await app.client.post("/console/lang", data={"locale": "zh_Hans", "next": "https://evil.example/",
                                                         "csrf": csrf_of(html)}, allow_redirects=False)
    assert away.headers["Location"] == "/console/"  # never an open redirect
    response = await app.client.get("/console/")
    assert "frame-ancestors" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in response.headers  # over plain HTTP it would mean nothing


async def test_pages_fit_a_phone_and_an_office_screen(app, world):
    css = await (await app.client.get("/console/static/console.css")).text()
    assert "@media (max-width: 720px)" in css
    html = await _page(app, "/console/")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert re.search(r'class="table-wrap"', await _page(app, "/console/residents"))


async def test_a_session_going_idle_mid_way_sends_a_form_to_sign_in(app, world):
    html = await _page(app, f"/console/residents/{world.residents['wang'].id}")
    app.clock.advance(timedelta(hours=9))
    response = await app.client.post(f"/console/residents/{world.residents['wang'].id}/tags",
                                     data={"code": "volunteer", "action": "add", "csrf": csrf_of(html)},
                                     allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/console/login"
    async with app.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ResidentTag)) == 0
