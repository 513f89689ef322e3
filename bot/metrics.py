"""Prometheus metrics of a running bot (prometheus-client): what ``/metrics`` shows.

One :class:`Metrics` per dispatcher (``dp["metrics"]``, made by ``bot.app.build_dispatcher``) with
its own registry, so two bots in one test process count apart.

Workers: ``run --webhook --workers N`` runs prometheus-client's multiprocess mode (the supervisor
sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports the library): counters and histograms
are summed over all workers, whichever worker is scraped. Instances started apart (systemd, one
port each) count their own process; Prometheus sums them. The figures read from the database at
scrape time (outbox depth and lag, unresolved alerts) are the deployment's, from any worker.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UPDATE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
TICK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
# The sender's own counters (OutboxSender.counters) and the metric each one feeds.
SENDER_EVENTS = ("sent", "retried", "failed", "unreachable")
FLOOD_WAITS = "flood_waits"


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def update_type(update: Update) -> str:
    try:
        return update.event_type
    except Exception:  # an update type newer than this aiogram
        return "unknown"


class Metrics:
    """The process's counters and histograms, and what health needs of them (last tick times)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.update_seconds = Histogram(
            "communitybot_update_seconds", "Time to handle one update, from its turn in its chat to its commit",
            ["type"], buckets=UPDATE_BUCKETS, registry=r)
        self.update_errors = Counter(
            "communitybot_update_errors_total", "Updates whose handling raised", ["type"], registry=r)
        self.webhook_rejected = Counter(
            "communitybot_webhook_rejected_total", "Webhook requests refused for a missing or wrong secret",
            registry=r)
        self.outbox_events = Counter(
            "communitybot_outbox_events_total", "Outcomes of send attempts by this process's sender",
            ["event"], registry=r)
        self.retry_after = Counter(
            "communitybot_telegram_retry_after_total", "429 Too Many Requests (flood control) received", registry=r)
        self.tick_seconds = Histogram(
            "communitybot_tick_seconds", "Duration of one run of a scheduled tick", ["tick"], buckets=TICK_BUCKETS,
            registry=r)
        self.tick_failures = Counter(
            "communitybot_tick_failures_total", "Tick runs that raised", ["tick"], registry=r)
        self.tick_last_run = Gauge(
            "communitybot_tick_last_run_timestamp_seconds", "When a tick last finished (Unix time)", ["tick"],
            multiprocess_mode="max", registry=r)
        self.started_at = time.time()
        self.scheduler_started_at: float | None = None  # set when this process runs the ticks
        self.last_tick_at: dict[str, float] = {}

    # ------------------------------------------------------------------ hooks

    def middleware(self) -> BaseMiddleware:
        """An outer update middleware timing each update (register it before the session's)."""
        return _UpdateTiming(self)

    @contextlib.contextmanager
    def tick(self, name: str) -> Iterator[None]:
        """Time one run of tick ``name``; a run that raises is counted as a failure (and re-raised)."""
        started = time.perf_counter()
        try:
            yield
        except Exception:
            self.tick_failures.labels(name).inc()
            raise
        finally:
            self.tick_seconds.labels(name).observe(time.perf_counter() - started)
        self.last_tick_at[name] = now = time.time()
        self.tick_last_run.labels(name).set(now)

    def scheduler_started(self) -> None:
        self.scheduler_started_at = time.time()

    def sender_counters(self, counters: dict[str, int]) -> dict[str, int]:
        """``OutboxSender.counters``, counting into Prometheus as well (the sender only adds to it)."""
        return _ObservedCounts(counters, self)

    def last_tick_age(self) -> float | None:
        """Seconds since this process last finished a tick (since its scheduler started if none has);
        None when this process runs no scheduler."""
        if self.scheduler_started_at is None:
            return None
        return time.time() - max([self.scheduler_started_at, *self.last_tick_at.values()])

    # ------------------------------------------------------------------ exposition

    def exposition(self, figures: Iterable[Metric] = ()) -> bytes:
        """The text format of every metric, plus ``figures`` computed for this scrape."""
        if multiprocess_mode():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        else:
            registry = self.registry
        text = generate_latest(registry)
        snapshot = CollectorRegistry(auto_describe=False)
        snapshot.register(_Snapshot(list(figures)))
        return text + generate_latest(snapshot)


def metrics_of(dp: Any) -> Metrics:
    """The dispatcher's metrics; a dispatcher not made by ``build_dispatcher`` gets its own on first use
    (and a runtime without one counts into a throwaway set)."""
    if dp is None:
        return Metrics()
    found = dp.get("metrics")
    if found is None:
        dp["metrics"] = found = Metrics()
    return found


def gauge(name: str, documentation: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    """A gauge family with one sample per ``values`` item (label ``label``)."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


class _Snapshot:
    """A collector of families already computed (from the database, for one scrape)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class _ObservedCounts(dict):
    def __init__(self, counters: dict[str, int], metrics: Metrics) -> None:
        super().__init__(counters)
        self._metrics = metrics

    def __setitem__(self, key: str, value: int) -> None:
        added = value - self.get(key, 0)
        super().__setitem__(key, value)
        if added <= 0:
            return
        if key == FLOOD_WAITS:
            self._metrics.retry_after.inc(added)
        elif key in SENDER_EVENTS:
            self._metrics.outbox_events.labels(key).inc(added)


Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class _UpdateTiming(BaseMiddleware):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        kind = update_type(event) if isinstance(event, Update) else type(event).__name__
        started = time.perf_counter()
        try:
            return await handler(event, data)
        except Exception:
            self.metrics.update_errors.labels(kind).inc()
            raise
        finally:
            self.metrics.update_seconds.labels(kind).observe(time.perf_counter() - started)
