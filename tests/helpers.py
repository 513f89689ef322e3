"""Helpers shared by test modules (test files import from here, never from each other).

- end to end: reading what the bot sent (``texts``), joining (``consent``, ``verify``), staff
  (``make_staff``), and proving that a hostile value arrived as text (``assert_shown_as_text``);
- services: a small world of regions, residents and staff actors (``make_world``);
- the command line: ``await cli(*args)`` runs ``communitybot ARGS`` in this process and event loop.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from services.i18n import translate
from services.models import Account, OutboxMessage, OutboxStatus, Region, Resident, ResidentStatus, Staff, StaffRole
from services.regions import ensure_demo_regions, get_region
from services.scope import Actor, StaffGrant, load_staff_grants
from services.tags import ensure_default_tags
from tests.seed import staff_code

# A value that Telegram would turn into a link (and a "mention" of user 1) if it reached the HTML
# parser unescaped; "&" and "<b>" would break the message altogether.
HOSTILE = '<a href="tg://user?id=1">Call 110</a>'
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class CliResult:
    """What a command line run left: its exit code and what it printed (as a process would)."""

    returncode: int
    stdout: str
    stderr: str


async def cli(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """``communitybot ARGS`` in this process and event loop (``bot.cli.run_async``, what the console
    script runs after setting up logging), with ``env`` set while it runs; SystemExit becomes the
    exit code the interpreter would give. The console script itself: tests/test_cli.py."""
    from bot.cli import run_async

    saved = {name: os.environ.get(name) for name in env or {}}
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code: int = await run_async(list(args))
            except SystemExit as exc:  # what the interpreter makes of it (argparse, --help, a bad setting)
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
                    code = 1
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return CliResult(code, out.getvalue(), err.getvalue())


# --- end to end ---------------------------------------------------------------------------------


def tr(lang: str, msgid: str) -> str:
    """``msgid`` in the catalogue of a Telegram language code (``zh-hans`` → zh_Hans, else en)."""
    return translate("zh_Hans" if lang.startswith("zh") else "en", msgid)


def zh(msgid: str) -> str:
    return translate("zh_Hans", msgid)


def body(message: dict) -> str:
    """What the person sees of a message: its text, or its caption."""
    return message["text"] if message["text"] is not None else (message["caption"] or "")


async def texts(user) -> str:
    """The bot's messages since the user's last action, as the person reads them."""
    return "\n".join(body(m) for m in await user.bot_messages_since_last_action())


async def messages_with(user, needle: str) -> list[dict]:
    """The bot's messages since the user's last action that show ``needle``."""
    return [m for m in await user.bot_messages_since_last_action() if needle in body(m)]


async def outbox_message(user, predicate, timeout: float = 5.0) -> dict:  # noqa: ASYNC109
    """The message matching ``predicate`` that the outbox sends ``user`` in its own time because of
    the user's own last action: among what changed since that action if it came while the action
    ran (``wait_for_message`` counts those as seen), else waited for."""
    for message in await user.bot_messages_since_last_action():
        if predicate(message):
            return message
    return await user.wait_for_message(predicate, timeout)


async def outbox_sent(sessions, *where, timeout: float = 5.0) -> list:  # noqa: ASYNC109
    """The outbox rows matching ``where`` (at least one) once every one is marked sent. The sender
    marks a row after Telegram's answer, so its message can be seen before the row says so."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with sessions() as s:
            rows = (await s.scalars(select(OutboxMessage).where(*where).order_by(OutboxMessage.id))).all()
        if rows and all(row.status == OutboxStatus.sent for row in rows):
            return list(rows)
        assert asyncio.get_running_loop().time() < deadline, [(row.idempotency_key, row.status) for row in rows]
        await asyncio.sleep(0.05)


def assert_shown_as_text(message: dict, value: str = HOSTILE) -> None:
    """``value`` arrived as the characters typed, not as markup: it is in the visible text and no
    link or mention entity was made of it."""
    assert value in body(message), (value, body(message))
    for entity in message.get("entities") or []:
        assert entity["type"] not in ("text_link", "text_mention"), (entity, body(message))


async def consent(user, lang: str = "zh-hans") -> None:
    await user.send("/start")
    await user.press(tr(lang, "I agree"))


async def verify(user, name: str, id_number: str, lang: str = "zh-hans") -> None:
    """Join by phone: consent, share the contact, name and the last four of the ID number."""
    await consent(user, lang)
    await user.share_contact()
    await user.send(name)
    await user.send(id_number[-4:])
    assert tr(lang, "You are verified. Welcome to your community!") in await texts(user)


async def make_staff(stack, name: str = "张书记", region: str = "DXYC", lang: str = "zh-hans", **user_fields):
    """A new Telegram user enrolled as committee staff of ``region`` through a staff invite link."""
    user = await stack.client.create_user(name, language_code=lang, **user_fields)
    code = await staff_code(stack.sessions, region, StaffRole.committee)
    await user.send(f"/start staff_{code}")
    assert "/help" in await texts(user)
    return user


