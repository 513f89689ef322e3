"""Small charts as inline SVG, drawn on the server (no script, no library): bars, shares, a meter.

Each returns ``Markup`` that scales with its box (``viewBox``); colours come from the stylesheet
by class (``bar-ok``, ``bar-bad``, …), labels and titles are escaped here.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 400
ROW = 24
LABEL = 130  # the label column, in viewBox units
VALUE = 56  # the value column on the right


def _svg(height: int, title: str, body: Markup) -> Markup:
    return Markup('<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}" '
                  'preserveAspectRatio="xMinYMin meet"><title>{t}</title>{body}</svg>').format(
        w=WIDTH, h=height, t=title, body=body)


def _label(y: float, text: str) -> Markup:
    shown = text if len(text) <= 16 else text[:15] + "…"
    return Markup('<text class="chart-label" x="0" y="{y}">{t}</text>').format(y=y, t=shown)


def bars(items: Sequence[tuple[str, int, str]], *, title: str) -> Markup:
    """Horizontal bars: one row per ``(label, value, kind)``, scaled to the largest value."""
    top = max((v for _l, v, _k in items), default=0) or 1
    span = WIDTH - LABEL - VALUE
    parts = []
    for i, (label, value, kind) in enumerate(items):
        y = i * ROW
        width = round(span * value / top, 1)
        parts.append(_label(y + 16, label))
        parts.append(Markup('<rect class="bar bar-{k}" x="{x}" y="{y}" width="{w}" height="{h}" rx="3"/>').format(
            k=kind, x=LABEL, y=y + 4, w=max(width, 1 if value else 0), h=ROW - 8))
        parts.append(Markup('<text class="chart-value" x="{x}" y="{y}">{v}</text>').format(
            x=LABEL + width + 6, y=y + 16, v=value))
    return _svg(max(ROW, len(items) * ROW), title, Markup("").join(parts))


def shares(items: Sequence[tuple[str, int, int]], *, title: str) -> Markup:
    """One bar per ``(label, part, whole)``: the part's share of its whole, with ``part/whole``."""
    span = WIDTH - LABEL - VALUE
    parts = []
    for i, (label, part, whole) in enumerate(items):
        y = i * ROW
        width = round(span * part / whole, 1) if whole else 0
        parts.append(_label(y + 16, label))
        parts.append(Markup('<rect class="bar bar-track" x="{x}" y="{y}" width="{w}" height="{h}" rx="3"/>').format(
            x=LABEL, y=y + 4, w=span, h=ROW - 8))
        parts.append(Markup('<rect class="bar bar-ok" x="{x}" y="{y}" width="{w}" height="{h}" rx="3"/>').format(
            x=LABEL, y=y + 4, w=width, h=ROW - 8))
        parts.append(Markup('<text class="chart-value" x="{x}" y="{y}">{p}/{n}</text>').format(
            x=LABEL + span + 6, y=y + 16, p=part, n=whole))
    return _svg(max(ROW, len(items) * ROW), title, Markup("").join(parts))


def meter(fraction: float, *, size: int = 120) -> Markup:
    """A ring filled to ``fraction`` (0–1) with the percentage in the middle."""
    fraction = min(max(fraction, 0.0), 1.0)
    r = size / 2 - 10
    circumference = 2 * 3.141592653589793 * r
    filled = round(circumference * fraction, 2)
    centre = size / 2
    percent = escape(f"{fraction * 100:.0f}%")
    return Markup(
        '<svg class="meter" viewBox="0 0 {s} {s}" role="img" aria-label="{p}"><title>{p}</title>'
        '<circle class="meter-track" cx="{c}" cy="{c}" r="{r}"/>'
        '<circle class="meter-fill" cx="{c}" cy="{c}" r="{r}" stroke-dasharray="{f} {g}" '
        'transform="rotate(-90 {c} {c})"/>'
        '<text class="meter-text" x="{c}" y="{ty}" text-anchor="middle">{p}</text></svg>').format(
        s=size, c=centre, r=r, f=filled, g=round(circumference - filled, 2), p=percent, ty=centre + 7)
