"""Registry import: a committee's registry uploaded as XLSX or CSV, imported in the background by the
CLI's own import (``services.registry.import_registry`` through ``services.registry_imports``), with a
progress bar and a report of every rejected row (line and reason, also as XLSX).

The upload is streamed to a file under DATA_DIR (``static/import.js`` posts it with the CSRF header and
shows the upload's progress; without JavaScript the form posts, up to the web app's body limit). The
worker that received it imports it in a task of its own and writes its progress to the database, so
the import page (which asks ``…/progress.json`` every second) may be answered by any worker. The file
holds ID numbers in clear: it is deleted once imported, and at start-up if an import was interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from pathlib import Path

from aiohttp import BodyPartReader, web

from bot.console.core import CONSOLE, CSRF_HEADER, Console, NavItem, ctx, not_found, query_int, render, url
from bot.console.export import xlsx_response
from services import registry_imports as ri
from services.i18n import N_, _
from services.ids import parse_db_id
from services.residents import committees_in_scope

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
NAV = (NavItem("registry", N_("Registry import"), "/registry", order=25),)
MAX_UPLOAD = 50 * 1024 * 1024  # bytes: a street's registry of 200,000 residents is about 15 MB of XLSX
CHUNK = 256 * 1024
REJECTED_SHOWN = 200
COUNT_LABELS = (("imported", N_("New")), ("updated", N_("Updated")), ("unchanged", N_("Unchanged")),
                ("flagged", N_("Flagged as moved out")), ("restored", N_("Back from moved out")),
                ("households_updated", N_("Households updated")), ("rejected", N_("Rejected")))
STATUS_LABELS = {ri.QUEUED: N_("waiting to start"), ri.COUNTING: N_("counting the rows"),
                 ri.RUNNING: N_("importing"), ri.DONE: N_("done"), ri.FAILED: N_("did not succeed"),
                 ri.INTERRUPTED: N_("interrupted: import the file again (nothing is imported twice)")}


class Imports:
    """This worker's imports in progress (their tasks), cancelled on shutdown."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task] = set()

    def start(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self, _app: web.Application) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


IMPORTS = web.AppKey("registry_imports", Imports)


def folder(console: Console) -> Path:
    """Where uploads wait for their import (private, under DATA_DIR)."""
    path = console.rt.settings.ensure_data_dir() / "imports"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def setup(app: web.Application) -> None:
    """Called by the console as it is built: the import tasks, cancelled on shutdown; uploads left by an
    interrupted import (a worker stopped mid-way) deleted at start-up."""
    app[IMPORTS] = Imports()
    app.on_shutdown.append(app[IMPORTS].close)
    app.on_startup.append(forget_leftovers)


