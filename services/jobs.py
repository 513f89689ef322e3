"""Jobs that must run once per period across every worker (the nightly rule tags, the weekly check-in
reports): a claim row in ``job_runs`` with the primary key (job, period), inserted in the job's own
transaction. Interval ticks need none of this: each claims its work from the database already.

Why in the job's transaction: if the job fails or its worker dies before the commit, the claim goes
with it and the next run (this worker's next trigger, or another worker's start) does the period's
work; once committed, the work and its record stand together. On PostgreSQL a second worker's INSERT
of the same key waits for the first one's transaction and then finds the row (or, after a rollback,
takes the claim itself); SQLite has one writer (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.models.jobs import JobRun
from services.sql import rowcount

__all__ = ["JobRun", "claim_run", "finish_run", "forget_runs", "last_runs"]

# Only the current period's row decides whether a job runs; older ones are a history for operators.
RUNS_KEPT = timedelta(days=90)


async def claim_run(session: AsyncSession, job: str, period: str, *, worker: str, now: datetime) -> bool:
    """Claim ``job`` for ``period`` in the caller's transaction (no commit). True for exactly one
    caller across all processes, as long as that caller commits; False if the period is taken."""
    claimed = await session.scalar(
        (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(JobRun)
        .values(job=job, period=period, worker=worker[:100], started_at=now, finished_at=None)
        .on_conflict_do_nothing(index_elements=["job", "period"])
        .returning(JobRun.job))
    return claimed is not None


async def finish_run(session: AsyncSession, job: str, period: str, *, now: datetime) -> None:
    """Note when the claimed run did its work (same transaction as the claim; no commit)."""
    await session.execute(update(JobRun).where(JobRun.job == job, JobRun.period == period)
                          .values(finished_at=now).execution_options(synchronize_session=False))


async def last_runs(session: AsyncSession) -> dict[str, JobRun]:
    """The latest recorded run of each job (for health checks and operators)."""
    rows = (await session.scalars(select(JobRun).order_by(JobRun.job, JobRun.started_at))).all()
    return {row.job: row for row in rows}


async def forget_runs(session: AsyncSession, now: datetime, keep: timedelta = RUNS_KEPT) -> int:
    """Delete the records of runs started more than ``keep`` ago; returns how many. The caller commits."""
    return rowcount(await session.execute(delete(JobRun).where(JobRun.started_at < now - keep)))
