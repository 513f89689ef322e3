"""Benchmark: updates/s and latency of the bot as it runs in production, beside a bare aiogram bot.

    python -m bench updates [--quick] [--residents N] [--backend sqlite|pg|both] [--stack bare|floor|full|all]
                            [--workload simple|mixed|both]
                            [--workers 1,2] [--rate R] [--keep DIR] [--cprofile DIR]

Side by side in one run: a bare aiogram bot (echo a message, answer a button) and the full stack, on
SQLite and on PostgreSQL, with 1 and 2 bot processes. One process polls as ``communitybot run`` does
(``open_runtime`` + ``add_background_jobs`` + ``settle_heap`` + ``run_polling``: tasks, chat order, the
sender and the ticks); two are webhook workers on one SO_REUSEPORT port as ``run --webhook --workers 2``
starts them (each ``run_webhook``; the sandbox delivers by webhook), on PostgreSQL with Redis
(BENCH_REDIS_URL; without it the two-worker full stack is not run; SQLite is the one-process deployment).
Between the two, the ``floor``: the bare bot plus what this project's rules make every update cost
whatever it does — its exactly-once marker inserted and committed (``services.updates.first_delivery``
on the production engine, SQLite or PostgreSQL) before the answer, and a button answered with two calls
as the full stack answers it (the callback's answer, then a message). ``/floor`` is the full stack's
share of it: what the features cost above that.
The schema is made from the models instead of the migrations. Every bot is a process of its own talking
HTTP to the sandbox (Telegram) in this process: the sandbox's CPU is not the bot's.

Two workloads:

- ``simple``: 100 verified residents send /help (middlewares, the update's marker, account and actor,
  the roles for the command list, a rendered answer);
- ``mixed``: a committee of N verified residents (default 1,000; ``--quick`` 200), each once through:
  /menu, the menu's Help button, a vote on the committee's poll (ballot announced by the polls tick
  and the real sender), /topics, a topic, "Comment", the comment typed, the check-in prompt's "I'm
  fine" (round opened by the check-in tick). The bare bot gets the same updates (buttons seeded).

Each workload twice: ``saturated`` (every user acts again as soon as the bot has finished their
previous update: updates/s is the bot's capacity) and ``paced`` (Poisson arrivals at ``--target`` (0.5)
of the bare bot's saturated rate, offered to bare and full alike, or ``--rate``: p50/p99 latency at the
target's load). Latency: from the sandbox receiving the update (the press) to the bot's first answer
(answerCallbackQuery for a button, the first message or edit for a text), timed by the sandbox.
The JSON has the latencies of each step too (``by_step``).
Errors: an update not finished within 60 s, an answer that is the error handler's apology or an alert
(no step here is refused), a Bot API call the sandbox refused; a user stops at their first error
(``not_run``), and "update … failed" lines in the bots' logs are counted.

The saturated and paced runs of the mixed load use two committees of N residents each (a check-in is
answered once). Each bot process counts, per kind of update, its SQL statements
(``before_cursor_execute``), commits, rollbacks and pool checkouts (transactions), its time inside
``feed_update`` and the process's CPU meanwhile (``handle_cpu_ms``: the update's own in a paced run
well below capacity, where updates seldom overlap), its CPU, garbage-collector time and pydantic
models built while running; the profile table shows them per kind, the JSON adds the most frequent
statements.

PostgreSQL comes from BENCH_DATABASE_URL (default the local ``test`` database): the benchmark works in
a database of its own beside it (``<name>_bench_updates``, dropped afterwards). Prints tables, then
one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

TOKEN = "42:sandbox"
WEBHOOK_SECRET = "bench-updates-webhook-secret"
USER_TIMEOUT_S = 60  # an update not finished within this is an error
READY_TIMEOUT_S = 60
SIMPLE_USERS = 100
PAUSE_AFTER_BATCH_S = 0.5
ANSWER_METHODS = frozenset({"sendmessage", "sendphoto", "senddocument", "editmessagetext", "editmessagecaption",
                            "editmessagereplymarkup", "answercallbackquery"})
APOLOGY = "Sorry, something went wrong on our side. Please try again in a moment."
MIXED_STEPS = ("menu", "menu button", "vote", "topics", "topic", "comment button", "comment", "check-in")


# --- the sandbox, timed -------------------------------------------------------------------------------


@dataclass(slots=True)
class Call:
    """One Bot API call of the bot addressed to a chat, as the sandbox saw it."""

    t: float
    method: str
    ref: str  # the callback query id of an answer, else the message id
    text: str = ""
    alert: bool = False
    buttons: tuple[str, ...] = ()  # callback data of the message's inline keyboard
    refused: str = ""  # the sandbox's error description when it refused the call


def _buttons(markup: Any) -> tuple[str, ...]:
    if not isinstance(markup, dict):
        return ()
    return tuple(b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row if "callback_data" in b)


def timed_sandbox_class():
    """A :class:`bot.sandbox.Sandbox` that logs, per chat and with a timestamp, every call that
    answers a user (sends, edits, callback answers), refused ones included, and wakes the waiters of
    that chat only (a thousand users waiting must not each re-check on every change)."""
    from bot.sandbox import Sandbox
    from bot.sandbox.state import SandboxApiError

    class TimedSandbox(Sandbox):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.calls: dict[int, list[Call]] = defaultdict(list)
            self._events: dict[int, asyncio.Event] = {}

        def _log(self, chat_id: Any, call: Call) -> None:
            try:
                cid = int(chat_id)
            except (TypeError, ValueError):
                return
            self.calls[cid].append(call)
            event = self._events.pop(cid, None)
            if event is not None:
                event.set()

        async def wait_chat(self, uid: int, predicate: Callable[[], bool], seconds: float) -> bool:
            deadline = time.perf_counter() + seconds
            while not predicate():
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    return False
                event = self._events.setdefault(uid, asyncio.Event())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
            return True

        def _timed(self, method: str, chat_id: Any, fn: Callable[[], Any]) -> Any:
            try:
                result = fn()
            except SandboxApiError as err:
                self._log(chat_id, Call(time.perf_counter(), method, "", refused=err.description))
                raise
            msg = result
            text = (getattr(msg, "text", None) or getattr(msg, "caption", None) or "") if msg is not True else ""
            markup = getattr(msg, "reply_markup", None)
            buttons = _buttons(markup.model_dump(mode="json", exclude_none=True)) if markup is not None else ()
            self._log(chat_id, Call(time.perf_counter(), method, str(getattr(msg, "message_id", "")), text,
                                    buttons=buttons))
            return result

        def send_message(self, chat_id: Any, text: str | None, **kwargs: Any):
            return self._timed("sendmessage", chat_id, lambda: super(TimedSandbox, self).send_message(
                chat_id, text, **kwargs))

        def send_media(self, kind: str, chat_id: Any, **kwargs: Any):
            return self._timed("send" + kind, chat_id, lambda: super(TimedSandbox, self).send_media(
                kind, chat_id, **kwargs))

        def edit_text(self, chat_id: Any, message_id: Any, text: str | None, **kwargs: Any):
            return self._timed("editmessagetext", chat_id, lambda: super(TimedSandbox, self).edit_text(
                chat_id, message_id, text, **kwargs))

        def edit_caption(self, chat_id: Any, message_id: Any, caption: str | None, **kwargs: Any):
            return self._timed("editmessagecaption", chat_id, lambda: super(TimedSandbox, self).edit_caption(
                chat_id, message_id, caption, **kwargs))

        def edit_reply_markup(self, chat_id: Any, message_id: Any, **kwargs: Any):
            return self._timed("editmessagereplymarkup", chat_id, lambda: super(TimedSandbox, self).edit_reply_markup(
                chat_id, message_id, **kwargs))

        def answer_callback(self, callback_query_id: str | None, *, text: str | None, show_alert: bool,
                            url: str | None) -> bool:
            record = self.callbacks.get(callback_query_id or "")
            uid = record.user_id if record is not None else None
            try:
                done = super().answer_callback(callback_query_id, text=text, show_alert=show_alert, url=url)
            except SandboxApiError as err:
                self._log(uid, Call(time.perf_counter(), "answercallbackquery", str(callback_query_id),
                                    refused=err.description))
                raise
            self._log(uid, Call(time.perf_counter(), "answercallbackquery", str(callback_query_id), text or "",
                                alert=show_alert))
            return done

    return TimedSandbox


async def _serve(sandbox) -> tuple[web.AppRunner, str]:
    from bot.sandbox import create_sandbox_app

    runner = web.AppRunner(create_sandbox_app(sandbox), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


# --- what users do ------------------------------------------------------------------------------------


class StepFailed(Exception):
    """A user cannot take the next step (the button to press is not there)."""


@dataclass(slots=True)
class Press:
    label: str
    uid: int
    t0: float
    since: int  # how many calls the chat had before the press
    query_id: str | None = None


def find_button(sandbox, uid: int, prefix: str, suffix: str = "") -> tuple[int, str]:
    """(message id, callback data) of the newest button of the bot in ``uid``'s chat whose data starts
    with ``prefix`` (and ends with ``suffix``)."""
    for msg in reversed(list(sandbox.chats[uid].messages.values())):
        if msg.from_bot and not msg.deleted:
            for data in _buttons(msg.reply_markup):
                if data.startswith(prefix) and data.endswith(suffix):
                    return msg.message_id, data
    raise StepFailed(f"no button {prefix}… in chat {uid}")


def press_text(sandbox, uid: int, label: str, text: str) -> Press:
    since = len(sandbox.calls[uid])
    t0 = time.perf_counter()
    sandbox.user_text(uid, text)
    return Press(label, uid, t0, since)


def press_button(sandbox, uid: int, label: str, prefix: str, suffix: str = "") -> Press:
    message_id, data = find_button(sandbox, uid, prefix, suffix)
    since = len(sandbox.calls[uid])
    t0 = time.perf_counter()
    sent = sandbox.user_callback(uid, message_id, data)
    return Press(label, uid, t0, since, sent["callback_query_id"])


def answered(press: Press, calls: list[Call]) -> Call | None:
    """The bot's first answer to ``press``: its callback answer, or the first message or edit."""
    for call in calls:
        if call.method not in ANSWER_METHODS or call.refused:
            continue
        if press.query_id is None or (call.method == "answercallbackquery" and call.ref == press.query_id):
            return call
    return None


