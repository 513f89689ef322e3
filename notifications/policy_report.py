"""The policy take-up report as an XLSX sheet, in the current locale."""

from __future__ import annotations

import io
from collections.abc import Sequence

from services.i18n import _
from services.policies import ReportRow, pick
from services.sheets import row


def report_sheet(rows: Sequence[ReportRow], locale: str, title: str) -> bytes:
    """A title row, a header and one row per policy (take-up as a percentage)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "policies"
    ws.append(row(ws, [title]))
    ws.append([_("Code"), _("Programme"), _("Eligible"), _("Unknown"), _("Notified"), _("Applied"), _("Enrolled"),
               _("Declined"), _("Take-up (%)")])
    for r in rows:
        ws.append(row(ws, [r.code, pick(r.title, locale), r.eligible, r.unknown, r.notified, r.applied, r.enrolled,
                           r.declined, None if r.take_up is None else float(round(r.take_up * 100, 1))]))
    ws.column_dimensions["A"].width = 28
    ws.column_dimensions["B"].width = 36
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
