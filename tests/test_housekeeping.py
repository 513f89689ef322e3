"""The hourly housekeeping tick (``outbox_redact``), on SQLite and PostgreSQL: what may go goes —
conversations idle for FSM_TTL, console links and sessions a day after they ended, records of
once-a-period jobs after 90 days — and nothing still in use does."""

from __future__ import annotations

from datetime import timedelta

from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import select

from bot.app import Runtime, build_dispatcher
from bot.conversations import DatabaseStorage
from bot.db import session_factory
from bot.runtime import outbox_redact_tick
from bot.settings import Settings
from services.clock import ManualClock
from services.models import ConsoleLink, ConsoleSession, Conversation, JobRun
from tests.conftest import NOW
from tests.helpers import make_account


async def test_the_hourly_tick_deletes_what_is_stale_and_keeps_what_is_in_use(engine, tmp_path):
    clock = ManualClock(NOW)
    settings = Settings(_env_file=None, bot_token="42:TEST", data_dir=tmp_path, secret_key="k", fsm_ttl="1d")
    sessions = session_factory(engine)
    rt = Runtime(settings, engine, sessions, None, build_dispatcher(settings, sessions, clock=clock), clock)
    storage = rt.dp.storage
    assert isinstance(storage, DatabaseStorage)
    idle, busy = (StorageKey(bot_id=42, chat_id=u, user_id=u) for u in (5001, 5002))
    await storage.set_state(idle, "Writing:comment")
    clock.advance(timedelta(hours=20))
    await storage.set_state(busy, "Writing:comment")
    async with sessions() as s:
        staff = await make_account(s, 5003)
        day, hour = timedelta(days=1), timedelta(hours=1)
        at = clock()
        s.add_all([
            ConsoleLink(token_hash="a" * 64, account_id=staff.id, created_at=at - 3 * day, expires_at=at - 2 * day),
            ConsoleLink(token_hash="b" * 64, account_id=staff.id, created_at=at - hour, expires_at=at - hour,
                        used_at=at - hour),  # spent an hour ago: a late click is still told so
            ConsoleSession(token_hash="c" * 64, account_id=staff.id, via="link", created_at=at - 3 * day,
                           last_seen_at=at - 3 * day, ended_at=at - 2 * day),
            ConsoleSession(token_hash="d" * 64, account_id=staff.id, via="link", created_at=at - 3 * day,
                           last_seen_at=at - 3 * day),  # never signed out, idle for days
            ConsoleSession(token_hash="e" * 64, account_id=staff.id, via="link", created_at=at - 3 * day,
                           last_seen_at=at - hour),  # in use
            JobRun(job="rule_tags", period="2026-01-01", worker="w", started_at=at - timedelta(days=91)),
            JobRun(job="rule_tags", period="2026-03-01", worker="w", started_at=at - timedelta(days=30)),
        ])
        await s.commit()
    clock.advance(timedelta(hours=5))  # idle's last step 25 hours ago, busy's 5
    await outbox_redact_tick(rt, clock())
    async with sessions() as s:
        assert (await s.scalars(select(Conversation.key))).all() == ["fsm:42:5002:5002:default"]
        assert (await s.scalars(select(ConsoleLink.token_hash))).all() == ["b" * 64]
        assert (await s.scalars(select(ConsoleSession.token_hash))).all() == ["e" * 64]
        assert (await s.scalars(select(JobRun.period))).all() == ["2026-03-01"]
    assert storage.forget_idle(clock()) == 0  # the tick dropped the idle one from memory too
    assert await storage.get_state(busy) == "Writing:comment" and await storage.get_state(idle) is None
