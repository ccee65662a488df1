"""Server-side SVG charts for the dashboard: no JavaScript, no external assets.

Every piece of text that reaches the SVG (labels, tooltips) goes through ``markupsafe.escape``
here, so the result can be returned as ``Markup`` and dropped into an autoescaped template
without a second pass. Colours are presentation attributes rather than ``style`` so a strict
Content-Security-Policy (no inline styles) still lets the chart render.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class BarPoint:
    label: str  # shown under the bar (when there is room)
    value: float
    tooltip: str  # the bar's <title>: browsers show it on hover, screen readers read it


def nice_step(maximum: float, max_ticks: int = 5) -> float:
    """A 1/2/5×10^k step so that ``max_ticks`` steps reach at least ``maximum``."""
    if maximum <= 0:
        return 1.0
    raw = maximum / max_ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10.0 * magnitude  # unreachable: factor 10 always covers raw


def _num(value: float) -> str:
    """Coordinates with two decimals at most: short markup, no float noise like 0.30000000004."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _tick_label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def bar_chart_svg(
    points: Sequence[BarPoint],
    *,
    title: str,
    width: int = 720,
    height: int = 220,
    max_labels: int = 10,
) -> Markup:
    """A vertical bar chart with a y axis (nice ticks), x labels and a tooltip per bar.

    With many bars only every k-th label is drawn so they do not overlap; every bar keeps its
    tooltip. ``title`` labels the whole chart for assistive technology.
    """
    left, right, top, bottom = 40.0, 10.0, 10.0, 28.0
    plot_w = width - left - right
    plot_h = height - top - bottom
    peak = max((p.value for p in points), default=0.0)
    step = nice_step(peak)
    if all(float(p.value).is_integer() for p in points):
        step = max(step, 1.0)  # counts: no "0.2 questions" gridlines
    y_max = step * max(1, math.ceil(peak / step))
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]

    def y_of(value: float) -> float:
        return top + plot_h - plot_h * (value / y_max)

    # Gridlines and tick labels first, so bars are drawn over them.
    ticks = round(y_max / step)
    for i in range(ticks + 1):
        value = step * i
        y = y_of(value)
        parts.append(
            f'<line x1="{_num(left)}" y1="{_num(y)}" x2="{_num(width - right)}" y2="{_num(y)}" '
            f'stroke="#d0d7de" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{_num(left - 6)}" y="{_num(y + 4)}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{escape(_tick_label(value))}</text>'
        )
    parts.append(
        f'<line x1="{_num(left)}" y1="{_num(top)}" x2="{_num(left)}" y2="{_num(top + plot_h)}" '
        f'stroke="#57606a" stroke-width="1"/>'
    )

    if points:
        slot = plot_w / len(points)
        bar_w = max(1.0, slot * 0.8)
        every = max(1, math.ceil(len(points) / max_labels))
        for i, point in enumerate(points):
            x = left + slot * i + (slot - bar_w) / 2
            y = y_of(max(0.0, point.value))
            # One group per day: an invisible full-height column carries the tooltip too, so a
            # zero bar (no height to hover) still tells its count.
            parts.append(
                f'<g class="bar"><title>{escape(point.tooltip)}</title>'
                f'<rect x="{_num(left + slot * i)}" y="{_num(top)}" width="{_num(slot)}" '
                f'height="{_num(plot_h)}" fill="#000" fill-opacity="0"/>'
                f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(bar_w)}" '
                f'height="{_num(top + plot_h - y)}" fill="#2f81f7"/></g>'
            )
            # Count from the right so the last bar ("today", the one people look for) is labelled.
            if (len(points) - 1 - i) % every == 0:
                parts.append(
                    f'<text x="{_num(left + slot * i + slot / 2)}" y="{_num(height - 10)}" '
                    f'text-anchor="middle" font-size="11" fill="#57606a">'
                    f"{escape(point.label)}</text>"
                )
    parts.append("</svg>")
    return Markup("".join(parts))
