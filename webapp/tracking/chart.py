"""Geometry for the dashboard chart: weights as dots, the trend as a line, the goal as a dashed line.

The server draws the chart as inline SVG (templates/tracking/_chart.html); this module only
computes coordinates and labels, so it can be tested without a browser and no chart script ships.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from ..units import format_weight, from_grams
from .trend import DayPoint

WIDTH = 640
HEIGHT = 280
# Room for the axis labels: left for weights, bottom for dates.
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 52, 12, 12, 28
CHART_DAYS = 90
NICE_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200)


@dataclass
class Chart:
    """Everything the SVG template draws, in SVG user units."""

    width: int = WIDTH
    height: int = HEIGHT
    dots: list[tuple[float, float, str]] = field(default_factory=list)  # x, y, "12 Mar: 72.4 kg"
    trend_line: str = ""  # "x,y x,y ..." for <polyline points>
    goal_y: float | None = None
    goal_label: str = ""
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    plot: tuple[float, float, float, float] = (PAD_LEFT, PAD_TOP, WIDTH - PAD_RIGHT, HEIGHT - PAD_BOTTOM)
    description: str = ""
    rows: list[tuple[date, str, str]] = field(default_factory=list)  # the text alternative's table

    @property
    def empty(self) -> bool:
        return not self.dots


def _nice_step(span: float, ticks: int = 5) -> float:
    """The smallest round step that splits `span` into at most `ticks` intervals."""
    for step in NICE_STEPS:
        if span / step <= ticks:
            return step
    return NICE_STEPS[-1]


def _day_label(day: date) -> str:
    return f"{day.day} {day:%b}"


def build_chart(points: Sequence[DayPoint], target_g: int | None, unit: str, days: int = CHART_DAYS) -> Chart:
    """Lay out the last `days` days of points (and the goal) on the chart, in the user's unit."""
    chart = Chart()
    if not points:
        chart.description = "No weights logged yet."
        return chart
    last_day = points[-1].day
    shown = [p for p in points if (last_day - p.day).days <= days]
    first_day = shown[0].day

    values = [from_grams(p.weight_g, unit) for p in shown] + [from_grams(p.trend_g, unit) for p in shown]
    if target_g is not None:
        values.append(from_grams(target_g, unit))
    low, high = min(values), max(values)
    step = _nice_step(max(high - low, 0.5))
    low = math.floor(low / step) * step
    high = math.ceil(high / step) * step
    if high - low < step:
        high = low + step

    left, top, right, bottom = chart.plot
    day_span = max((last_day - first_day).days, 1)

    def x_of(day: date) -> float:
        # A single day sits in the middle rather than on the axis.
        if first_day == last_day:
            return round((left + right) / 2, 1)
        return round(left + (right - left) * (day - first_day).days / day_span, 1)

    def y_of(value: float) -> float:
        return round(bottom - (bottom - top) * (value - low) / (high - low), 1)

    for p in shown:
        label = f"{_day_label(p.day)}: {format_weight(p.weight_g, unit)}"
        chart.dots.append((x_of(p.day), y_of(from_grams(p.weight_g, unit)), label))
    chart.trend_line = " ".join(f"{x_of(p.day)},{y_of(from_grams(p.trend_g, unit))}" for p in shown)
    if target_g is not None:
        chart.goal_y = y_of(from_grams(target_g, unit))
        chart.goal_label = f"Goal {format_weight(target_g, unit)}"

    tick_count = round((high - low) / step)
    decimals = 1 if step < 1 else 0
    for i in range(tick_count + 1):
        value = low + i * step
        chart.y_ticks.append((y_of(value), f"{value:.{decimals}f}"))

    # About four date labels, evenly spread, ending on the last day without crowding it.
    label_every = max(1, math.ceil(day_span / 4))
    day = first_day
    while first_day == last_day or (last_day - day).days * 2 >= label_every:
        chart.x_ticks.append((x_of(day), _day_label(day)))
        if first_day == last_day:
            break
        day += timedelta(days=label_every)
    if first_day != last_day:
        chart.x_ticks.append((x_of(last_day), _day_label(last_day)))

    chart.rows = [
        (p.day, format_weight(p.weight_g, unit), format_weight(p.trend_g, unit)) for p in reversed(shown)
    ]
    latest = shown[-1]
    parts = [
        f"{len(shown)} day{'s' if len(shown) != 1 else ''} of weights from {_day_label(first_day)} to "
        f"{_day_label(last_day)}, between {format_weight(min(p.weight_g for p in shown), unit)} and "
        f"{format_weight(max(p.weight_g for p in shown), unit)}.",
        f"Trend now {format_weight(latest.trend_g, unit)}.",
    ]
    if target_g is not None:
        parts.append(f"Goal {format_weight(target_g, unit)}.")
    chart.description = " ".join(parts)
    return chart
