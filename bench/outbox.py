"""Outbox sender benchmark: a broadcast through the sandbox under Telegram-like flood limits.

    python -m bench outbox [--quick] [--n N] [--rate 25] [--skip-pg]

1. SQLite file, one sender process: N recipients (10,000; ``--quick``: 600) plus a few chats that
   get several messages (per-chat spacing), at the configured rate (default: the setting's default,
   25 msg/s; ``--rate 29`` leaves one message a second of room), against a sandbox that answers
   429 above 30 msg/s overall or 1 msg/s per chat. An alert is enqueued half-way.
2. PostgreSQL (``BENCH_DATABASE_URL``, default the local ``test`` database), the same with two
   sender processes at rate / 2 each, sharing the outbox through SKIP LOCKED. Tables live in a
   throw-away schema ``bench_outbox_<pid>`` that is dropped at the end.

Prints a table, then one line of JSON with the figures. Targets: achieved ≥ 97 % of configured,
no 429, at most 1 msg/s per chat, alert latency < 2 s, no duplicate sends.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import postgres_url

GLOBAL_LIMIT = 30.0  # the sandbox's flood limits, shaped like Telegram's
PER_CHAT_LIMIT = 1.0
BUSY_CHATS = 4  # recipients that get BUSY_MESSAGES instead of one
BUSY_MESSAGES = 5
REPO = str(Path(__file__).resolve().parent.parent)


def _tables():
    from services.models import Account, Household, OutboxMessage, Region, Resident

    return [m.__table__ for m in (Region, Household, Resident, Account, OutboxMessage)]


def _engine(url: str, schema: str | None) -> AsyncEngine:
    from bot.db import create_engine

    if schema:
        return create_engine(url, pool_size=2, connect_args={"server_settings": {"search_path": schema}})
    return create_engine(url)


# ---------------------------------------------------------------- worker process


async def _worker(args: argparse.Namespace) -> int:
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    from bot.db import session_factory
    from notifications.sender import OutboxSender

    engine = _engine(args.db, args.schema)
    bot = Bot(token="42:sandbox", session=AiohttpSession(api=TelegramAPIServer.from_base(args.api)))
    sender = OutboxSender(bot, session_factory(engine), rate=args.rate, per_chat_rate=PER_CHAT_LIMIT,
                          worker_id=args.worker_id, lease=timedelta(seconds=30))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    gc.freeze()  # aiogram's many models need no scanning: keeps collector pauses short
    print("ready", flush=True)
    try:
        # "go" on stdin: all senders start together, after their imports (EOF: the bench is gone).
        if await loop.run_in_executor(None, sys.stdin.readline):
            await sender.run(stop)
    finally:
        await bot.session.close()
        await engine.dispose()
    print(json.dumps(sender.counters), flush=True)
    return 0


async def _start_workers(count: int, db: str, schema: str | None, api: str, rate: float) -> list[Any]:
    procs = []
    for i in range(count):
        cmd = [sys.executable, "-m", "bench", "outbox", "--worker", "--db", db, "--api", api,
               "--rate", str(rate), "--worker-id", f"bench-{i + 1}"]
        if schema:
            cmd += ["--schema", schema]
        procs.append(await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            cwd=REPO))
    for proc in procs:
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        if line != b"ready\n":
            raise RuntimeError(f"sender process did not start: {line!r}")
    for proc in procs:
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    return procs


async def _stop_workers(procs: list[Any]) -> list[dict[str, int]]:
    counters = []
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        lines = out.decode().strip().splitlines()
        counters.append(json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {})
    return counters


# ---------------------------------------------------------------- one scenario


async def _scenario(*, label: str, db_url: str, schema: str | None, n: int, rate: float, senders: int,
                    api: str, sandbox: Any, log: Any) -> dict[str, Any]:
    from bot.db import session_factory
    from services import outbox
    from services.models import OutboxMessage, OutboxStatus
    from services.outbox import OutboxItem, Priority

    sandbox.set_rate_limits(GLOBAL_LIMIT, PER_CHAT_LIMIT)
    users = [sandbox.create_user(f"R{i}").id for i in range(n)]
    duty = sandbox.create_user("Duty").id
    if schema:
        await _admin(db_url, f'CREATE SCHEMA "{schema}"')
    engine = _engine(db_url, schema)
    factory = session_factory(engine)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: _tables()[0].metadata.create_all(c, tables=_tables()))

        now = datetime.now(UTC)
        items = [OutboxItem(f"notice:1:{uid}", uid, outbox.make_payload(f"通知 {i}"),
                            Priority.broadcast, ref_type="notice_recipient", ref_id=i)
                 for i, uid in enumerate(users)]
        # The busy chats' extra messages are spread through the queue (every ~n/BUSY_MESSAGES rows),
        # as a second notice to a few of the same people would be: the sender must space them 1 s apart.
        for k in range(1, BUSY_MESSAGES):
            extra = [OutboxItem(f"notice:2:{uid}:{k}", uid, outbox.make_payload(f"more {k}"),
                                Priority.broadcast) for uid in users[:BUSY_CHATS]]
            at = k * len(users) // BUSY_MESSAGES
            items[at:at] = extra
        t = time.perf_counter()
        async with factory() as s:
            await outbox.enqueue_many(s, items, now=now)
            await s.commit()
        enqueue_seconds = time.perf_counter() - t
        expected = len(items) + 1
        log(f"[{label}] enqueued {len(items)} rows in {enqueue_seconds:.2f}s; starting {senders} sender(s)")

        # The sandbox lives in this process: a long collector pause here would bunch requests up
        # on arrival and show as a 429 that the senders did not cause.
        gc.collect()
        gc.freeze()
        procs = await _start_workers(senders, db_url, schema, api, rate / senders)
        loop = asyncio.get_running_loop()
        first = last = alert_at = alert_latency = None
        deadline = loop.time() + expected / rate * 2 + 120
        next_log = loop.time() + 10
        try:
            while loop.time() < deadline:
                sent = sandbox.stats()["sent_total"]
                tick = loop.time()
                if first is None and sent:
                    first = tick
                if alert_at is None and sent >= expected // 2:
                    alert_at = loop.time()
                    async with factory() as s:
                        await outbox.enqueue(s, key="alert:1", chat_id=duty, payload=outbox.make_payload(
                            "⚠ 求助：3号楼502 王阿姨", buttons=[[outbox.button("我去处理", callback_data="a:1")]]),
                            priority=Priority.alert, now=datetime.now(UTC))
                        await s.commit()
                if alert_at is not None and alert_latency is None and sandbox.messages(duty):
                    alert_latency = tick - alert_at
                if sent >= expected:
                    last = tick
                    break
                if tick >= next_log:
                    next_log += 10
                    log(f"[{label}] {sent}/{expected} sent")
                await asyncio.sleep(0.005)
        finally:
            counters = await _stop_workers(procs)

        stats = sandbox.stats()
        async with factory() as s:
            by_status = dict((await s.execute(
                select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))).all())
            by_worker = dict((await s.execute(
                select(OutboxMessage.claimed_by, func.count())
                .where(OutboxMessage.status == OutboxStatus.sent).group_by(OutboxMessage.claimed_by))).all())
        received = [len([m for m in sandbox.messages(uid) if m["from_bot"]]) for uid in users]
        per_user_expected = [BUSY_MESSAGES if i < BUSY_CHATS else 1 for i in range(n)]
        duplicates = sum(max(0, r - e) for r, e in zip(received, per_user_expected, strict=True))
        missing = sum(max(0, e - r) for r, e in zip(received, per_user_expected, strict=True))
        achieved = (stats["sent_total"] - 1) / (last - first) if first and last and last > first else 0.0
        return {
            "backend": label,
            "senders": senders,
            "messages": expected,
            "configured_rate": rate,
            "achieved_rate": round(achieved, 2),
            "achieved_ratio": round(achieved / rate, 4),
            "too_many_requests": stats["too_many_requests"],
            "max_per_chat_rate": stats["max_per_chat_rate"],
            "max_global_rate": stats["max_global_rate"],
            "alert_latency_s": round(alert_latency, 3) if alert_latency is not None else None,
            "duplicates": duplicates,
            "missing": missing,
            "failed_rows": int(by_status.get(OutboxStatus.failed, 0)),
            "sent_by_worker": {str(k): v for k, v in sorted(by_worker.items(), key=lambda kv: str(kv[0]))},
            "enqueue_seconds": round(enqueue_seconds, 3),
            "duration_s": round(last - first, 1) if first and last else None,
            "completed": last is not None,
            "sender_counters": counters,
        }
    finally:
        await engine.dispose()
        if schema:
            await _admin(db_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _admin(url: str, sql: str) -> None:
    engine = _engine(url, None)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def _with_sandbox(run):
    from bot.sandbox import Sandbox, create_sandbox_app

    sandbox = Sandbox()
    runner = web.AppRunner(create_sandbox_app(sandbox), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        return await run(f"http://{host}:{port}", sandbox)
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------- report


def _table(results: list[dict[str, Any]], quick: bool) -> str:
    rows = [
        ("messages (incl. 1 alert)", "messages", "{}", ""),
        ("configured rate msg/s", "configured_rate", "{:.1f}", ""),
        ("achieved rate msg/s", "achieved_rate", "{:.2f}", ""),
        ("achieved / configured", "achieved_ratio", "{:.1%}", ">= 97%"),
        ("429 answers", "too_many_requests", "{}", "0"),
        ("max per-chat rate /s", "max_per_chat_rate", "{}", "<= 1"),
        ("max global rate /s", "max_global_rate", "{}", "<= 30"),
        ("alert latency s", "alert_latency_s", "{}", "< 2"),
        ("duplicate sends", "duplicates", "{}", "0"),
        ("missing sends", "missing", "{}", "0"),
        ("failed rows", "failed_rows", "{}", "0"),
        ("enqueue_many s", "enqueue_seconds", "{:.2f}", ""),
        ("send duration s", "duration_s", "{}", ""),
    ]
    heads = [f"{r['backend']}, {r['senders']} sender{'s' if r['senders'] > 1 else ''}" for r in results]
    width = max([22, *(len(h) for h in heads)]) + 2
    out = [f"outbox benchmark ({'quick' if quick else 'full'}): sandbox limits {GLOBAL_LIMIT:g} msg/s, "
           f"{PER_CHAT_LIMIT:g} msg/s per chat", ""]
    out.append(f"{'':26}" + "".join(h.ljust(width) for h in heads) + "target")
    for title, key, fmt, target in rows:
        cells = []
        for r in results:
            value = r.get(key)
            cells.append(("-" if value is None else fmt.format(value)).ljust(width))
        out.append(f"{title:26}" + "".join(cells) + target)
    for r in results:
        out.append(f"{r['backend']}: sent per worker {r['sent_by_worker']}")
    return "\n".join(out)


async def _bench(args: argparse.Namespace) -> int:
    n = args.n or (600 if args.quick else 10_000)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        sqlite_url = f"sqlite+aiosqlite:///{Path(tmp) / 'outbox.sqlite3'}"
        results.append(await _with_sandbox(lambda api, sb: _scenario(
            label="SQLite", db_url=sqlite_url, schema=None, n=n, rate=args.rate, senders=1, api=api,
            sandbox=sb, log=log)))
    pg_error = None
    if not args.skip_pg:
        pg = postgres_url()
        try:
            results.append(await _with_sandbox(lambda api, sb: _scenario(
                label="PostgreSQL", db_url=pg, schema=f"bench_outbox_{os.getpid()}", n=n, rate=args.rate,
                senders=2, api=api, sandbox=sb, log=log)))
        except OSError as exc:
            pg_error = f"PostgreSQL unreachable: {exc}"
            log(pg_error)
    print(_table(results, args.quick))
    if pg_error:
        print(pg_error)
    summary = {"benchmark": "outbox", "quick": args.quick, "recipients": n, "pg_error": pg_error}
    for r in results:
        key = r["backend"].lower()
        summary[key] = {k: v for k, v in r.items() if k not in ("backend", "sender_counters")}
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _default_rate() -> float:
    from bot.settings import Settings

    return float(Settings.model_fields["outbox_rate"].default)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench outbox", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="600 recipients instead of 10,000")
    parser.add_argument("--n", type=int, default=None, help="number of recipients")
    parser.add_argument("--rate", type=float, default=_default_rate(),
                        help="configured total rate, msg/s (default: the OUTBOX_RATE setting's default)")
    parser.add_argument("--skip-pg", action="store_true")
    # Internal: run one sender process.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--worker-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return asyncio.run(_worker(args))
    return asyncio.run(_bench(args))
