"""``python -m bench import [--quick]``: registry import speed (rows/s) and memory, CSV and XLSX.

Each case runs in a fresh subprocess so its peak RSS is its own. Target: ≥ 5,000 rows/s for CSV on
SQLite, with memory bounded (it should not grow with the file: compare the two sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import bench_data_keys, peak_rss_mb, postgres_reachable, postgres_url


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    from openpyxl import Workbook

    from services.demo import synthetic_rows

    csv_path, xlsx_path = folder / f"registry-{rows}.csv", folder / f"registry-{rows}.xlsx"
    wb = Workbook(write_only=True)
    ws = wb.create_sheet()
    with csv_path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        for _line, cells in synthetic_rows(rows, phone_prefix="139", seed=rows):
            writer.writerow(cells)
            ws.append(cells)
    wb.save(xlsx_path)
    return csv_path, xlsx_path


async def run_case(path: Path, url: str) -> dict:
    from sqlalchemy import text

    from bot.db import create_engine, session_factory
    from services.models import Base
    from services.regions import ensure_demo_regions, get_region
    from services.registry import import_registry, read_rows

    engine = create_engine(url, data_keys=bench_data_keys())
    async with engine.begin() as conn:
        if url.startswith("postgresql"):
            await conn.execute(text("DROP SCHEMA IF EXISTS bench_import CASCADE"))
            await conn.execute(text("CREATE SCHEMA bench_import"))
    if url.startswith("postgresql"):
        await engine.dispose()
        engine = create_engine(url, connect_args={"server_settings": {"search_path": "bench_import"}},
                               data_keys=bench_data_keys())
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = session_factory(engine)
    out = {}
    async with sessions() as session:
        await ensure_demo_regions(session)
        await session.commit()
        committee = await get_region(session, "DXYC")
        for phase in ("first", "again"):
            t0 = time.perf_counter()
            report = await import_registry(session, committee, read_rows(path), secret_key="bench",
                                           now=datetime.now(UTC))
            elapsed = time.perf_counter() - t0
            out[phase] = {"seconds": round(elapsed, 2), "rows_per_s": round(report.total_rows / elapsed),
                          "imported": report.imported, "unchanged": report.unchanged,
                          "rejected": len(report.rejected)}
    if url.startswith("postgresql"):
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA bench_import CASCADE"))
    await engine.dispose()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def _child(args: argparse.Namespace) -> int:
    print(json.dumps(asyncio.run(run_case(Path(args.file), args.url))))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench import")
    parser.add_argument("--quick", action="store_true", help="10,000 rows instead of 100,000")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--case-file", dest="file", help=argparse.SUPPRESS)
    parser.add_argument("--case-url", dest="url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.file:
        return _child(args)
    sizes = [args.rows] if args.rows else ([2_000, 10_000] if args.quick else [10_000, 100_000])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        folder = Path(tmp)
        for rows in sizes:
            csv_path, xlsx_path = write_files(folder, rows)
            cases = [("csv", "sqlite", csv_path), ("xlsx", "sqlite", xlsx_path)]
            if postgres_reachable():
                cases.append(("csv", "postgresql", csv_path))
            for fmt, backend, path in cases:
                sqlite_url = f"sqlite+aiosqlite:///{folder / f'{fmt}-{rows}.db'}"
                url = postgres_url() if backend == "postgresql" else sqlite_url
                proc = subprocess.run([sys.executable, "-m", "bench", "import", "--case-file", str(path),
                                       "--case-url", url], capture_output=True, text=True, check=True)
                figures = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append({"rows": rows, "format": fmt, "backend": backend, **figures})
    print(f"{'rows':>8} {'format':>6} {'backend':>10} {'first s':>8} {'rows/s':>8} {'re-import rows/s':>17} "
          f"{'peak RSS MB':>12}")
    for r in results:
        print(f"{r['rows']:>8,} {r['format']:>6} {r['backend']:>10} {r['first']['seconds']:>8} "
              f"{r['first']['rows_per_s']:>8,} {r['again']['rows_per_s']:>17,} {r['peak_rss_mb']:>12}")
    csv_sqlite = [r for r in results if r["format"] == "csv" and r["backend"] == "sqlite"]
    print(json.dumps({"benchmark": "import", "target_csv_sqlite_rows_per_s": 5000,
                      "csv_sqlite_rows_per_s": csv_sqlite[-1]["first"]["rows_per_s"], "cases": results}))
    return 0
