"""XLSX downloads of console lists: every list page offers one (``notifications.reports.table_sheet``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from aiohttp import web

from notifications.reports import table_sheet

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def xlsx_response(filename: str, title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]
                        ) -> web.Response:
    """A download of ``rows`` as ``filename`` (.xlsx); the sheet is written in a worker thread (which
    keeps the request's locale), so a long list does not hold up other requests."""
    data = await asyncio.to_thread(table_sheet, title, headers, list(rows))
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "").replace("?", "_")
    return web.Response(body=data, content_type=XLSX, headers={
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"})
