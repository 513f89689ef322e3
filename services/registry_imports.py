"""Registry imports started by staff from the console: the file is imported in the background by
``services.registry.import_registry`` (the CLI's import: idempotent, batched, rejected rows reported by
line), while a row of ``registry_imports`` holds its progress and report for every worker to show.

Nothing is lost: every data row of the file is counted once as imported, updated, unchanged or
rejected (with its line and reason); a file refused as a whole (no usable header) says why; an import
interrupted by a stopped worker shows as interrupted, and the same file can be imported again (an
import is idempotent). The uploaded file holds ID numbers in clear: it is kept only while it is
imported, never in the database (the report holds line numbers and reasons, no cell).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import audit
from services.i18n import _, use_locale
from services.models import Region, RegionLevel
from services.models.registry import RegistryImport
from services.registry import ImportReport, RowError, import_registry, read_rows
from services.scope import Actor, committee_ids_in_scope

log = logging.getLogger(__name__)

QUEUED, COUNTING, RUNNING, DONE, FAILED = "queued", "counting", "running", "done", "failed"
INTERRUPTED = "interrupted"  # shown, never stored: unfinished and its worker no longer reports
UNFINISHED = (QUEUED, COUNTING, RUNNING)
REJECTED_KEPT = 10_000  # rejected rows kept in the report (the count is always complete)
PROGRESS_EVERY = timedelta(seconds=1)  # how often the progress is written while a file is imported
STALE_AFTER = timedelta(minutes=2)  # an unfinished import silent this long was interrupted
SUFFIXES = (".csv", ".xlsx")


class ImportRefused(ValueError):
    """Why an upload cannot be imported (translated); nothing was started."""


@dataclass(frozen=True, slots=True)
class ImportView:
    """An import as the console shows it (``status`` may be ``interrupted``)."""

    id: int
    committee_id: int
    committee: str
    filename: str
    flag_missing: bool
    status: str
    total_rows: int | None
    done_rows: int
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    counts: dict[str, int] = field(default_factory=dict)
    rejected: list[tuple[int, str]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in (DONE, FAILED, INTERRUPTED)

    @property
    def percent(self) -> int:
        if self.status == DONE:
            return 100
        if not self.total_rows:
            return 0
        return min(99, self.done_rows * 100 // self.total_rows)


def _status(row: RegistryImport, now: datetime) -> str:
    if row.status in UNFINISHED and now - row.updated_at >= STALE_AFTER:
        return INTERRUPTED
    return row.status


def _view(row: RegistryImport, committee: str, now: datetime) -> ImportView:
    report = row.report or {}
    return ImportView(row.id, row.committee_id, committee, row.filename, row.flag_missing, _status(row, now),
                      row.total_rows, row.done_rows, row.created_at, row.finished_at, row.error,
                      dict(report.get("counts") or {}), [(int(n), str(r)) for n, r in report.get("rejected") or []])


def _reachable(actor: Actor):
    """The committees the actor may import into: committee level, within their staff scope."""
    scope = committee_ids_in_scope(actor)
    if scope is None or not actor.is_staff:
        return None
    return select(Region.id).where(Region.id.in_(scope), Region.level == RegionLevel.committee)


async def start_import(session: AsyncSession, actor: Actor, committee_id: int | None, filename: str, *,
                       flag_missing: bool, now: datetime, locale: str) -> RegistryImport:
    """Queue an import of ``filename`` into a committee of the actor's staff scope (``LookupError`` for
    any other: missing and "not yours" look the same); ``ImportRefused`` for a file that is not CSV or
    XLSX, or while another import of that committee is under way. Audited when it finishes."""
    reachable = _reachable(actor)
    committee = None if reachable is None or committee_id is None else await session.scalar(
        select(Region).where(Region.id == committee_id, Region.id.in_(reachable.scalar_subquery())))
    if committee is None:
        raise LookupError(committee_id)
    name = Path(filename or "").name[:200]
    if not name.lower().endswith(SUFFIXES):
        raise ImportRefused(_("Upload a CSV (UTF-8) or XLSX file."))
    running = await session.scalars(select(RegistryImport).where(RegistryImport.committee_id == committee.id,
                                                                 RegistryImport.status.in_(UNFINISHED)))
    if any(_status(row, now) != INTERRUPTED for row in running):
        raise ImportRefused(_("Another import of this committee is under way; wait until it has finished."))
    row = RegistryImport(committee_id=committee.id, account_id=actor.account_id, filename=name,
                         flag_missing=flag_missing, locale=locale, status=QUEUED, done_rows=0, created_at=now,
                         updated_at=now)
    session.add(row)
    await session.flush()
    return row


async def get_import(session: AsyncSession, actor: Actor, import_id: int | None, *, now: datetime
                     ) -> ImportView | None:
    """One import of a committee in the actor's staff scope, else None. Read only."""
    reachable = _reachable(actor)
    if reachable is None or import_id is None:
        return None
    found = (await session.execute(
        select(RegistryImport, Region.name).join(Region, Region.id == RegistryImport.committee_id)
        .where(RegistryImport.id == import_id, RegistryImport.committee_id.in_(reachable.scalar_subquery())))).first()
    return None if found is None else _view(found[0], found[1], now)