async def dxyc_member(stack, name: str, *, building: str | None = "3", household: int | None = None,
                      staff: bool = False, lang: str = "en"):
    """A Telegram user with an account made behind the bot's back: a verified resident of DXYC in
    ``building`` (and ``household``), or, with ``staff``, committee staff of DXYC and no resident."""
    user = await stack.client.create_user(name, language_code=lang)
    now = stack.clock()
    async with stack.session() as s:
        await ensure_demo_regions(s)
        dxyc = await get_region(s, "DXYC")
        assert dxyc is not None
        resident_id = None
        if not staff:
            r = Resident(committee_id=dxyc.id, household_id=household, name=name, building=building, unit="1",
                         room="101", status=ResidentStatus.active, created_at=now, updated_at=now)
            s.add(r)
            await s.flush()
            resident_id = r.id
        account = Account(telegram_id=user.id, chat_id=user.id, first_name=name, language_code=lang,
                          resident_id=resident_id, consent_at=now, verified_at=now if resident_id else None,
                          created_at=now)
        s.add(account)
        await s.flush()
        if staff:
            s.add(Staff(account_id=account.id, region_id=dxyc.id, role=StaffRole.committee, created_at=now))
        await s.commit()
    return user


async def answer_to(stack, user, message: dict, data: str) -> str | None:
    """Press a button (by its callback data) under ``message``; the text of the bot's answer, if any."""
    result = await user.callback(message["message_id"], data)
    record = stack.sandbox.callbacks[result["callback_query_id"]]
    return record.answer["text"] if record.answer else None


class PacedClock:
    """Wall-clock pace from a pinned start; ``advance`` jumps ahead (no sleeping in tests)."""

    def __init__(self, start: datetime) -> None:
        self._start, self._t0, self._offset = start, time.monotonic(), timedelta()

    def __call__(self) -> datetime:
        return self._start + self._offset + timedelta(seconds=time.monotonic() - self._t0)

    def advance(self, delta: timedelta) -> datetime:
        self._offset += delta
        return self()


async def account_of(stack, user) -> Account | None:
    async with stack.session() as s:
        return await s.scalar(select(Account).where(Account.telegram_id == user.id))


async def staff_actor(session, region_code: str) -> Actor:
    """An in-memory committee-staff actor of a region (for checking state behind the bot's back)."""
    from services.regions import get_region

    region = await get_region(session, region_code)
    return Actor(staff=[StaffGrant(0, StaffRole.committee, region.id, region.path, region.code, region.name)])


# --- services: a small world ---------------------------------------------------------------------

NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
TODAY = date(2026, 11, 28)


@dataclass
class World:
    regions: dict[str, Region]
    residents: dict[str, Resident]
    dxyc_staff: Actor
    street_staff: Actor
    flsq_staff: Actor


async def make_account(session, tid: int, resident: Resident | None = None, first_name: str | None = None) -> Account:
    """An account of Telegram user ``tid`` made at ``NOW``, verified and linked to ``resident`` if given."""
    account = Account(telegram_id=tid, chat_id=tid, first_name=first_name or f"u{tid}", created_at=NOW,
                      resident_id=resident.id if resident else None, verified_at=NOW if resident else None)
    session.add(account)
    await session.flush()
    return account


async def make_actor(session, telegram_id: int, region: Region, role: StaffRole) -> Actor:
    account = Account(telegram_id=telegram_id, chat_id=telegram_id, first_name="staff", created_at=NOW)
    session.add(account)
    await session.flush()
    session.add(Staff(account_id=account.id, region_id=region.id, role=role, created_at=NOW))
    await session.flush()
    return Actor(account=account, staff=await load_staff_grants(session, account.id), locale="en")


