"""Line charts as inline SVG, drawn on the server: no JavaScript, no chart library, nothing fetched.

Colours are CSS custom properties of the page (`--series-0` ...), so the chart follows dark mode. Each series is
one `<polyline>` with one coordinate pair per point (tests count them) plus a marker per point with a `<title>`
(the value on hover) while the series is short enough for markers to be legible.
"""

from __future__ import annotations

import math
from html import escape

MARKERS_UP_TO = 200  # points per series; beyond that the markers would only blur the line


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def _label(v: float) -> str:
    return f"{v:.4g}"


def line_chart(series: list[tuple[str, list[tuple[float, float]]]], *, title: str, x_label: str = "epoch",
               width: int = 640, height: int = 280) -> str:
    """An SVG chart of (label, [(x, y), ...]) series sharing the axes; empty series are left out."""
    series = [(label, [(float(x), float(y)) for x, y in pts if math.isfinite(y)]) for label, pts in series]
    series = [(label, pts) for label, pts in series if pts]
    left, right, top, bottom = 64, 16, 36, 44
    pw, ph = width - left - right, height - top - bottom
    desc = f"{title}: " + "; ".join(f"{label}, {len(pts)} points" for label, pts in series)
    head = (f'<svg class="chart" role="img" aria-label="{escape(desc)}" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
            f"<title>{escape(desc)}</title>")
    parts = [head, f'<text class="chart-title" x="{left}" y="20">{escape(title)}</text>']
    if not series:
        parts.append(f'<text class="axis" x="{left}" y="{top + ph / 2:.0f}">no data</text></svg>')
        return "".join(parts)
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts.append(f'<rect class="plot" x="{left}" y="{top}" width="{pw}" height="{ph}"/>')
    for t in _ticks(y0, y1):
        parts.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}"/>'
                     f'<text class="axis" x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{_label(t)}</text>')
    x_ticks = [t for t in _ticks(x0, x1, 6) if float(t).is_integer()] or [x0, x1]
    if min(xs) < x_ticks[0] and (len(x_ticks) < 2 or x_ticks[0] - min(xs) >= (x_ticks[1] - x_ticks[0]) / 2):
        x_ticks.insert(0, min(xs))  # the first epoch gets its label
    for t in x_ticks:
        parts.append(f'<text class="axis" x="{px(t):.1f}" y="{top + ph + 16}" text-anchor="middle">{_label(t)}</text>')
    parts.append(f'<text class="axis" x="{left + pw / 2:.0f}" y="{height - 6}" text-anchor="middle">'
                 f"{escape(x_label)}</text>")
    for i, (label, pts) in enumerate(series):
        cls = f"series series-{i % 6}"
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f'<g class="{cls}" data-label="{escape(label)}" data-points="{len(pts)}">'
                     f'<polyline fill="none" points="{coords}"/>')
        if len(pts) <= MARKERS_UP_TO:
            for x, y in pts:
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5">'
                             f"<title>{escape(label)} {x_label} {_label(x)}: {y:.6g}</title></circle>")
        parts.append("</g>")
        lx = width - right - (len(series) - i) * 140
        parts.append(f'<g class="{cls} legend"><line x1="{lx}" x2="{lx + 18}" y1="16" y2="16"/>'
                     f'<text class="axis" x="{lx + 22}" y="20">{escape(label)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
