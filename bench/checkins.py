"""Benchmark: one check-in tick opening N rounds (and queueing N prompts), on PostgreSQL and SQLite.

    python -m bench checkins [--quick] [--n N] [--backend pg|sqlite|both]

PostgreSQL comes from BENCH_DATABASE_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/test);
the benchmark works in its own schema ``bench_checkins`` so it never touches the test tables.
Prints a table, then one line of JSON. Target: 100,000 rounds in under 5 s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, text

import services.models  # noqa: F401
from bench import bench_data_keys, peak_rss_mb, postgres_url
from bot.db import create_engine, session_factory
from services import checkins as cs
from services.models import Account, Base, CheckinPlan, CheckinRound, OutboxMessage, Region, Resident
from services.regions import ensure_demo_regions

T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
SCHEMA = "bench_checkins"
CHUNK = 10_000
async def _engine(backend: str, folder: Path):
    if backend == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}", data_keys=bench_data_keys())
    else:
        engine = create_engine(postgres_url(), connect_args={"server_settings": {"search_path": SCHEMA}},
                               data_keys=bench_data_keys())
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    return engine


async def _populate(sessions, n: int) -> None:
    """N residents of 4 committees, each with a linked account and a 09:00 plan (bulk Core inserts)."""
    async with sessions() as s:
        await ensure_demo_regions(s)
        await s.commit()
        committees = (await s.scalars(select(Region.id).where(Region.code.in_(("DXYC", "RJXC", "FLSQ")))
                                      .order_by(Region.id))).all()
        then = T0 - timedelta(days=2)
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            await s.execute(insert(Resident), [
                {"id": i + 1, "committee_id": committees[i % len(committees)], "name": f"居民{i}",
                 "phone": f"+86139{i:08d}", "birth_date": date(1940, 1, 1), "building": str(i % 50),
                 "room": str(i), "living_alone": True, "created_at": then, "updated_at": then}
                for i in range(lo, hi)])
            await s.execute(insert(Account), [
                {"id": i + 1, "telegram_id": 10_000_000 + i, "chat_id": 10_000_000 + i, "first_name": f"u{i}",
                 "language_code": "en" if i % 5 == 0 else "zh-hans", "resident_id": i + 1, "created_at": then}
                for i in range(lo, hi)])
            await s.execute(insert(CheckinPlan), [
                {"resident_id": i + 1, "committee_id": committees[i % len(committees)], "minute_of_day": 9 * 60,
                 "days": 127, "starts_on": date(2026, 11, 1), "active": True, "created_at": then,
                 "updated_at": then}
                for i in range(lo, hi)])
        if s.get_bind().dialect.name == "postgresql":
            for table in ("residents", "accounts"):
                await s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n})"))
        await s.commit()
        if s.get_bind().dialect.name == "postgresql":
            await s.execute(text("ANALYZE"))


async def _count(sessions, model) -> int:
    async with sessions() as s:
        return await s.scalar(select(func.count()).select_from(model)) or 0


async def run_backend(backend: str, n: int, folder: Path) -> dict:
    engine = await _engine(backend, folder)
    sessions = session_factory(engine)
    cfg = cs.CheckinConfig()
    try:
        started = time.perf_counter()
        await _populate(sessions, n)
        setup = time.perf_counter() - started

        tracemalloc.start()
        started = time.perf_counter()
        report = await cs.tick(sessions, cfg, T0)
        first = time.perf_counter() - started
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        started = time.perf_counter()
        again = await cs.tick(sessions, cfg, T0 + timedelta(seconds=30))
        second = time.perf_counter() - started

        rounds, prompts = await _count(sessions, CheckinRound), await _count(sessions, OutboxMessage)
        assert report.opened == n == rounds == prompts and again.opened == 0, (report, again, rounds, prompts)
        return {"backend": backend, "plans": n, "setup_s": round(setup, 2), "tick_s": round(first, 3),
                "rounds_per_s": round(n / first), "second_tick_s": round(second, 3),
                "tracemalloc_peak_mb": round(peak / 2**20, 1), "rounds": rounds, "prompts": prompts}
    finally:
        if backend == "pg":
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await engine.dispose()


async def amain(args: argparse.Namespace) -> dict:
    n = args.n or (5_000 if args.quick else 100_000)
    backends = ["pg", "sqlite"] if args.backend == "both" else [args.backend]
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in backends:
            results.append(await run_backend(backend, n, Path(folder)))
    return {"benchmark": "checkins", "plans": n, "target_pg_tick_s": 5.0, "results": results,
            "peak_rss_mb": peak_rss_mb(),
            "pg_under_target": next((r["tick_s"] < 5.0 for r in results if r["backend"] == "pg"), None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench checkins", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 plans instead of 100,000")
    parser.add_argument("--n", type=int, help="number of plans")
    parser.add_argument("--backend", choices=["pg", "sqlite", "both"], default="both")
    args = parser.parse_args(argv)
    out = asyncio.run(amain(args))
    print(f"check-in tick: open {out['plans']:,} rounds and queue their prompts (Asia/Shanghai 09:00)")
    print(f"{'backend':<8} {'setup s':>8} {'tick s':>8} {'rounds/s':>10} {'2nd tick s':>11} {'tracemalloc MB':>15}")
    for r in out["results"]:
        print(f"{r['backend']:<8} {r['setup_s']:>8} {r['tick_s']:>8} {r['rounds_per_s']:>10,} {r['second_tick_s']:>11} "
              f"{r['tracemalloc_peak_mb']:>15}")
    print(f"peak RSS of the process: {out['peak_rss_mb']} MB")
    print(json.dumps(out))
    return 0
