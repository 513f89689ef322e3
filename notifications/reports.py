"""Files made from report data: the weekly check-in chart (PNG) and sheet (XLSX), and any list as a
sheet (``table_sheet``, the console's exports).

Services count (``services.checkins.WeeklyReport``); this module draws and writes, in the current
locale. Both builders are plain functions of the data, cheap enough to run in a worker thread
(``asyncio.to_thread`` keeps the caller's locale).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from notifications.messages.checkins import report_title
from services.checkins import WeeklyReport
from services.i18n import _
from services.sheets import row


def weekly_sheet(report: WeeklyReport) -> bytes:
    """The week as an XLSX sheet: a title row, a header, one row per day and a total row."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "checkins"
    ws.append(row(ws, [report_title(report.committee, report.start.isoformat(), report.end.isoformat())]))
    ws.append([_("Date"), _("Asked"), _("I'm fine"), _("I need help"), _("Alerts"), _("Answer rate")])
    for d in report.days:
        ws.append([d.day.isoformat(), d.rounds, d.ok, d.help, d.alerted,
                   round(d.rate * 100, 1) if d.rate is not None else None])
    ws.append([_("Total"), report.rounds, sum(d.ok for d in report.days), sum(d.help for d in report.days),
               sum(d.alerted for d in report.days), round(report.rate * 100, 1) if report.rate is not None else None])
    ws.column_dimensions["A"].width = 14
    if report.helpers:  # who answered for elders who cannot answer themselves, and how often late
        hs = wb.create_sheet("helpers")
        hs.append([_("Helper"), _("Asked"), _("Answered"), _("Late"), _("No answer")])
        for h in report.helpers:
            hs.append(row(hs, [h.name or _("the committee's staff on duty"), h.asked, h.answered, h.late, h.silent]))
        hs.column_dimensions["A"].width = 24
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def chart_title(report: WeeklyReport) -> str:
    # Codes, dates and numbers only: the chart is drawn without a CJK font.
    return f"{report.code} · {report.start.isoformat()} – {report.end.isoformat()} · {report.answered}/{report.rounds}"


def weekly_chart(report: WeeklyReport) -> bytes:
    """Answer rate per day as a bar chart, titled with the committee code, the dates and the week's
    answers; a day without rounds shows as an empty bar with no label."""
    # Figure + Agg canvas directly: no pyplot global state, safe in a worker thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    days = report.days
    labels = [d.day.strftime("%m-%d") for d in days]
    rates = [(d.rate or 0) * 100 for d in days]
    bars = ax.bar(labels, rates, color=["#2e7d32" if (d.rate or 0) >= 0.9 else "#f9a825" for d in days])
    for bar, d in zip(bars, days, strict=True):
        if d.rounds:
            ax.annotate(f"{d.answered}/{d.rounds}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
    ax.set_title(chart_title(report), fontsize=10)
    ax.set_ylim(0, 110)
    ax.set_ylabel("%")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_weekly_files(folder: Path, stem: str, report: WeeklyReport) -> tuple[str, str]:
    """Write ``<stem>.png`` and ``<stem>.xlsx`` under ``folder``; returns their absolute paths (the
    sender that uploads them may run in another working directory)."""
    folder = folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    png, xlsx = folder / f"{stem}.png", folder / f"{stem}.xlsx"
    png.write_bytes(weekly_chart(report))
    xlsx.write_bytes(weekly_sheet(report))
    return str(png), str(xlsx)


def table_sheet(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, sheet: str = "list") -> bytes:
    """Any list as an XLSX sheet: a title row, a bold header row, then the rows as given (the caller
    has put them in words, in the current locale). Written in openpyxl's write-only mode, so a list of
    tens of thousands of rows costs little memory; run it in a worker thread for big lists."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet[:31])
    ws.append(row(ws, [title]))
    bold = Font(bold=True)
    header = []
    for text in headers:
        cell = WriteOnlyCell(ws, value=text)
        cell.font = bold
        header.append(cell)
    ws.append(row(ws, header))
    for values in rows:
        ws.append(row(ws, values))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
