"""The staff console's residents page and a segment's live count, on a committee and on a street.

``python -m bench console [--quick] [--no-postgres] [--requests N]``

Builds a synthetic street of 10 committees of 20,000 residents each (200,000; ``--quick``: 10 × 2,000),
with rule tags, a verified account for 30 % of them and a saved segment, on SQLite (a file under /tmp)
and PostgreSQL (``BENCH_DATABASE_URL``, in a schema of its own, dropped afterwards). It then serves the
real console (``bot.console`` on an aiohttp test server, signed in as a committee's staff and as the
street's; the heap settled as ``run`` settles it, ``bot.cli.settle_heap``) and times, inside the server,
every request of a staff member at the desk: the residents list (first page, a page deep in the list, a
name search of one, two and three characters — a surname, a given name, a full name: the last along the
trigram index, the others along the scope's rows —, a tag, a saved segment) and the live count of the
segment editor for five expressions, ``--requests`` times each (default 50, ``--quick``: 15) after a
warm-up. Prints a table (p50 and p99 server milliseconds per request and backend), then one line of
JSON with every figure.

Target: p99 < 300 ms for every request, on both backends, for the committee and the street.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import peak_rss_mb, postgres_url
from bot.cli import settle_heap
from bot.db import create_engine, session_factory
from services.models import Base, Region, RegionLevel, Segment, StaffRole

COMMITTEES = 10
TODAY = date(2026, 11, 28)
NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
SCHEMA = "bench_console"
BATCH = 20_000
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "秀英桂兰建国志强玉兰淑珍凤英丽华明华小红春梅海燕文杰德明国庆金花美玲晓东振华家豪子涵雨轩思远"
RESIDENT_COLUMNS = ("id", "committee_id", "name", "birth_date", "gender", "building", "unit", "room",
                    "living_alone", "hukou", "disability_level", "monthly_income", "status", "created_at",
                    "updated_at")
ACCOUNT_COLUMNS = ("id", "telegram_id", "chat_id", "first_name", "resident_id", "verified_at", "created_at")
EXPRESSIONS = (
    "age >= 80 and living_alone == true",
    '独居 且 年龄 >= 70',
    'has_tag("aged_80") or has_tag("living_alone")',
    'building in ("3", "5") and gender == "F"',
    "between(age, 60, 69) or disability_level >= 1",
)
SEGMENT = "age >= 80 and living_alone == true"
STREET_ID, FIRST_COMMITTEE = 10, 100


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest rank of the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


# ---------------------------------------------------------------------------------------------
# The synthetic street


def region_rows() -> list[dict]:
    rows = [dict(id=1, code="C", name="市", level=RegionLevel.city, parent_id=None, path="/C/"),
            dict(id=STREET_ID, code="S0", name="街道", level=RegionLevel.street, parent_id=1, path="/C/S0/")]
    for n in range(COMMITTEES):
        rows.append(dict(id=FIRST_COMMITTEE + n, code=f"K{n:02d}", name=f"居委{n:02d}", level=RegionLevel.committee,
                         parent_id=STREET_ID, path=f"/C/S0/K{n:02d}/"))
    return rows


def residents(per_committee: int, seed: int = 42):
    """Batches of resident tuples (RESIDENT_COLUMNS), committee after committee."""
    rnd = random.Random(seed)
    batch: list[tuple] = []
    rid = 0
    for n in range(COMMITTEES):
        for _ in range(per_committee):
            rid += 1
            age_days = int(rnd.triangular(0, 100, 62) * 365.25)
            batch.append((
                rid, FIRST_COMMITTEE + n, rnd.choice(SURNAMES) + rnd.choice(GIVEN) + rnd.choice(GIVEN[::2]),
                TODAY - timedelta(days=age_days), rnd.choice("MF"), str(rnd.randint(1, 40)), str(rnd.randint(1, 4)),
                str(rnd.randint(1, 18) * 100 + rnd.randint(1, 4)),
                None if rnd.random() < 0.1 else rnd.random() < 0.12, rnd.choice(("local", "local", "nonlocal")),
                rnd.randint(1, 4) if rnd.random() < 0.05 else None,
                None if rnd.random() < 0.3 else int(rnd.lognormvariate(8.2, 0.6)),
                "active" if rnd.random() < 0.97 else "moved_out", NOW, NOW))
            if len(batch) == BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def accounts(total: int, share: float = 0.3, seed: int = 9):
    """Batches of verified accounts (ACCOUNT_COLUMNS) of a ``share`` of the residents."""
    rnd = random.Random(seed)
    batch: list[tuple] = []
    for i, rid in enumerate(sorted(rnd.sample(range(1, total + 1), int(total * share))), start=1):
        batch.append((i, 10_000_000 + rid, 10_000_000 + rid, f"u{rid}", rid, NOW, NOW))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _sqlite_row(row: tuple) -> tuple:
    return tuple(v.replace(tzinfo=None).isoformat(sep=" ") if isinstance(v, datetime)
                 else v.isoformat() if isinstance(v, date) else v for v in row)


async def _copy(conn, raw, postgres: bool, table: str, columns: tuple[str, ...], batches) -> None:
    for batch in batches:
        if postgres:
            await raw.copy_records_to_table(table, records=batch, columns=columns, schema_name=SCHEMA)
        else:
            marks = ", ".join("?" for _ in columns)
            await conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                                       [_sqlite_row(r) for r in batch])


async def build(engine: AsyncEngine, per_committee: int) -> dict[str, float]:
    """Create the schema and fill it (residents, accounts, rule tags, staff, a segment)."""
    from services.models import Account, Staff
    from services.tags import ensure_default_tags, recompute_rule_tags

    timings: dict[str, float] = {}
    started = time.perf_counter()
    postgres = engine.dialect.name == "postgresql"
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(Region.__table__.insert(), region_rows())
    total = per_committee * COMMITTEES
    async with engine.begin() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        await _copy(conn, raw, postgres, "residents", RESIDENT_COLUMNS, residents(per_committee))
        await _copy(conn, raw, postgres, "accounts", ACCOUNT_COLUMNS, accounts(total))
        if postgres:
            for table in ("residents", "accounts"):
                await conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                           f"(SELECT max(id) FROM {table}))")
    timings["insert_s"] = time.perf_counter() - started
    started = time.perf_counter()
    async with session_factory(engine)() as session:
        await ensure_default_tags(session, NOW)
        await session.commit()
        await recompute_rule_tags(session, NOW, today=TODAY)
        for tid, region_id, role in ((1, FIRST_COMMITTEE, StaffRole.committee), (2, STREET_ID, StaffRole.street)):
            account = Account(telegram_id=tid, chat_id=tid, first_name=f"staff{tid}", created_at=NOW, locale="zh_Hans")
            session.add(account)
            await session.flush()
            session.add(Staff(account_id=account.id, region_id=region_id, role=role, created_at=NOW))
        for region_id in (FIRST_COMMITTEE, STREET_ID):  # each staff member's own
            session.add(Segment(region_id=region_id, name="高龄独居", expression=SEGMENT, created_at=NOW,
                                updated_at=NOW))
        await session.commit()
    timings["tags_s"] = time.perf_counter() - started
    started = time.perf_counter()
    async with engine.connect() as conn:
        if postgres:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE")
        else:
            await conn.exec_driver_sql("ANALYZE")
            await conn.commit()
    timings["analyze_s"] = time.perf_counter() - started
    return {k: round(v, 2) for k, v in timings.items()}


# ---------------------------------------------------------------------------------------------
# The console, timed inside the server


def timed_app(rt, durations: list[float]) -> web.Application:
    """A web app with the console of ``rt`` whose every request's server time lands in ``durations``."""
    from bot import console
    from bot.web import RUNTIME_KEY

    @web.middleware
    async def timing(request: web.Request, handler):
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            durations.append(time.perf_counter() - started)

    app = web.Application(middlewares=[timing])
    app[RUNTIME_KEY] = rt
    console.setup(app)
    return app


