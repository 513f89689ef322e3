"""A stand-alone bot process running the production background work (restart test).

    python tests/checkin_worker.py --db URL --api http://127.0.0.1:PORT --data-dir DIR
                                   [--tick 1s] [--reminder 3s] [--escalate 8s] [--ack 30s]
                                   [--resolve 1h] [--wait-for-go]

It opens the runtime the way ``communitybot run`` does (``bot.app.open_runtime``, without
migrations: the test created the schema) and runs the same APScheduler ticks and outbox sender
(``bot.runtime.add_background_jobs``), but does not poll for updates: the test's own bot does.
Prints "ready" once imported; with --wait-for-go it then waits for a line on stdin, so that a test
can have the replacement process imported before it kills the first one. Runs until SIGTERM/SIGINT
or SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import services.models  # noqa: F401
from bot.app import background_running, open_runtime
from bot.runtime import add_background_jobs
from bot.settings import Settings

TOKEN = "42:sandbox"


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--tick", default="1s")
    parser.add_argument("--reminder", default="3s")
    parser.add_argument("--escalate", default="8s")
    parser.add_argument("--ack", default="30s")
    parser.add_argument("--resolve", default="1h")
    parser.add_argument("--wait-for-go", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    if args.wait_for_go:
        await loop.run_in_executor(None, sys.stdin.readline)

    settings = Settings(_env_file=None, bot_token=TOKEN, telegram_api_base=args.api, database_url=args.db,
                        data_dir=Path(args.data_dir), secret_key="test-secret-key", tick_interval=args.tick,
                        checkin_reminder_after=args.reminder, checkin_escalate_after=args.escalate,
                        alert_ack_timeout=args.ack, alert_resolve_timeout=args.resolve)
    async with open_runtime(settings, migrate=False) as rt:
        # The production background work (bot.runtime): the sender and the APScheduler ticks.
        add_background_jobs(rt, rate=200, per_chat_rate=50, lease=timedelta(seconds=2), poll_interval=0.05,
                            reclaim_every=1.0)
        async with background_running(rt):
            print("running", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
