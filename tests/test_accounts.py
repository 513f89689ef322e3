"""Who is behind an update, in one statement (services.accounts.touch_actor), on SQLite and PostgreSQL:
the same Actor as touch_account + resolve_actor, and no write when nothing changed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, select

from bot.db import session_factory
from services.accounts import TelegramUser, resolve_actor, touch_account, touch_actor
from services.models import Account, Staff, StaffRole
from tests.conftest import NOW
from tests.helpers import make_account, make_world


class Statements:
    """The SQL an engine runs while counted (SQLite's BEGIN goes to the driver directly, unseen)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.seen: list[str] = []

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.seen.append(" ".join(statement.split()).upper())

    def __enter__(self) -> Statements:
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._seen)

    def of_ours(self) -> list[str]:
        return [s for s in self.seen if not s.startswith("BEGIN")]


def same_actor(a, b) -> None:
    assert (a.account.id, a.resident.id if a.resident else None, a.staff, a.locale) == \
        (b.account.id, b.resident.id if b.resident else None, b.staff, b.locale)


async def test_a_verified_resident_is_resolved_in_one_statement_writing_nothing(engine):
    sessions = session_factory(engine)
    async with sessions() as s:
        world = await make_world(s)
        await make_account(s, 7001, world.residents["wang"], first_name="Wang")
        await s.commit()
    user = TelegramUser(7001, "Wang", language_code="en")
    async with sessions() as s:
        await touch_account(s, user, NOW)  # names and last seen as Telegram says now
        await s.commit()
    with Statements(engine) as sql:
        async with sessions() as s:
            actor = await touch_actor(s, user, NOW + timedelta(minutes=1), default_locale="zh_Hans")
            await s.commit()
    assert len(sql.of_ours()) == 1 and sql.of_ours()[0].startswith("SELECT")
    assert actor.is_verified and actor.resident is not None and actor.resident.name == "王秀英"
    assert not actor.is_staff and actor.locale == "en"
    async with sessions() as s:
        account = await touch_account(s, user, NOW + timedelta(minutes=1))
        same_actor(actor, await resolve_actor(s, account, language_code="en", default_locale="zh_Hans"))


async def test_staff_grants_come_with_the_account_only_active_ones(engine):
    sessions = session_factory(engine)
    async with sessions() as s:
        world = await make_world(s)
        account = await make_account(s, 7002, first_name="Li")
        for code, role, active in (("DXYC", StaffRole.committee, True), ("RJXC", StaffRole.committee, False),
                                   ("FLSQ", StaffRole.committee, True)):
            s.add(Staff(account_id=account.id, region_id=world.regions[code].id, role=role, active=active,
                        created_at=NOW))
        await s.commit()
    user = TelegramUser(7002, "Li", language_code="zh-hans")
    async with sessions() as s:
        actor = await touch_actor(s, user, NOW, default_locale="zh_Hans")
        await s.commit()
    assert [g.region_code for g in actor.staff] == ["DXYC", "FLSQ"] and actor.resident is None
    assert actor.locale == "zh_Hans"
    async with sessions() as s:
        account = await touch_account(s, user, NOW)
        same_actor(actor, await resolve_actor(s, account, language_code="zh-hans", default_locale="zh_Hans"))


async def test_first_contact_makes_the_account_and_changes_are_written(engine):
    sessions = session_factory(engine)
    async with sessions() as s:
        actor = await touch_actor(s, TelegramUser(7003, "Zhao", None, "zhao", "en"), NOW, default_locale="zh_Hans")
        await s.commit()
    assert actor.account is not None and actor.account.id is not None
    assert actor.resident is None and actor.staff == [] and actor.locale == "en"
    async with sessions() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == 7003))
        assert account is not None and account.last_seen_at == NOW and account.username == "zhao"
        account.unreachable_at = NOW  # the sender found the bot blocked
        await s.commit()
    with Statements(engine) as sql:
        async with sessions() as s:
            actor = await touch_actor(s, TelegramUser(7003, "Zhao Lei", None, "zhao", "en"), NOW + timedelta(seconds=5),
                                      default_locale="zh_Hans")
            await s.commit()
    assert [q.split()[0] for q in sql.of_ours()] == ["SELECT", "UPDATE"]
    async with sessions() as s:
        account = await s.scalar(select(Account).where(Account.telegram_id == 7003))
        assert account is not None and account.first_name == "Zhao Lei" and account.unreachable_at is None
        assert account.last_seen_at == NOW  # seen moments ago: not written again