async def make_world(session) -> World:
    """Two committees under one street (DXYC, RJXC) and one under another (FLSQ), a few residents."""
    await ensure_demo_regions(session)
    await ensure_default_tags(session, NOW)
    regions = {r.code: r for r in await session.scalars(select(Region))}
    people = [
        # key, committee, name, birth, building, unit, room, living_alone, phone, gender
        ("wang", "DXYC", "王秀英", date(1945, 3, 2), "3", "2", "201", False, "+8613800138001", "F"),
        ("li", "DXYC", "李建国", date(1950, 7, 9), "3", "2", "202", True, "+8613800138002", "M"),
        ("zhao", "DXYC", "赵桂兰", date(1938, 1, 30), "5", "1", "102", True, "+8613800138003", "F"),
        ("young", "DXYC", "王小明", date(1990, 1, 1), "5", "1", "101", False, None, "M"),
        ("turning", "DXYC", "钱八十", date(1946, 11, 29), "6", "1", "101", None, None, "F"),
        ("rj", "RJXC", "周八五", date(1943, 6, 1), "1", "1", "101", False, None, "M"),
        ("feng", "FLSQ", "冯志强", date(1940, 5, 5), "1", "1", "101", True, "+8613800138100", "M"),
    ]
    residents = {}
    for key, committee, name, birth, building, unit, room, alone, phone, gender in people:
        r = Resident(committee_id=regions[committee].id, name=name, birth_date=birth, building=building,
                     unit=unit, room=room, living_alone=alone, phone=phone, gender=gender,
                     created_at=NOW, updated_at=NOW)
        session.add(r)
        residents[key] = r
    await session.flush()
    world = World(
        regions=regions, residents=residents,
        dxyc_staff=await make_actor(session, 1, regions["DXYC"], StaffRole.committee),
        street_staff=await make_actor(session, 2, regions["310104003"], StaffRole.street),
        flsq_staff=await make_actor(session, 3, regions["FLSQ"], StaffRole.committee),
    )
    await session.commit()
    return world


# --- Redis (TEST_REDIS_URL; REQUIRE_REDIS=1 in CI) -------------------------------------------------


