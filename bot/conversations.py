"""Conversation state (aiogram's FSM): a step taken while handling an update is taken when the update
commits, or not at all, and the update reads its own steps until then.

In Redis (:class:`RedisConversations`, a district's workers share it), the update's steps are written
once its transaction has committed (``bot.middlewares.commit_update``), before its first answer.

In the database (:class:`DatabaseStorage`), for a deployment without Redis: one process serves such a
deployment, so its memory is the truth while it runs: every read is a dictionary lookup (aiogram reads
the state of every update). An update's steps are written in its own transaction when that commits
(one statement per conversation, however many steps the handler took) and reach memory only then. A
step taken outside an update is written at once. When the process starts, the first read loads the
table back, so a restart does not drop anyone half-way through a comment, a verification or a notice
draft. A conversation left alone for FSM_TTL is forgotten, as Redis forgets it in a district's
deployment (``forget_conversations`` and ``forget_idle``, hourly, and whenever it is read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder, StateType, StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from sqlalchemy import bindparam, delete, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from bot.middlewares import AFTER_COMMIT, PENDING_WRITES, update_session
from services.clock import Clock, system_clock
from services.models import Conversation
from services.sql import rowcount

_TABLE = Conversation.__table__


def _upsert(dialect: Any) -> Any:
    insert = dialect.insert(_TABLE).values(key=bindparam("key"), state=bindparam("state"),
                                           data=bindparam("data", type_=_TABLE.c.data.type),
                                           updated_at=bindparam("updated_at", type_=_TABLE.c.updated_at.type))
    return insert.on_conflict_do_update(index_elements=[_TABLE.c.key], set_={
        "state": insert.excluded.state, "data": insert.excluded.data, "updated_at": insert.excluded.updated_at})


_UPSERTS = {"postgresql": _upsert(postgresql), "sqlite": _upsert(sqlite)}
_DELETE = delete(_TABLE).where(_TABLE.c.key == bindparam("key"))


@dataclass(frozen=True, slots=True)
class _Step:
    state: str | None
    data: dict[str, Any]
    at: datetime  # the last change

    @property
    def empty(self) -> bool:
        return self.state is None and not self.data


# A session's pending steps: (storage, key) -> the step, which the commit writes and then keeps.
_Pending = dict[tuple["DatabaseStorage", str], _Step]


def _statement(dialect_name: str, name: str, step: _Step) -> tuple[Any, dict[str, Any]]:
    if step.empty:
        return _DELETE, {"key": name}
    return (_UPSERTS["postgresql" if dialect_name == "postgresql" else "sqlite"],
            {"key": name, "state": step.state, "data": step.data, "updated_at": step.at})


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending: _Pending | None = session.info.get(PENDING_WRITES)
    if pending:
        dialect = session.get_bind().dialect.name
        for (_storage, name), step in pending.items():
            session.execute(*_statement(dialect, name, step))


@event.listens_for(Session, "after_commit")
def _keep_pending(session: Session) -> None:
    pending: _Pending | None = session.info.pop(PENDING_WRITES, None)
    for (storage, name), step in (pending or {}).items():
        storage._keep(name, step)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(PENDING_WRITES, None)
    session.info.pop(AFTER_COMMIT, None)


def _check_data(data: object) -> None:
    if not isinstance(data, dict):
        raise TypeError(f"Data must be a dict or dict-like object, got {type(data).__name__}")


_UNSET: Any = object()


@dataclass(slots=True)
class _Later:
    """What an update changed of one conversation, written to Redis when the update commits."""

    state: Any = _UNSET  # str | None once set
    data: Any = _UNSET  # dict once set


class RedisConversations(RedisStorage):
    """aiogram's Redis storage whose steps taken in an update reach Redis after the update commits
    (see the module), state and data in one MULTI/EXEC; outside updates, at once."""

    def _later(self, key: StorageKey, *, taking: bool = False) -> _Later | None:
        session = update_session()
        if session is None:
            return None
        if taking:
            return session.info.setdefault(AFTER_COMMIT, {}).setdefault((self, key), _Later())
        return session.info.get(AFTER_COMMIT, {}).get((self, key))

    async def write_committed(self, key: StorageKey, later: _Later) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            if later.state is not _UNSET:
                name = self.key_builder.build(key, "state")
                pipe.delete(name) if later.state is None else pipe.set(name, later.state, ex=self.state_ttl)
            if later.data is not _UNSET:
                name = self.key_builder.build(key, "data")
                pipe.delete(name) if not later.data else pipe.set(name, self.json_dumps(later.data), ex=self.data_ttl)
            await pipe.execute()

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        later = self._later(key, taking=True)
        if later is None:
            await super().set_state(key, state)
        else:
            later.state = state.state if isinstance(state, State) else state

    async def get_state(self, key: StorageKey) -> str | None:
        later = self._later(key)
        return later.state if later is not None and later.state is not _UNSET else await super().get_state(key)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        _check_data(data)
        later = self._later(key, taking=True)
        if later is None:
            await super().set_data(key, data)
        else:
            later.data = dict(data)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        later = self._later(key)
        return dict(later.data) if later is not None and later.data is not _UNSET else await super().get_data(key)


class DatabaseStorage(BaseStorage):
    """aiogram storage: conversations in this process's memory, kept in the database (see the module)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, ttl: timedelta,
                 clock: Clock = system_clock) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self.clock = clock
        self.keys = DefaultKeyBuilder(with_bot_id=True, with_business_connection_id=True, with_destiny=True)
        self._steps: dict[str, _Step] | None = None  # None until loaded
        self._loading = asyncio.Lock()

    async def _all(self) -> dict[str, _Step]:
        if self._steps is None:
            async with self._loading:
                if self._steps is None:
                    self._steps = await self._load()
        return self._steps

    async def _load(self) -> dict[str, _Step]:
        query = (select(_TABLE.c.key, _TABLE.c.state, _TABLE.c.data, _TABLE.c.updated_at)
                 .where(_TABLE.c.updated_at >= self.clock() - self.ttl))
        session = update_session()
        if session is not None:
            rows = (await session.execute(query)).all()
        else:
            async with self.sessions() as own:
                rows = (await own.execute(query)).all()
        return {key: _Step(state, dict(data or {}), at) for key, state, data, at in rows}

    async def _step(self, key: StorageKey) -> tuple[str, _Step | None]:
        """The key's name and its step: this update's own if it took one, else the one kept."""
        name = self.keys.build(key)
        steps = await self._all()
        session = update_session()
        pending: _Pending = session.info.get(PENDING_WRITES, {}) if session is not None else {}
        step = pending[(self, name)] if (self, name) in pending else steps.get(name)
        if step is not None and step.at < self.clock() - self.ttl:
            steps.pop(name, None)  # left alone too long: forgotten (its row goes with the hourly sweep)
            step = None
        return name, None if step is None or step.empty else step

    async def _take(self, name: str, state: str | None, data: dict[str, Any]) -> None:
        step = _Step(state, data, self.clock())
        session = update_session()
        if session is not None:  # written when the update commits, kept then (see the module)
            session.info.setdefault(PENDING_WRITES, {})[(self, name)] = step
            return
        async with self.sessions() as own:
            await own.execute(*_statement(own.get_bind().dialect.name, name, step))
            await own.commit()
        self._keep(name, step)

    def _keep(self, name: str, step: _Step) -> None:
        if self._steps is None:  # not loaded (a restart in between): the table has it
            return
        if step.empty:
            self._steps.pop(name, None)
        else:
            self._steps[name] = step

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        name, step = await self._step(key)
        value = state.state if isinstance(state, State) else state
        if step is None and value is None:
            return
        await self._take(name, value, dict(step.data) if step else {})

    async def get_state(self, key: StorageKey) -> str | None:
        _, step = await self._step(key)
        return step.state if step else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        _check_data(data)
        name, step = await self._step(key)
        if step is None and not data:
            return
        await self._take(name, step.state if step else None, data.copy())

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        _, step = await self._step(key)
        return dict(step.data) if step else {}

    def forget_idle(self, now: datetime) -> int:
        """Drop from memory the conversations left alone for the TTL; returns how many."""
        if self._steps is None:
            return 0
        idle = [name for name, step in self._steps.items() if step.at < now - self.ttl]
        for name in idle:
            del self._steps[name]
        return len(idle)

    async def close(self) -> None:
        self._steps = None


async def forget_conversations(session: AsyncSession, now: datetime, ttl: timedelta) -> int:
    """Delete the conversation rows left alone for ``ttl``; returns how many. The caller commits."""
    return rowcount(await session.execute(delete(Conversation).where(Conversation.updated_at < now - ttl)))
