"""Conversation state (aiogram's FSM) kept in the database, for a deployment without Redis.

One process serves such a deployment, so its memory is the truth while it runs: every read is a
dictionary lookup (aiogram reads the state of every update). Every change is also written to the
``conversations`` table, in the update's own transaction when it is made while handling an update
(the step commits with the effects that led to it, before the answer that asks for the next one), else
in one of its own. When the process starts, the first read loads the rows back, so a restart does not
drop anyone half-way through a comment, a verification or a notice draft. A conversation left alone
for FSM_TTL is forgotten, as Redis forgets it in a district's deployment (``forget_conversations``,
hourly, and whenever it is read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder, StateType, StorageKey
from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.middlewares import update_session
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


@dataclass(slots=True)
class _Step:
    state: str | None
    data: dict[str, Any]
    at: datetime  # the last change


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
                    since = self.clock() - self.ttl
                    rows = await self._run(lambda s: s.execute(
                        select(_TABLE.c.key, _TABLE.c.state, _TABLE.c.data, _TABLE.c.updated_at)
                        .where(_TABLE.c.updated_at >= since)), commit=False)
                    self._steps = {key: _Step(state, dict(data or {}), at) for key, state, data, at in rows}
        return self._steps

    async def _step(self, key: StorageKey) -> tuple[str, _Step | None]:
        name = self.keys.build(key)
        steps = await self._all()
        step = steps.get(name)
        if step is not None and step.at < self.clock() - self.ttl:
            del steps[name]  # left alone too long: forgotten (its row goes with the hourly sweep)
            step = None
        return name, step

    async def _run(self, work, *, commit: bool = True) -> Any:
        """``work(session)`` in the update's transaction when handling one, else in its own."""
        session = update_session()
        if session is not None:
            return await work(session)
        async with self.sessions() as own:
            result = await work(own)
            if commit:
                await own.commit()
            return result

    async def _save(self, name: str, step: _Step) -> None:
        steps = await self._all()
        if step.state is None and not step.data:
            steps.pop(name, None)
            await self._run(lambda s: s.execute(_DELETE, {"key": name}))
            return
        step.at = self.clock()
        steps[name] = step

        async def write(session: AsyncSession) -> None:
            upsert = _UPSERTS["postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"]
            await session.execute(upsert, {"key": name, "state": step.state, "data": step.data,
                                           "updated_at": step.at})

        await self._run(write)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        name, step = await self._step(key)
        value = state.state if isinstance(state, State) else state
        if step is None and value is None:
            return
        step = step or _Step(None, {}, self.clock())
        step.state = value
        await self._save(name, step)

    async def get_state(self, key: StorageKey) -> str | None:
        _, step = await self._step(key)
        return step.state if step else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        if not isinstance(data, dict):
            raise TypeError(f"Data must be a dict or dict-like object, got {type(data).__name__}")
        name, step = await self._step(key)
        if step is None and not data:
            return
        step = step or _Step(None, {}, self.clock())
        step.data = data.copy()
        await self._save(name, step)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        _, step = await self._step(key)
        return step.data.copy() if step else {}

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