async def fresh_redis():
    """A client on TEST_REDIS_URL's database, emptied; skip without Redis (fail when REQUIRE_REDIS=1).
    The caller closes it (``await client.aclose()``)."""
    import pytest
    from redis.asyncio import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    url = os.environ.get("TEST_REDIS_URL")
    required = os.environ.get("REQUIRE_REDIS") == "1"
    if not url:
        if required:
            pytest.fail("REQUIRE_REDIS=1 but TEST_REDIS_URL is not set")
        pytest.skip("Redis not configured (set TEST_REDIS_URL)")
    client = Redis.from_url(url)
    try:
        await client.flushdb()
    except (OSError, RedisConnectionError) as exc:
        await client.aclose()
        if required:
            pytest.fail(f"Redis required but unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    return client


# --- webhook workers (run --webhook [--workers N]) ------------------------------------------------


@contextlib.contextmanager
def reserved_port(host: str = "127.0.0.1"):
    """A free port, held for the block by a bound, not listening SO_REUSEPORT socket: webhook workers
    (which bind with SO_REUSEPORT) can take it, nobody else can, and no connection goes to it."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def fresh_pg_database(suffix: str):
    """A new, empty PostgreSQL database next to TEST_DATABASE_URL's (``<name>_<suffix>``), for processes
    that migrate a database of their own with Alembic; dropped afterwards. Skips without PostgreSQL.
    Yields its URL (postgresql+asyncpg://…)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from bot.db import create_engine
    from tests.conftest import pg_url

    url = make_url(pg_url())
    name = f"{url.database}_{suffix}"
    admin = create_engine(url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@dataclass
class WebhookWorkers:
    """``communitybot run --webhook --workers N`` running as a real process tree (see webhook_workers)."""

    process: object  # asyncio.subprocess.Process of the supervisor
    url: str  # http://127.0.0.1:PORT: /webhook, /healthz, /metrics of whichever worker the kernel picks
    pids: dict  # worker index -> pid (a worker started again after it died gets its new pid here)
    lines: list  # what the supervisor and the workers printed (stdout), so far
    log_file: Path  # their logs (stderr)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    async def wait_for_line(self, needle: str, *, after: int = 0, seconds: float = 60) -> str:
        """The first printed line from index ``after`` on that contains ``needle``."""
        import asyncio

        async with asyncio.timeout(seconds):
            while True:
                for line in self.lines[after:]:
                    if needle in line:
                        return line
                if self.process.returncode is not None:
                    raise AssertionError(f"workers exited ({self.process.returncode}):\n{self.log()[-4000:]}")
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def webhook_workers(api_base: str, data_dir: Path, *, database_url: str, workers: int = 2,
                          redis_url: str | None = None, env: dict[str, str] | None = None, start_seconds: float = 120):
    """Start ``communitybot run --webhook --workers N`` (as ``python -m bot``) against the Bot API at
    ``api_base`` (a sandbox of the test), on a reserved port of 127.0.0.1, and wait until every worker
    serves (the first one has called setWebhook by then). The workers upgrade ``database_url`` with
    Alembic (give them a database of their own: fresh_pg_database). On leaving: SIGTERM, and the
    process must stop by itself. ``env`` adds or overrides settings (TICK_INTERVAL=1s, …)."""
    import asyncio
    import re
    import signal

    from tests.conftest import TEST_DATA_KEY

    with reserved_port() as port:
        url = f"http://127.0.0.1:{port}"
        full_env = {
            **os.environ, "BOT_TOKEN": "42:sandbox", "TELEGRAM_API_BASE": api_base, "DATA_DIR": str(data_dir),
            "DATABASE_URL": database_url, "REDIS_URL": redis_url or "", "WEB_HOST": "127.0.0.1",
            "WEB_PORT": str(port), "PUBLIC_URL": url, "SECRET_KEY": "test-secret-key", "DATA_KEY": TEST_DATA_KEY,
            **(env or {}),
        }
        full_env.pop(  # the supervisor makes the workers' shared metrics folder itself
            "PROMETHEUS_MULTIPROC_DIR", None)
        log_file = data_dir / "workers.log"
        with log_file.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", "--webhook", "--workers", str(workers), cwd=ROOT, env=full_env,
                stdout=asyncio.subprocess.PIPE, stderr=log)
        running = WebhookWorkers(process, url, {}, [], log_file)

        async def read() -> None:
            assert process.stdout is not None
            while line := (await process.stdout.readline()).decode(errors="replace"):
                running.lines.append(line.rstrip("\n"))
                if m := re.match(r"worker (\d+) started, pid (\d+)", line):
                    running.pids[int(m[1])] = int(m[2])

        reader = asyncio.create_task(read())
        try:
            async with asyncio.timeout(start_seconds):
                while sum("serving http://" in line for line in running.lines) < workers:
                    if process.returncode is not None:
                        raise AssertionError(f"workers exited ({process.returncode}):\n{running.log()[-4000:]}")
                    await asyncio.sleep(0.05)
            yield running
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 90)
            except TimeoutError:
                process.kill()
                await process.wait()
            await asyncio.wait_for(reader, 10)


async def bot_reply(user, predicate=None, *, seconds: float = 30.0) -> dict:
    """The first bot message since ``user``'s last action that ``predicate`` accepts, waiting for it.
    For bots that acknowledge an update before handling it (webhook workers): nothing here relies on
    the update's confirmation, and a reply that came before the action returned still counts."""
    import asyncio

    async with asyncio.timeout(seconds):
        while True:
            found = await user.bot_messages_since_last_action()
            for message in found:
                if predicate is None or predicate(message):
                    return message
            chat = await user.messages()
            newest = chat[-1]["message_id"] if chat else 0
            await user.client.request("GET", f"/sandbox/api/users/{user.id}/wait_message",
                                      params={"after": str(newest), "timeout": "5"})


# --- the staff console ---------------------------------------------------------------------------

CONSOLE_BOT_TOKEN = "42:console-tests"  # the Mini App's initData is signed with it


@dataclass
class ConsoleApp:
    """The console on a web app of its own over a test database (aiohttp's TestServer/TestClient)."""

    client: object  # aiohttp.test_utils.TestClient
    rt: object  # bot.app.Runtime
    clock: object  # services.clock.ManualClock

    @property
    def sessions(self):
        return self.rt.sessions


@contextlib.asynccontextmanager
async def console_client(rt, **server_options):
    """An aiohttp TestClient of a web app with nothing but the console of runtime ``rt``."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from bot import console
    from bot.web import RUNTIME_KEY

    app = web.Application()
    app[RUNTIME_KEY] = rt
    console.setup(app)
    async with TestClient(TestServer(app, **server_options)) as client:
        yield client


@contextlib.asynccontextmanager
async def console_app(engine, tmp_path, *, clock=None, server_options: dict | None = None, **settings):
    """The console of a bot whose runtime uses ``engine`` and a ManualClock at ``NOW`` (or ``clock``);
    the bot itself is never called. ``settings`` override (``public_url``, ``console_session_idle``)."""
    from bot.app import Runtime, build_bot, build_dispatcher
    from bot.db import session_factory
    from bot.settings import Settings
    from services.clock import ManualClock

    clock = clock or ManualClock(NOW)
    options = {"bot_token": CONSOLE_BOT_TOKEN, "data_dir": tmp_path, "secret_key": "test-secret-key",
               "public_url": "http://127.0.0.1:8080", **settings}
    s = Settings(_env_file=None, **options)
    sessions = session_factory(engine)
    bot = build_bot(s)
    rt = Runtime(s, engine, sessions, bot, build_dispatcher(s, sessions, clock=clock), clock)
    try:
        async with console_client(rt, **(server_options or {})) as client:
            yield ConsoleApp(client, rt, clock)
    finally:
        await bot.session.close()


async def console_link(app: ConsoleApp, account_id: int) -> str:
    """A fresh one-time sign-in link of a staff account, as /console makes it (the token is after #t=)."""
    from services import console_auth
    from services.accounts import resolve_actor

    async with app.sessions() as s:
        account = await s.get(Account, account_id)
        actor = await resolve_actor(s, account, language_code=account.language_code, default_locale="zh_Hans")
        link = await console_auth.issue_link(s, actor, now=app.clock(), cfg=app.rt.dp["console_config"])
        await s.commit()
    return link.url


def link_token(url: str) -> str:
    return url.split("#t=", 1)[1]


async def console_login(app: ConsoleApp, account_id: int):
    """Sign a staff account in (a new link, posted as the sign-in page's script posts it); the response."""
    response = await app.client.post("/console/login", data={"token": link_token(await console_link(app, account_id))},
                                     allow_redirects=False)
    assert response.status == 303, await response.text()
    return response


def csrf_of(html: str) -> str:
    """The session's CSRF token as a page carries it (``<meta name="csrf-token">``)."""
    import re

    match = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert match and match.group(1), "no CSRF token on the page"
    return match.group(1)


# --- the console in a browser (tests/test_console_browser.py; the `browser` fixture is conftest's) ---

SCREENSHOTS = ROOT / "test-output" / "console"  # git-ignored: looked at, never committed
DESK = {"width": 1366, "height": 768}  # the committee office's PC
PHONE = {"width": 390, "height": 844}  # a phone, and the Mini App
BROWSER_LOCALES = {"zh_Hans": "zh-CN", "en": "en-GB"}
CONSOLE_LINK = r"http://\S+/console/login#t=[\w-]+"


async def console_link_from_bot(staff) -> str:
    """Send /console as ``staff`` through the sandbox; the sign-in link of the bot's answer."""
    import re

    await staff.send("/console")
    found = re.search(CONSOLE_LINK, await texts(staff))
    assert found, await texts(staff)
    return found.group(0)


@contextlib.asynccontextmanager
async def browser_page(browser, *, locale: str = "zh_Hans", viewport: dict | None = None,
                       allow: tuple[str, ...] = ()):
    """A page in a fresh context (no cookies of another test) of the session's browser. Errors of the
    page's scripts and what the browser logs as errors (a Content-Security-Policy refusal, a failed
    request) fail the test once it is done with the page, except those containing one of ``allow``
    (e.g. "403" for a refusal the test expects)."""
    context = await browser.new_context(locale=BROWSER_LOCALES[locale], viewport=viewport or DESK,
                                        timezone_id="Asia/Shanghai")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"script error: {exc}"))
    # A refused or failed request is named by its URL (the console's own line for it does not say which).
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else None)
    # ERR_ABORTED: a request the page dropped as it went on to the next (an event stream, a fetch in flight).
    page.on("requestfailed", lambda r: errors.append(f"failed {r.method} {r.url}: {r.failure}")
            if "ERR_ABORTED" not in (r.failure or "") else None)
    try:
        yield page
    finally:
        await context.close()
    unexpected = [e for e in errors if not any(a in e for a in allow)]
    assert not unexpected, unexpected