def _sent(calls: list[Call], method: str = "sendmessage", button: str = "") -> bool:
    return any(c.method == method and not c.refused and (not button or any(b.startswith(button) for b in c.buttons))
               for c in calls)


# What the full stack has sent when it has finished each step (the bare bot: its one answer).
FINISHED: dict[str, Callable[[list[Call]], bool]] = {
    "help": lambda calls: _sent(calls),
    "menu": lambda calls: _sent(calls, button="menu:"),
    "menu button": lambda calls: _sent(calls),
    "vote": lambda calls: _sent(calls, "editmessagereplymarkup"),
    "topics": lambda calls: _sent(calls, button="dt:view:"),
    "topic": lambda calls: _sent(calls, button="dt:say:"),
    "comment button": lambda calls: _sent(calls),
    "comment": lambda calls: _sent(calls, button="dt:say:"),
    "check-in": lambda calls: _sent(calls, "editmessagetext"),
}


# The floor bot has finished a step when it has sent its message (a button: after the callback's answer).
FLOOR_FINISHED: dict[str, Callable[[list[Call]], bool]] = {label: _sent for label in FINISHED}


def mixed_script(i: int, poll: int) -> list[Callable[[Any, int], Press]]:
    """The steps of the ``i``-th resident of the mixed load (``poll``: their committee's poll)."""
    return [
        lambda sb, uid: press_text(sb, uid, "menu", "/menu"),
        lambda sb, uid: press_button(sb, uid, "menu button", "menu:help"),
        lambda sb, uid: press_button(sb, uid, "vote", f"pv:{poll}:{i % 3}:"),
        lambda sb, uid: press_text(sb, uid, "topics", "/topics"),
        lambda sb, uid: press_button(sb, uid, "topic", "dt:view:"),
        lambda sb, uid: press_button(sb, uid, "comment button", "dt:say:"),
        lambda sb, uid: press_text(sb, uid, "comment", f"第{i}号：同意在三号楼旁加装充电桩，晚上十点后请保持安静。"),
        lambda sb, uid: press_button(sb, uid, "check-in", "ci:", ":ok"),
    ]


