"""Conversations kept in the database when there is no Redis (bot.conversations), on SQLite and
PostgreSQL: a new process (a new storage on the same database) carries on where each person was; a
step made while handling an update commits with it, or not at all; cleared and idle conversations go.
In Redis, an update's steps are written once it has committed, or not at all."""

from __future__ import annotations

from datetime import timedelta

from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from sqlalchemy import event, func, select

from bot.conversations import DatabaseStorage, RedisConversations, forget_conversations
from bot.db import session_factory
from bot.middlewares import _update_session, commit_update
from services.models import Conversation
from tests.conftest import NOW
from tests.helpers import PacedClock, fresh_redis


class Form(StatesGroup):
    name = State()
    address = State()


def key(user: int, bot_id: int = 42) -> StorageKey:
    return StorageKey(bot_id=bot_id, chat_id=user, user_id=user)


async def steps_of(storage, user: int) -> tuple[str | None, dict]:
    return await storage.get_state(key(user)), await storage.get_data(key(user))


async def rows(sessions) -> int:
    async with sessions() as s:
        return await s.scalar(select(func.count()).select_from(Conversation)) or 0


async def test_a_new_process_carries_on_where_each_person_was(engine):
    sessions = session_factory(engine)
    clock = PacedClock(NOW)
    first = DatabaseStorage(sessions, ttl=timedelta(days=1), clock=clock)
    wang = FSMContext(first, key(1001))
    await wang.set_state(Form.address)
    await wang.update_data(name="王秀英", answers={"age": 81}, asked=["age"])
    li = FSMContext(first, key(1002))
    await li.set_state(Form.name)
    other_bot = FSMContext(first, key(1001, bot_id=43))
    await other_bot.set_state(Form.name)
    assert await rows(sessions) == 3

    again = DatabaseStorage(sessions, ttl=timedelta(days=1), clock=clock)  # after a restart
    assert await FSMContext(again, key(1001)).get_state() == Form.address.state
    assert await FSMContext(again, key(1001)).get_data() == {"name": "王秀英", "answers": {"age": 81}, "asked": ["age"]}
    assert await FSMContext(again, key(1002)).get_state() == Form.name.state
    assert await FSMContext(again, key(1001, bot_id=43)).get_state() == Form.name.state
    assert await steps_of(again, 1003) == (None, {})

    # What a caller does with the data it read changes nothing stored.
    data = await FSMContext(again, key(1001)).get_data()
    data["name"] = "x"
    assert (await FSMContext(again, key(1001)).get_data())["name"] == "王秀英"

    # A finished conversation leaves no row; nor does a state set to none for someone without one.
    await FSMContext(again, key(1001)).clear()
    await FSMContext(again, key(1004)).set_state(None)
    await FSMContext(again, key(1004)).set_data({})
    assert await rows(sessions) == 2
    third = DatabaseStorage(sessions, ttl=timedelta(days=1), clock=clock)
    assert await steps_of(third, 1001) == (None, {})
    assert await FSMContext(third, key(1002)).get_state() == Form.name.state


async def in_update(sessions, steps, *, commit: bool, statements: list[str] | None = None):
    """``steps()`` while handling an update (the update's session set, as DbSessionMiddleware does), then
    its commit (as the middleware commits) or rollback; what it read, and (``statements``) the SQL the
    commit sent."""
    async with sessions() as s:
        token = _update_session.set(s)
        try:
            seen = await steps()
            if statements is not None:
                def note(conn, cursor, statement, *args) -> None:
                    statements.append(statement.split()[0].upper())
                event.listen(s.bind.sync_engine, "before_cursor_execute", note)
            try:
                await (commit_update(s, why="test") if commit else s.rollback())
            finally:
                if statements is not None:
                    event.remove(s.bind.sync_engine, "before_cursor_execute", note)
        finally:
            _update_session.reset(token)
    return seen


async def test_a_step_taken_in_an_update_commits_with_it_or_not_at_all(engine):
    sessions = session_factory(engine)
    storage = DatabaseStorage(sessions, ttl=timedelta(days=1), clock=PacedClock(NOW))
    zhao = FSMContext(storage, key(2001))
    await zhao.get_state()  # loaded before the update's transaction, as aiogram's middleware reads it

    async def steps():
        await zhao.set_state(Form.name)
        await zhao.update_data(name="赵")
        await zhao.set_state(Form.address)
        return await zhao.get_state(), await zhao.get_data(), await storage.get_state(key(2002))

    for commit in (False, True):
        statements: list[str] = []
        seen = await in_update(sessions, steps, commit=commit, statements=statements)
        assert seen == (Form.address.state, {"name": "赵"}, None)  # the update reads its own steps
        expected = (Form.address.state, {"name": "赵"}) if commit else (None, {})
        assert await steps_of(storage, 2001) == expected, commit  # kept only once committed
        restarted = DatabaseStorage(sessions, ttl=timedelta(days=1), clock=PacedClock(NOW))
        assert await steps_of(restarted, 2001) == expected, commit
        # Three steps, one statement (SQLite's BEGIN aside); a rollback sends none.
        assert [s for s in statements if s != "BEGIN"] == (["INSERT"] if commit else []), statements

    async def finish():
        await zhao.clear()
        return await zhao.get_state()

    assert await in_update(sessions, finish, commit=False) is None
    assert await steps_of(storage, 2001) == (Form.address.state, {"name": "赵"})  # the update failed: still there
    assert await in_update(sessions, finish, commit=True) is None
    assert await steps_of(storage, 2001) == (None, {}) and await rows(sessions) == 0