async def screenshot(page, name: str) -> Path:
    """A full-page PNG under test-output/console/ (to be looked at; nothing compares it)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


# --- faults and fuzz: what went wrong, and what changed ------------------------------------------


class ErrorLog(logging.Handler):
    """Every record logged at ERROR or above (any logger) while the block runs: ``with ErrorLog() as
    errors: ...`` then ``errors.lines``. The bot's error handler logs each failed update there."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The first line says what failed; a traceback's last frames say where.
        message = record.getMessage().splitlines()
        if record.exc_info and record.exc_info[1] is not None:
            message.append(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
        frames = [line.strip() for line in message[1:] if line.strip().startswith("File ")]
        ours = [f for f in frames if any(f"/{layer}/" in f for layer in ("handlers", "services", "notifications"))]
        where = ours[-2:] or [f for f in frames if "site-packages" not in f][-2:] or frames[-1:]
        self.lines.append(" | ".join([f"{record.name}: {message[0]}", *where, *message[-1:][: len(message) > 1]]))

    def __enter__(self) -> ErrorLog:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger().removeHandler(self)


@dataclass
class TableSnapshot:
    """Every row of every table, by primary key (``tables[name][key] = {column: value}``)."""

    tables: dict[str, dict[tuple, dict]]


async def table_snapshot(engine, skip: set[str] | frozenset[str] = frozenset()) -> TableSnapshot:
    """The whole database as Python values, to compare before and after."""
    from services.models import Base

    tables: dict[str, dict[tuple, dict]] = {}
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in skip:
                continue
            key = [c.name for c in table.primary_key.columns]
            rows = (await conn.execute(table.select())).mappings().all()
            tables[table.name] = {tuple(row[k] for k in key): dict(row) for row in rows}
    return TableSnapshot(tables)


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in this event loop, between the bot and a server (PostgreSQL, Redis),
    for outages without touching the machine's server: :meth:`cut` drops every open connection and
    stops listening (a new connection is refused, as by a server that is down or restarting),
    :meth:`restore` listens again on the same port. ``async with TcpProxy(host, port) as proxy``;
    ``proxy.port`` is where to connect."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.connections = 0  # accepted so far
        self._server = None
        self._open: set = set()  # (client writer, upstream writer) pairs

    async def __aenter__(self) -> TcpProxy:
        await self.restore()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.cut()

    @property
    def up(self) -> bool:
        return self._server is not None

    async def restore(self) -> None:
        import asyncio

        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones (their clients see the connection lost)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for pair in list(self._open):
            for writer in pair:
                writer.transport.abort()
        self._open.clear()
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader, writer) -> None:
        import asyncio

        if self._server is None:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        pair = (writer, up_writer)
        self._open.add(pair)

        async def pipe(src, dst) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._open.discard(pair)