def simple_script(repeat: int) -> list[Callable[[Any, int], Press]]:
    return [lambda sb, uid: press_text(sb, uid, "help", "/help")] * repeat


@dataclass
class Outcome:
    label: str
    latency: float | None  # None: never answered
    error: str = ""  # "", timeout, apology, alert, refused call, no button


@dataclass
class User:
    uid: int
    steps: list[Callable[[Any, int], Press]]
    poll: int = 0
    done: int = 0


class Driver:
    """Runs users' steps against the timed sandbox and keeps every outcome."""

    def __init__(self, sandbox, *, stack: str, apologies: frozenset[str]) -> None:
        self.sandbox = sandbox
        self.bare = stack == "bare"
        self.finished = FINISHED if stack == "full" else FLOOR_FINISHED
        self.apologies = apologies
        self.outcomes: list[Outcome] = []

    async def step(self, user: User) -> bool:
        """Take the user's next step and wait until the bot has finished it; False: stop this user."""
        make = user.steps[user.done]
        user.done += 1
        try:
            press = make(self.sandbox, user.uid)
        except StepFailed:
            self.outcomes.append(Outcome("?", None, "no button"))
            return False
        calls = self.sandbox.calls[user.uid]
        finished = self.finished[press.label]

        def done() -> bool:
            new = calls[press.since:]
            first = answered(press, new)
            return first is not None and (self.bare or finished(new) or first.alert
                                          or first.text in self.apologies)

        ok = await self.sandbox.wait_chat(user.uid, done, USER_TIMEOUT_S)
        new = calls[press.since:]
        first = answered(press, new)
        error = ""
        if not ok:
            error = "timeout"
        elif any(c.refused for c in new):
            error = "refused call"
        elif first is not None and first.alert:
            error = "alert"
        elif any(c.text in self.apologies for c in new):
            error = "apology"
        self.outcomes.append(Outcome(press.label, first.t - press.t0 if first is not None else None, error))
        return not error

    async def saturated(self, users: list[User]) -> float:
        """Every user steps as soon as their previous step is finished; returns the elapsed seconds."""
        async def run(user: User) -> None:
            while user.done < len(user.steps) and await self.step(user):
                pass

        started = time.perf_counter()
        await asyncio.gather(*(run(u) for u in users))
        return time.perf_counter() - started

    async def paced(self, users: list[User], rate: float, rng: random.Random) -> tuple[float, int]:
        """Poisson arrivals at ``rate`` per second, each the next step of a user who is not waiting for
        the bot; returns (elapsed seconds, arrivals that found nobody free and had to wait)."""
        ready: asyncio.Queue[User] = asyncio.Queue()
        for user in users:
            ready.put_nowait(user)
        left = sum(len(u.steps) for u in users)
        late = 0
        tasks: set[asyncio.Task] = set()

        async def one(user: User) -> None:
            if await self.step(user) and user.done < len(user.steps):
                ready.put_nowait(user)

        started = time.perf_counter()
        due = started
        while left > 0 and (tasks or not ready.empty()):
            due += rng.expovariate(rate)
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if ready.empty():
                late += 1
            try:
                user = await asyncio.wait_for(ready.get(), USER_TIMEOUT_S + 5)
            except TimeoutError:
                break
            left -= 1
            task = asyncio.create_task(one(user))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        return time.perf_counter() - started, late


def _ms(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1000, 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1)


def summarise(outcomes: list[Outcome], elapsed: float) -> dict[str, Any]:
    latencies = [o.latency for o in outcomes if o.latency is not None and not o.error]
    errors = Counter(o.error for o in outcomes if o.error)
    by_step: dict[str, list[float]] = defaultdict(list)
    for o in outcomes:
        if o.latency is not None and not o.error:
            by_step[o.label].append(o.latency)
    return {"updates": len(outcomes), "elapsed_s": round(elapsed, 2),
            "updates_per_s": round(len(outcomes) / elapsed, 1) if elapsed > 0 else None,
            "p50_ms": _ms(latencies, 50), "p99_ms": _ms(latencies, 99), "max_ms": _ms([max(latencies)], 1)
            if latencies else None, "errors": sum(errors.values()), "errors_by_kind": dict(errors),
            "by_step": {label: {"n": len(v), "p50_ms": _ms(v, 50), "p99_ms": _ms(v, 99), "max_ms": _ms([max(v)], 1)}
                        for label, v in by_step.items()}}


# --- the bot process --------------------------------------------------------------------------------


def update_kind(update: Any) -> str:
    """What an update is, for the profile: a command, "text", or a button's callback prefix and action."""
    if update.message is not None:
        text = update.message.text or ""
        return text.split()[0] if text.startswith("/") else "text"
    if update.callback_query is not None:
        parts = (update.callback_query.data or "").split(":")
        return "button " + ":".join(parts[:2] if parts[0] in ("dt", "menu") else parts[:1])
    return update.event_type


OUTSIDE_UPDATES = ("background", "process")  # the sender and ticks; the collector and pydantic


