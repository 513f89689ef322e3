"""``/healthz``: is this worker able to do its job? Database, Redis, the sender's lag, the ticks.

Each check has a short time limit, so a hung database makes the answer "unhealthy" within seconds
instead of hanging the load balancer's probe. The figures come from ``services.operations``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from bot.app import Runtime
from bot.metrics import Metrics, gauge, metrics_of
from services.operations import OutboxFigures, outbox_figures, unresolved_alerts
from services.outbox import Priority

log = logging.getLogger("bot.health")


@dataclass
class Report:
    ok: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": self.checks}


def _failure(exc: BaseException, timeout: float) -> str:
    # The class and the driver's message; never a URL with its password (drivers don't put it there).
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"[:300]


class Health:
    """Checks of one running bot; owns the Redis client it pings (when the FSM storage has none)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.timeout = rt.settings.health_timeout.total_seconds()
        self._redis: Any = None
        self._own_redis = False

    @property
    def metrics(self) -> Metrics:
        return metrics_of(self.rt.dp)

    async def close(self) -> None:
        if self._own_redis and self._redis is not None:
            await self._redis.aclose()
        self._redis = None

    async def _timed(self, coro) -> float:
        started = time.perf_counter()
        async with asyncio.timeout(self.timeout):
            await coro
        return round(time.perf_counter() - started, 4)

    async def _select_one(self) -> None:
        async with self.rt.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def _redis_client(self) -> Any:
        if self._redis is None:
            storage_client = getattr(self.rt.dp.storage, "redis", None)
            if storage_client is not None:
                self._redis = storage_client
            else:
                from redis.asyncio import Redis

                self._redis = Redis.from_url(self.rt.settings.redis_url)
                self._own_redis = True
        return self._redis

    async def check_database(self) -> dict[str, Any]:
        try:
            return {"ok": True, "seconds": await self._timed(self._select_one())}
        except Exception as exc:
            return {"ok": False, "error": _failure(exc, self.timeout)}

    async def check_redis(self) -> dict[str, Any] | None:
        if not self.rt.settings.redis_url:
            return None
        try:
            return {"ok": True, "seconds": await self._timed(self._redis_client().ping())}
        except Exception as exc:
            return {"ok": False, "error": _failure(exc, self.timeout)}

    async def figures(self) -> tuple[OutboxFigures, dict[str, int]]:
        """Outbox depth and lag, unresolved alerts: one short session, within the time limit."""
        async with asyncio.timeout(self.timeout), self.rt.sessions() as session:
            outbox = await outbox_figures(session, self.rt.clock())
            alerts = await unresolved_alerts(session)
        return outbox, alerts

    def check_sender(self, outbox: OutboxFigures) -> dict[str, Any]:
        urgent = outbox.lag_above(Priority.broadcast)
        limit = self.rt.settings.health_sender_lag.total_seconds()
        return {"ok": urgent <= limit, "lag_seconds": max(outbox.lag.values(), default=0.0),
                "urgent_lag_seconds": urgent, "limit_seconds": limit,
                "lag_seconds_by_priority": outbox.lag, "due_by_priority": outbox.depth}

    def check_ticks(self) -> dict[str, Any]:
        age = self.metrics.last_tick_age()
        if age is None:
            return {"ok": True, "running": False}
        settings = self.rt.settings
        limit = max(settings.health_tick_age, 3 * settings.tick_interval).total_seconds()
        return {"ok": age <= limit, "running": True, "last_run_age_seconds": round(age, 3),
                "limit_seconds": limit}

    async def report(self) -> Report:
        database, redis = await asyncio.gather(self.check_database(), self.check_redis())
        checks: dict[str, dict[str, Any]] = {"database": database}
        if redis is not None:
            checks["redis"] = redis
        if database["ok"]:
            try:
                outbox, _alerts = await self.figures()
                checks["sender"] = self.check_sender(outbox)
            except Exception as exc:
                checks["sender"] = {"ok": False, "error": _failure(exc, self.timeout)}
        else:
            checks["sender"] = {"ok": False, "error": "database unavailable"}
        checks["ticks"] = self.check_ticks()
        return Report(all(c["ok"] for c in checks.values()), checks)

    async def metrics_text(self) -> bytes:
        """``/metrics``: the process's metrics and this scrape's figures from the database."""
        families = []
        try:
            outbox, alerts = await self.figures()
        except Exception as exc:
            log.warning("metrics: database figures unavailable (%s)", type(exc).__name__)
            families.append(gauge("communitybot_database_up", "1 if the figures below could be read", "db",
                                  {"main": 0}))
        else:
            families += [
                gauge("communitybot_database_up", "1 if the figures below could be read", "db", {"main": 1}),
                gauge("communitybot_outbox_depth", "Messages due and not yet sent", "priority",
                      {k: float(v) for k, v in outbox.depth.items()}),
                gauge("communitybot_outbox_lag_seconds", "Age of the oldest message due and not sent",
                      "priority", outbox.lag),
                gauge("communitybot_checkin_alerts", "Check-in alerts not resolved", "status",
                      {k: float(v) for k, v in alerts.items()}),
            ]
        return self.metrics.exposition(families)