async def forget_leftovers(app: web.Application) -> None:
    """Delete the uploads no import is reading any more: ``<id>.csv|xlsx`` of an import that finished or
    was interrupted, and an upload whose request never got as far as its import (older than a day)."""
    console = app[CONSOLE]
    place = folder(console)
    now = console.now()
    by_id = {int(p.stem): p for p in place.iterdir() if p.stem.isdigit() and p.suffix in ri.SUFFIXES}
    async with console.rt.sessions() as session:
        alive = await ri.still_importing(session, list(by_id), now=now)
    for import_id, path in by_id.items():
        if import_id not in alive:
            with contextlib.suppress(OSError):
                path.unlink()
    for path in place.glob("*.part"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < now.timestamp() - 86400:
                path.unlink()


def status_label(status: str) -> str:
    return _(STATUS_LABELS.get(status, status))


# --- pages -------------------------------------------------------------------------------------------


async def _upload_page(request: web.Request, *, error: str | None = None, status: int = 200,
                       committee_id: int | None = None) -> web.Response:
    c = ctx(request)
    committees = await committees_in_scope(c.db, c.actor)
    imports = await ri.list_imports(c.db, c.actor, now=c.now)
    return render(request, "registry.html", status=status, committees=committees, imports=imports, error=error,
                  chosen=committee_id, status_label=status_label, max_mb=MAX_UPLOAD // (1024 * 1024))


@routes.get("/registry")
async def registry_page(request: web.Request) -> web.Response:
    return await _upload_page(request)


async def _save(field: BodyPartReader | web.FileField, target: Path) -> int:
    """Stream the uploaded file to ``target`` (0600); 413 beyond MAX_UPLOAD (nothing kept)."""
    size = 0
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        if isinstance(field, web.FileField):
            field.file.seek(0)
            while chunk := field.file.read(CHUNK):
                size += len(chunk)
                out.write(chunk)
        else:
            while chunk := await field.read_chunk(CHUNK):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    break
                out.write(chunk)
    if size > MAX_UPLOAD:
        os.unlink(target)
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=size)
    return size


async def _read_upload(request: web.Request, target: Path) -> tuple[dict[str, str], str, int]:
    """The form's fields, the file's name and its size (the file saved at ``target``)."""
    fields: dict[str, str] = {}
    filename, size = "", -1
    if request.headers.get(CSRF_HEADER):  # posted by import.js: the body was not read yet, stream it
        if request.content_type != "multipart/form-data":
            raise web.HTTPBadRequest()
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest()
            if part.name == "file" and size < 0:
                filename, size = part.filename or "", await _save(part, target)
            elif part.name:
                fields[part.name] = (await part.text())[:100]
        return fields, filename, size
    form = await request.post()  # a plain form: read (within the app's body limit) by the CSRF check
    for key, value in form.items():
        if isinstance(value, web.FileField):
            if key == "file" and size < 0:
                filename, size = value.filename or "", await _save(value, target)
        else:
            fields[key] = str(value)[:100]
    return fields, filename, size


@routes.post("/registry/import")
async def upload(request: web.Request) -> web.Response:
    """Take the file and start its import: 303 to the import's page, which shows it progress."""
    c = ctx(request)
    await c.db.commit()  # no connection held while the file arrives
    place = folder(c.console)
    target = place / f"{secrets.token_hex(16)}.part"
    started = False
    try:
        fields, filename, size = await _read_upload(request, target)
        committee_id = parse_db_id(fields.get("committee"))
        if size <= 0:
            return await _upload_page(request, error=_("Choose a file to import."), status=400,
                                      committee_id=committee_id)
        try:
            row = await ri.start_import(c.db, c.actor, committee_id, filename,
                                        flag_missing=fields.get("flag_missing") == "1", now=c.now, locale=c.locale)
        except LookupError:
            not_found()
        except ri.ImportRefused as err:
            return await _upload_page(request, error=str(err), status=400, committee_id=committee_id)
        ri.record_upload(c.db, c.actor, row, now=c.now, size=size)
        # The import reads a file by its suffix (CSV or XLSX), as the CLI does.
        target = target.rename(place / f"{row.id}{Path(row.filename).suffix.lower()}")
        await c.db.commit()  # the task reads the row: it must be there before the task starts
        started = True
    finally:
        if not started:  # refused: nothing of the file is kept
            with contextlib.suppress(OSError):
                os.unlink(target)
    console = c.console
    request.app[IMPORTS].start(ri.run_import(console.rt.sessions, row.id, target,
                                             secret_key=console.app_config.secret_key, clock=console.now))
    raise web.HTTPSeeOther(url(f"/registry/imports/{row.id}"))


async def _import(request: web.Request) -> ri.ImportView:
    c = ctx(request)
    found = await ri.get_import(c.db, c.actor, parse_db_id(request.match_info["id"]), now=c.now)
    if found is None:
        not_found()
    return found


@routes.get(r"/registry/imports/{id:\d+}")
async def import_page(request: web.Request) -> web.Response:
    """An import: its progress while it runs, then what it did and every rejected row."""
    found = await _import(request)
    page = query_int(request.query, "page")
    start = (page - 1) * REJECTED_SHOWN
    rejected = found.rejected[start:start + REJECTED_SHOWN]
    pages = max(1, -(-len(found.rejected) // REJECTED_SHOWN))
    return render(request, "registry_import.html", imp=found, rejected=rejected, status_label=status_label,
                  counts=[(key, _(label), found.counts.get(key, 0)) for key, label in COUNT_LABELS],
                  pager={"page": min(page, pages), "pages": pages, "total": len(found.rejected)},
                  more=found.counts.get("rejected", 0) - len(found.rejected))


@routes.get(r"/registry/imports/{id:\d+}/progress.json")
async def progress(request: web.Request) -> web.Response:
    """The import's progress for the page's bar (``final`` once it will not move again)."""
    found = await _import(request)
    return web.json_response({"status": found.status, "label": status_label(found.status),
                              "total": found.total_rows, "done": found.done_rows, "percent": found.percent,
                              "final": found.finished, "counts": found.counts})


@routes.get(r"/registry/imports/{id:\d+}/rejected.xlsx")
async def rejected_export(request: web.Request) -> web.Response:
    """Every rejected row kept: its line in the file and why (no cell of the file)."""
    found = await _import(request)
    return await xlsx_response(f"registry-import-{found.id}-rejected.xlsx", _("Rejected rows"),
                               [_("Line"), _("Reason")], found.rejected)