class Profile:
    """SQL statements, commits, rollbacks and pool checkouts per update kind (a context variable set
    around ``feed_update``; what runs outside an update is ``background``), wall time in
    ``feed_update``, and the process's CPU."""

    def __init__(self) -> None:
        self.kind: contextvars.ContextVar[str] = contextvars.ContextVar("bench_update_kind", default="background")
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.statements: dict[str, Counter] = defaultdict(Counter)
        self.handle_s: dict[str, float] = defaultdict(float)
        # CPU of the process while an update of the kind was in feed_update: its own when updates do not
        # overlap (a paced load well below capacity), others' as well when they do
        self.handle_cpu_s: dict[str, float] = defaultdict(float)
        self.snapshots = 0

    def install(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.pool import Pool

        def statement(_conn, _cursor, sql, _params, _context, _many) -> None:
            kind = self.kind.get()
            self.counts[kind]["statements"] += 1
            self.statements[kind][" ".join(sql.split())[:80]] += 1

        event.listen(Engine, "before_cursor_execute", statement)
        event.listen(Engine, "commit", lambda _conn: self._count("commits"))
        event.listen(Engine, "rollback", lambda _conn: self._count("rollbacks"))
        event.listen(Pool, "checkout", lambda *_args: self._count("checkouts"))
        self.watch_runtime()

    def watch_runtime(self) -> None:
        """Time spent in the garbage collector, and pydantic models made while running (aiogram asks for
        ``Response[T]`` on every Bot API call; pydantic keeps those classes only weakly)."""
        import gc

        from pydantic._internal import _generics

        started: list[float] = []

        def collecting(phase: str, info: dict) -> None:
            if phase == "start":
                started.append(time.perf_counter())
            elif started:
                self.counts["process"]["gc_ms"] += round((time.perf_counter() - started.pop()) * 1000)
                self.counts["process"][f"gc_gen{info['generation']}"] += 1

        gc.callbacks.append(collecting)
        make = _generics.create_generic_submodel

        def create_generic_submodel(*args, **kwargs):
            self.counts["process"]["pydantic_generic_models"] += 1
            return make(*args, **kwargs)

        _generics.create_generic_submodel = create_generic_submodel

    def _count(self, what: str) -> None:
        self.counts[self.kind.get()][what] += 1

    def wrap(self, dp) -> None:
        feed = dp.feed_update

        async def feed_update(bot, update, **kwargs):
            kind = update_kind(update)
            token = self.kind.set(kind)
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return await feed(bot, update, **kwargs)
            finally:
                self.counts[kind]["updates"] += 1
                self.handle_s[kind] += time.perf_counter() - started
                self.handle_cpu_s[kind] += time.process_time() - cpu
                self.kind.reset(token)

        dp.feed_update = feed_update

    def dump(self, path: Path) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.snapshots += 1
        body = {"snapshot": self.snapshots, "cpu_s": usage.ru_utime + usage.ru_stime,
                "kinds": {k: {**c, "handle_s": self.handle_s.get(k, 0.0), "handle_cpu_s": self.handle_cpu_s.get(k, 0.0),
                              "top": self.statements[k].most_common(8)} for k, c in self.counts.items()}}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(body, ensure_ascii=False), "utf-8")
        os.replace(tmp, path)


async def _bare_bot(cfg: dict[str, Any], profile: Profile) -> None:
    """The bare aiogram bot, or (``cfg["stack"] == "floor"``) the least a bot keeping this project's
    rules does: the update's exactly-once marker inserted and committed before its answer, and a button
    answered as the full stack answers one, with two calls (the callback's answer, then a message)."""
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import CallbackQuery, Message

    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(cfg["api"])))
    dp = Dispatcher()
    floor = cfg["stack"] == "floor"
    engine = None

    async def echo(message: Message) -> None:
        await message.answer(message.text or "?")

    async def ack(query: CallbackQuery) -> None:
        await query.answer()
        if floor and query.message is not None:
            await query.message.answer("ok")

    dp.message.register(echo)
    dp.callback_query.register(ack)
    if floor:
        engine = _floor_once(cfg, dp, profile)
    profile.watch_runtime()
    profile.wrap(dp)
    try:
        if cfg.get("webhook"):
            await _bare_webhook(cfg, bot, dp)
        else:
            await dp.start_polling(bot, handle_signals=True)
    finally:
        await bot.session.close()
        if engine is not None:
            await engine.dispose()


def _floor_once(cfg: dict[str, Any], dp, profile: Profile):
    """The floor's one transaction per update: the production engine (``bot.db``) and marker
    (``services.updates.first_delivery``), committed before the handler answers; returns the engine."""
    from bot.db import create_engine, session_factory
    from services.clock import system_clock
    from services.updates import first_delivery

    profile.install()
    engine = create_engine(cfg["db"])
    sessions = session_factory(engine)

    async def exactly_once(handler, update, data):
        async with sessions() as session:
            if not await first_delivery(session, data["bot"].id, update.update_id, system_clock()):
                return None
            await session.commit()
        return await handler(update, data)

    dp.update.outer_middleware(exactly_once)
    return engine


async def _bare_webhook(cfg: dict[str, Any], bot, dp) -> None:
    """aiogram's webhook handler (updates handled in tasks) on an aiohttp app, SO_REUSEPORT as the bot's."""
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application

    app = web.Application()
    SimpleRequestHandler(dp, bot, handle_in_background=True, secret_token=WEBHOOK_SECRET).register(
        app, path="/webhook")
    setup_application(app, dp, bot=bot)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", cfg["port"], reuse_port=True).start()
    if cfg["index"] == 0:
        await bot.set_webhook(f"http://127.0.0.1:{cfg['port']}/webhook", secret_token=WEBHOOK_SECRET)
    _mark_ready(cfg["ready"])
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _mark_ready(path: str) -> None:
    """The worker listens (the benchmark waits for every worker's mark)."""
    Path(path).touch()


async def _full_bot(cfg: dict[str, Any], profile: Profile) -> None:
    from bot.app import open_runtime, run_polling
    from bot.cli import settle_heap
    from bot.runtime import add_background_jobs

    profile.install()
    async with open_runtime(_settings(cfg), migrate=False) as rt:  # as cmd_run, the schema made by the bench
        add_background_jobs(rt)
        profile.wrap(rt.dp)
        settle_heap()
        if cfg.get("webhook"):  # what ``run --webhook`` runs in each of its workers
            from bot.web import run_webhook

            await run_webhook(rt, call_set_webhook=cfg["index"] == 0, ready=lambda _: _mark_ready(cfg["ready"]))
        else:  # what ``run`` runs
            await run_polling(rt)


def _settings(cfg: dict[str, Any]):
    from bench import BENCH_DATA_KEY
    from bot.settings import Settings

    web: dict[str, Any] = {}
    if cfg.get("webhook"):
        web = {"public_url": f"http://127.0.0.1:{cfg['port']}", "web_host": "127.0.0.1", "web_port": cfg["port"],
               "webhook_secret": WEBHOOK_SECRET}
    return Settings(_env_file=None, bot_token=TOKEN, telegram_api_base=cfg["api"], data_dir=Path(cfg["data_dir"]),
                    database_url=cfg["db"], redis_url=cfg.get("redis"), secret_key="bench-updates",
                    data_key=BENCH_DATA_KEY, log_level="WARNING", **web)