def runtime(engine: AsyncEngine, data_dir: Path):
    from bot.app import Runtime, build_bot, build_dispatcher
    from bot.settings import Settings
    from services.clock import ManualClock

    clock = ManualClock(NOW)
    settings = Settings(_env_file=None, bot_token="42:bench-console", data_dir=data_dir, secret_key="bench",
                        public_url="http://127.0.0.1:8080")
    sessions = session_factory(engine)
    return Runtime(settings, engine, sessions, build_bot(settings), build_dispatcher(settings, sessions, clock=clock),
                   clock)


async def sign_in(client: TestClient, rt, telegram_id: int) -> None:
    from services import console_auth
    from services.accounts import resolve_actor
    from services.models import Account

    async with rt.sessions() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == telegram_id))
        actor = await resolve_actor(s, account, language_code=None, default_locale="zh_Hans")
        link = await console_auth.issue_link(s, actor, now=rt.clock(), cfg=rt.dp["console_config"])
        await s.commit()
    response = await client.post("/console/login", data={"token": link.url.split("#t=", 1)[1]},
                                 allow_redirects=False)
    assert response.status == 303, response.status


def requests_of(segment_id: int, pages: int) -> list[tuple[str, str, dict[str, str]]]:
    """(name, path, query) of what a staff member asks at the desk."""
    out = [("residents: first page", "/console/residents", {}),
           ("residents: page deep in the list", "/console/residents", {"page": str(pages)}),
           ("residents: name search 王", "/console/residents", {"q": "王"}),
           ("residents: name search 建国", "/console/residents", {"q": "建国"}),
           ("residents: name search 王建国", "/console/residents", {"q": "王建国"}),
           ("residents: tag aged_80", "/console/residents", {"tag": "aged_80"}),
           ("residents: saved segment", "/console/residents", {"segment": str(segment_id)})]
    out += [(f"live count: {e}", "/console/segments/count", {"expression": e}) for e in EXPRESSIONS]
    return out


