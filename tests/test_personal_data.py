"""Personal data at rest: encrypted phones (one key per engine), owner-only files, outbox payloads
blanked after their retention period. Real SQLite files and PostgreSQL."""

from __future__ import annotations

import stat
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from bot.db import create_engine, session_factory
from bot.runtime import outbox_redact_tick, scheduled_ticks
from bot.settings import Settings
from services.identity import DataKeyError, DataKeys
from services.models import Base, OutboxMessage, OutboxStatus, Region, RegionLevel, Resident
from services.outbox import REDACTED_PAYLOAD, enqueue, make_payload, mark_sent, redact_finished
from tests.conftest import NOW, TEST_DATA_KEY

ALERT = "王秀英 did not check in. Phone: +8613800138001"


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_file_and_data_dir_are_readable_by_their_owner_only(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", data_key=TEST_DATA_KEY)
    settings.ensure_secret_key()
    engine = create_engine(settings.db_url, data_keys=settings.data_keys())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(text("INSERT INTO regions (code, name, level, path) VALUES ('X', 'X', 'city', '/X/')"))
            db = tmp_path / "data" / "communitybot.sqlite3"
            files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
            assert all(f.exists() for f in files)  # WAL mode, inside a write: all three are there
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await engine.dispose()
    assert mode(tmp_path / "data") == 0o700 and mode(tmp_path / "data" / "secret_key") == 0o600


async def test_an_existing_world_readable_database_is_tightened(tmp_path):
    db = tmp_path / "old.sqlite3"
    db.touch(mode=0o644)
    db.chmod(0o644)
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    await engine.dispose()
    assert mode(db) == 0o600


def test_the_data_key_is_generated_once_owner_only_and_reused(tmp_path):
    first = Settings(_env_file=None, data_dir=tmp_path)
    second = Settings(_env_file=None, data_dir=tmp_path)
    token = first.data_keys().encrypt("+8613800138001")
    assert second.data_keys().decrypt(token) == "+8613800138001"
    assert mode(tmp_path / "data_key") == 0o600 and mode(tmp_path) == 0o700
    with pytest.raises(ValueError):
        Settings(_env_file=None, data_dir=tmp_path, data_key="short")


async def _add_resident(sessions) -> None:
    async with sessions() as s:
        s.add(Region(code="C1", name="C1", level=RegionLevel.committee, path="/C1/"))
        await s.flush()
        s.add(Resident(committee_id=(await s.scalar(select(Region.id))), name="王", phone="+8613800138001",
                       created_at=NOW, updated_at=NOW))
        await s.commit()


async def test_two_engines_keep_their_own_keys_and_none_means_no_phones(tmp_path):
    """No module global: a second app in the process, with another key, reads its own data only."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite3'}"
    ours = create_engine(url, data_keys=DataKeys(TEST_DATA_KEY))
    theirs = create_engine(url, data_keys=DataKeys("another-deployment-with-another-data-key"))
    keyless = create_engine(url)
    try:
        async with ours.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        await _add_resident(session_factory(ours))
        async with session_factory(ours)() as s:
            assert (await s.scalar(select(Resident))).phone == "+8613800138001"
            assert await s.scalar(select(func.count()).select_from(Resident)
                                  .where(Resident.phone_index == "+8613800138001")) == 1
        async with session_factory(theirs)() as s:
            with pytest.raises(DataKeyError):
                await s.scalar(select(Resident.phone))
            # their blind index of the same number is another hash: no match across deployments
            assert await s.scalar(select(func.count()).select_from(Resident)
                                  .where(Resident.phone_index == "+8613800138001")) == 0
        async with session_factory(keyless)() as s:
            assert await s.scalar(select(Resident.name)) == "王"  # everything but the phones works
            with pytest.raises(DataKeyError, match="no data key"):
                await s.scalar(select(Resident.phone))
    finally:
        for engine in (ours, theirs, keyless):
            await engine.dispose()


async def test_finished_payloads_are_blanked_after_the_retention_period(session):
    retention = timedelta(days=7)
    for key, created in (("old", NOW - timedelta(days=8)), ("new", NOW - timedelta(days=1)),
                         ("waiting", NOW - timedelta(days=8))):
        await enqueue(session, key=key, chat_id=1, payload=make_payload(ALERT), priority=0, now=created)
    await session.commit()
    rows = {r.idempotency_key: r for r in await session.scalars(select(OutboxMessage))}
    for key in ("old", "new"):
        await mark_sent(session, rows[key].id, telegram_message_id=1, now=NOW)
    await session.commit()
    assert await redact_finished(session, older_than=retention, now=NOW) == 1
    await session.commit()
    assert await redact_finished(session, older_than=retention, now=NOW + timedelta(hours=1)) == 0  # idempotent
    await session.commit()
    stored = {key: payload for key, payload in
              (await session.execute(select(OutboxMessage.idempotency_key, OutboxMessage.payload))).all()}
    assert stored["old"] == REDACTED_PAYLOAD and stored["new"]["text"] == ALERT
    assert stored["waiting"]["text"] == ALERT  # not sent yet: untouched, whatever its age
    raw = await session.scalar(text("SELECT count(*) FROM outbox WHERE CAST(payload AS TEXT) LIKE '%13800138001%'"))
    assert raw == 2
    old = await session.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == "old")
                               .execution_options(populate_existing=True))
    assert old.status == OutboxStatus.sent and old.redacted_at == NOW  # the delivery record stays


def test_the_redaction_runs_as_a_scheduled_tick():
    from types import SimpleNamespace

    rt = SimpleNamespace(settings=Settings(_env_file=None))
    assert "outbox_redact" in {name for name, _tick, _trigger in scheduled_ticks(rt)}
    assert dict((n, t) for n, t, _ in scheduled_ticks(rt))["outbox_redact"] is outbox_redact_tick