def worker_main(cfg: dict[str, Any]) -> int:
    """The bot process: ``python -m bench updates --worker JSON``. SIGUSR1 writes the profile so far."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    profile = Profile()
    path = Path(cfg["profile"])

    async def run() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, profile.dump, path)
        if cfg["stack"] in ("bare", "floor"):
            await _bare_bot(cfg, profile)
        else:
            await _full_bot(cfg, profile)

    if cfg.get("cprofile"):
        import cProfile

        with cProfile.Profile() as prof:
            asyncio.run(run())
        prof.dump_stats(cfg["cprofile"])
    else:
        asyncio.run(run())
    profile.dump(path)
    return 0


class BotProcess:
    """One bot process started by this benchmark, its log and its profile file."""

    def __init__(self, cfg: dict[str, Any], folder: Path, name: str) -> None:
        self.profile_path = folder / f"{name}.profile.json"
        self.log_path = folder / f"{name}.log"
        self.ready_path = folder / f"{name}.ready"
        cfg = {**cfg, "profile": str(self.profile_path), "ready": str(self.ready_path)}
        self.log = self.log_path.open("w")
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen([sys.executable, "-m", "bench", "updates", "--worker", json.dumps(cfg)],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=root)
        self.seen = 0

    async def snapshot(self) -> dict[str, Any]:
        """The bot's profile now (it writes it on SIGUSR1)."""
        self.proc.send_signal(signal.SIGUSR1)
        for _ in range(500):
            await asyncio.sleep(0.01)
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                body = json.loads(self.profile_path.read_text("utf-8"))
                if body["snapshot"] > self.seen:
                    self.seen = body["snapshot"]
                    return body
        raise RuntimeError(f"no profile from the bot process (see {self.log_path})")

    def failed_updates(self) -> int:
        return sum(1 for line in self.log_path.read_text("utf-8", "replace").splitlines() if " failed: " in line)

    async def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            for _ in range(300):
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Workers:
    """The bot's processes: one polling, or N webhook workers sharing a port (SO_REUSEPORT)."""

    def __init__(self, cfg: dict[str, Any], folder: Path, name: str, count: int) -> None:
        self.holder = None
        if count > 1:
            from bot.workers import reserve_port

            self.holder = reserve_port("127.0.0.1", 0)  # the port, held until the workers listen on it
            cfg = {**cfg, "webhook": True, "port": self.holder.getsockname()[1]}
        self.processes = [BotProcess({**cfg, "index": i}, folder, name if count == 1 else f"{name}-w{i}")
                          for i in range(count)]

    async def ready(self, sandbox) -> bool:
        def up() -> bool:
            if self.holder is None:
                return sandbox.calls_by_method.get("getupdates", 0) > 0
            return sandbox.webhook is not None and all(p.ready_path.exists() for p in self.processes)

        deadline = time.perf_counter() + READY_TIMEOUT_S
        while not up():
            if time.perf_counter() > deadline or any(p.proc.poll() is not None for p in self.processes):
                return False
            await asyncio.sleep(0.1)
        return True

    async def snapshot(self) -> dict[str, Any]:
        """The profiles of every worker, added up."""
        total: dict[str, Any] = {"cpu_s": 0.0, "kinds": {}}
        for body in await asyncio.gather(*(p.snapshot() for p in self.processes)):
            total["cpu_s"] += body["cpu_s"]
            for kind, counts in body["kinds"].items():
                into = total["kinds"].setdefault(kind, {"top": []})
                for key, value in counts.items():
                    if key == "top":
                        merged = Counter(dict(map(tuple, into["top"]))) + Counter(dict(map(tuple, value)))
                        into["top"] = merged.most_common(8)
                    else:
                        into[key] = into.get(key, 0) + value
        return total

    def failed_updates(self) -> int:
        return sum(p.failed_updates() for p in self.processes)

    def logs(self) -> str:
        return ", ".join(str(p.log_path) for p in self.processes)

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes))
        if self.holder is not None:
            self.holder.close()


