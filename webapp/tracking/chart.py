"""Geometry for the dashboard chart: weights as dots, the trend as a line, the goal as a dashed line.

The server draws the chart as inline SVG (templates/tracking/_chart.html); this module only
computes coordinates and labels, so it can be tested without a browser and no chart script ships.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from flask_babel import gettext as _
from flask_babel import ngettext
from markupsafe import Markup

from ..formatting import date_locale, format_day
from ..units import decimal_sign, format_weight, from_grams, localise_number
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
    # The text alternative's table: the day, its text, the day's weight and the trend.
    rows: list[tuple[date, str, str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.dots

    def dots_markup(self) -> Markup:
        """The <circle> of every dot, each with its label as a tooltip, as one piece of SVG.

        Built here rather than in a template loop: with 90 days shown, a loop costs hundreds of
        small template calls and escapes per page. Nothing here needs escaping: coordinates are
        floats and labels are a day, a formatted number and the unit (kg or lb, checked by
        from_grams), all written by build_chart.
        """
        return Markup(
            "\n      ".join(
                f'<circle class="weight-dot" cx="{x}" cy="{y}" r="3.5"><title>{label}</title></circle>'
                for x, y, label in self.dots
            )
        )

    def rows_markup(self) -> Markup:
        """The text alternative's table rows (day, the day's mean, the trend), newest first.

        Like the dots, written by build_chart from numbers, dates and the unit: nothing to escape.
        """
        return Markup(
            "\n      ".join(
                f'<tr><td>{day_text}</td><td class="num">{weight}</td><td class="num">{trend}</td></tr>'
                for _day, day_text, weight, trend in self.rows
            )
        )


def _nice_step(span: float, ticks: int = 5) -> float:
    """The smallest round step that splits `span` into at most `ticks` intervals."""
    for step in NICE_STEPS:
        if span / step <= ticks:
            return step
    return NICE_STEPS[-1]


def build_chart(
    points: Sequence[DayPoint],
    target_g: int | None,
    unit: str,
    days: int = CHART_DAYS,
    today: date | None = None,
) -> Chart:
    """Lay out the last `days` days of points (and the goal) on the chart, in the user's unit.

    The time axis ends today (in the user's zone), so a week without weights shows as a gap at the
    right rather than a chart that looks current; with no weight in the window, the last one stays.
    """
    chart = Chart()
    # The language's decimal sign and date pattern, looked up once for the hundred-odd numbers
    # and days a chart writes (each lookup goes through Flask-Babel's request context).
    sign, dates = decimal_sign(), date_locale()
    if not points:
        chart.description = _("No weights logged yet.")
        return chart
    data_last_day = points[-1].day
    last_day = max(data_last_day, today) if today is not None else data_last_day
    shown = [p for p in points if (last_day - p.day).days <= days] or [points[-1]]
    first_day = shown[0].day

    weights = [from_grams(p.weight_g, unit) for p in shown]
    trends = [from_grams(p.trend_g, unit) for p in shown]
    values = weights + trends
    if target_g is not None:
        values.append(from_grams(target_g, unit))
    low, high = min(values), max(values)
    step = _nice_step(max(high - low, 0.5))
    low = math.floor(low / step) * step
    high = math.ceil(high / step) * step
    if high - low < step:
        high = low + step

    left, top, right, bottom = chart.plot
    line: list[str] = []
    day_span = max((last_day - first_day).days, 1)

    def x_of(day: date) -> float:
        # A single day sits in the middle rather than on the axis.
        if first_day == last_day:
            return round((left + right) / 2, 1)
        return round(left + (right - left) * (day - first_day).days / day_span, 1)

    def amount(value: float) -> str:
        # One decimal, the locale's decimal sign and the unit, as the cards show a weight.
        return f"{localise_number(f'{value:.1f}', sign)} {unit}"

    def day_label(day: date) -> str:
        return format_day(day, with_year=False, locale=dates)

    def y_of(value: float) -> float:
        return round(bottom - (bottom - top) * (value - low) / (high - low), 1)

    # Each point's weights in the unit, converted once: the dots, the line, the labels and the
    # table all read them (from_grams is exact decimal arithmetic, too slow to repeat per use).
    for p, weight, trend in zip(shown, weights, trends, strict=True):
        x = x_of(p.day)
        chart.dots.append((x, y_of(weight), f"{day_label(p.day)}: {amount(weight)}"))
        line.append(f"{x},{y_of(trend)}")
    chart.trend_line = " ".join(line)
    if target_g is not None:
        chart.goal_y = y_of(from_grams(target_g, unit))
        chart.goal_label = _("Goal %(weight)s", weight=format_weight(target_g, unit))

    tick_count = round((high - low) / step)
    decimals = 1 if step < 1 else 0
    for i in range(tick_count + 1):
        value = low + i * step
        chart.y_ticks.append((y_of(value), localise_number(f"{value:.{decimals}f}", sign)))

    # About four date labels, evenly spread, ending on the last day without crowding it.
    label_every = max(1, math.ceil(day_span / 4))
    day = first_day
    while first_day == last_day or (last_day - day).days * 2 >= label_every:
        chart.x_ticks.append((x_of(day), day_label(day)))
        if first_day == last_day:
            break
        day += timedelta(days=label_every)
    if first_day != last_day:
        chart.x_ticks.append((x_of(last_day), day_label(last_day)))

    chart.rows = [
        (p.day, format_day(p.day, locale=dates), amount(weight), amount(trend))
        for p, weight, trend in zip(reversed(shown), reversed(weights), reversed(trends), strict=True)
    ]
    lightest, heaviest = amount(min(weights)), amount(max(weights))
    trend_now = amount(trends[-1])
    parts = [
        ngettext(
            "%(num)d day of weights from %(first)s to %(last)s, between %(low)s and %(high)s.",
            "%(num)d days of weights from %(first)s to %(last)s, between %(low)s and %(high)s.",
            len(shown),
            first=day_label(shown[0].day),
            last=day_label(data_last_day),
            low=lightest,
            high=heaviest,
        ),
        _("Trend now %(weight)s.", weight=trend_now),
    ]
    if target_g is not None:
        parts.append(_("Goal %(weight)s.", weight=format_weight(target_g, unit)))
    chart.description = " ".join(parts)
    return chart