async def measure(rt, telegram_id: int, repeat: int, per_committee: int, scope: str) -> dict[str, Any]:
    durations: list[float] = []
    async with TestClient(TestServer(timed_app(rt, durations))) as client:
        await sign_in(client, rt, telegram_id)
        async with rt.sessions() as s:
            segment_id = await s.scalar(select(Segment.id).where(
                Segment.region_id == (FIRST_COMMITTEE if scope == "committee" else STREET_ID)))
        residents_in_scope = per_committee * (1 if scope == "committee" else COMMITTEES)
        pages = max(1, int(residents_in_scope * 0.97) // 50 // 2)  # halfway down the list
        out: dict[str, Any] = {}
        for name, path, query in requests_of(segment_id, pages):
            response = await client.get(path, params=query)  # warm-up (and a check)
            assert response.status == 200, (name, response.status, (await response.text())[:300])
            await response.read()
            durations.clear()
            for _ in range(repeat):
                response = await client.get(path, params=query)
                await response.read()
            times = list(durations)
            out[name] = {"p50_ms": ms(statistics.median(times)), "p99_ms": ms(percentile(times, 0.99)),
                         "max_ms": ms(max(times)), "n": len(times)}
        return out


async def run_backend(name: str, engine: AsyncEngine, per_committee: int, repeat: int, tmp: Path) -> dict:
    print(f"\n[{name}] building {per_committee * COMMITTEES:,} residents …", flush=True)
    result: dict[str, Any] = {"build": await build(engine, per_committee)}
    print(f"[{name}] built: {result['build']}", flush=True)
    rt = runtime(engine, tmp)
    settle_heap()  # as run and every webhook worker do once the runtime is built
    try:
        for scope, telegram_id in (("committee", 1), ("street", 2)):
            print(f"[{name}] timing the {scope}'s requests …", flush=True)
            result[scope] = await measure(rt, telegram_id, repeat, per_committee, scope)
    finally:
        await rt.bot.session.close()
    return result


def pg_engine(url: str) -> AsyncEngine:
    return create_engine(url, pool_size=4, connect_args={"server_settings": {"search_path": SCHEMA, "jit": "off"}})


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


async def run(args) -> dict:
    per_committee = args.per_committee or (2_000 if args.quick else 20_000)
    repeat = args.requests or (15 if args.quick else 50)
    report: dict[str, Any] = {"benchmark": "console", "per_committee": per_committee, "committees": COMMITTEES,
                              "street": per_committee * COMMITTEES, "requests": repeat, "backends": {},
                              "notes": ["server time: from the request reaching the console to its response, "
                                        "sign-in, CSRF and rendering included", "PostgreSQL JIT off"]}
    report["load_average_before"] = [round(x, 1) for x in os.getloadavg()]
    tmp = Path(args.sqlite).parent / "bench_console_data"
    tmp.mkdir(exist_ok=True)
    sqlite_path = Path(args.sqlite)
    remove_sqlite(sqlite_path)
    sqlite = create_engine(f"sqlite+aiosqlite:///{sqlite_path}")
    try:
        report["backends"]["sqlite"] = await run_backend("sqlite", sqlite, per_committee, repeat, tmp)
    finally:
        await sqlite.dispose()
        if not args.keep:
            remove_sqlite(sqlite_path)
    if not args.no_postgres:
        engine = pg_engine(postgres_url())
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
                await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        except (OSError, ConnectionError) as exc:
            report["notes"].append(f"PostgreSQL skipped: unreachable ({exc})")
            await engine.dispose()
            engine = None
        if engine is not None:
            try:
                report["backends"]["postgres"] = await run_backend("postgres", engine, per_committee, repeat, tmp)
            finally:
                if not args.keep:
                    async with engine.begin() as conn:
                        await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
                await engine.dispose()
    report["peak_rss_mb"] = peak_rss_mb()
    report["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
    return report


def print_table(report: dict) -> None:
    backends = list(report["backends"])
    print(f"\nConsole server time (ms), a committee of {report['per_committee']:,} and a street of "
          f"{report['street']:,} residents, {report['requests']} requests each")
    head = f"{'request':<58}"
    for b in backends:
        head += f" | {b + ' cttee p50':>17} {'p99':>6} | {'street p50':>10} {'p99':>6}"
    print(head)
    print("-" * len(head))
    names = list(next(iter(report["backends"].values()))["committee"]) if backends else []
    worst: dict[str, float] = {}
    for name in names:
        line = f"{name[:58]:<58}"
        for b in backends:
            c, s = report["backends"][b]["committee"][name], report["backends"][b]["street"][name]
            line += f" | {c['p50_ms']:>17.1f} {c['p99_ms']:>6.1f} | {s['p50_ms']:>10.1f} {s['p99_ms']:>6.1f}"
            worst[b] = max(worst.get(b, 0.0), c["p99_ms"], s["p99_ms"])
        print(line)
    print()
    for b in backends:
        print(f"{b}: built {report['backends'][b]['build']}")
    for note in report["notes"]:
        print("note:", note)
    verdict = {}
    for b in backends:
        verdict[b] = {"worst_p99_ms": worst[b], "meets_target": worst[b] < 300}
        print(f"{b}: worst p99 {worst[b]} ms (target < 300 ms): {'met' if worst[b] < 300 else 'NOT met'}")
    report["verdict"] = verdict
    print(f"peak RSS {report['peak_rss_mb']} MB; load average (1, 5, 15 min) before {report['load_average_before']}, "
          f"after {report['load_average_after']} on {os.cpu_count()} CPUs: server times grow with it")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench console", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="committees of 2,000 instead of 20,000")
    parser.add_argument("--per-committee", type=int, help="residents per committee (10 committees)")
    parser.add_argument("--requests", type=int, help="timed requests per kind (default 50, --quick 15)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--sqlite", default="/tmp/bench_console.sqlite3", help="SQLite file to (re)create")
    parser.add_argument("--keep", action="store_true", help=f"keep the SQLite file and the schema {SCHEMA}")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    print_table(report)
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
