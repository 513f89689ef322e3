"""``run --webhook --workers N``: N worker processes on one port, watched by this one.

Each worker is a whole bot (``run --webhook`` in its own process: web app, sender, ticks); the
kernel spreads connections over them (SO_REUSEPORT). This process only prepares what workers must
not race for (the keys in DATA_DIR, the database upgrade, the port when WEB_PORT is 0), starts them,
starts again one that dies, and passes SIGTERM/SIGINT on. The first worker calls ``setWebhook``.

Metrics: the workers share prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR: the
operator's folder, or a temporary one made here), so any worker's ``/metrics`` counts them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bot.metrics import MULTIPROC_ENV
from bot.settings import Settings

log = logging.getLogger("bot.workers")
STOP_SECONDS = 45.0  # a worker's drain (30 s) and sender hand-back (10 s), then SIGKILL
QUICK_EXIT_SECONDS = 10.0  # a worker that dies sooner than this after starting counts as a failed start
MAX_FAILED_STARTS = 5  # in a row, for one worker: then the configuration is wrong, stop everything


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process
    started: float
    failed_starts: int = 0


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket: it holds the port for the workers, which bind it
    with SO_REUSEPORT too; connections only ever go to listening sockets."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def worker_command(index: int, *, verbose: bool, set_webhook: bool) -> list[str]:
    command = [sys.executable, "-m", "bot", *(["-v"] if verbose else []), "run", "--webhook"]
    if index > 0 or not set_webhook:
        command.append("--no-set-webhook")
    return command


def metrics_dir() -> tuple[Path, bool]:
    """The multiprocess folder, emptied of an earlier run's files; True if made here (removed after)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    return Path(tempfile.mkdtemp(prefix="communitybot-metrics-")), True


async def _prepare(settings: Settings) -> None:
    from bot.db import create_engine
    from bot.migrate import upgrade

    settings.ensure_secret_key()
    settings.ensure_data_key()
    settings.ensure_webhook_secret()
    engine = create_engine(settings.db_url, data_keys=settings.data_keys())
    try:
        await upgrade(engine, settings=settings)
    finally:
        await engine.dispose()


async def supervise(settings: Settings, workers: int, *, verbose: bool = False, set_webhook: bool = True) -> int:
    """Run ``workers`` webhook workers until SIGTERM/SIGINT; 0 on a clean stop, 1 if workers keep failing."""
    if not settings.public_url:
        raise SystemExit("configuration error: PUBLIC_URL: required by run --webhook "
                         "(the public https:// base URL Telegram reaches)")
    await _prepare(settings)
    holder = reserve_port(settings.web_host, settings.web_port)
    port = holder.getsockname()[1]
    folder, made_here = metrics_dir()
    env = {**os.environ, "WEB_PORT": str(port), MULTIPROC_ENV: str(folder)}
    if settings.webhook_secret and "WEBHOOK_SECRET" not in env:
        env["WEBHOOK_SECRET"] = settings.webhook_secret  # read from DATA_DIR here, once
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running: dict[int, Worker] = {}

    async def start(index: int, failed_starts: int = 0) -> None:
        command = worker_command(index, verbose=verbose, set_webhook=set_webhook)
        process = await asyncio.create_subprocess_exec(*command, env=env)
        running[index] = Worker(index, process, time.monotonic(), failed_starts)
        print(f"worker {index} started, pid {process.pid}", flush=True)

    print(f"supervising {workers} webhook workers on http://{settings.web_host}:{port}", flush=True)
    status = 0
    try:
        for index in range(workers):
            await start(index)
        while not stop.is_set():
            waits = {asyncio.ensure_future(w.process.wait()): w for w in running.values()}
            stopping = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait([*waits, stopping], return_when=asyncio.FIRST_COMPLETED)
            for future in [*waits, stopping]:
                if future not in done:
                    future.cancel()
            if stop.is_set():
                break
            for future in done:
                worker = waits.get(future)
                if worker is None:
                    continue
                code = worker.process.returncode
                quick = time.monotonic() - worker.started < QUICK_EXIT_SECONDS
                failed = worker.failed_starts + 1 if quick else 0
                log.warning("worker %d (pid %d) exited with %s; starting it again", worker.index,
                            worker.process.pid, code)
                print(f"worker {worker.index} exited ({code})", flush=True)
                _mark_dead(worker.process.pid, folder)
                if failed >= MAX_FAILED_STARTS:
                    log.error("worker %d failed %d starts in a row: stopping", worker.index, failed)
                    status = 1
                    stop.set()
                    break
                await asyncio.sleep(min(5.0, 0.5 * 2 ** failed) if quick else 0.5)
                await start(worker.index, failed)
    finally:
        await _stop_all(list(running.values()))
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        holder.close()
        if made_here:
            shutil.rmtree(folder, ignore_errors=True)
    print("workers stopped", flush=True)
    return status


def _mark_dead(pid: int, folder: Path) -> None:
    """Drop a dead worker's live gauges (its counters stay: totals never go down)."""
    with contextlib.suppress(Exception):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(folder))


async def _stop_all(workers: list[Worker]) -> None:
    alive = [w for w in workers if w.process.returncode is None]
    for worker in alive:
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signal.SIGTERM)
    if not alive:
        return
    _done, late = await asyncio.wait([asyncio.ensure_future(w.process.wait()) for w in alive],
                                     timeout=STOP_SECONDS)
    if late:
        for worker in alive:
            if worker.process.returncode is None:
                log.error("worker %d (pid %d) did not stop in %ss: killed", worker.index, worker.process.pid,
                          STOP_SECONDS)
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
        await asyncio.gather(*(w.process.wait() for w in alive))
    for worker in alive:
        print(f"worker {worker.index} stopped ({worker.process.returncode})", flush=True)
