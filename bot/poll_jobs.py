"""Wiring of polls into a running process: the scheduler's tick, with the results chart drawn into
the config's reports folder (``bot.runtime.scheduled_ticks`` runs :func:`polls_tick`)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from notifications.poll_chart import chart_writer
from services import polls

if TYPE_CHECKING:
    from bot.app import Runtime

log = logging.getLogger(__name__)


async def polls_tick(rt: Runtime, now: datetime) -> polls.PollTickReport:
    cfg: polls.PollConfig = rt.dp["poll_config"]
    report = await polls.tick(rt.sessions, cfg, now, chart=chart_writer(cfg))
    if report:
        log.info("polls tick: %s", report)
    return report
