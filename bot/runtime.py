"""Background jobs of a running bot: the scheduler's ticks and the outbox sender."""

from __future__ import annotations

from bot.app import Runtime


def add_background_jobs(rt: Runtime) -> None:
    return None