@dataclass
class WebhookBot:
    """The sandbox delivering by webhook and the bot serving it in this process (see webhook_bot)."""

    sandbox: object  # bot.sandbox.Sandbox
    client: object  # bot.sandbox.client.SandboxClient (actions return without waiting for the bot)
    rt: object  # bot.app.Runtime
    url: str  # the bot's web app: /webhook, /healthz, /metrics

    async def health(self) -> tuple[int, dict]:
        """``GET /healthz``: the status and the report."""
        from aiohttp import ClientSession, ClientTimeout

        async with ClientSession(timeout=ClientTimeout(total=30)) as http, http.get(self.url + "/healthz") as resp:
            return resp.status, await resp.json()

    async def health_becomes(self, status: int, *, seconds: float = 60) -> dict:
        """Ask /healthz until it answers ``status``; its report (TimeoutError if it never does)."""
        import asyncio

        async with asyncio.timeout(seconds):
            while True:
                got, report = await self.health()
                if got == status:
                    return report
                await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def webhook_bot(tmp: Path, *, database_url: str, redis_url: str | None = None, **overrides):
    """The bot as ``communitybot run --webhook`` runs it (web app with the webhook, /healthz, /metrics,
    the outbox sender and the ticks), in this process, behind a sandbox that delivers by webhook. The
    database must have its schema. The sender's lease is 5 s (production: 60 s), so that a message it
    could not mark goes again within the test; everything else is production's."""
    import asyncio

    from bot.app import open_runtime
    from bot.runtime import add_background_jobs
    from bot.sandbox.client import SandboxClient
    from bot.settings import Settings
    from bot.web import run_webhook
    from tests.conftest import TEST_DATA_KEY
    from tests.harness import TOKEN, start_sandbox

    runner, base_url, sandbox = await start_sandbox()
    client = SandboxClient(base_url, wait_for_bot=False)
    try:
        with reserved_port() as port:
            public = f"http://127.0.0.1:{port}"
            options = {"tick_interval": "1s", **overrides}
            settings = Settings(_env_file=None, bot_token=TOKEN, telegram_api_base=base_url, data_dir=tmp,
                                database_url=database_url, redis_url=redis_url, public_url=public, web_port=port,
                                webhook_secret="test-webhook-secret", secret_key="test-secret-key",
                                data_key=TEST_DATA_KEY, **options)
            async with open_runtime(settings, migrate=False) as rt:
                add_background_jobs(rt, poll_interval=0.05, lease=timedelta(seconds=5), reclaim_every=1.0)
                stop = asyncio.Event()
                ready: list[str] = []
                serving = asyncio.create_task(run_webhook(rt, stop=stop, handle_signals=False, ready=ready.append))
                try:
                    await sandbox.wait_until(lambda: bool(ready) or serving.done(), 60)
                    assert ready, serving
                    yield WebhookBot(sandbox, client, rt, public)
                finally:
                    stop.set()
                    await asyncio.wait_for(serving, 90)
    finally:
        await client.close()
        await runner.cleanup()


@dataclass
class Person:
    """A resident seeded by :func:`seed_residents` and the sandbox user who is (or may become) them."""

    name: str
    phone: str
    id_number: str
    user: object  # bot.sandbox.state.SimUser (its ``id`` is the Telegram id and chat)
    joined: bool


