"""Benchmarks: ``python -m bench NAME [--quick]`` runs ``bench/NAME.py``'s ``main(argv)``.

What several of them share: the PostgreSQL to measure on (``BENCH_DATABASE_URL``, default the local
``test`` database), whether it answers, and the process's peak memory.
"""

from __future__ import annotations

import os
import resource
import socket
import sys

from sqlalchemy.engine import make_url

from bot.settings import async_driver_url

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
# Synthetic residents' phones are encrypted like real ones (the cost is part of what is measured).
BENCH_DATA_KEY = "bench-data-key-for-synthetic-phone-numbers"


def bench_data_keys():
    from services.identity import DataKeys

    return DataKeys(BENCH_DATA_KEY)


def postgres_url() -> str:
    return async_driver_url(os.environ.get("BENCH_DATABASE_URL", DEFAULT_POSTGRES))


def postgres_reachable(url: str | None = None) -> bool:
    """True when something listens where ``url`` (default ``postgres_url()``) points."""
    parsed = make_url(url or postgres_url())
    try:
        socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5432), timeout=1).close()
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident memory (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)
