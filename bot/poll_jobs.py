"""Wiring of polls into a running process: the scheduler's tick, with the results chart drawn into
DATA_DIR/reports (``bot.runtime.scheduled_ticks`` runs :func:`polls_tick`)."""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from notifications.poll_chart import write_poll_chart
from services import polls

if TYPE_CHECKING:
    from bot.app import Runtime

log = logging.getLogger(__name__)


def chart_writer(data_dir: str | Path) -> polls.ChartWriter:
    return partial(write_poll_chart, Path(data_dir) / "reports")


async def polls_tick(rt: Runtime, now: datetime) -> polls.PollTickReport:
    report = await polls.tick(rt.sessions, rt.dp["poll_config"], now, chart=chart_writer(rt.settings.data_dir))
    if report:
        log.info("polls tick: %s", report)
    return report
