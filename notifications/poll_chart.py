"""The bar chart of a poll's results (PNG), drawn from ``services.polls.PollResults``.

Option texts are usually Chinese: the chart finds a CJK font through matplotlib's font manager by
family name (the README's first command installs Debian's ``fonts-wqy-microhei``; ``fonts-noto-cjk``
works too). Without one it numbers the bars 1, 2, 3 (the message lists the options by the same
numbers) rather than drawing empty boxes, and logs once how to fix it.
"""

from __future__ import annotations

import functools
import io
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from services.polls import ChartWriter, PollConfig, PollResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

# Families that draw simplified Chinese, best first: Debian's fonts-noto-cjk and fonts-wqy-*, then
# what other systems ship.
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
                "WenQuanYi Zen Hei", "Droid Sans Fallback", "AR PL UMing CN", "PingFang SC", "SimHei",
                "Microsoft YaHei")
LATIN_FALLBACK = "DejaVu Sans"  # matplotlib's own font: digits and m² where the CJK font lacks a glyph


def _installed_cjk_family() -> str | None:
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FAMILIES if name in installed), None)


@functools.cache
def cjk_font() -> str | None:
    """The first installed font family that draws Chinese, or None (then logged once, with the fix)."""
    from matplotlib import font_manager

    family = _installed_cjk_family()
    if family is None:
        # matplotlib caches its font list on first use; a font installed after that is not in it yet.
        known = {f.fname for f in font_manager.fontManager.ttflist}
        for path in font_manager.findSystemFonts():
            if path not in known:
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):  # a file FreeType cannot read
                    continue
        family = _installed_cjk_family()
    if family is None:
        log.warning("no CJK font found (tried %s): poll charts number their bars instead of naming the options; "
                    "install one, e.g. apt-get install -y fonts-wqy-microhei", ", ".join(CJK_FAMILIES))
    return family


def _label(text: str, n: int, font: str | None) -> str:
    if font is None and not text.isascii():
        return str(n)
    return text if len(text) <= 14 else text[:13] + "…"


def poll_chart(results: PollResults) -> bytes:
    """Ballots per option as bars, each labelled with its count (and area for owner votes), as PNG."""
    buf = io.BytesIO()
    poll_figure(results).savefig(buf, format="png")
    return buf.getvalue()


def poll_figure(results: PollResults) -> Figure:
    """The chart as a matplotlib figure (Agg canvas, no pyplot state: safe in a worker thread)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    font = cjk_font()
    fig = Figure(figsize=(7, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = [_label(o.text, n, font) for n, o in enumerate(results.options, start=1)]
    votes = [o.votes or 0 for o in results.options]
    colours = ["#2e7d32", "#c62828", "#9e9e9e", "#1565c0", "#f9a825", "#6a1b9a", "#00838f", "#ef6c00", "#5d4037",
               "#455a64"]
    bars = ax.bar(range(len(votes)), votes, color=colours[: len(votes)])
    ax.set_xticks(range(len(votes)), labels, fontfamily=[font, LATIN_FALLBACK] if font else LATIN_FALLBACK)
    for bar, o in zip(bars, results.options, strict=True):
        note = f"{o.votes or 0}" + (f"\n{o.area:g} m²" if o.area is not None else "")
        ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max([*votes, 1]) * 1.3)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # votes are whole: no 0.2, 0.4 … on the axis
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(f"#{results.id} · {results.voted_units}/{results.eligible_units}", fontsize=10)
    fig.tight_layout()
    return fig


def chart_writer(cfg: PollConfig) -> ChartWriter | None:
    """The writer a poll's closing uses to draw its chart (None when the config names no folder)."""
    return partial(write_poll_chart, Path(cfg.reports_dir)) if cfg.reports_dir else None


def write_poll_chart(folder: Path, results: PollResults) -> str:
    """Draw the chart into ``folder`` and return its path (for the outbox's photo)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"poll-{results.id}.png"
    path.write_bytes(poll_chart(results))
    return str(path)
