"""Webhook deployment: the sandbox delivers by webhook as Telegram does, the bot serves it
(``run --webhook``, one process or ``--workers N``), and /healthz and /metrics say how it goes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramConflictError
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer

from bot.app import open_runtime
from bot.db import create_engine
from bot.metrics import metrics_of
from bot.runtime import add_background_jobs
from bot.sandbox import Sandbox
from bot.sandbox.client import SandboxClient
from bot.settings import Settings
from bot.web import SECRET_HEADER, WEBHOOK_PATH, add_webhook_route, build_web_app, run_webhook
from services import outbox
from services.clock import system_clock
from services.models import Base
from tests.conftest import TEST_DATA_KEY
from tests.harness import TOKEN, start_sandbox
from tests.helpers import bot_reply, cli, fresh_pg_database, fresh_redis, reserved_port, webhook_workers, zh

SECRET = "test-webhook-secret_0123456789"
UNREACHABLE_PG = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"
WELCOME_START = zh("Welcome to Community Cloud, {name}!\n"
                   "I connect residents with their neighbourhood committee: notices from the "
                   "committee, and daily check-ins for elderly neighbours who live alone.\n"
                   "Send /help to see what I can do.").split("{name}")[0]


def settings_for(tmp: Path, api_base: str = "http://127.0.0.1:9", **overrides) -> Settings:
    # A check's deadline well above a loaded machine's stalls (CI: 2 s went by in one, on SQLite).
    values = {"database_url": f"sqlite+aiosqlite:///{tmp / 'bot.sqlite3'}", "public_url": "http://127.0.0.1:9",
              "webhook_secret": SECRET, "health_timeout": "30s", **overrides}
    return Settings(_env_file=None, bot_token=TOKEN, telegram_api_base=api_base, data_dir=tmp,
                    secret_key="test-secret-key", data_key=TEST_DATA_KEY, **values)


@contextlib.asynccontextmanager
async def runtime(settings: Settings):
    """The runtime ``run`` opens, on a schema made from the models (no migrations)."""
    if settings.db_url.startswith("sqlite"):
        engine = create_engine(settings.db_url)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        await engine.dispose()
    async with open_runtime(settings, migrate=False) as rt:
        yield rt


@contextlib.asynccontextmanager
async def web_client(rt, *, webhook: bool = False):
    app = build_web_app(rt)
    if webhook:
        add_webhook_route(app, rt)
    async with TestClient(TestServer(app)) as client:
        yield client


def sample(metrics_text: str, name: str) -> float | None:
    """The value of one sample (``name`` with its labels, as printed) in Prometheus text, if present."""
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[-1])
    return None


def api_bot(base_url: str) -> Bot:
    return Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))


class Receiver:
    """A webhook endpoint of the test's own: records every POST, answers 500 to the first ``fail``
    ones (or all, with ``fail=-1``, or ``status``), and can hold requests until released."""

    def __init__(self, *, fail: int = 0, status: int = 500, hold: bool = False) -> None:
        self.fail = fail
        self.status = status
        self.requests: list[tuple[dict, str | None]] = []
        self.delivered: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.changed = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        update = await request.json()
        self.requests.append((update, request.headers.get(SECRET_HEADER)))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self._changed()
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        if self.fail == -1 or len(self.requests) <= self.fail:
            return web.Response(status=self.status)
        self.delivered.append(update["update_id"])
        self._changed()
        return web.json_response({})

    def _changed(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def until(self, predicate, seconds: float = 20.0) -> None:
        async with asyncio.timeout(seconds):
            while not predicate():
                await self.changed.wait()

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"
        return self

    async def __aexit__(self, *exc) -> None:
        self.release.set()
        assert self.runner is not None
        await self.runner.cleanup()


@contextlib.asynccontextmanager
async def sandbox_server(sandbox: Sandbox | None = None):
    runner, base_url, sb = await start_sandbox(sandbox)
    bot = api_bot(base_url)
    client = SandboxClient(base_url, wait_for_bot=False)
    try:
        yield sb, base_url, bot, client
    finally:
        await client.close()
        await bot.session.close()
        await runner.cleanup()


# ------------------------------------------------------------------ the sandbox, as Telegram


async def test_sandbox_webhook_methods_and_getupdates_conflict_as_telegram():
    async with sandbox_server() as (sb, _base, bot, client):
        info = await bot.get_webhook_info()
        assert info.url == "" and info.pending_update_count == 0
        # A long poll waiting when the webhook is set ends with 409, and so does every later getUpdates.
        poll = asyncio.create_task(bot.get_updates(timeout=20))
        async with asyncio.timeout(10):
            # Counting a call is no change the sandbox announces: look until the long poll has arrived.
            while sb.calls_by_method.get("getupdates", 0) == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        with reserved_port() as port:  # bound, not listening: connections are refused
            url = f"http://127.0.0.1:{port}/hook"
            assert await bot.set_webhook(url, secret_token=SECRET, max_connections=3,
                                         allowed_updates=["message", "callback_query"])
            with pytest.raises(TelegramConflictError, match="terminated by setWebhook request"):
                await poll
            with pytest.raises(TelegramConflictError, match="can't use getUpdates method while webhook is active"):
                await bot.get_updates()
            with pytest.raises(TelegramBadRequest, match="secret token contains unallowed characters"):
                await bot.set_webhook(url, secret_token="not allowed!")
            user = await client.create_user("王")
            update_id = (await user.send("hello"))["update_id"]
            await sb.wait_until(lambda: sb.webhook_last_error is not None, 10)
            info = await bot.get_webhook_info()
            assert (info.url, info.max_connections, info.allowed_updates) == (url, 3, ["message", "callback_query"])
            assert info.pending_update_count == 1 and info.last_error_message == "Connection refused"
            assert info.last_error_date is not None
            assert not sb.is_confirmed(update_id)
            # Deleting it (dropping what waits) gives getUpdates back, empty.
            assert await bot.delete_webhook(drop_pending_updates=True)
            assert await bot.get_updates() == []
            info = await bot.get_webhook_info()
            assert info.url == "" and info.pending_update_count == 0
            assert (await client.request("GET", f"/sandbox/api/updates/{update_id}/wait"))["confirmed"]


async def test_sandbox_posts_updates_in_order_with_the_secret_and_retries_failures():
    async with sandbox_server() as (sb, _base, bot, client), Receiver(fail=2) as receiver:
        user = await client.create_user("李")
        sent = [(await user.send(f"message {n}"))["update_id"] for n in range(3)]
        assert await bot.get_updates() != []  # polled once: nothing confirmed
        await bot.set_webhook(receiver.url, secret_token=SECRET, max_connections=1)
        await receiver.until(lambda: len(receiver.delivered) == 3)
        # The first update was answered 500 twice, then 200; the others came after it, in order, once each.
        assert receiver.delivered == sent
        assert [u["update_id"] for u, _ in receiver.requests] == [sent[0], sent[0], *sent]
        assert {secret for _, secret in receiver.requests} == {SECRET}
        assert [u["message"]["text"] for u, _ in receiver.requests[2:]] == ["message 0", "message 1", "message 2"]
        await sb.wait_until(lambda: sb.pending_update_count() == 0, 5)
        assert all(sb.is_confirmed(u) for u in sent)
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 0
        assert info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"


async def test_sandbox_keeps_at_most_max_connections_in_flight():
    async with sandbox_server() as (sb, _base, bot, client), Receiver(hold=True) as receiver:
        user = await client.create_user("张")
        sent = [(await user.send(f"m{n}"))["update_id"] for n in range(5)]
        await bot.set_webhook(receiver.url, secret_token=SECRET, max_connections=3)
        await receiver.until(lambda: receiver.in_flight == 3)
        # Three POSTs are open and nothing more is due until one is answered.
        assert sb.webhook_due(asyncio.get_running_loop().time()) == []
        assert sum(1 for q in sb._updates if q.in_flight) == 3
        receiver.release.set()
        await receiver.until(lambda: len(receiver.delivered) == 5)
        assert sorted(receiver.delivered) == sent and receiver.most_in_flight == 3
        await sb.wait_until(lambda: all(sb.is_confirmed(u) for u in sent), 5)
        assert sb.pending_update_count() == 0


async def test_sandbox_gives_up_on_an_update_after_its_attempts():
    sandbox = Sandbox(webhook_max_attempts=3, webhook_retry_base=0.01)
    async with sandbox_server(sandbox) as (_sb, _base, bot, client), Receiver(fail=-1, status=403) as receiver:
        user = await client.create_user("赵")
        update_id = (await user.send("never delivered"))["update_id"]
        await bot.set_webhook(receiver.url, secret_token=SECRET)
        status = await client.request("GET", f"/sandbox/api/updates/{update_id}/wait", params={"timeout": "20"})
        assert status == {"confirmed": False, "dropped": True}
        assert len(receiver.requests) == 3 and receiver.delivered == []
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 0
        assert info.last_error_message == "Wrong response from the webhook: 403 Forbidden"


# ------------------------------------------------------------------ the bot's web app


async def test_webhook_refuses_requests_without_the_secret_and_handles_nothing(tmp_path):
    async with runtime(settings_for(tmp_path)) as rt, web_client(rt, webhook=True) as http:
        update = {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"},
                                              "from": {"id": 5, "is_bot": False, "first_name": "X"}, "text": "/start"}}
        no_header = await http.post(WEBHOOK_PATH, json=update)
        wrong = await http.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET + "x"})
        empty = await http.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: ""})
        assert (no_header.status, wrong.status, empty.status) == (403, 403, 403)
        not_json = await http.post(WEBHOOK_PATH, data=b"{", headers={SECRET_HEADER: SECRET})
        assert not_json.status == 400
        text = await (await http.get("/metrics")).text()
        assert sample(text, "communitybot_webhook_rejected_total") == 3.0
        assert sample(text, 'communitybot_update_seconds_count{type="message"}') is None  # nothing was handled


async def test_generated_webhook_secret_is_kept_owner_only_in_data_dir(tmp_path):
    settings = settings_for(tmp_path, webhook_secret=None)
    secret = settings.ensure_webhook_secret()
    path = tmp_path / "webhook_secret"
    assert path.read_text() == secret and (path.stat().st_mode & 0o777) == 0o600
    assert settings_for(tmp_path, webhook_secret=None).ensure_webhook_secret() == secret  # the next start
    assert 1 <= len(secret) <= 256 and secret.replace("-", "").replace("_", "").isalnum()


async def test_health_is_503_and_metrics_still_answer_when_the_database_cannot_be_reached(tmp_path):
    async with runtime(settings_for(tmp_path, database_url=UNREACHABLE_PG)) as rt, web_client(rt) as http:
        resp = await http.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and body["ok"] is False
        assert body["checks"]["database"]["ok"] is False and body["checks"]["database"]["error"]
        assert body["checks"]["sender"] == {"ok": False, "error": "database unavailable"}
        resp = await http.get("/metrics")
        assert resp.status == 200
        assert sample(await resp.text(), 'communitybot_database_up{db="main"}') == 0.0


async def test_health_follows_the_oldest_urgent_message_and_the_ticks(tmp_path):
    async with runtime(settings_for(tmp_path, health_sender_lag="5m")) as rt, web_client(rt) as http:
        resp = await http.get("/healthz")
        body = await resp.json()
        assert resp.status == 200, body
        assert body["checks"]["database"]["ok"] and body["checks"]["ticks"] == {"ok": True, "running": False}
        assert "redis" not in body["checks"]
        now = system_clock()
        async with rt.sessions() as session:
            payload = outbox.make_payload("hello")
            await outbox.enqueue(session, key="b", chat_id=1, payload=payload, priority=outbox.Priority.broadcast,
                                 not_before=now - timedelta(minutes=30), now=now)
            await session.commit()
        # A district-wide broadcast takes long at Telegram's rate: shown, never unhealthy.
        body = await (await http.get("/healthz")).json()
        assert body["ok"] and body["checks"]["sender"]["lag_seconds"] >= 1800
        assert body["checks"]["sender"]["urgent_lag_seconds"] == 0
        async with rt.sessions() as session:
            await outbox.enqueue(session, key="a", chat_id=2, payload=payload, priority=outbox.Priority.alert,
                                 not_before=now - timedelta(minutes=6), now=now)
            await session.commit()
        resp = await http.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and body["checks"]["sender"]["ok"] is False
        assert body["checks"]["sender"]["lag_seconds_by_priority"]["alert"] >= 360
        text = await (await http.get("/metrics")).text()
        assert sample(text, 'communitybot_outbox_depth{priority="alert"}') == 1.0
        assert sample(text, 'communitybot_outbox_depth{priority="broadcast"}') == 1.0
        assert sample(text, 'communitybot_checkin_alerts{status="open"}') == 0.0
        # A scheduler whose last tick is older than HEALTH_TICK_AGE (and 3 TICK_INTERVALs) is unhealthy.
        metrics = metrics_of(rt.dp)
        metrics.scheduler_started()
        metrics.scheduler_started_at = time.time() - 3600
        body = await (await http.get("/healthz")).json()
        assert body["checks"]["ticks"]["ok"] is False and body["checks"]["ticks"]["last_run_age_seconds"] >= 3600


async def test_health_checks_redis_when_configured(tmp_path):
    redis = await fresh_redis()
    await redis.aclose()
    url = os.environ["TEST_REDIS_URL"]
    async with runtime(settings_for(tmp_path, redis_url=url)) as rt, web_client(rt) as http:
        body = await (await http.get("/healthz")).json()
        assert body["checks"]["redis"]["ok"] is True, body
    async with runtime(settings_for(tmp_path, redis_url="redis://127.0.0.1:1/0")) as rt, web_client(rt) as http:
        resp = await http.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"]


async def test_run_refuses_workers_without_webhook_and_webhook_without_public_url(tmp_path):
    env = {"DATA_DIR": str(tmp_path), "BOT_TOKEN": TOKEN, "PUBLIC_URL": "", "DATABASE_URL": ""}
    out = await cli("run", "--workers", "2", env=env)
    assert out.returncode == 2 and "need --webhook" in out.stderr
    out = await cli("run", "--webhook", env=env)
    assert out.returncode == 2 and out.stderr.startswith("configuration error: PUBLIC_URL:")
    out = await cli("run", "--webhook", env={**env, "PUBLIC_URL": "https://bot.example.org", "WEBHOOK_SECRET": "a b"})
    assert out.returncode == 2 and "WEBHOOK_SECRET" in out.stderr
    assert not (tmp_path / "communitybot.sqlite3").exists()  # refused before anything was opened


# ------------------------------------------------------------------ end to end


async def test_bot_in_webhook_mode_answers_start_through_the_sandbox(tmp_path):
    """``run --webhook`` in this process: the sandbox POSTs the update, the bot answers, and its
    health, metrics and ticks show it."""
    async with sandbox_server() as (sb, base_url, bot, client):
        with reserved_port() as port:
            public = f"http://127.0.0.1:{port}"
            settings = settings_for(tmp_path, base_url, public_url=public, web_port=port, tick_interval="0.2s")
            async with runtime(settings) as rt:
                add_background_jobs(rt, poll_interval=0.05)
                stop = asyncio.Event()
                ready: list[str] = []
                serving = asyncio.create_task(run_webhook(rt, stop=stop, handle_signals=False, ready=ready.append))
                try:
                    await sb.wait_until(lambda: bool(ready) or serving.done(), 30)
                    assert ready == [public], serving
                    info = await bot.get_webhook_info()
                    assert info.url == public + WEBHOOK_PATH and sb.webhook.secret_token == SECRET
                    user = await client.create_user("新邻居")
                    await user.send("/start")
                    welcome = await bot_reply(user, lambda m: (m["text"] or "").startswith(WELCOME_START))
                    assert "新邻居" in welcome["text"]
                    await sb.wait_until(lambda: bool(metrics_of(rt.dp).last_tick_at), 30)
                    async with ClientSession() as http:
                        async with http.get(public + "/healthz") as resp:
                            health = await resp.json()
                            assert resp.status == 200, health
                        async with http.get(public + "/metrics") as resp:
                            text = await resp.text()
                    assert health["checks"]["ticks"]["running"] is True
                    assert sample(text, 'communitybot_update_seconds_count{type="message"}') == 1.0
                    assert sample(text, 'communitybot_tick_seconds_count{tick="notices"}') >= 1
                    assert sample(text, 'communitybot_update_errors_total{type="message"}') is None
                    assert sb.calls_by_method["setwebhook"] == 1 and sb.webhook_deliveries == 1
                finally:
                    stop.set()
                    await asyncio.wait_for(serving, 60)


async def test_two_webhook_workers_on_postgres_and_redis_share_one_port(tmp_path):
    """``communitybot run --webhook --workers 2`` as real processes behind the sandbox's webhook."""
    redis = await fresh_redis()
    await redis.aclose()
    async with sandbox_server() as (sb, base_url, _bot, client), fresh_pg_database("webhook") as db:
        async with webhook_workers(base_url, tmp_path, database_url=db, redis_url=os.environ["TEST_REDIS_URL"],
                                   workers=2) as workers:
            assert sorted(workers.pids) == [0, 1] and len(set(workers.pids.values())) == 2
            assert sb.calls_by_method["setwebhook"] == 1  # the first worker's; the other only serves
            assert sb.webhook.url == workers.url + WEBHOOK_PATH
            users = [await client.create_user(f"邻居{n}") for n in range(4)]
            for user in users:
                await user.send("/start")
            for user in users:
                await bot_reply(user, lambda m: (m["text"] or "").startswith(WELCOME_START), seconds=60)
            async with ClientSession() as http:
                async with http.get(workers.url + "/healthz") as resp:
                    health = await resp.json()
                    assert resp.status == 200, health
                async with http.get(workers.url + "/metrics") as resp:
                    text = await resp.text()
            assert health["checks"]["redis"]["ok"]
            # Multiprocess mode: whichever worker answered the scrape counts both workers' updates.
            assert sample(text, 'communitybot_update_seconds_count{type="message"}') == 4.0
            # A worker killed outright is started again; meanwhile and after, updates are answered.
            killed, seen = workers.pids[1], len(workers.lines)
            os.kill(killed, signal.SIGKILL)
            await workers.wait_for_line(f"worker 1 exited ({-signal.SIGKILL})", after=seen)
            late = await client.create_user("晚到的邻居")
            await late.send("/start")
            await bot_reply(late, lambda m: (m["text"] or "").startswith(WELCOME_START), seconds=60)
            await workers.wait_for_line("serving http://", after=seen, seconds=120)
            assert workers.pids[1] != killed
            async with ClientSession() as http, http.get(workers.url + "/metrics") as resp:
                text = await resp.text()
            # The dead worker's counts stay in the sum (a total never goes down).
            assert sample(text, 'communitybot_update_seconds_count{type="message"}') == 5.0
        assert workers.process.returncode == 0, workers.log()[-3000:]
        assert {"worker 0 stopped (0)", "worker 1 stopped (0)", "workers stopped"} <= set(workers.lines), workers.lines
        assert json.loads(json.dumps(sb.stats()))["webhook_deliveries"] == 5


