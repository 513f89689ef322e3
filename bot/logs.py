"""Logging set-up. Database drivers log SQL parameters (phones!) at DEBUG: they stay at WARNING."""

from __future__ import annotations

import logging

QUIET = ("aiosqlite", "sqlalchemy.engine", "asyncpg", "aiohttp.access", "alembic.runtime.plugins",
         "apscheduler.executors.default", "apscheduler.scheduler")


def quiet_drivers() -> None:
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_drivers()
