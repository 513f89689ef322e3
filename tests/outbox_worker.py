"""A stand-alone outbox sender process, for the kill test and the benchmark.

    python tests/outbox_worker.py --db URL --api http://127.0.0.1:PORT [--rate 500] [--batch 20]
                                  [--lease 2] [--worker-id NAME] [--wait-for-go]

Runs until SIGTERM/SIGINT (then finishes what is in flight) or SIGKILL (then it does not).
Prints one line "ready" on stdout once imported; with --wait-for-go it then waits for a line on
stdin before it starts (importing aiogram takes seconds: a test can start the restart early).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import timedelta

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

import services.models  # noqa: F401
from bot.db import create_engine, session_factory
from notifications.sender import OutboxSender


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--per-chat-rate", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--wait-for-go", action="store_true")
    args = parser.parse_args(argv)

    engine = create_engine(args.db)
    bot = Bot(token="42:sandbox", session=AiohttpSession(api=TelegramAPIServer.from_base(args.api)))
    sender = OutboxSender(
        bot, session_factory(engine), rate=args.rate, per_chat_rate=args.per_chat_rate,
        worker_id=args.worker_id, batch=args.batch, lease=timedelta(seconds=args.lease),
        poll_interval=args.poll, reclaim_every=min(1.0, args.lease / 2),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        # Without "go" (stdin closed: whoever started us is gone) there is nothing to do.
        if not args.wait_for_go or await loop.run_in_executor(None, sys.stdin.readline):
            await sender.run(stop)
    finally:
        await bot.session.close()
        await engine.dispose()
    print(f"counters {sender.counters}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
