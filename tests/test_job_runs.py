"""Jobs that run once per period across workers (``job_runs``): two runtimes on one database (two
worker processes, each with its own engine) run the nightly rule tags once a night, a claim that
rolls back leaves the night to the other worker, a night missed while no worker ran is made up by
the first to start, and the weekly check-in reports are owed once a week."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.app import Runtime, build_dispatcher
from bot.checkin_jobs import WEEKLY_REPORTS_JOB, due_week_end, send_weekly_reports, weekly_reports_owed
from bot.db import create_engine, session_factory
from bot.runtime import RULE_TAGS_AT, Daily, nightly_rule_tags, scheduler_job
from bot.settings import Settings
from notifications.sender import default_worker_id
from services import jobs
from services.checkins import CheckinConfig
from services.clock import ManualClock
from services.models import ResidentTag, Tag
from services.models.jobs import JobRun
from tests.conftest import TEST_DATA_KEYS
from tests.helpers import make_world

SHANGHAI = ZoneInfo("Asia/Shanghai")
EVENING = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # Saturday 17:00 in Shanghai: 03:10 has passed


@pytest.fixture
async def runtimes(engine, tmp_path):
    """Two runtimes on the test database, each with its own engine (as two processes have)."""
    settings = Settings(_env_file=None, data_dir=tmp_path, secret_key="test-secret-key")
    second = create_engine(engine.url.render_as_string(hide_password=False), data_keys=TEST_DATA_KEYS)
    clock = ManualClock(EVENING)
    pair = [Runtime(settings, eng, session_factory(eng), None, None, clock) for eng in (engine, second)]
    try:
        yield pair
    finally:
        await second.dispose()


async def runs(rt: Runtime) -> list[JobRun]:
    async with rt.sessions() as session:
        return list((await session.scalars(select(JobRun).order_by(JobRun.job, JobRun.period))).all())


async def rule_tagged(rt: Runtime) -> int:
    async with rt.sessions() as session:
        return len((await session.scalars(
            select(ResidentTag.resident_id).join(Tag, Tag.id == ResidentTag.tag_id).where(Tag.code == "aged_80")
        )).all())


def test_a_night_runs_from_its_local_time_until_the_next():
    at = Daily(3, 10)
    assert at.trigger() == {"trigger": "cron", "hour": 3, "minute": 10}
    local = datetime(2026, 11, 28, 3, 10, tzinfo=SHANGHAI)
    assert at.period(local, SHANGHAI) == "2026-11-28"
    assert at.period(local - timedelta(minutes=1), SHANGHAI) == "2026-11-27"  # 03:09 is still last night's
    assert at.period(datetime(2026, 11, 28, 19, 9, tzinfo=UTC), SHANGHAI) == "2026-11-28"  # 03:09 on the 29th
    assert at.period(datetime(2026, 11, 28, 19, 10, tzinfo=UTC), SHANGHAI) == "2026-11-29"


async def test_two_workers_recompute_rule_tags_once_a_night(runtimes):
    a, b = runtimes
    async with a.sessions() as session:
        await make_world(session)
        await session.commit()
    assert sorted(await asyncio.gather(nightly_rule_tags(a, EVENING), nightly_rule_tags(b, EVENING))) == [False, True]
    [run] = await runs(a)
    assert (run.job, run.period, run.worker) == ("rule_tags", "2026-11-28", default_worker_id())
    assert run.started_at == EVENING and run.finished_at == EVENING
    assert await rule_tagged(a) > 0
    # Later that night and after a restart: done already, whichever worker asks.
    assert not await nightly_rule_tags(b, EVENING + timedelta(hours=6))
    # The next night is a new period.
    assert await nightly_rule_tags(b, EVENING + timedelta(days=1))
    assert [r.period for r in await runs(a)] == ["2026-11-28", "2026-11-29"]


async def test_the_claim_is_the_work_transaction_so_a_failed_night_is_left_to_another_worker(runtimes):
    a, b = runtimes
    period = RULE_TAGS_AT.period(EVENING, SHANGHAI)
    async with a.sessions() as session:
        await make_world(session)
        await session.commit()
    # Worker A claims the night and is still working (its transaction open) when B's trigger fires:
    # B waits for A's outcome instead of running beside it.
    async with a.sessions() as first:
        assert await jobs.claim_run(first, "rule_tags", period, worker="a", now=EVENING)
        waiting = asyncio.create_task(nightly_rule_tags(b, EVENING))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await first.rollback()  # A fails (or dies): its claim goes with its work
    assert await asyncio.wait_for(waiting, 30)  # … and B does the night
    assert [(r.period, r.finished_at is not None) for r in await runs(a)] == [(period, True)]
    assert await rule_tagged(a) > 0

    # Committed, the claim stands: the waiting worker finds the night done.
    night = RULE_TAGS_AT.period(EVENING + timedelta(days=1), SHANGHAI)
    async with a.sessions() as first:
        assert await jobs.claim_run(first, "rule_tags", night, worker="a", now=EVENING)
        waiting = asyncio.create_task(nightly_rule_tags(b, EVENING + timedelta(days=1)))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await first.commit()
    assert not await asyncio.wait_for(waiting, 30)


async def test_a_night_missed_while_no_worker_ran_is_made_up_when_one_starts(runtimes):
    a, _b = runtimes
    rt = Runtime(a.settings, a.engine, a.sessions, None, build_dispatcher(a.settings, a.sessions), a.clock)
    async with rt.sessions() as session:
        await make_world(session)
        await session.commit()
    # Nobody ran at 03:10; a worker starts at 17:00 and its scheduler fires the nightly job at once.
    stop = asyncio.Event()
    scheduler = asyncio.create_task(scheduler_job(rt, stop))
    try:
        for _ in range(400):
            if any(r.job == "rule_tags" and r.finished_at for r in await runs(rt)):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(scheduler, 10)
    assert [(r.job, r.period) for r in await runs(rt)] == [("rule_tags", "2026-11-28")]
    assert await rule_tagged(rt) > 0


CFG = CheckinConfig(tz=SHANGHAI, default_locale="en", secret_key="test-secret-key")


def shanghai(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=SHANGHAI)


def test_the_weekly_reports_fall_due_on_monday_at_the_report_hour():
    assert CFG.weekly_report_hour == 8
    assert due_week_end(shanghai(30, 8), CFG) == date(2026, 11, 29)  # Monday 08:00: last week
    assert due_week_end(shanghai(30, 7), CFG) == date(2026, 11, 22)  # Monday 07:00: the week before
    assert due_week_end(shanghai(28, 12), CFG) == date(2026, 11, 22)  # Saturday
    assert due_week_end(shanghai(29, 23), CFG) == date(2026, 11, 22)  # Sunday night


async def test_a_missed_monday_is_made_up_later_that_week_once(runtimes, tmp_path):
    a, b = runtimes
    week_of_23rd, week_of_30th = date(2026, 11, 29), date(2026, 12, 6)
    # A new deployment on a Tuesday does not report a week it did not run in: it waits for Monday.
    assert await weekly_reports_owed(a.sessions, CFG, shanghai(24, 10)) is None
    assert await weekly_reports_owed(a.sessions, CFG, shanghai(30, 9)) == week_of_23rd
    assert await send_weekly_reports(a.sessions, CFG, tmp_path, shanghai(30, 9), week_end=week_of_23rd) == 0
    assert await weekly_reports_owed(b.sessions, CFG, shanghai(30, 10)) is None  # done, for every worker
    # Every worker is down all of the next Monday; the first one back on Wednesday owes that week.
    monday = datetime(2026, 12, 7, 9, tzinfo=SHANGHAI)
    assert await weekly_reports_owed(b.sessions, CFG, monday + timedelta(days=2)) == week_of_30th
    assert await send_weekly_reports(b.sessions, CFG, tmp_path, monday + timedelta(days=2), week_end=week_of_30th) == 0
    assert await weekly_reports_owed(a.sessions, CFG, monday + timedelta(days=3)) is None
    assert [(r.job, r.period) for r in await runs(a)] == [
        (WEEKLY_REPORTS_JOB, "2026-11-23"), (WEEKLY_REPORTS_JOB, "2026-11-30")]
