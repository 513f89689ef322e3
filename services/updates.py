"""Exactly-once handling of Telegram updates: the processed-update marker and its pruning.

Telegram delivers an update again when it was not acknowledged in time (a webhook that timed out, a
worker killed before it confirmed a batch), for at most 24 hours. The bot records every update it
handles in ``processed_updates`` *in the update's own transaction*, as its first statement, so:

- a redelivered update finds the marker and is acknowledged without being handled again, by whichever
  worker receives it;
- on PostgreSQL a duplicate arriving while the first is still being handled waits on the first's
  uncommitted row (the unique key) and then skips; on SQLite write transactions are serial anyway;
- a crash before the commit loses the marker together with the effects: the redelivery is handled.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Insert, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import ProcessedUpdate
from services.sql import rowcount

# Telegram keeps an undelivered update for at most 24 hours; a day more covers clocks and restarts.
RETENTION = timedelta(hours=48)


class UpdateNotSaved(RuntimeError):
    """The update's changes could not be committed, so nothing that claims them was sent; the user is
    told it did not work (the error handler) and may try again."""


def _marker(dialect) -> Insert:
    table = ProcessedUpdate.__table__
    return (dialect.insert(table).values(bot_id=bindparam("bot_id"), update_id=bindparam("update_id"),
                                         seen_at=bindparam("seen_at", type_=table.c.seen_at.type))
            .on_conflict_do_nothing().returning(table.c.update_id))


# Built once, on the table rather than the mapped class: every update runs it, and building an insert
# (or taking the ORM's path for one) costs more Python than executing it.
_MARKERS = {"postgresql": _marker(postgresql), "sqlite": _marker(sqlite)}


async def first_delivery(session: AsyncSession, bot_id: int, update_id: int, now: datetime) -> bool:
    """Mark update ``update_id`` of bot ``bot_id`` handled; False when a worker already did (the caller
    acknowledges it and changes nothing). Call it first in the update's transaction: the marker commits
    with the update's effects or not at all."""
    marker = _MARKERS["postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"]
    done = await session.execute(marker, {"bot_id": bot_id, "update_id": update_id, "seen_at": now})
    return done.first() is not None


async def forget_processed(session: AsyncSession, now: datetime, retention: timedelta = RETENTION) -> int:
    """Delete markers older than ``retention`` (Telegram no longer redelivers those updates); returns
    how many. Idempotent; the caller commits."""
    done = await session.execute(delete(ProcessedUpdate).where(ProcessedUpdate.seen_at < now - retention))
    return rowcount(done)