async def seed_residents(sessions, sandbox, count: int, *, committee: str, prefix: str, first_phone: int,
                         join: int | None = None, building=None, lang: str = "en",
                         now: datetime | None = None, secret_key: str = "test-secret-key",
                         parallel: int = 6) -> list[Person]:
    """``count`` residents of ``committee`` imported from one registry sheet (services.registry), each
    with a sandbox user; the first ``join`` of them (all by default) joined through the verification
    service: an account (services.accounts.touch_account), consent, then name and the last four of the
    ID number (services.verification.knowledge_check, which links the account), ``parallel`` sessions
    at a time. Phones are ``+86`` and ``first_phone`` onwards; ``building`` is "1", a name, or a function
    of the row's index. One sheet per committee: a second import of the same committee would flag the
    first's residents as missing."""
    import asyncio

    from services import verification as vs
    from services.accounts import TelegramUser, touch_account
    from services.identity import make_id_number
    from services.registry import import_registry, read_text_rows

    now = now or datetime.now(UTC)
    join = count if join is None else join
    people = []
    lines = ["name,phone,id_number,building,unit,room"]
    for i in range(count):
        name, phone = f"{prefix}{i:05d}", f"+86{first_phone + i}"
        j = first_phone + i  # unique across seeds, as the phones are: so are the ID numbers
        birth = date(1930, 1, 1) + timedelta(days=j % 20000)
        id_number = make_id_number("310104", birth, j // 20000 % 1000, "MF"[i % 2])
        where = building(i) if callable(building) else building or "1"
        lines.append(f"{name},{phone},{id_number},{where},{1 + i // 100 % 10},{100 + i % 100}")
        user = sandbox.create_user(name, language_code=lang, phone_number=phone)
        people.append(Person(name, phone, id_number, user, i < join))
    async with sessions() as session:
        await ensure_demo_regions(session)
        await session.commit()
        region = await get_region(session, committee)
        report = await import_registry(session, region, read_text_rows("\n".join(lines)), secret_key=secret_key,
                                       now=now)
        assert report.imported == count, report
        ids = dict((await session.execute(select(Resident.name, Resident.id).where(
            Resident.committee_id == region.id, Resident.name.startswith(prefix)))).all())

    async def join_all(chunk: list[Person]) -> None:
        async with sessions() as session:
            for p in chunk:
                account = await touch_account(session, TelegramUser(p.user.id, p.name, language_code=lang), now)
                vs.give_consent(account, now)
                await vs.knowledge_check(session, account, resident_id=ids[p.name], full_name=p.name,
                                         id_last4=p.id_number[-4:], secret_key=secret_key, now=now)
            await session.commit()

    joining = people[:join]
    size = max(1, -(-len(joining) // parallel))
    await asyncio.gather(*(join_all(joining[i:i + size]) for i in range(0, len(joining), size)))
    return people


# --- two webhook workers behind a router of the test ----------------------------------------------


class WorkerProcess:
    """One ``communitybot run --webhook`` process (``python -m bot``) on its own port, started and
    killed by the test (which plays the supervisor): ``await start()``, ``kill(signal.SIGKILL)``,
    ``await stop()`` (SIGTERM, and it must stop by itself)."""

    def __init__(self, index: int, env: dict[str, str], data_dir: Path, *, set_webhook: bool) -> None:
        self.index, self.env, self.data_dir, self.set_webhook = index, env, data_dir, set_webhook
        self.port = 0
        self.process = None
        self.lines: list[str] = []
        self.log_file = data_dir / f"worker{index}.log"
        self._reader = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    async def start(self, *, seconds: float = 180) -> None:
        import asyncio

        self.data_dir.mkdir(parents=True, exist_ok=True)
        with reserved_port() as port:
            self.port = port
            command = [sys.executable, "-m", "bot", "run", "--webhook", *([] if self.set_webhook else
                                                                          ["--no-set-webhook"])]
            with self.log_file.open("ab") as log:
                self.process = await asyncio.create_subprocess_exec(
                    *command, cwd=ROOT, env={**self.env, "WEB_PORT": str(port), "DATA_DIR": str(self.data_dir)},
                    stdout=asyncio.subprocess.PIPE, stderr=log)
            self.starts += 1
            seen = len(self.lines)
            self._reader = asyncio.create_task(self._read(self.process))
            async with asyncio.timeout(seconds):
                while not any(" serving http://" in line for line in self.lines[seen:]):
                    if self.process.returncode is not None:
                        raise AssertionError(f"worker {self.index} exited ({self.process.returncode}):\n"
                                             f"{self.log()[-4000:]}")
                    await asyncio.sleep(0.05)

    async def _read(self, process) -> None:
        while line := (await process.stdout.readline()).decode(errors="replace"):
            self.lines.append(line.rstrip("\n"))

    def kill(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self) -> int:
        code = await self.process.wait()
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self) -> int | None:
        import asyncio
        import signal

        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 90)
            except TimeoutError:
                self.process.kill()
        return await self.wait()


def _chat_of(update: dict) -> int | None:
    for kind in ("message", "edited_message"):
        if kind in update:
            return update[kind]["chat"]["id"]
    if "callback_query" in update:
        return update["callback_query"]["from"]["id"]
    return None


class WebhookRouter:
    """The load balancer in front of the workers (nginx's role in the README's setup): Telegram's
    POSTs to ``/webhook`` go to one worker — by default, for each chat, the other one than last time,
    so a conversation alternates between the workers — and to the next one when that one does not take
    the connection (it is dead). ``pin(update_id, [0, 1])`` sends that update's deliveries to worker 0,
    then 1. ``deliveries`` records (update id, worker, status)."""

    def __init__(self, workers: list[WorkerProcess]) -> None:
        self.workers = workers
        self.deliveries: list[tuple[int, int, int]] = []
        self.pins: dict[int, list[int]] = {}
        self._last: dict[int, int] = {}
        self._runner = None
        self._http = None
        self.url = ""

    def pin(self, update_id: int, workers: list[int]) -> None:
        self.pins[update_id] = list(workers)

    def workers_of(self, update_id: int) -> list[int]:
        return [w for u, w, status in self.deliveries if u == update_id and status == 200]

    def _order(self, update: dict) -> list[int]:
        n = len(self.workers)
        pinned = self.pins.get(update.get("update_id"))
        if pinned:
            first = pinned.pop(0)
        else:
            chat = _chat_of(update)
            first = (self._last.get(chat, -1) + 1) % n if chat is not None else 0
            if chat is not None:
                self._last[chat] = first
        return [first, *[(first + k) % n for k in range(1, n)]]

    async def _handle(self, request):
        import json

        import aiohttp
        from aiohttp import web

        body = await request.read()
        update = json.loads(body)
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-telegram")}
        headers["Content-Type"] = "application/json"
        for index in self._order(update):
            try:
                async with self._http.post(self.workers[index].url + "/webhook", data=body, headers=headers) as resp:
                    answer = await resp.read()
                    self.deliveries.append((update.get("update_id"), index, resp.status))
                    return web.Response(status=resp.status, body=answer, content_type="application/json")
            except aiohttp.ClientConnectionError:
                continue  # that worker is down: the next one (nginx's proxy_next_upstream)
        return web.Response(status=502)

    async def __aenter__(self) -> WebhookRouter:
        import aiohttp
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/webhook", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                           timeout=aiohttp.ClientTimeout(total=60))
        return self

    async def __aexit__(self, *exc) -> None:
        await self._http.close()
        await self._runner.cleanup()


@dataclass
class Cluster:
    """Two webhook workers on one PostgreSQL database and one Redis, behind a router, behind the
    sandbox's webhook delivery (see two_workers)."""

    sandbox: object
    client: object  # SandboxClient: actions return without waiting for the bot
    router: WebhookRouter
    workers: list[WorkerProcess]
    engine: object  # the test's own engine on the workers' database
    database_url: str

    def sessions(self):
        from bot.db import session_factory

        return session_factory(self.engine)()

    async def start_workers(self) -> None:
        import asyncio

        await asyncio.gather(*(w.start() for w in self.workers if w.process is None))


@contextlib.asynccontextmanager
async def two_workers(tmp: Path, name: str, *, env: dict[str, str] | None = None, start: bool = True):
    """Two ``communitybot run --webhook`` processes (the first calls setWebhook) on a fresh PostgreSQL
    database (``<test database>_<name>``, upgraded with Alembic first) and TEST_REDIS_URL's Redis
    (emptied), behind a :class:`WebhookRouter` that PUBLIC_URL names, behind a sandbox of this process
    that delivers by webhook. ``env`` adds settings (OUTBOX_RATE, TICK_INTERVAL=1s and the keys are
    set). With ``start=False`` the workers start at ``await cluster.start_workers()`` (seed first: it
    goes faster without their ticks). Skips without PostgreSQL or Redis (fails in CI)."""
    import os

    from bot.db import create_engine
    from bot.migrate import upgrade
    from bot.sandbox.client import SandboxClient
    from tests.conftest import TEST_DATA_KEY, TEST_DATA_KEYS
    from tests.harness import TOKEN, start_sandbox

    redis = await fresh_redis()
    await redis.aclose()
    async with fresh_pg_database(name) as database_url:
        engine = create_engine(database_url, data_keys=TEST_DATA_KEYS)
        runner, base_url, sandbox = await start_sandbox()
        client = SandboxClient(base_url, wait_for_bot=False)
        workers: list[WorkerProcess] = []
        try:
            await upgrade(engine)
            base_env = {**os.environ, "BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": base_url, "DATABASE_URL": database_url,
                        "REDIS_URL": os.environ["TEST_REDIS_URL"], "WEB_HOST": "127.0.0.1",
                        "SECRET_KEY": "test-secret-key", "DATA_KEY": TEST_DATA_KEY,
                        "WEBHOOK_SECRET": "test-webhook-secret", "TICK_INTERVAL": "1s", "OUTBOX_RATE": "200",
                        **(env or {})}
            base_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            workers = [WorkerProcess(i, base_env, tmp / f"worker{i}", set_webhook=i == 0) for i in range(2)]
            async with WebhookRouter(workers) as router:
                for worker in workers:
                    worker.env = {**worker.env, "PUBLIC_URL": router.url}
                cluster = Cluster(sandbox, client, router, workers, engine, database_url)
                if start:
                    await cluster.start_workers()
                yield cluster
                for worker in workers:
                    assert await worker.stop() in (0, None), worker.log()[-3000:]
        finally:
            for worker in workers:
                await worker.stop()
            await client.close()
            await runner.cleanup()
            await engine.dispose()