async def test_in_redis_a_step_taken_in_an_update_is_written_once_it_has_committed(engine):
    sessions = session_factory(engine)
    client = await fresh_redis()
    keys = DefaultKeyBuilder(with_bot_id=True)
    storage = RedisConversations(client, key_builder=keys)
    elsewhere = RedisStorage(client, key_builder=keys)  # what another worker reads
    try:
        qian = FSMContext(storage, key(4001))

        async def steps():
            await qian.set_state(Form.name)
            await qian.update_data(name="钱")
            await qian.set_state(Form.address)
            seen = await qian.get_state(), await qian.get_data(), await storage.get_state(key(4002))
            assert await steps_of(elsewhere, 4001) == (None, {})  # not yet
            return seen

        for commit in (False, True):
            seen = await in_update(sessions, steps, commit=commit)
            assert seen == (Form.address.state, {"name": "钱"}, None)  # the update reads its own steps
            expected = (Form.address.state, {"name": "钱"}) if commit else (None, {})
            assert await steps_of(elsewhere, 4001) == expected, commit

        async def finish():
            await qian.clear()
            return await qian.get_state()

        assert await in_update(sessions, finish, commit=False) is None
        assert await steps_of(elsewhere, 4001) == (Form.address.state, {"name": "钱"})  # the update failed
        assert await in_update(sessions, finish, commit=True) is None
        assert await steps_of(elsewhere, 4001) == (None, {})

        await FSMContext(storage, key(4003)).set_state(Form.name)  # outside an update: at once
        assert await elsewhere.get_state(key(4003)) == Form.name.state
    finally:
        await client.aclose()


async def counting_redis(sent: list[list[str]]):
    """A client on the test database whose every round trip to Redis is noted in ``sent`` (the
    commands it carried, upper case)."""
    from redis.asyncio import ConnectionPool, Redis
    from redis.asyncio.connection import Connection

    class Noting(Connection):
        async def send_packed_command(self, command, check_health=True):
            parts = [command] if isinstance(command, bytes | str) else list(command)
            blob = b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)
            # RESP: each command is "*N" then "$len" "name" ...: the name follows the first "$" line
            lines = blob.split(b"\r\n")
            sent.append([lines[i + 2].decode().upper() for i, line in enumerate(lines) if line.startswith(b"*")])
            return await super().send_packed_command(command, check_health)

    probe = await fresh_redis()  # empties the database (and skips without Redis)
    kwargs = probe.connection_pool.connection_kwargs
    await probe.aclose()
    client = Redis.from_pool(ConnectionPool(connection_class=Noting, host=kwargs.get("host", "localhost"),
                                            port=kwargs.get("port", 6379), db=kwargs.get("db", 0)))
    await client.ping()  # connected: what follows is the storage's own
    return client


async def test_in_redis_an_update_writes_its_steps_in_one_round_trip(engine):
    sessions = session_factory(engine)
    sent: list[list[str]] = []
    client = await counting_redis(sent)
    keys = DefaultKeyBuilder(with_bot_id=True)
    storage = RedisConversations(client, key_builder=keys)
    elsewhere = RedisStorage(client, key_builder=keys)
    sun = FSMContext(storage, key(5001))
    try:
        async def step():
            await sun.set_state(Form.name)
            await sun.update_data(topic=7)

        sent.clear()
        await in_update(sessions, step, commit=True)
        assert sent == [["GET"], ["MULTI", "SET", "SET", "EXEC"]], sent  # update_data's read; both steps in one
        assert await steps_of(elsewhere, 5001) == (Form.name.state, {"topic": 7})

        async def on_after_a_commit():  # a Telegram call commits the update first; the update goes on
            await sun.update_data(parent=3)
            await commit_update(_update_session.get(), why="test")
            assert await steps_of(elsewhere, 5001) == (Form.name.state, {"topic": 7, "parent": 3})
            seen = await sun.get_data()
            await sun.clear()
            return seen

        sent.clear()
        assert await in_update(sessions, on_after_a_commit, commit=True) == {"topic": 7, "parent": 3}
        assert sent[-1] == ["MULTI", "DEL", "DEL", "EXEC"], sent
        assert await steps_of(elsewhere, 5001) == (None, {})
    finally:
        await client.aclose()


async def test_a_conversation_left_alone_for_the_ttl_is_forgotten(engine):
    sessions = session_factory(engine)
    clock = PacedClock(NOW)
    storage = DatabaseStorage(sessions, ttl=timedelta(hours=1), clock=clock)
    await FSMContext(storage, key(3001)).set_state(Form.name)  # at 0 minutes
    clock.advance(timedelta(minutes=10))
    await FSMContext(storage, key(3002)).set_state(Form.name)  # at 10
    clock.advance(timedelta(minutes=40))
    await FSMContext(storage, key(3001)).update_data(n=1)  # at 50: a step, so its hour starts again
    clock.advance(timedelta(minutes=30))  # at 80
    await FSMContext(storage, key(3003)).set_state(Form.name)
    assert await FSMContext(storage, key(3002)).get_state() is None  # 70 minutes since its last step
    assert await FSMContext(storage, key(3001)).get_state() == Form.name.state  # 30
    restarted = DatabaseStorage(sessions, ttl=timedelta(hours=1), clock=clock)
    assert await FSMContext(restarted, key(3002)).get_state() is None
    assert await FSMContext(restarted, key(3001)).get_data() == {"n": 1}
    clock.advance(timedelta(minutes=45))  # at 125: 3001's last step was 75 minutes ago, 3003's 45
    assert storage.forget_idle(clock()) == 1  # 3001 (3002 went when it was read)
    assert await FSMContext(storage, key(3003)).get_state() == Form.name.state
    async with sessions() as s:
        assert await forget_conversations(s, clock(), timedelta(hours=1)) == 2  # 3001 and 3002
        await s.commit()
    assert await rows(sessions) == 1
