"""Benchmark: a committee-wide poll voted through the full stack, then its closing tally.

    python -m bench polls [--quick] [--residents N] [--concurrency C] [--backend pg|sqlite|both]

One committee with N eligible residents (default 20,000; ``--quick`` 2,000), two per household, every
household an owner with its floor area, each resident with a verified account and a sandbox user.
A resident poll (majority, three options) is announced by the polls tick through the outbox and the
real sender; then every resident presses a ballot button on the message they received: the sandbox
queues the callback update, the bot long-polls it over HTTP, the real dispatcher runs the session and
actor middlewares and the ballot handler (``handle_as_tasks`` as in production), which answers and
marks the chosen option. First 200 residents vote one at a time (the latency of one vote on an idle
bot), then the rest with C pressing at once (closed loop: each presses again when answered; votes/s).
Per vote it records press → answer ("Vote recorded") and press → the ✓ on the ballot (the
handler's last call before it commits). Bot, sandbox and this driver share one process (and core).

Then the closing: the tally (``count_poll``: eligible units and per-option sums) and the whole
``close_poll`` (claim, tally, freeze, results queued for every voter and staff, chart drawn); and the
same for an owner poll under the Civil Code rule (one ballot per household, area sums), its ballots
inserted in bulk. Target: tally < 1 s on SQLite and PostgreSQL.

PostgreSQL comes from BENCH_DATABASE_URL (default the local ``test`` database; use a database of your
own), in a schema ``bench_polls`` dropped afterwards. Prints a table, then one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, insert, select, text

import services.models  # noqa: F401
from bench import bench_data_keys, peak_rss_mb, postgres_reachable, postgres_url
from bot.app import Runtime, build_bot, build_dispatcher
from bot.db import create_engine, session_factory
from bot.poll_jobs import polls_tick
from bot.runtime import build_sender
from bot.sandbox import Sandbox, create_sandbox_app
from bot.settings import Settings
from notifications.poll_chart import chart_writer, poll_chart
from services import polls
from services.clock import system_clock
from services.models import Account, Base, Household, Poll, PollVote, Resident, ResidentStatus, StaffRole
from services.regions import ensure_demo_regions, get_region
from services.scope import Actor, StaffGrant

TOKEN = "42:sandbox"
SCHEMA = "bench_polls"
OPTIONS = ["同意", "反对", "弃权"]
WEIGHTS = (0.6, 0.3, 0.1)
CHUNK = 5_000
TALLY_TARGET_S = 1.0
REPEAT = 3


async def _engine(backend: str, folder: Path):
    if backend == "sqlite":
        return create_engine(f"sqlite+aiosqlite:///{folder / 'polls.sqlite3'}", data_keys=bench_data_keys())
    admin = create_engine(postgres_url())
    async with admin.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    await admin.dispose()
    return create_engine(postgres_url(), connect_args={"server_settings": {"search_path": SCHEMA}},
                         data_keys=bench_data_keys())


async def _serve(sandbox: Sandbox) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_sandbox_app(sandbox), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def _populate(sessions, sandbox: Sandbox, n: int, now: datetime) -> list[int]:
    """N residents of DXYC in N/2 owner households, each with a verified account and a sandbox user;
    returns the users' ids (resident i+1 is user ids[i])."""
    rng = random.Random(12)
    uids = [sandbox.create_user(f"居民{i}", language_code="en" if i % 5 == 0 else "zh-hans").id for i in range(n)]
    then = now - timedelta(days=30)
    async with sessions() as s:
        await ensure_demo_regions(s)
        await s.commit()
        committee = await get_region(s, "DXYC")
        assert committee is not None
        households = (n + 1) // 2
        for lo in range(0, households, CHUNK):
            await s.execute(insert(Household), [
                {"id": h + 1, "committee_id": committee.id, "code": f"B-{h}", "building": str(h % 20 + 1),
                 "unit": "1", "room": str(h), "owner": True,
                 "floor_area": Decimal(rng.randrange(4_000, 14_000)) / 100}
                for h in range(lo, min(households, lo + CHUNK))])
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            await s.execute(insert(Resident), [
                {"id": i + 1, "committee_id": committee.id, "household_id": i // 2 + 1, "name": f"居民{i}",
                 "birth_date": date(1940 + i % 60, 1, 1), "building": str(i // 2 % 20 + 1), "unit": "1",
                 "room": str(i // 2), "status": ResidentStatus.active, "created_at": then, "updated_at": then}
                for i in range(lo, hi)])
            await s.execute(insert(Account), [
                {"id": i + 1, "telegram_id": uids[i], "chat_id": uids[i], "first_name": f"居民{i}",
                 "language_code": "en" if i % 5 == 0 else "zh-hans", "resident_id": i + 1, "consent_at": then,
                 "verified_at": then, "verification_method": "contact", "created_at": then}
                for i in range(lo, hi)])
        if s.get_bind().dialect.name == "postgresql":
            for table, last in (("households", households), ("residents", n), ("accounts", n)):
                await s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {last})"))
        await s.commit()
        if s.get_bind().dialect.name == "postgresql":
            await s.execute(text("ANALYZE"))
    return uids


async def _new_poll(sessions, cfg: polls.PollConfig, now: datetime, **draft: Any) -> int:
    async with sessions() as s:
        committee = await get_region(s, "DXYC")
        assert committee is not None
        staff = Actor(staff=[StaffGrant(0, StaffRole.committee, committee.id, committee.path, committee.code,
                                        committee.name)])
        poll = await polls.create_poll(s, staff, committee, polls.PollDraft(
            options=list(OPTIONS), closes_at=now + timedelta(days=7), **draft), now=now, cfg=cfg)
        await s.commit()
        return poll.id


def _ballots(sandbox: Sandbox, uids: list[int], poll_id: int, rng: random.Random) -> list[tuple[int, int, str]]:
    """(user, message id, callback data) of the button each resident presses on the ballot they got."""
    presses = []
    for uid in uids:
        ballot = next(m for m in reversed(sandbox.chats[uid].messages.values()) if m.from_bot and m.reply_markup
                      and any(b.get("callback_data", "").startswith(f"pv:{poll_id}:")
                              for row in m.reply_markup["inline_keyboard"] for b in row))
        choice = rng.choices(OPTIONS, WEIGHTS)[0]
        data = next(b["callback_data"] for row in ballot.reply_markup["inline_keyboard"] for b in row
                    if b["text"] == choice)
        presses.append((uid, ballot.message_id, data))
    return presses


class Watch:
    """Resolves a future when the bot answers a callback query and when it edits a ballot's buttons."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.answers: dict[str, asyncio.Future[float]] = {}
        self.edits: dict[tuple[int, int], asyncio.Future[float]] = {}
        answer, edit = sandbox.answer_callback, sandbox.edit_reply_markup

        def answer_callback(callback_query_id, **kwargs):
            done = answer(callback_query_id, **kwargs)
            self._resolve(self.answers.pop(str(callback_query_id), None))
            return done

        def edit_reply_markup(chat_id, message_id, **kwargs):
            edited = edit(chat_id, message_id, **kwargs)
            self._resolve(self.edits.pop((int(chat_id), int(message_id)), None))
            return edited

        sandbox.answer_callback = answer_callback  # type: ignore[method-assign]
        sandbox.edit_reply_markup = edit_reply_markup  # type: ignore[method-assign]

    @staticmethod
    def _resolve(future: asyncio.Future[float] | None) -> None:
        if future is not None and not future.done():
            future.set_result(time.perf_counter())


PROBE = 200  # votes cast one at a time before the load


async def _vote(sandbox: Sandbox, watch: Watch, presses: list[tuple[int, int, str]],
                concurrency: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    answered: list[float] = []
    marked: list[float] = []
    queue = iter(presses)

    async def resident() -> None:
        for uid, message_id, data in queue:
            edit = watch.edits[(uid, message_id)] = loop.create_future()
            t0 = time.perf_counter()
            press = sandbox.user_callback(uid, message_id, data)
            answer = watch.answers[press["callback_query_id"]] = loop.create_future()
            answered.append(await asyncio.wait_for(answer, 60) - t0)
            marked.append(await asyncio.wait_for(edit, 60) - t0)
            answer_sent = sandbox.callbacks[press["callback_query_id"]].answer
            assert answer_sent is not None and not answer_sent["show_alert"], answer_sent  # refusals are alerts

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(resident() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu

    def ms(values: list[float], q: int) -> float:
        return round(statistics.quantiles(values, n=100)[q - 1] * 1000, 1)

    return {"votes": len(answered), "concurrency": concurrency, "vote_s": round(elapsed, 2),
            "votes_per_s": round(len(answered) / elapsed, 1),
            # CPU of this process (bot, sandbox and the SQLite thread) per vote: what one core would allow
            "cpu_ms_per_vote": round(cpu / len(answered) * 1000, 1),
            "answer_p50_ms": ms(answered, 50), "answer_p99_ms": ms(answered, 99),
            "marked_p50_ms": ms(marked, 50), "marked_p99_ms": ms(marked, 99)}


async def _timed_tally(sessions, poll_id: int, today: date) -> tuple[float, polls.PollResults]:
    """The best of REPEAT tallies (each in a fresh session), and the results."""
    best, results = float("inf"), None
    for _ in range(REPEAT):
        async with sessions() as s:
            poll = await s.get(Poll, poll_id)
            assert poll is not None
            started = time.perf_counter()
            results = await polls.count_poll(s, poll, today)
            best = min(best, time.perf_counter() - started)
    assert results is not None
    return best, results


async def _timed_close(sessions, poll_id: int, now: datetime, cfg: polls.PollConfig) -> float:
    async with sessions() as s:
        poll = await s.get(Poll, poll_id)
        assert poll is not None
        started = time.perf_counter()
        closed = await polls.close_poll(s, poll, now=now, cfg=cfg, chart=chart_writer(cfg))
        await s.commit()
        assert closed is not None
        return time.perf_counter() - started


async def _owner_ballots(sessions, poll_id: int, households: int, now: datetime, rng: random.Random) -> int:
    """Nine in ten households vote in the owner poll (bulk insert: its voting path is the one above)."""
    async with sessions() as s:
        areas = dict((await s.execute(select(Household.id, Household.floor_area))).all())
        rows = [{"poll_id": poll_id, "unit_key": f"h:{h}", "resident_id": 2 * h - 1,
                 "choices": [rng.choices(range(3), WEIGHTS)[0]], "area": areas[h], "created_at": now,
                 "updated_at": now}
                for h in range(1, households + 1) if rng.random() < 0.9]
        for lo in range(0, len(rows), CHUNK):
            await s.execute(insert(PollVote), rows[lo:lo + CHUNK])
        await s.commit()
        return len(rows)


async def run_backend(backend: str, n: int, concurrency: int, folder: Path) -> dict[str, Any]:
    engine = await _engine(backend, folder)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = session_factory(engine)
    sandbox = Sandbox()
    runner, url = await _serve(sandbox)
    settings = Settings(_env_file=None, bot_token=TOKEN, telegram_api_base=url, data_dir=folder,
                        database_url=f"sqlite+aiosqlite:///{folder / 'unused.sqlite3'}", secret_key="bench")
    bot = build_bot(settings)
    dp = build_dispatcher(settings, sessions)
    rt = Runtime(settings, engine, sessions, bot, dp, system_clock)
    cfg: polls.PollConfig = dp["poll_config"]
    rng = random.Random(7)
    out: dict[str, Any] = {"backend": backend}
    polling = None
    try:
        started = time.perf_counter()
        uids = await _populate(sessions, sandbox, n, rt.clock())
        out["setup_s"] = round(time.perf_counter() - started, 1)
        poll_id = await _new_poll(sessions, cfg, rt.clock(), question="本居委会是否同意试行垃圾分类新时段？")
        polling = asyncio.create_task(dp.start_polling(bot, polling_timeout=1, handle_signals=False,
                                                       close_bot_session=False))

        # The announcement: the tick queues a ballot per resident, the real sender delivers them.
        sender = build_sender(rt, rate=10_000, per_chat_rate=100, poll_interval=0.05)
        stop_sender = asyncio.Event()
        sending = asyncio.create_task(sender.run(stop_sender))
        started = time.perf_counter()
        assert (await polls_tick(rt, rt.clock())).announced == 1
        delivered = await sandbox.wait_until(lambda: sandbox.stats()["sent_total"] >= n, 600)
        out["announce_s"] = round(time.perf_counter() - started, 1)
        out["announced_per_s"] = round(n / (time.perf_counter() - started))
        stop_sender.set()
        await sending
        assert delivered, ("not every ballot was delivered", sandbox.sent_by_method, sandbox.stats())

        presses = _ballots(sandbox, uids, poll_id, rng)
        watch = Watch(sandbox)
        probe = min(PROBE, n // 10)
        out["one_at_a_time"] = await _vote(sandbox, watch, presses[:probe], 1)
        out["under_load"] = await _vote(sandbox, watch, presses[probe:], concurrency)
        async with sessions() as s:  # every vote committed (the handler commits after its last call)
            for _ in range(100):
                counted = await s.scalar(select(func.count()).select_from(PollVote).where(PollVote.poll_id == poll_id))
                if counted == n:
                    break
                await asyncio.sleep(0.1)
        assert counted == n, (counted, n)
        await dp.stop_polling()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        polling = None

        now = rt.clock()
        today = cfg.local(now).date()
        out["tally_s"], live = await _timed_tally(sessions, poll_id, today)
        assert live.eligible_units == live.voted_units == n and sum(o.votes or 0 for o in live.options) == n
        started = time.perf_counter()
        poll_chart(live)  # matplotlib's imports and the font's loading happen once a process, not per close
        out["first_chart_s"] = round(time.perf_counter() - started, 3)
        out["close_s"] = await _timed_close(sessions, poll_id, now, cfg)

        owner_poll = await _new_poll(sessions, cfg, now, question="是否加装电梯？", unit="owner",
                                     rule="civil-code-major")
        out["owner_ballots"] = await _owner_ballots(sessions, owner_poll, (n + 1) // 2, now, rng)
        out["owner_tally_s"], owner = await _timed_tally(sessions, owner_poll, today)
        assert owner.voted_units == out["owner_ballots"] and owner.eligible_units == (n + 1) // 2
        out["owner_close_s"] = await _timed_close(sessions, owner_poll, now, cfg)
        for key in ("tally_s", "close_s", "owner_tally_s", "owner_close_s"):
            out[key] = round(out[key], 3)
        out["passed"] = live.passed
        return out
    finally:
        if polling is not None:
            with contextlib.suppress(RuntimeError):
                await dp.stop_polling()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
        await bot.session.close()
        sandbox.close()
        await runner.cleanup()
        if backend == "pg":
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await engine.dispose()


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    n = args.residents or (2_000 if args.quick else 20_000)
    backends = ["sqlite", "pg"] if args.backend == "both" else [args.backend]
    if "pg" in backends and not postgres_reachable():
        backends.remove("pg")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-polls-") as folder:
        for backend in backends:
            results.append(await run_backend(backend, n, args.concurrency, Path(folder)))
    return {"benchmark": "polls", "residents": n, "concurrency": args.concurrency, "target_tally_s": TALLY_TARGET_S,
            "results": results, "peak_rss_mb": peak_rss_mb(),
            "tally_under_target": all(r["tally_s"] < TALLY_TARGET_S and r["owner_tally_s"] < TALLY_TARGET_S
                                      for r in results)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench polls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 residents instead of 20,000")
    parser.add_argument("--residents", type=int, help="eligible residents")
    parser.add_argument("--concurrency", type=int, default=32, help="residents pressing at the same time")
    parser.add_argument("--backend", choices=["pg", "sqlite", "both"], default="both")
    out = asyncio.run(amain(parser.parse_args(argv)))
    print(f"poll of {out['residents']:,} eligible residents (one committee), {out['concurrency']} pressing at once")
    print(f"{'backend':<7} {'ballots':>8} {'votes/s':>8} {'vote p50 / p99 ms':>18} {'vote p50 / p99 ms':>18} "
          f"{'tally':>7} {'close':>7} {'owner':>7} {'owner':>7}")
    print(f"{'':<7} {'sent/s':>8} {'loaded':>8} {'one at a time':>18} {'loaded':>18} "
          f"{'s':>7} {'s':>7} {'tally s':>7} {'close s':>7}")
    for r in out["results"]:
        one, load = r["one_at_a_time"], r["under_load"]
        print(f"{r['backend']:<7} {r['announced_per_s']:>8,} {load['votes_per_s']:>8} "
              f"{one['marked_p50_ms']:>8} / {one['marked_p99_ms']:<7} {load['marked_p50_ms']:>8} / "
              f"{load['marked_p99_ms']:<7} {r['tally_s']:>7} {r['close_s']:>7} {r['owner_tally_s']:>7} "
              f"{r['owner_close_s']:>7}")
    print("vote latency: press → the ✓ on the ballot (the answer comes a moment before); loaded: "
          f"{out['concurrency']} pressing at once; close: tally, freeze, results queued for every voter, chart")
    print(f"tally target < {out['target_tally_s']} s: {'met' if out['tally_under_target'] else 'MISSED'}; "
          f"peak RSS {out['peak_rss_mb']} MB")
    print(json.dumps(out, ensure_ascii=False))
    return 0
