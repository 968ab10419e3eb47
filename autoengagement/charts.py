"""Server-side SVG charts for the admin results pages: no JavaScript, no CDN, nothing fetched by the browser.

Every value drawn is a number or a date formatted here, and text goes through escape(), so the markup is safe to
mark_safe in the template.
"""

import math
from collections.abc import Sequence

from django.utils.html import escape

from autoengagement.stats import DailyPoint, Uplift

SERIES = (
    ("sent", "Sent", "#2b6cb0"),
    ("failed", "Failed", "#c53030"),
    ("reactivated", "Reactivated", "#2f855a"),
)
WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 28, 40


def _nice_ceiling(value: int) -> int:
    """A round axis maximum (1, 2, 5 times a power of ten) at or above value."""
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def daily_chart_svg(daily: Sequence[DailyPoint]) -> str:
    """Lines of sent, failed and reactivated per day, one marked point per day and series, with a legend."""
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_value = _nice_ceiling(max((max(p.sent, p.failed, p.reactivated) for p in daily), default=0))
    step = plot_width / max(len(daily) - 1, 1)

    def x(index: int) -> float:
        return LEFT + (index * step if len(daily) > 1 else plot_width / 2)

    def y(value: int) -> float:
        return TOP + plot_height - value / top_value * plot_height

    parts = [
        f'<svg id="daily-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" style="max-width:{WIDTH}px" role="img" aria-label="Daily sent, failed and reactivated">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#ccc"/>',
    ]
    for tick in range(5):
        value = top_value * tick / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eee"/>'
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" font-size="11" text-anchor="end" fill="#555">'
            f"{value:g}</text>"
        )
    label_every = max(1, math.ceil(len(daily) / 10))
    for index, point in enumerate(daily):
        if index % label_every == 0 or index == len(daily) - 1:
            parts.append(
                f'<text x="{x(index):.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" text-anchor="middle" '
                f'fill="#555">{point.date.strftime("%m-%d")}</text>'
            )
    for key, label, colour in SERIES:
        coordinates = " ".join(f"{x(i):.1f},{y(getattr(p, key)):.1f}" for i, p in enumerate(daily))
        parts.append(
            f'<polyline class="series series-{key}" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{coordinates}"/>'
        )
        for index, point in enumerate(daily):
            value = getattr(point, key)
            parts.append(
                f'<circle class="point point-{key}" cx="{x(index):.1f}" cy="{y(value):.1f}" r="3" fill="{colour}" '
                f'data-date="{point.date.isoformat()}" data-value="{value}">'
                f"<title>{point.date.isoformat()}: {escape(label.lower())} {value}</title></circle>"
            )
    for position, (_key, label, colour) in enumerate(SERIES):
        left = LEFT + position * 130
        parts.append(
            f'<rect x="{left}" y="8" width="12" height="12" fill="{colour}"/>'
            f'<text x="{left + 18}" y="18" font-size="12" fill="#333">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# Tick spacings of the uplift axis, in percentage points: round numbers only.
UPLIFT_TICK_POINTS = (1, 2, 5, 10, 20, 25, 50)
MAX_UPLIFT_TICKS = 5  # each side of zero


def uplift_ticks(reach_points: float) -> tuple[int, int]:
    """(spacing, count): the axis runs from -count*spacing to +count*spacing percentage points and covers
    `reach_points` (at least 5), with at most MAX_UPLIFT_TICKS ticks each side at round values (1, 2, 5, 10, 20,
    25, 50 points apart), so labels read -20, -10, 0, +10, +20, never -22 or +38."""
    reach = min(max(reach_points, 5.0), 100.0)
    for spacing in UPLIFT_TICK_POINTS:
        count = math.ceil(reach / spacing - 1e-9)
        if count <= MAX_UPLIFT_TICKS:
            return spacing, count
    return 50, 2


def uplift_chart_svg(uplift: Uplift | None) -> str:
    """The uplift as a dot on a percentage-point axis with its 95% interval as a bar, and the zero line."""
    width, height, margin = WIDTH, 90, 40
    if uplift is None:
        return (
            f'<svg id="uplift-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="100%" style="max-width:{width}px" role="img" aria-label="No uplift yet">'
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="13" fill="#555">'
            "No uplift yet: it needs customers in both the reached and the holdout group.</text></svg>"
        )
    tick_points, ticks = uplift_ticks(max(abs(uplift.ci95_low), abs(uplift.ci95_high)) * 100)
    bound = tick_points * ticks / 100

    def x(value: float) -> float:
        return margin + (value + bound) / (2 * bound) * (width - 2 * margin)

    axis_y = 50
    parts = [
        f'<svg id="uplift-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" role="img" aria-label="Uplift with its 95% interval">',
        f'<line x1="{margin}" x2="{width - margin}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>',
    ]
    for tick in range(-ticks, ticks + 1):
        value = tick_points * tick / 100
        parts.append(
            f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{axis_y - 4}" y2="{axis_y + 4}" stroke="#999"/>'
            f'<text x="{x(value):.1f}" y="{axis_y + 20}" font-size="11" text-anchor="middle" fill="#555">'
            f"{value * 100:+.0f} pts</text>"
        )
    colour = "#2f855a" if uplift.ci95_low > 0 else ("#c53030" if uplift.ci95_high < 0 else "#b7791f")
    parts += [
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="10" y2="{axis_y + 8}" stroke="#333" stroke-dasharray="3,3"/>',
        f'<rect class="interval" x="{x(uplift.ci95_low):.1f}" y="{axis_y - 9}" '
        f'width="{max(x(uplift.ci95_high) - x(uplift.ci95_low), 1):.1f}" height="18" fill="{colour}" '
        f'fill-opacity="0.3" stroke="{colour}"/>',
        f'<circle class="estimate" cx="{x(uplift.estimate):.1f}" cy="{axis_y}" r="6" fill="{colour}"/>',
        f'<text x="{x(uplift.estimate):.1f}" y="{axis_y - 16}" font-size="13" text-anchor="middle" '
        f'fill="#222">{uplift.estimate * 100:+.1f} pts (95% CI {uplift.ci95_low * 100:+.1f} to '
        f"{uplift.ci95_high * 100:+.1f})</text>",
        "</svg>",
    ]
    return "".join(parts)
