"""Line charts as inline SVG, drawn on the server: no JavaScript, no CDN, no build step.

One chart is a few series of numbers over the same x values (snapshot times). Each point is
a ``<circle>`` with a ``<title>`` (the browser's tooltip), each series a ``<polyline>``;
the axes carry the smallest and largest value and the first and last time. Every text
goes through :func:`~django.utils.html.format_html`, so a table called ``<script>`` stays
text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from django_dbtuning.report.wrapping import printable

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 78, 12, 14, 46
# Colour-blind-safe (Okabe-Ito), distinct on the admin's light and dark themes.
COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9")


def _text(label: str) -> str:
    """A label an XML parser accepts too: control characters shown as escapes (as in the
    text report), the two non-characters XML forbids replaced."""
    return printable(label).replace("\ufffe", "\ufffd").replace("\uffff", "\ufffd")


@dataclass(frozen=True)
class Series:
    """One line: a label and one value per x (None: no value at that x)."""

    label: str
    values: Sequence[float | None]


def _scale(low: float, high: float, value: float, span: float) -> float:
    return span / 2 if high == low else (value - low) / (high - low) * span


def _points(
    xs: Sequence[float], series: Series, low: float, high: float
) -> list[list[tuple[float, float, float]]]:
    """The series' points as runs: a None value (no data, or a counter reset) ends a run,
    so the line has a gap there instead of bridging it."""
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 0.0)
    runs: list[list[tuple[float, float, float]]] = [[]]
    for x, value in zip(xs, series.values, strict=False):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        px = LEFT + _scale(x_low, x_high, x, width)
        py = TOP + height - _scale(low, high, value, height)
        runs[-1].append((round(px, 1), round(py, 1), value))
    return [run for run in runs if run]


def line_chart(
    title: str,
    times: Sequence[datetime],
    series: Sequence[Series],
    *,
    unit: Callable[[float], str] = lambda v: f"{v:,.0f}",
) -> SafeString:
    """An SVG line chart of ``series`` over ``times``; ``unit`` formats a value."""
    values = [v for s in series for v in s.values if v is not None]
    if not times or not values:
        return format_html(
            '<p class="dbtuning-empty">{}: no data yet.</p>', _text(title)
        )
    title = _text(title)
    low, high = min(0.0, min(values)), max(values)
    xs = [t.timestamp() for t in times]
    lines = []
    for number, one in enumerate(series):
        colour = COLOURS[number % len(COLOURS)]
        points = _points(xs, one, low, high)
        lines.append(_line(one.label, points, colour, unit))
    return format_html(
        '<figure class="dbtuning-chart"><figcaption><h3>{}</h3>{}</figcaption>'
        '<svg xmlns="http://www.w3.org/2000/svg" '
        'viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">'
        "<title>{}</title>{}{}</svg></figure>",
        title,
        _legend(series),
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        title,
        title,
        _axes(times, low, high, unit),
        mark_safe("".join(lines)),  # each part escaped by format_html
    )


def _line(
    label: str,
    runs: list[list[tuple[float, float, float]]],
    colour: str,
    unit: Callable[[float], str],
) -> SafeString:
    lines = format_html_join(
        "",
        '<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>',
        ((colour, " ".join(f"{x},{y}" for x, y, _ in run)) for run in runs),
    )
    points = [point for run in runs for point in run]
    dots = format_html_join(
        "",
        '<circle class="dbtuning-point" cx="{}" cy="{}" r="3" fill="{}">'
        "<title>{}: {}</title></circle>",
        ((x, y, colour, _text(label), unit(v)) for x, y, v in points),
    )
    return format_html('<g class="dbtuning-series">{}{}</g>', lines, dots)


def _axes(
    times: Sequence[datetime], low: float, high: float, unit: Callable[[float], str]
) -> SafeString:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    first, last = times[0], times[-1]
    return format_html(
        '<g class="dbtuning-axes" fill="currentColor" font-size="11">'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor"/>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor"/>'
        '<text x="{}" y="{}" text-anchor="end">{}</text>'
        '<text x="{}" y="{}" text-anchor="end">{}</text>'
        '<text x="{}" y="{}" text-anchor="start">{}</text>'
        '<text x="{}" y="{}" text-anchor="end">{}</text></g>',
        LEFT,
        TOP,
        LEFT,
        bottom,
        LEFT,
        bottom,
        right,
        bottom,
        LEFT - 6,
        TOP + 10,
        unit(high),
        LEFT - 6,
        bottom,
        unit(low),
        LEFT,
        bottom + 16,
        f"{first:%Y-%m-%d %H:%M}",
        right,
        bottom + 16,
        f"{last:%Y-%m-%d %H:%M}" if last != first else "",
    )


def _legend(series: Sequence[Series]) -> SafeString:
    return format_html_join(
        " ",
        '<span class="dbtuning-legend"><span style="color: {}">&#9632;</span> {}</span>',
        ((COLOURS[n % len(COLOURS)], _text(s.label)) for n, s in enumerate(series)),
    )