def profile_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the bot did between two snapshots, per update kind."""
    kinds = {}
    for kind, now in after["kinds"].items():
        was = before["kinds"].get(kind, {})
        delta = {k: now.get(k, 0) - was.get(k, 0) for k, v in now.items() if k != "top"}
        for k in ("updates", "statements", "commits", "rollbacks", "checkouts", "handle_s", "handle_cpu_s"):
            delta.setdefault(k, 0)
        if any(delta.values()):
            was_top = dict((s, n) for s, n in was.get("top", []))
            delta["top"] = [(s, n - was_top.get(s, 0)) for s, n in now.get("top", []) if n - was_top.get(s, 0) > 0]
            kinds[kind] = delta
    return {"cpu_s": after["cpu_s"] - before["cpu_s"], "kinds": kinds}


def per_update(delta: dict[str, Any]) -> dict[str, Any]:
    """Statements, transactions (pool checkouts), commits and bot CPU per update, over every kind."""
    kinds = {k: v for k, v in delta["kinds"].items() if k not in OUTSIDE_UPDATES}
    updates = sum(v["updates"] for v in kinds.values())
    if not updates:
        return {}

    def each(key: str) -> float:
        return round(sum(v[key] for v in kinds.values()) / updates, 2)

    process = delta["kinds"].get("process", {})
    return {"statements_per_update": each("statements"), "transactions_per_update": each("checkouts"),
            "commits_per_update": each("commits"), "bot_cpu_ms_per_update": round(delta["cpu_s"] / updates * 1000, 2),
            "handle_ms_per_update": round(sum(v["handle_s"] for v in kinds.values()) / updates * 1000, 2),
            "gc_ms_per_update": round(process.get("gc_ms", 0) / updates, 2),
            "full_collections": process.get("gc_gen2", 0),
            "pydantic_models_made": process.get("pydantic_generic_models", 0)}


# --- seeding ---------------------------------------------------------------------------------------


@dataclass
class Seeded:
    committees: list[list[int]]  # sandbox user ids of each committee's residents
    polls: list[int]
    simple_users: list[list[int]]  # the users who send /help: some of each committee
    warmup: int


async def seed_full(sandbox, api: str, db: str, folder: Path, n: int) -> Seeded:
    """Two committees of ``n`` verified residents, each with a poll announced by the polls tick, a topic
    opened by its staff member and a check-in plan whose round the check-in tick opens now; the real
    sender delivers every ballot and prompt to the sandbox before the bot starts."""
    from sqlalchemy import func, insert, select, text

    import services.models  # noqa: F401
    from bench import bench_data_keys
    from bot.app import Runtime, build_bot, build_dispatcher
    from bot.db import create_engine, session_factory
    from bot.poll_jobs import polls_tick
    from bot.runtime import build_sender
    from services import checkins as cs
    from services import discussions as ds
    from services import polls
    from services.clock import system_clock
    from services.models import (
        Account,
        Base,
        Household,
        OutboxMessage,
        OutboxStatus,
        Resident,
        ResidentStatus,
        Staff,
        StaffRole,
    )
    from services.regions import ensure_demo_regions, get_region
    from services.scope import Actor, StaffGrant

    engine = create_engine(db, data_keys=bench_data_keys())
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = session_factory(engine)
    settings = _settings({"api": api, "data_dir": str(folder), "db": db})
    bot = build_bot(settings)
    dp = build_dispatcher(settings, sessions)
    rt = Runtime(settings, engine, sessions, bot, dp, system_clock)
    now = rt.clock()
    then = now - timedelta(days=30)
    checkin_cfg: cs.CheckinConfig = dp["checkin_config"]
    local = checkin_cfg.local(now)
    committees: list[list[int]] = []
    poll_ids: list[int] = []
    try:
        async with sessions() as s:
            await ensure_demo_regions(s)
            await s.commit()
            next_id = 1
            for c, code in enumerate(("DXYC", "RJXC")):
                committee = await get_region(s, code)
                assert committee is not None
                uids = [sandbox.create_user(f"居民{c}-{i}", language_code="en" if i % 5 == 0 else "zh-hans").id
                        for i in range(n)]
                committees.append(uids)
                ids = range(next_id, next_id + n)
                await s.execute(insert(Household), [
                    {"id": r, "committee_id": committee.id, "code": f"{code}-{r}", "building": str(r % 20 + 1),
                     "unit": "1", "room": str(r)} for r in ids])
                await s.execute(insert(Resident), [
                    {"id": r, "committee_id": committee.id, "household_id": r, "name": f"居民{c}-{i}",
                     "birth_date": date(1940 + i % 40, 1, 1), "building": str(r % 20 + 1), "unit": "1",
                     "room": str(r), "status": ResidentStatus.active, "created_at": then, "updated_at": then}
                    for i, r in enumerate(ids)])
                await s.execute(insert(Account), [
                    {"id": r, "telegram_id": uid, "chat_id": uid, "first_name": f"居民{c}-{i}",
                     "language_code": "en" if i % 5 == 0 else "zh-hans", "resident_id": r, "consent_at": then,
                     "verified_at": then, "verification_method": "contact", "created_at": then, "last_seen_at": then}
                    for i, (r, uid) in enumerate(zip(ids, uids, strict=True))])
                next_id += n
                staff_uid = sandbox.create_user(f"社工{c}", language_code="zh-hans").id
                staff_account = Account(id=2 * n + 1 + c, telegram_id=staff_uid, chat_id=staff_uid,
                                        first_name=f"社工{c}", language_code="zh-hans", created_at=then,
                                        last_seen_at=then)
                s.add(staff_account)
                await s.flush()
                staff = Staff(account_id=staff_account.id, region_id=committee.id, role=StaffRole.committee,
                              active=True, on_duty=True, created_at=then)
                s.add(staff)
                await s.flush()
                actor = Actor(account=staff_account, staff=[StaffGrant(
                    staff.id, StaffRole.committee, committee.id, committee.path, committee.code, committee.name)])
                poll = await polls.create_poll(s, actor, committee, polls.PollDraft(
                    question="是否同意在小区内加装电动自行车充电桩？", options=["同意", "反对", "弃权"],
                    closes_at=now + timedelta(days=7)), now=now, cfg=dp["poll_config"])
                poll_ids.append(poll.id)
                await ds.create_topic(s, actor, ds.TopicDraft(
                    title="充电桩加装位置征求意见", body="请大家说说充电桩装在哪里最合适。"), now=now,
                    cfg=dp["discussion_config"])
                await cs.enrol_segment(s, committee, "age >= 0", now=now, cfg=checkin_cfg,
                                       minute=local.hour * 60 + local.minute)
            if s.get_bind().dialect.name == "postgresql":
                for table in ("households", "residents", "accounts"):
                    await s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                         f"(SELECT max(id) FROM {table}))"))
            await s.commit()
            if s.get_bind().dialect.name == "postgresql":
                await s.execute(text("ANALYZE"))
        assert (await polls_tick(rt, now)).announced == 2
        report = await cs.tick(sessions, checkin_cfg, now)
        assert report.opened == 2 * n, report
        sender = build_sender(rt, rate=10_000, per_chat_rate=100, poll_interval=0.05)
        stop = asyncio.Event()
        sending = asyncio.create_task(sender.run(stop))
        pending = [OutboxStatus.pending, OutboxStatus.sending]
        for _ in range(6000):
            async with sessions() as s:
                left = await s.scalar(select(func.count()).select_from(OutboxMessage)
                                      .where(OutboxMessage.status.in_(pending)))
            if not left:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await sending
        assert not left, f"{left} outbox messages not delivered"
    finally:
        await bot.session.close()
        await engine.dispose()
    simple = [uids[:SIMPLE_USERS] for uids in committees]
    return Seeded(committees, poll_ids, simple, sandbox.create_user("warm-up", language_code="en").id)


def seed_bare(sandbox, n: int) -> Seeded:
    """The same users for the bare bot, each with one message of every button the mixed load presses."""
    committees = []
    for c in range(2):
        uids = [sandbox.create_user(f"居民{c}-{i}", language_code="en").id for i in range(n)]
        for uid in uids:
            sandbox.send_message(uid, "buttons", reply_markup={"inline_keyboard": [[
                {"text": t, "callback_data": d} for t, d in (
                    ("help", "menu:help"), ("a", "pv:1:0:1"), ("b", "pv:1:1:1"), ("c", "pv:1:2:1"),
                    ("view", "dt:view:1:0"), ("say", "dt:say:1:0"), ("ok", "ci:1:ok"))]]})
        committees.append(uids)
    simple = [uids[:SIMPLE_USERS] for uids in committees]
    return Seeded(committees, [1, 1], simple, sandbox.create_user("warm-up", language_code="en").id)


async def create_markers_table(db: str) -> None:
    """The floor bot's one table: the exactly-once markers (``processed_updates``)."""
    from bot.db import create_engine
    from services.models import ProcessedUpdate

    engine = create_engine(db)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(ProcessedUpdate.__table__.create)
    finally:
        await engine.dispose()


