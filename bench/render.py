"""What storing "what to render" in the outbox costs against storing the rendered payload.

    python -m bench render [--quick]

The outbox keeps ``{"message", "data", "locale"}`` and the sender renders it right before sending
(docs/ARCHITECTURE.md, "One way out"). Side by side in one run, per message and per form: the
sender's work before the request (render vs nothing), the bytes stored per row, and the time to
insert 10,000 rows of each form into an SQLite outbox. Telegram lets one bot send ~30 messages a
second, so the sender's budget is ~33 ms per message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from notifications.render import render_message, resolve_payload
from services.outbox import OutboxItem, enqueue_many, make_payload, message_payload

NOTICE_HTML = ("<b>停水通知</b>\n因管道检修，12月3日 9:00–15:00 3号楼、5号楼停水，请提前储水。"
               "如有困难请联系居委会 021-5555 0000。<i>谢谢配合！</i>") * 2
ALERT = {"alert_id": 123456, "reason": "no_answer", "name": "张玉兰 <b>", "committee": "大兴居委会",
         "room": "3-2-502", "phone": "+86 138 0013 8000", "last_answer": "ok",
         "last_answer_at": "2026-11-30T01:05:00+00:00", "contacts": ["李娜 (女儿)", "王强"],
         "level": 2, "levels": 3, "status": "open", "opened_at": "2026-12-01T01:35:00+00:00"}
CASES = {
    "notice (broadcast)": ("notices.notice", {"id": 42, "text": NOTICE_HTML, "reminder": False}),
    "check-in alert": ("checkins.alert", ALERT),
}


def per_message_us(fn, n: int) -> float:
    """Median over 5 runs of ``n`` calls, in microseconds per call."""
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


async def insert_seconds(payloads: list[dict], path: Path) -> float:
    from bot.db import create_engine, session_factory
    from services.models import Base

    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    now = datetime.now(UTC)
    items = [OutboxItem(f"b:{i}", 1000 + i, p, 3) for i, p in enumerate(payloads)]
    start = time.perf_counter()
    async with session_factory(engine)() as session:
        await enqueue_many(session, items, now=now)
        await session.commit()
    took = time.perf_counter() - start
    await engine.dispose()
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench render")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    n, rows = (500, 2_000) if args.quick else (5_000, 10_000)
    figures: dict[str, dict[str, float]] = {}
    print(f"{'message':<20} {'form':<10} {'sender µs/msg':>14} {'bytes/row':>10} {f'insert {rows:,} s':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, (name, data) in CASES.items():
            stored = message_payload(name, data, locale="zh_Hans")
            rendered = render_message(name, data, "zh_Hans")
            pre = make_payload(rendered.text, buttons=rendered.buttons)
            for form, payload in (("template", stored), ("rendered", pre)):
                us = per_message_us(lambda p=payload: resolve_payload(p), n)
                size = len(json.dumps(payload, ensure_ascii=False).encode())
                secs = asyncio.run(insert_seconds([payload] * rows, Path(tmp) / f"{name}-{form}.sqlite3"))
                figures[f"{name}:{form}"] = {"sender_us": round(us, 1), "bytes": size, "insert_s": round(secs, 3)}
                print(f"{label:<20} {form:<10} {us:>14.1f} {size:>10,} {secs:>14.3f}")
    print("Telegram's budget per message at 30/s: 33,333 µs")
    print(json.dumps({"bench": "render", "quick": args.quick, "figures": figures}))
    return 0
