"""Rows of the XLSX files this project writes, holding what people typed as text, never as a formula.

openpyxl writes every string that begins with "=" as a formula: a resident registered (or a topic
titled) ``=HYPERLINK("http://…", "Click")`` would become a live link, or worse, in the office's
spreadsheet program. Every sheet is filled through :func:`row`, which keeps such a string a string
(the characters as typed, shown as typed). Numbers, dates and booleans stay what they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def row(ws: Any, values: Iterable[Any]) -> list[Any]:
    """``values`` for ``ws.append`` (a write-only or an ordinary worksheet): a string openpyxl would
    take for a formula becomes a cell of text; cells given as such are marked the same way."""
    from openpyxl.cell import Cell, WriteOnlyCell

    out: list[Any] = []
    for value in values:
        if isinstance(value, Cell):
            cell = value
        elif isinstance(value, str) and value.startswith("="):
            cell = WriteOnlyCell(ws, value=value)
        else:
            out.append(value)
            continue
        if cell.data_type == "f":
            cell.data_type = "s"
        out.append(cell)
    return out