# --- PostgreSQL: a database of the benchmark's own -------------------------------------------------


async def _pg_admin(sql: str) -> None:
    from sqlalchemy import text

    from bench import postgres_url
    from bot.db import create_engine

    admin = create_engine(postgres_url(), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await admin.dispose()


def pg_bench_url() -> tuple[str, str]:
    from sqlalchemy.engine import make_url

    from bench import postgres_url

    url = make_url(postgres_url())
    name = f"{url.database}_bench_updates"
    return url.set(database=name).render_as_string(hide_password=False), name


# --- one stack on one database ------------------------------------------------------------------------


def apologies() -> frozenset[str]:
    from services.i18n import LOCALES, gettext, use_locale

    texts = set()
    for locale in LOCALES:
        with use_locale(locale):
            texts.add(gettext(APOLOGY))
    return frozenset(texts)


async def run_stack(stack: str, backend: str | None, workers: int, args: argparse.Namespace, folder: Path,
                    rates: dict[str, float]) -> dict[str, Any]:
    """Start the sandbox, seed, start the bot's processes, run both workloads saturated then paced."""
    sandbox = timed_sandbox_class()()
    runner, api = await _serve(sandbox)
    name = (stack if backend is None else f"{stack}-{backend}") + f"-{workers}w"
    out: dict[str, Any] = {"stack": stack, "backend": backend or "-", "workers": workers,
                           "transport": "polling" if workers == 1 else "webhook"}
    cfg: dict[str, Any] = {"stack": stack, "api": api, "data_dir": str(folder / name)}
    if args.cprofile:
        cfg["cprofile"] = os.path.join(args.cprofile, f"{name}.pstats")
    os.makedirs(cfg["data_dir"], mode=0o700)
    process = None
    try:
        started = time.perf_counter()
        if backend == "pg":
            cfg["db"], dbname = pg_bench_url()
            await _pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            await _pg_admin(f'CREATE DATABASE "{dbname}"')
            cfg["redis"] = redis_url()
        elif backend == "sqlite":
            cfg["db"] = f"sqlite+aiosqlite:///{folder / name / 'bot.sqlite3'}"
        if stack == "full":
            seeded = await seed_full(sandbox, api, cfg["db"], Path(cfg["data_dir"]), args.residents)
        else:
            seeded = seed_bare(sandbox, args.residents)
            if stack == "floor":
                await create_markers_table(cfg["db"])
        out["seed_s"] = round(time.perf_counter() - started, 1)
        process = Workers(cfg, folder, name, workers)
        if not await process.ready(sandbox):
            raise RuntimeError(f"the bot did not start (see {process.logs()})")
        driver = Driver(sandbox, stack=stack, apologies=apologies())
        warm = User(seeded.warmup, simple_script(20))
        await driver.saturated([warm])
        driver.outcomes.clear()
        repeat = 3 if args.quick else 15
        workloads = {
            "simple": tuple([User(u, simple_script(repeat)) for u in uids] for uids in seeded.simple_users),
            "mixed": tuple([User(u, mixed_script(i, seeded.polls[c])) for i, u in enumerate(uids)]
                           for c, uids in enumerate(seeded.committees)),
        }
        rng = random.Random(14)
        for workload, (loaded, paced) in workloads.items():
            if workload not in args.workloads:
                continue
            for mode, users in (("saturated", loaded), ("paced", paced)):
                before = await process.snapshot()
                cpu = time.process_time()
                driver.outcomes.clear()
                if mode == "saturated":
                    elapsed, late = await driver.saturated(users), 0
                    if stack == "bare" and not args.rate:  # the target rate, offered to every stack
                        rates[f"{workload}-{workers}"] = len(driver.outcomes) / elapsed * args.target
                else:
                    rate = args.rate or rates.get(f"{workload}-{workers}") or 100.0
                    elapsed, late = await driver.paced(users, rate, rng)
                await asyncio.sleep(PAUSE_AFTER_BATCH_S)
                delta = profile_delta(before, await process.snapshot())
                figures = summarise(driver.outcomes, elapsed)
                figures["not_run"] = sum(len(u.steps) for u in users) - len(driver.outcomes)  # after an error
                updates = figures["updates"] or 1
                figures |= per_update(delta)
                figures["sandbox_cpu_ms_per_update"] = round((time.process_time() - cpu) / updates * 1000, 2)
                if mode == "paced":
                    figures |= {"offered_per_s": round(rate, 1), "arrivals_late": late}
                figures["profile"] = {k: {**{m: (round(v[m] / max(v["updates"], 1), 2) if m != "updates" else v[m])
                                             for m in ("updates", "statements", "checkouts", "commits", "rollbacks")},
                                          "handle_ms": round(v["handle_s"] / max(v["updates"], 1) * 1000, 2),
                                          "handle_cpu_ms": round(v["handle_cpu_s"] / max(v["updates"], 1) * 1000, 2),
                                          **({"top": v["top"][:6]} if stack == "full" and mode == "saturated"
                                             else {})}
                                      for k, v in delta["kinds"].items() if k != "process"}
                out[f"{workload}_{mode}"] = figures
        out["failed_in_log"] = process.failed_updates()
        return out
    finally:
        if process is not None:
            await process.stop()
        sandbox.close()
        await runner.cleanup()
        if backend == "pg":
            await _pg_admin(f'DROP DATABASE IF EXISTS "{pg_bench_url()[1]}" WITH (FORCE)')


# --- the whole run -------------------------------------------------------------------------------------


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    from bench import peak_rss_mb, postgres_reachable

    backends = ["sqlite", "pg"] if args.backend == "both" else [args.backend]
    if "pg" in backends and not postgres_reachable():
        backends.remove("pg")
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    rates: dict[str, float] = {}  # the paced load of each workload and worker count: target × bare
    with contextlib.ExitStack() as stack:
        if args.keep:
            folder = Path(args.keep)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-updates-")))
        stacks = ("bare", "floor", "full") if args.stack == "all" else (args.stack,)
        for workers in args.workers:
            if "bare" in stacks:
                results.append(await run_stack("bare", None, workers, args, folder, rates))
            for backend in backends if {"floor", "full"} & set(stacks) else ():
                if workers > 1 and (backend == "sqlite" or redis_url() is None):
                    # Workers share conversations and chat order through Redis, on PostgreSQL; SQLite
                    # is the one-process deployment.
                    skipped.append(f"floor and full {backend} × {workers} workers"
                                   + ("" if backend == "sqlite" else " (no BENCH_REDIS_URL)"))
                    continue
                for kind in ("floor", "full"):
                    if kind in stacks:
                        results.append(await run_stack(kind, backend, workers, args, folder, rates))
    for r in results:
        for w in args.workloads:
            for base in ("bare", "floor"):
                of = next((b for b in results if b["stack"] == base and b["workers"] == r["workers"]
                           and (base == "bare" or b["backend"] == r["backend"])), None)
                if of is not None and r is not of and of[f"{w}_saturated"]["updates_per_s"]:
                    r[f"{w}_saturated"][f"over_{base}"] = round(
                        r[f"{w}_saturated"]["updates_per_s"] / of[f"{w}_saturated"]["updates_per_s"], 3)
    return {"benchmark": "updates", "residents": args.residents, "workloads": args.workloads,
            "target_over_bare": args.target,
            "target_p99_ms": 300, "results": results, "skipped": skipped, "peak_rss_mb": peak_rss_mb()}


def redis_url() -> str | None:
    """The Redis of the PostgreSQL runs (FSM, chat order, the shared Telegram rate): BENCH_REDIS_URL."""
    return os.environ.get("BENCH_REDIS_URL") or None


def print_tables(out: dict[str, Any]) -> None:
    print(f"updates through the bot (own processes beside the sandbox); mixed: {out['residents']:,} residents "
          "per committee")
    head = (f"{'workload':<8} {'stack':<5} {'db':<6} {'w':>1} {'mode':<9} {'upd':>6} {'upd/s':>7} {'/bare':>6} "
            f"{'/floor':>6} "
            f"{'p50 ms':>7} {'p99 ms':>8} {'err':>4} {'stmt/u':>6} {'tx/u':>5} {'bot cpu':>8} {'sbx cpu':>8}")
    print(head)
    print(f"{'':<67}{'':>6} {'':>5} {'ms/upd':>8} {'ms/upd':>8}")
    for workload in out["workloads"]:
        for r in out["results"]:
            for mode in ("saturated", "paced"):
                f = r[f"{workload}_{mode}"]
                rate = f"{f['updates_per_s']:.0f}" if mode == "saturated" else f"@{f['offered_per_s']:.0f}"
                print(f"{workload:<8} {r['stack']:<5} {r['backend']:<6} {r['workers']:>1} {mode:<9} {f['updates']:>6} "
                      f"{rate:>7} {f.get('over_bare', ''):>6} {f.get('over_floor', ''):>6} "
                      f"{f['p50_ms']!s:>7} {f['p99_ms']!s:>8} {f['errors']:>4} "
                      f"{f.get('statements_per_update', '-')!s:>6} {f.get('transactions_per_update', '-')!s:>5} "
                      f"{f.get('bot_cpu_ms_per_update', '-')!s:>8} {f['sandbox_cpu_ms_per_update']!s:>8}")
    print("w: bot processes (1: polling as `run`; 2: webhook workers on one port as `run --webhook --workers 2`); "
          "saturated: every user acts again once the bot has finished; paced: Poisson arrivals at @rate (the "
          f"target: {out['target_over_bare']:.0%} of the bare bot's rate); latency: press → first answer; floor: "
          "bare aiogram + the exactly-once marker committed before the answer + a button's two calls")
    for line in out["skipped"]:
        print(f"not run: {line}")
    print("profile of the full stack per update kind (saturated, one worker): updates; per update: statements, "
          "transactions (pool checkouts), commits; ms in feed_update")
    for r in out["results"]:
        if r["stack"] != "full" or r["workers"] != 1:
            continue
        for workload in out["workloads"]:
            for kind, p in sorted(r[f"{workload}_saturated"]["profile"].items()):
                if workload == "simple" and kind != "/help":
                    continue
                print(f"  {r['backend']:<6} {kind:<16} {p['updates']:>6} upd {p['statements']:>6} stmt "
                      f"{p['checkouts']:>5} tx {p['commits']:>5} commits {p['handle_ms']:>8} ms")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main(json.loads(argv[1]))
    parser = argparse.ArgumentParser(prog="python -m bench updates", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 residents per committee instead of 1,000")
    parser.add_argument("--residents", type=int, help="verified residents per committee (mixed load)")
    parser.add_argument("--backend", choices=["sqlite", "pg", "both"], default="both")
    parser.add_argument("--workload", choices=["simple", "mixed", "both"], default="both")
    parser.add_argument("--stack", choices=["bare", "floor", "full", "all"], default="all")
    parser.add_argument("--workers", type=lambda v: [int(n) for n in v.split(",")], default=[1, 2],
                        help="bot processes, comma-separated (default 1,2: polling, then two webhook workers)")
    parser.add_argument("--rate", type=float, help="paced load: updates/s (default: --target × the bare rate)")
    parser.add_argument("--target", type=float, default=0.5, help="the target share of the bare rate (0.5)")
    parser.add_argument("--keep", metavar="DIR", help="keep the bots' logs, profiles and SQLite files in DIR")
    parser.add_argument("--cprofile", metavar="DIR", help="run each bot under cProfile, its stats to DIR/STACK.pstats")
    args = parser.parse_args(argv)
    args.residents = args.residents or (200 if args.quick else 1000)
    args.workloads = ("simple", "mixed") if args.workload == "both" else (args.workload,)
    if args.cprofile:
        args.cprofile = str(Path(args.cprofile).resolve())
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    out = asyncio.run(amain(args))
    print_tables(out)
    print(json.dumps(out, ensure_ascii=False))
    return 0

