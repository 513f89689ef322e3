"""A stand-alone bot process running the production background work (restart test).

    python tests/checkin_worker.py --db URL --api http://127.0.0.1:PORT --data-dir DIR [--tick 1s]
                                   [--reminder 30m] [--escalate 90m] [--ack …] [--resolve …]

It opens the runtime the way ``communitybot run`` does (``bot.app.open_runtime``, without
migrations: the test created the schema) and runs the same APScheduler ticks and outbox sender
(``bot.runtime.add_background_jobs``), but does not poll for updates: the test's own bot does.
That work is :func:`working`, which a test can also run in its own process (the replacement of a
killed worker: a new runtime, scheduler and sender, nothing carried over but the database).

Its clock is the test's: it prints "ready" once imported and waits for a first line on stdin, an
ISO instant, which its clock reads from then on at the wall clock's pace; each further line moves
it forward to the instant given (never back). So a test moves the worker's time with its own
instead of waiting for it. Runs until SIGTERM/SIGINT or SIGKILL. Durations not given are the
settings' defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import services.models  # noqa: F401
from bot.app import Runtime, background_running, open_runtime
from bot.runtime import add_background_jobs
from bot.settings import Settings
from services.clock import Clock
from tests.helpers import PacedClock

TOKEN = "42:sandbox"


def worker_settings(db: str, api: str, data_dir: Path, tick: str = "1s", **durations: str) -> Settings:
    """A worker's settings: the test's database, sandbox and data folder (the same data key), its
    tick interval, and any of checkin_reminder_after, checkin_escalate_after, alert_ack_timeout,
    alert_resolve_timeout (the settings' defaults otherwise)."""
    return Settings(_env_file=None, bot_token=TOKEN, telegram_api_base=api, database_url=db, data_dir=data_dir,
                    secret_key="test-secret-key", tick_interval=tick, **durations)


@contextlib.asynccontextmanager
async def working(settings: Settings, clock: Clock) -> AsyncIterator[Runtime]:
    """The production background work of a process on ``clock`` while the block runs: the runtime
    opened as ``communitybot run`` opens it, the outbox sender and the APScheduler ticks."""
    async with open_runtime(settings, migrate=False, clock=clock) as rt:
        add_background_jobs(rt, rate=200, per_chat_rate=50, lease=timedelta(seconds=2), poll_interval=0.05,
                            reclaim_every=1.0)
        async with background_running(rt):
            yield rt


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--tick", default="1s")
    for name in ("reminder", "escalate", "ack", "resolve"):
        parser.add_argument(f"--{name}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lines = asyncio.StreamReader()
    stdin, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)
    print("ready", flush=True)
    clock = PacedClock(datetime.fromisoformat((await lines.readline()).decode().strip()))

    async def follow_the_test_clock() -> None:
        async for line in lines:
            clock.advance(max(timedelta(0), datetime.fromisoformat(line.decode().strip()) - clock()))

    durations = {setting: value for setting, value in (
        ("checkin_reminder_after", args.reminder), ("checkin_escalate_after", args.escalate),
        ("alert_ack_timeout", args.ack), ("alert_resolve_timeout", args.resolve)) if value}
    settings = worker_settings(args.db, args.api, Path(args.data_dir), args.tick, **durations)
    following = asyncio.create_task(follow_the_test_clock())
    try:
        async with working(settings, clock):
            print("running", flush=True)
            await stop.wait()
    finally:
        following.cancel()
        stdin.close()


if __name__ == "__main__":
    asyncio.run(main())
