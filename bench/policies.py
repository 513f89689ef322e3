"""Policy matching over a city-sized registry: 50 policies compiled to SQL, against per-resident Python.

``python -m bench policies [--quick] [--residents N] [--no-postgres] [--batch-only] [--keep]``

Builds the synthetic registry of ``bench segments`` (1,000,000 residents, ``--quick``: 20,000, across
200 committees, rule and manual tags) on SQLite (a file under /tmp) and PostgreSQL
(``BENCH_DATABASE_URL``, in a schema of its own, dropped afterwards unless ``--keep``), gives 20 % of
residents questionnaire answers, and loads 50 policies (the ten sample rules and 40 variants over the
registry, tags and answers) through the real loader. Matched for a city-wide staff member, two ways
side by side: all 50 at once (``services.policies.match_all``, what a report or an overview needs: one
pass over the residents and one over the cases) — the figure against the target — and one by one as
``/policy_match CODE`` does (``match_policy``, timed per policy; ``--batch-only`` skips it); both must
give the same counts. Beside them: the Python evaluator over a 10,000-resident sample (rows, answers
and tags loaded once, only the loop timed), scaled up to the registry's size. Prints a table, then one
line of JSON with every figure.

Target: PostgreSQL < 60 s for all 50 policies over 1,000,000 residents.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import textwrap
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

import bench.segments as seg
from bench import peak_rss_mb, postgres_url
from bot.db import create_engine, session_factory
from services import policies as pol
from services.expressions import Truth, evaluate
from services.models import PolicyAnswer, Resident, ResidentStatus, ResidentTag, Tag
from services.policies.questionnaire import answer_value

SCHEMA = "bench_policies"
PUSH_INTERVAL = timedelta(days=90)
SAMPLE = Path(__file__).resolve().parent.parent / "policies" / "sample"
ANSWERED = 0.2
PY_SAMPLE = 10_000
FIELDS = ("household_income_per_head", "has_ltc_assessment", "needs_daily_help", "home_type", "has_emergency_device")
SAMPLE_RULES = (
    'age >= 65 and hukou == "local"',
    "age >= 80 or (age >= 60 and living_alone)",
    "age >= 60 and needs_daily_help and not has_ltc_assessment",
    "age >= 70 and living_alone and has_emergency_device == false",
    'age >= 60 and home_type in ("own", "public_rent")',
    'hukou == "local" and household_income_per_head < 1550',
    'hukou == "local" and household_income_per_head >= 1550 and household_income_per_head < 3100',
    "disability_level >= 1 and household_income_per_head < 3100",
    "disability_level in (1, 2)",
    "age >= 80 and household_income_per_head < 3100",
)


def variant_rules(n: int, seed: int = 3) -> list[str]:
    """``n`` more rules in the shapes policies take: age bands, incomes, tags, answers, registry facts."""
    rnd = random.Random(seed)
    shapes = (
        lambda: f"between(age, {(a := rnd.randrange(55, 95, 5))}, {a + 4}) and hukou == \"local\"",
        lambda: f"age >= {rnd.randrange(60, 95, 5)} and household_income_per_head < {rnd.randrange(1000, 5000, 250)}",
        lambda: f'has_tag("{rnd.choice(("lives_alone", "aged_80", "disability", "low_income"))}") and '
                f"has_emergency_device == false",
        lambda: f"monthly_income < {rnd.randrange(1000, 4000, 100)} and age >= {rnd.randrange(50, 80, 5)}",
        lambda: f'(living_alone or has_tag("{rnd.choice(("volunteer", "caregiver", "chronic_illness"))}")) '
                f"and age >= {rnd.randrange(60, 90, 5)} and not has_ltc_assessment",
        lambda: f'gender == "{rnd.choice("MF")}" and disability_level <= {rnd.randint(1, 4)} and '
                f"household_income_per_head < {rnd.randrange(2000, 6000, 500)}",
        lambda: f'home_type == "{rnd.choice(("own", "public_rent", "private_rent"))}" and '
                f"building in (\"{rnd.randint(1, 30)}\", \"{rnd.randint(1, 30)}\") and age >= 60",
        lambda: f"needs_daily_help and (age >= {rnd.randrange(60, 90, 5)} or disability_level in (1, 2))",
    )
    return [shapes[i % len(shapes)]() for i in range(n)]


def catalogue(directory: Path, rules: list[str]) -> None:
    (directory / "fields.yaml").write_text((SAMPLE / "fields.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    items = []
    for i, rule in enumerate(rules):
        items.append(textwrap.dedent(f"""\
          - code: bench_{i:02d}
            title: {{zh: 政策{i}, en: Policy {i}}}
            summary: {{zh: 样例, en: sample}}
            rule: {json.dumps(rule, ensure_ascii=False)}
            benefit: {{text: {{zh: 补贴, en: a subsidy}}}}
            apply: {{where: {{zh: 居委会, en: the committee}}}}
            valid_from: 2024-01-01
        """))
    (directory / "bench.yaml").write_text("sample: true\npolicies:\n" + "".join(
        textwrap.indent(item, "") for item in items), encoding="utf-8")


def answers(count: int, seed: int = 11):
    rnd = random.Random(seed)
    batch = []
    for rid in range(1, count + 1):
        if rnd.random() >= ANSWERED:
            continue
        income = rnd.randrange(500, 8000, 50)
        batch += [
            (rid, "household_income_per_head", income, None, None, seg.NOW),
            (rid, "has_ltc_assessment", None, rnd.random() < 0.2, None, seg.NOW),
            (rid, "needs_daily_help", None, rnd.random() < 0.15, None, seg.NOW),
            (rid, "home_type", None, None, rnd.choice(("own", "public_rent", "private_rent")), seg.NOW),
            (rid, "has_emergency_device", None, rnd.random() < 0.3, None, seg.NOW),
        ]
        if len(batch) >= seg.BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def build(engine: AsyncEngine, count: int, rules: list[str]) -> dict:
    seg.SCHEMA = SCHEMA  # the registry builder of bench segments, into this benchmark's own schema
    timings = await seg.load(engine, count)
    started = time.perf_counter()
    postgres = engine.dialect.name == "postgresql"
    columns = ("resident_id", "field", "value_int", "value_bool", "value_str", "answered_at")
    async with engine.begin() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        for batch in answers(count):
            if postgres:
                await raw.copy_records_to_table("policy_answers", records=batch, columns=columns, schema_name=SCHEMA)
            else:
                await conn.exec_driver_sql(
                    f"INSERT INTO policy_answers ({', '.join(columns)}) VALUES (?, ?, ?, ?, ?, ?)",
                    [seg._sqlite_row(r) for r in batch])
    with tempfile.TemporaryDirectory() as tmp:
        catalogue(Path(tmp), rules)
        async with session_factory(engine)() as session:
            await pol.load_catalogue(session, Path(tmp), seg.NOW)
            await session.commit()
    async with engine.connect() as conn:
        if postgres:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE policy_answers")
        else:
            await conn.exec_driver_sql("ANALYZE")
            await conn.commit()
    timings["answers_and_catalogue_s"] = time.perf_counter() - started
    return {k: round(v, 2) for k, v in timings.items()}


def counts(m: pol.MatchResult) -> dict:
    return {"eligible": m.eligible, "unknown": m.unknown, "not_eligible": m.not_eligible}


async def match_each(engine: AsyncEngine, codes: list[str]) -> dict:
    """Policy by policy, as /policy_match does (no preview): seconds, counts and memory of each."""
    out = {}
    actor = seg.city_staff()
    async with session_factory(engine)() as session:
        fields = await pol.load_sql_fields(session)
        for code in codes:
            rss_before = peak_rss_mb()
            started = time.perf_counter()
            m = await pol.match_policy(session, actor, code, today=seg.TODAY, now=seg.NOW,
                                       push_interval=PUSH_INTERVAL, fields=fields, preview=0)
            out[code] = {**counts(m), "s": round(time.perf_counter() - started, 3), "peak_rss_mb": peak_rss_mb(),
                         "rss_growth_mb": round(peak_rss_mb() - rss_before, 1)}
    return out


async def match_batch(engine: AsyncEngine) -> dict:
    """Every policy in force at once (``match_all``), from loading the fields to the last count."""
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    async with session_factory(engine)() as session:
        results = await pol.match_all(session, seg.city_staff(), today=seg.TODAY, now=seg.NOW,
                                      push_interval=PUSH_INTERVAL)
    return {"s": round(time.perf_counter() - started, 2), "peak_rss_mb": peak_rss_mb(),
            "rss_growth_mb": round(peak_rss_mb() - rss_before, 1), "policies": {m.code: counts(m) for m in results}}


async def run_backend(name: str, engine: AsyncEngine, count: int, rules: list[str], each: bool) -> dict:
    print(f"\n[{name}] building {count:,} residents, answers and 50 policies …", flush=True)
    built = await build(engine, count, rules)
    print(f"[{name}] built in {sum(built.values()):.1f} s; matching all at once …", flush=True)
    codes = [f"bench_{i:02d}" for i in range(len(rules))]
    batch = await match_batch(engine)
    out = {"build": built, "total_s": batch["s"], "batch": batch}
    if each:
        print(f"[{name}] all at once in {batch['s']:.1f} s; one by one …", flush=True)
        started = time.perf_counter()
        out["policies"] = await match_each(engine, codes)
        out["each_total_s"] = round(time.perf_counter() - started, 2)
        out["same_counts"] = all(counts_of(out["policies"][c]) == batch["policies"][c] for c in codes)
    return out


def counts_of(row: dict) -> dict:
    return {k: row[k] for k in ("eligible", "unknown", "not_eligible")}


async def python_side(engine: AsyncEngine, count: int, codes: list[str]) -> dict:
    """The evaluator over the first PY_SAMPLE active residents with their answers and tags, scaled up."""
    async with session_factory(engine)() as session:
        declared = await pol.declared_fields(session)
        policies = {p.code: p for p in await pol.policies_in_force(session, seg.TODAY)}
        rows = [dict(r._mapping) for r in await session.execute(
            select(Resident.id, Resident.birth_date, Resident.gender, Resident.building, Resident.living_alone,
                   Resident.hukou, Resident.disability_level, Resident.monthly_income)
            .where(Resident.status == ResidentStatus.active).order_by(Resident.id).limit(PY_SAMPLE))]
        ids = [r["id"] for r in rows]
        limit = max(ids) if ids else 0
        given: dict[int, dict] = {}
        for a in await session.scalars(select(PolicyAnswer).where(PolicyAnswer.resident_id <= limit)):
            given.setdefault(a.resident_id, {})[a.field] = answer_value(a, declared[a.field].type)
        tags: dict[int, set[str]] = {}
        for rid, code in await session.execute(select(ResidentTag.resident_id, Tag.code).join(Tag)
                                               .where(ResidentTag.resident_id <= limit)):
            tags.setdefault(rid, set()).add(code)
    for r in rows:
        r.update(given.get(r["id"], {}))
    empty: set[str] = set()
    out = {}
    scale = count / max(1, len(rows))
    for code in codes:
        tree = policies[code].rule
        started = time.perf_counter()
        n = sum(1 for r in rows if evaluate(tree, r, today=seg.TODAY, tags=tags.get(r["id"], empty)) is Truth.TRUE)
        seconds = time.perf_counter() - started
        out[code] = {"sample_eligible": n, "sample_s": round(seconds, 4), "scaled_s": round(seconds * scale, 2)}
    return {"sample": len(rows), "scale": round(scale, 1), "policies": out,
            "total_scaled_s": round(sum(v["scaled_s"] for v in out.values()), 1)}


async def run(args) -> dict:
    count = args.residents or (20_000 if args.quick else 1_000_000)
    rules = list(SAMPLE_RULES) + variant_rules(40)
    codes = [f"bench_{i:02d}" for i in range(len(rules))]
    report: dict = {"benchmark": "policies", "residents": count, "policies": len(rules), "backends": {},
                    "notes": [], "rules": dict(zip(codes, rules, strict=True))}
    sqlite_path = Path(args.sqlite)
    seg.remove_sqlite(sqlite_path)
    sqlite = create_engine(f"sqlite+aiosqlite:///{sqlite_path}")
    try:
        report["backends"]["sqlite"] = await run_backend("sqlite", sqlite, count, rules, not args.batch_only)
        print("[python] evaluating a sample …", flush=True)
        report["python"] = await python_side(sqlite, count, codes)
    finally:
        await sqlite.dispose()
        if not args.keep:
            seg.remove_sqlite(sqlite_path)
    if not args.no_postgres:
        engine = create_engine(postgres_url(), pool_size=2,
                               connect_args={"server_settings": {"search_path": SCHEMA, "jit": "off"}})
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
                report["backends"]["postgres"] = await run_backend("postgres", engine, count, rules,
                                                                   not args.batch_only)
            finally:
                if not args.keep:
                    async with engine.begin() as conn:
                        await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
                await engine.dispose()
    report["peak_rss_mb"] = peak_rss_mb()
    return report


def table(report: dict) -> str:
    backends = list(report["backends"])
    each = all("policies" in report["backends"][b] for b in backends)
    head = f"{'policy':<10} {'rule':<58} " + " ".join(f"{b + ' n':>10}" + (f" {b + ' s':>10}" if each else "")
                                                       for b in backends) + f" {'python s*':>10}"
    lines = [f"policy matching: {report['residents']:,} residents × {report['policies']} policies "
             f"(* Python over {report['python']['sample']:,} residents, scaled ×{report['python']['scale']})", head]
    for code, rule in report["rules"].items():
        cells = []
        for b in backends:
            backend = report["backends"][b]
            cells.append(f"{backend['batch']['policies'][code]['eligible']:>10,}"
                         + (f" {backend['policies'][code]['s']:>10.3f}" if each else ""))
        lines.append(f"{code:<10} {rule[:58]:<58} " + " ".join(cells)
                     + f" {report['python']['policies'][code]['scaled_s']:>10.2f}")
    if each:
        totals = " ".join(f"{'':>10} {report['backends'][b]['each_total_s']:>10.2f}" for b in backends)
        lines.append(f"{'one by one':<69} {totals} {report['python']['total_scaled_s']:>10.1f}")
    for b in backends:
        backend = report["backends"][b]
        same = "" if not each else ("; same counts as one by one" if backend["same_counts"] else
                                    "; COUNTS DIFFER from one by one")
        lines.append(f"{b}: all {report['policies']} policies at once {backend['total_s']:.2f} s "
                     f"(RSS +{backend['batch']['rss_growth_mb']} MB){same}")
    lines.append(f"python (scaled): {report['python']['total_scaled_s']:.1f} s; peak RSS {report['peak_rss_mb']} MB")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench policies")
    parser.add_argument("--quick", action="store_true", help="20,000 residents instead of 1,000,000")
    parser.add_argument("--residents", type=int)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--batch-only", action="store_true", help="skip matching the policies one by one")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file and the PostgreSQL schema")
    parser.add_argument("--sqlite", default="/tmp/bench_policies.sqlite3")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    print()
    print(table(report))
    pg = report["backends"].get("postgres")
    if pg and report["residents"] >= 1_000_000:
        report["target_postgres_under_60_s"] = pg["total_s"] < 60
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
