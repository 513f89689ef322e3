"""The record of scheduled jobs that run once per period (the nightly rule tags, the weekly check-in
reports): one row per job and period, claimed by the worker that runs it (``services.jobs``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base


class JobRun(Base):
    """The primary key (job, period) lets one worker in: the one whose INSERT commits first."""

    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(32), primary_key=True)  # a night's local date, a week's Monday
    worker: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