async def test_a_chats_turn_is_taken_before_the_200_so_its_next_update_waits_at_another_worker(tmp_path):
    """Two workers on one Redis: update 1 of a chat reaches A, whose reply is held up; update 2 of the
    same chat reaches B. B answers Telegram only once A is done, and the chat sees the replies in order.
    (Were the turn taken in A's task after the 200, B could take the chat first.)"""
    redis = await fresh_redis()
    await redis.aclose()
    gate = asyncio.Event()

    async def held_up(make_request, bot, method):
        if type(method).__name__ == "SendMessage":
            await gate.wait()
        return await make_request(bot, method)

    async with sandbox_server() as (sb, base_url, _bot, client):
        user = await client.create_user("邻居")
        settings = dict(redis_url=os.environ["TEST_REDIS_URL"])
        async with runtime(settings_for(tmp_path, base_url, **settings)) as worker_a, \
                runtime(settings_for(tmp_path, base_url, **settings)) as worker_b:
            worker_a.bot.session.middleware(held_up)
            async with web_client(worker_a, webhook=True) as a, web_client(worker_b, webhook=True) as b:
                headers = {SECRET_HEADER: SECRET}

                def update(update_id: int, command: str) -> dict:
                    person = {"id": user.id, "is_bot": False, "first_name": "邻居", "language_code": "zh-hans"}
                    return {"update_id": update_id, "message": {
                        "message_id": update_id, "date": int(time.time()), "text": command, "from": person,
                        "chat": {"id": user.id, "type": "private", "first_name": "邻居"},
                        "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}]}}

                async with asyncio.timeout(120):  # a lock never released fails here, not by hanging
                    first = await a.post(WEBHOOK_PATH, json=update(1, "/start"), headers=headers)
                    assert first.status == 200  # Telegram has its answer; A's reply waits at the gate
                    second = asyncio.create_task(b.post(WEBHOOK_PATH, json=update(2, "/help"), headers=headers))
                    try:
                        await asyncio.sleep(0.5)
                        assert not second.done()  # B holds Telegram's request: the chat's turn is A's
                    finally:
                        gate.set()
                    assert (await second).status == 200
                    await sb.wait_until(lambda: len(sb.messages(user.id)) >= 2, 30)
    replies = [m["text"] for m in sb.messages(user.id)]
    assert replies[0].startswith(WELCOME_START) and not replies[1].startswith(WELCOME_START), replies