async def list_imports(session: AsyncSession, actor: Actor, *, now: datetime, limit: int = 20) -> list[ImportView]:
    """The latest imports of the committees in the actor's staff scope, newest first. Read only."""
    reachable = _reachable(actor)
    if reachable is None:
        return []
    rows = await session.execute(
        select(RegistryImport, Region.name).join(Region, Region.id == RegistryImport.committee_id)
        .where(RegistryImport.committee_id.in_(reachable.scalar_subquery()))
        .order_by(RegistryImport.id.desc()).limit(limit))
    return [_view(row, name, now) for row, name in rows.all()]


async def still_importing(session: AsyncSession, import_ids: list[int], *, now: datetime) -> set[int]:
    """Which of these imports are unfinished and not interrupted (their files are still being read)."""
    if not import_ids:
        return set()
    rows = await session.scalars(select(RegistryImport).where(RegistryImport.id.in_(import_ids),
                                                              RegistryImport.status.in_(UNFINISHED)))
    return {row.id for row in rows if _status(row, now) != INTERRUPTED}


def count_rows(path: Path) -> int:
    """Data rows of a registry file (non-empty rows after the header), as the import counts them."""
    rows = (cells for _line, cells in read_rows(path))
    seen_header = False
    n = 0
    for cells in rows:
        if not any(str(c or "").strip() for c in cells):
            continue
        if seen_header:
            n += 1
        seen_header = True
    return n


async def _set(sessions: async_sessionmaker[AsyncSession], import_id: int, **values) -> None:
    async with sessions() as session:
        await session.execute(update(RegistryImport).where(RegistryImport.id == import_id).values(**values))
        await session.commit()


def report_json(report: ImportReport) -> dict:
    counts = {"imported": report.imported, "updated": report.updated, "unchanged": report.unchanged,
              "flagged": report.flagged, "restored": report.restored,
              "households_updated": report.households_updated, "rejected": len(report.rejected)}
    return {"counts": counts, "rejected": [[r.line, r.reason] for r in report.rejected[:REJECTED_KEPT]]}


async def run_import(sessions: async_sessionmaker[AsyncSession], import_id: int, path: Path, *, secret_key: str,
                     clock: Callable[[], datetime]) -> ImportReport | None:
    """Import the queued file ``path`` (then deleted) and keep the row's progress and report up to date:
    counting its rows, then every batch, at most every ``PROGRESS_EVERY``. A file refused as a whole
    ends ``failed`` with the reason; so does an unexpected error (logged). Returns the report (None when
    refused or failed). Cancelled (the worker stops): the row stops moving and shows as interrupted."""
    async with sessions() as session:
        row = await session.get(RegistryImport, import_id)
        if row is None or row.status != QUEUED:
            return None
        committee_id, locale, flag_missing, account_id = row.committee_id, row.locale, row.flag_missing, row.account_id
    try:
        with use_locale(locale):
            return await _run(sessions, import_id, path, committee_id, flag_missing, account_id, secret_key, clock)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


async def _run(sessions, import_id: int, path: Path, committee_id: int, flag_missing: bool, account_id: int | None,
               secret_key: str, clock: Callable[[], datetime]) -> ImportReport | None:
    await _set(sessions, import_id, status=COUNTING, updated_at=clock())
    try:
        total = await asyncio.to_thread(count_rows, path)
    except Exception as exc:  # not a readable CSV or XLSX at all
        log.info("registry import %s: unreadable file (%s)", import_id, type(exc).__name__)
        await _set(sessions, import_id, status=FAILED, error=_("The file could not be read. Upload a CSV (UTF-8) "
                                                               "or XLSX file."), updated_at=clock(),
                   finished_at=clock())
        return None
    now = clock()
    await _set(sessions, import_id, status=RUNNING, total_rows=total, updated_at=now)
    done = 0
    written = -1

    def progress(n: int) -> None:
        nonlocal done
        done = n

    async def reporter() -> None:
        nonlocal written
        while True:
            await asyncio.sleep(PROGRESS_EVERY.total_seconds())
            if done != written:
                written = done
                await _set(sessions, import_id, done_rows=done, updated_at=clock())
            else:  # still alive: the page must not take a long batch for a stopped worker
                await _set(sessions, import_id, updated_at=clock())

    ticking = asyncio.create_task(reporter())
    try:
        async with sessions() as session:
            committee = await session.get_one(Region, committee_id)
            report = await import_registry(session, committee, read_rows(path), secret_key=secret_key, now=now,
                                           actor_account_id=account_id, progress=progress,
                                           flag_missing=flag_missing)
    except RowError as exc:  # the file as a whole: empty, or no usable header
        await _stop(ticking)
        await _set(sessions, import_id, status=FAILED, error=str(exc)[:500], updated_at=clock(), finished_at=clock())
        return None
    except asyncio.CancelledError:
        await _stop(ticking)
        raise
    except Exception:
        await _stop(ticking)
        log.exception("registry import %s failed", import_id)
        await _set(sessions, import_id, status=FAILED, error=_("The import stopped on an unexpected error; the rows "
                                                               "before it are kept. Import the file again."),
                   updated_at=clock(), finished_at=clock())
        return None
    await _stop(ticking)
    await _set(sessions, import_id, status=DONE, done_rows=report.total_rows, report=report_json(report),
               updated_at=clock(), finished_at=clock())
    return report


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def record_upload(session: AsyncSession, actor: Actor, row: RegistryImport, *, now: datetime, size: int) -> None:
    """Audit the upload itself (the import audits what it changed when it finishes)."""
    audit.record(session, "registry.upload", now=now, actor_account_id=actor.account_id, target_type="region",
                 target_id=row.committee_id, region_id=row.committee_id,
                 detail={"import": row.id, "bytes": size, "flag_missing": row.flag_missing})
