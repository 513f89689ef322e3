"""Signing in to the staff console over HTTP: one-time links, the Mini App's signed initData, the
session cookie, idle expiry, logout, CSRF, and a token that never reaches a log."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bot.sandbox.webapp import sign_init_data
from services.models import AuditLog, ConsoleSession, Staff
from tests.helpers import (
    CONSOLE_BOT_TOKEN,
    console_app,
    console_link,
    console_login,
    csrf_of,
    link_token,
    make_world,
    zh,
)


@pytest.fixture
async def world(sqlite_engine):
    from bot.db import session_factory

    async with session_factory(sqlite_engine)() as s:
        return await make_world(s)


@pytest.fixture
async def app(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path) as a:
        yield a


def _staff_id(world) -> int:
    return world.dxyc_staff.account.id


async def test_a_link_signs_in_once_with_an_httponly_lax_cookie(app, world):
    url = await console_link(app, _staff_id(world))
    assert url.startswith("http://127.0.0.1:8080/console/login#t=")
    page = await app.client.get("/console/login")  # what the browser fetches: the fragment stays behind
    assert page.status == 200 and 'data-fragment-login="t"' in await page.text()
    first = await app.client.post("/console/login", data={"token": link_token(url)}, allow_redirects=False)
    assert first.status == 303 and first.headers["Location"] == "/console/"
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # http://: a Secure cookie would never come back
    dashboard = await app.client.get("/console/")
    assert dashboard.status == 200 and zh("Dashboard") in await dashboard.text()

    again = await app.client.post("/console/login", data={"token": link_token(url)}, allow_redirects=False)
    assert again.status == 403 and "Set-Cookie" not in again.headers
    assert zh("This sign-in link was already used. Send /console to the bot for a new one.") in await again.text()


async def test_an_https_console_marks_the_cookie_secure(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path, public_url="https://desk.example.org") as app:
        url = await console_link(app, _staff_id(world))
        assert url.startswith("https://desk.example.org/console/login#t=")
        response = await console_login(app, _staff_id(world))
        cookie = response.headers["Set-Cookie"]
        assert "Secure" in cookie and "SameSite=Lax" in cookie and "HttpOnly" in cookie


async def test_a_link_expires_after_ten_minutes(app, world):
    url = await console_link(app, _staff_id(world))
    app.clock.advance(timedelta(minutes=10))
    response = await app.client.post("/console/login", data={"token": link_token(url)}, allow_redirects=False)
    assert response.status == 403
    assert zh("This sign-in link has expired. Send /console to the bot for a new one.") in await response.text()
    async with app.sessions() as s:
        outcomes = list(await s.scalars(select(AuditLog.outcome).where(AuditLog.action == "console.login")))
        assert outcomes == ["expired"]
        assert await s.scalar(select(ConsoleSession.id)) is None
    # A minute earlier it would have worked.
    url = await console_link(app, _staff_id(world))
    app.clock.advance(timedelta(minutes=9, seconds=59))
    ok = await app.client.post("/console/login", data={"token": link_token(url)}, allow_redirects=False)
    assert ok.status == 303


async def test_an_unknown_or_missing_token_is_refused(app, world):
    for data in ({"token": "not-a-token"}, {}):
        response = await app.client.post("/console/login", data=data, allow_redirects=False)
        assert response.status == 403
        assert zh("This sign-in link is not valid. Send /console to the bot for a new one.") in await response.text()


async def test_a_link_of_someone_no_longer_staff_opens_nothing(app, world):
    url = await console_link(app, _staff_id(world))
    async with app.sessions() as s:
        await s.execute(update(Staff).where(Staff.account_id == _staff_id(world)).values(active=False))
        await s.commit()
    response = await app.client.post("/console/login", data={"token": link_token(url)}, allow_redirects=False)
    assert response.status == 403 and zh("The console is for committee staff only.") in await response.text()


async def test_pages_send_anyone_without_a_session_to_sign_in(app, world):
    for path in ("/console/", "/console/residents", f"/console/residents/{world.residents['wang'].id}"):
        response = await app.client.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/console/login", path
    response = await app.client.post("/console/tags", data={"code": "x"}, allow_redirects=False)
    assert response.status == 303  # no session: nothing to protect a token with, off to sign in
    forged = app.client.session.cookie_jar
    forged.update_cookies({"cc_session": "made-up"})
    response = await app.client.get("/console/", allow_redirects=False)
    assert response.status == 303 and "cc_session=" in response.headers.get("Set-Cookie", "")  # cleared


async def test_a_session_ends_after_the_idle_time_and_activity_keeps_it(app, world):
    await console_login(app, _staff_id(world))
    app.clock.advance(timedelta(hours=7))
    assert (await app.client.get("/console/", allow_redirects=False)).status == 200  # touched at 7 h
    app.clock.advance(timedelta(hours=7, minutes=59))
    assert (await app.client.get("/console/", allow_redirects=False)).status == 200  # 7 h 59 idle
    app.clock.advance(timedelta(hours=8))
    response = await app.client.get("/console/", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/console/login"
    async with app.sessions() as s:
        ended = await s.scalar(select(ConsoleSession.ended_at))
        assert ended == app.clock()
    # Ended for good: going back in time does not revive it.
    app.clock.advance(timedelta(hours=-8))
    assert (await app.client.get("/console/", allow_redirects=False)).status == 303


async def test_the_idle_time_is_a_setting(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path, console_session_idle="30m") as app:
        await console_login(app, _staff_id(world))
        app.clock.advance(timedelta(minutes=29))
        assert (await app.client.get("/console/", allow_redirects=False)).status == 200
        app.clock.advance(timedelta(minutes=30))
        assert (await app.client.get("/console/", allow_redirects=False)).status == 303


async def test_logout_ends_the_session_and_needs_the_csrf_token(app, world):
    response = await console_login(app, _staff_id(world))
    token = response.cookies["cc_session"].value
    page = await (await app.client.get("/console/")).text()
    refused = await app.client.post("/console/logout", allow_redirects=False)
    assert refused.status == 403
    assert (await app.client.get("/console/", allow_redirects=False)).status == 200  # still signed in
    out = await app.client.post("/console/logout", data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/console/login?signed_out=1"
    assert (await app.client.get("/console/", allow_redirects=False)).status == 303
    # The old cookie, kept by someone, opens nothing either.
    app.client.session.cookie_jar.update_cookies({"cc_session": token})
    assert (await app.client.get("/console/", allow_redirects=False)).status == 303
    async with app.sessions() as s:
        actions = list(await s.scalars(select(AuditLog.action).order_by(AuditLog.id)))
    assert actions == ["console.link", "console.login", "console.logout"]


async def test_the_token_never_reaches_a_log(sqlite_engine, tmp_path, world, caplog):
    caplog.set_level(logging.DEBUG)
    async with console_app(sqlite_engine, tmp_path, server_options={"access_log_format": '%a "%r" %s "%{Referer}i"'}
                           ) as app:
        logging.getLogger("aiohttp.access").setLevel(logging.DEBUG)
        url = await console_link(app, _staff_id(world))
        token = link_token(url)
        # What a browser does with the link: GET the page (the fragment never leaves it), then the
        # page's script posts the token; then the dashboard, with the sign-in page as Referer.
        await app.client.get("/console/login")
        response = await app.client.post("/console/login", data={"token": token}, allow_redirects=False)
        await app.client.get("/console/", headers={"Referer": "http://127.0.0.1:8080/console/login"})
        await app.client.post("/console/login", data={"token": token})  # a reuse, refused
    assert response.status == 303
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any('"POST /console/login HTTP/1.1" 303' in line for line in access), access  # the log is on
    assert token not in caplog.text
    assert response.cookies["cc_session"].value not in caplog.text
    async with app.sessions() as s:
        details = [json.dumps(d) for d in await s.scalars(select(AuditLog.detail))]
        stored = [row.token_hash for row in await s.scalars(select(ConsoleSession))]
    assert not any(token in d for d in details) and token not in stored


# --- the Mini App ---------------------------------------------------------------------------------


def _web_app_user(telegram_id: int, lang: str = "en") -> dict:
    return {"id": telegram_id, "first_name": "staff", "language_code": lang}


async def test_the_mini_app_signs_in_with_initdata_signed_by_telegram(app, world):
    page = await app.client.get("/console/app")
    assert 'data-fragment-login="tgWebAppData"' in await page.text()
    init = sign_init_data(CONSOLE_BOT_TOKEN, _web_app_user(world.dxyc_staff.account.telegram_id),
                          auth_date=int(app.clock().timestamp()))
    response = await app.client.post("/console/app", data={"init_data": init}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/console/"
    assert "SameSite=Lax" in response.headers["Set-Cookie"]  # http: a Lax cookie (None needs Secure)
    assert (await app.client.get("/console/", allow_redirects=False)).status == 200
    async with app.sessions() as s:
        assert await s.scalar(select(ConsoleSession.via)) == "mini_app"


async def test_a_mini_app_over_https_gets_a_cookie_telegram_frames_can_send(sqlite_engine, tmp_path, world):
    async with console_app(sqlite_engine, tmp_path, public_url="https://desk.example.org") as app:
        init = sign_init_data(CONSOLE_BOT_TOKEN, _web_app_user(world.dxyc_staff.account.telegram_id),
                              auth_date=int(app.clock().timestamp()))
        response = await app.client.post("/console/app", data={"init_data": init}, allow_redirects=False)
        cookie = response.headers["Set-Cookie"]
        assert response.status == 303 and "SameSite=None" in cookie and "Secure" in cookie and "HttpOnly" in cookie
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"  # HTTPS only from now on


@pytest.mark.parametrize("forgery", ["other_token", "tampered_user", "no_hash", "garbage", "empty"])
async def test_forged_initdata_is_refused(app, world, forgery):
    now = int(app.clock().timestamp())
    staff_id = world.dxyc_staff.account.telegram_id
    if forgery == "other_token":
        init = sign_init_data("42:somebody-else", _web_app_user(staff_id), auth_date=now)
    elif forgery == "tampered_user":
        # Signed for a resident's Telegram id, then the user swapped for the staff member's.
        signed = sign_init_data(CONSOLE_BOT_TOKEN, _web_app_user(999), auth_date=now)
        init = signed.replace("%22id%22%3A999", f"%22id%22%3A{staff_id}")
        assert init != signed
    elif forgery == "no_hash":
        init = sign_init_data(CONSOLE_BOT_TOKEN, _web_app_user(staff_id), auth_date=now).rsplit("&hash=", 1)[0]
    elif forgery == "garbage":
        init = "%%%&&&=="
    else:
        init = ""
    response = await app.client.post("/console/app", data={"init_data": init}, allow_redirects=False)
    assert response.status == 403 and "Set-Cookie" not in response.headers
    text = await response.text()
    assert zh("Telegram's signature of this Mini App is not valid. Close it and open it again.") in text
    async with app.sessions() as s:
        assert await s.scalar(select(ConsoleSession.id)) is None


async def test_stale_initdata_and_non_staff_are_refused(app, world):
    signed_at = int(app.clock().timestamp())
    staff = _web_app_user(world.dxyc_staff.account.telegram_id)
    app.clock.advance(timedelta(minutes=10, seconds=1))
    stale = await app.client.post("/console/app", data={"init_data": sign_init_data(CONSOLE_BOT_TOKEN, staff,
                                                                                    auth_date=signed_at)})
    assert stale.status == 403
    assert zh("This Mini App was opened too long ago. Close it and open it again.") in await stale.text()
    now = int(app.clock().timestamp())
    for user in (_web_app_user(123456), _web_app_user(world.dxyc_staff.account.telegram_id + 1000)):
        response = await app.client.post("/console/app", data={"init_data": sign_init_data(CONSOLE_BOT_TOKEN, user,
                                                                                           auth_date=now)})
        assert response.status == 403 and zh("The console is for committee staff only.") in await response.text()


async def test_the_console_speaks_the_browsers_language_before_sign_in(app, world):
    en = await app.client.get("/console/login", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert "To sign in, send /console to the bot" in await en.text()
    default = await app.client.get("/console/login")
    assert zh("To sign in, send /console to the bot: it answers with a link that works once, for 10 minutes.") \
        in await default.text()


async def test_console_without_a_slash_and_static_files(app, world):
    response = await app.client.get("/console", allow_redirects=False)
    assert response.status == 308 and response.headers["Location"] == "/console/"
    for path, kind in (("/console/static/console.css", "text/css"), ("/console/static/console.js", "javascript")):
        response = await app.client.get(path)
        assert response.status == 200 and kind in response.headers["Content-Type"], path
    missing = await app.client.get("/console/no-such-page")
    assert missing.status == 404

