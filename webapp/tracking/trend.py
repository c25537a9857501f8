"""The maths behind the dashboard: trend weight, changes, progress and the projected goal date.

Everything here is pure (no database, no Flask) and works in grams, so it can be tested with
worked examples. Days are calendar days in the user's time zone.

- Entries on the same day are averaged into one daily weight, so logging twice in one day does
  not count twice.
- The trend is an exponentially smoothed average with 10% smoothing per day: after a gap of
  d days the new daily weight gets the weight alpha = 1 - 0.9**d, which is exactly what ten
  percent a day for d days of unchanged weight would have given. One day: 0.1; two: 0.19.
- Changes over 7 and 30 days and the projection are measured on the trend, backwards from the
  latest day with an entry (not from today), so a week off does not read as "no change".
- The projection fits a straight line (least squares) to the trend points of the last four
  weeks and follows it to the goal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

SMOOTHING_PER_DAY = 0.1
PROJECTION_WINDOW_DAYS = 28
PROJECTION_MIN_POINTS = 3
PROJECTION_MIN_SPAN_DAYS = 7
# A projection further out than this says more about noise than about the person.
PROJECTION_MAX_DAYS = 5 * 365
# A "maintain" goal (set at the current weight) counts as reached within this distance.
MAINTAIN_TOLERANCE_G = 1000


@dataclass(frozen=True)
class DayPoint:
    """One day with entries: the day's mean weight and the trend after it, in grams."""

    day: date
    weight_g: float
    trend_g: float


@dataclass(frozen=True)
class Projection:
    """Where the recent trend leads.

    status is one of: 'no_goal', 'not_enough_data', 'reached', 'on_track' (date is set),
    'moving_away' (flat or heading away from the goal), 'too_far' (beyond PROJECTION_MAX_DAYS).
    """

    status: str
    date: date | None = None
    slope_g_per_day: float | None = None


def daily_weights(entries: Iterable[tuple[datetime, int]], zone: tzinfo) -> list[tuple[date, float]]:
    """Average the (measured_at, grams) entries per calendar day in `zone`, oldest day first."""
    sums: dict[date, list[float]] = {}
    for measured_at, grams in entries:
        day = measured_at.astimezone(zone).date()
        total = sums.setdefault(day, [0.0, 0])
        total[0] += grams
        total[1] += 1
    return [(day, total / count) for day, (total, count) in sorted(sums.items())]


def smooth(daily: Sequence[tuple[date, float]], smoothing: float = SMOOTHING_PER_DAY) -> list[DayPoint]:
    """The trend after each day: starts at the first weight, then moves toward each new one."""
    points: list[DayPoint] = []
    keep = 1.0 - smoothing
    for day, weight in daily:
        if not points:
            trend = weight
        else:
            gap = (day - points[-1].day).days
            alpha = 1.0 - keep**gap
            trend = points[-1].trend_g + alpha * (weight - points[-1].trend_g)
        points.append(DayPoint(day, weight, trend))
    return points


def trend_at(points: Sequence[DayPoint], day: date) -> float | None:
    """The trend as it stood on `day` (that of the last day with an entry on or before it)."""
    found = None
    for point in points:
        if point.day > day:
            break
        found = point.trend_g
    return found


def change_over(points: Sequence[DayPoint], days: int) -> float | None:
    """How much the trend moved in the `days` before the latest entry, or None without data that old."""
    if not points:
        return None
    before = trend_at(points, points[-1].day - timedelta(days=days))
    if before is None:
        return None
    return points[-1].trend_g - before


def direction(start_g: float | None, target_g: float) -> str:
    """'lose', 'gain' or 'maintain', from the weight when the goal was set."""
    if start_g is None or round(start_g) == round(target_g):
        return "maintain"
    return "lose" if start_g > target_g else "gain"


def is_reached(goal_direction: str, trend_g: float, target_g: float) -> bool:
    """Whether the trend has reached the goal, read the way the goal points."""
    if goal_direction == "lose":
        return trend_g <= target_g
    if goal_direction == "gain":
        return trend_g >= target_g
    return abs(trend_g - target_g) <= MAINTAIN_TOLERANCE_G


def progress(start_g: float | None, target_g: float, trend_g: float) -> float | None:
    """The share of the way from start to goal covered by the trend, 0 to 1; None for 'maintain'."""
    if start_g is None or direction(start_g, target_g) == "maintain":
        return None
    fraction = (start_g - trend_g) / (start_g - target_g)
    return min(1.0, max(0.0, fraction))


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares line through the points: (slope, intercept). Needs two distinct xs."""
    n = len(xs)
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a line needs at least two distinct x values")
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    return slope, mean_y - slope * mean_x


def project(
    points: Sequence[tuple[date, float]],
    target_g: float | None,
    goal_direction: str,
    window_days: int = PROJECTION_WINDOW_DAYS,
) -> Projection:
    """Project the (day, trend grams) series to the goal from its last `window_days` days."""
    if target_g is None:
        return Projection("no_goal")
    if not points:
        return Projection("not_enough_data")
    last_day, current = points[-1]
    if is_reached(goal_direction, current, target_g):
        return Projection("reached")
    recent = [(day, grams) for day, grams in points if (last_day - day).days <= window_days]
    span = (last_day - recent[0][0]).days
    if len(recent) < PROJECTION_MIN_POINTS or span < PROJECTION_MIN_SPAN_DAYS:
        return Projection("not_enough_data")
    slope, _ = linear_fit([(day - last_day).days for day, _ in recent], [grams for _, grams in recent])
    remaining = target_g - current
    if slope * remaining <= 0:
        return Projection("moving_away", slope_g_per_day=slope)
    days = remaining / slope
    if days > PROJECTION_MAX_DAYS:
        return Projection("too_far", slope_g_per_day=slope)
    return Projection("on_track", last_day + timedelta(days=math.ceil(days)), slope)


@dataclass(frozen=True)
class Summary:
    """What the dashboard shows, in grams (None where there is nothing to show yet)."""

    points: list[DayPoint]
    latest_g: int | None
    latest_at: datetime | None
    trend_g: float | None
    change_7_g: float | None
    change_30_g: float | None
    target_g: int | None
    start_g: float | None
    direction: str | None
    reached: bool
    progress: float | None
    projection: Projection


def summarize(
    entries: Sequence[tuple[datetime, int]],
    zone: tzinfo,
    target_g: int | None = None,
    start_g: float | None = None,
    goal_set_at: datetime | None = None,
) -> Summary:
    """Everything the dashboard needs from (measured_at, grams) entries and the current goal.

    A goal set before any weight was logged has no start weight; its start is then the trend
    on the first day with an entry after it was set, so it still knows whether to lose or gain.
    """
    points = smooth(daily_weights(entries, zone))
    latest = max(entries, key=lambda item: item[0]) if entries else None
    trend = points[-1].trend_g if points else None
    if target_g is not None and start_g is None and points:
        since = goal_set_at.astimezone(zone).date() if goal_set_at else points[0].day
        start_g = next((p.trend_g for p in points if p.day >= since), points[-1].trend_g)
    goal_direction = direction(start_g, target_g) if target_g is not None else None
    reached = (
        trend is not None
        and target_g is not None
        and goal_direction is not None
        and is_reached(goal_direction, trend, target_g)
    )
    return Summary(
        points=points,
        latest_g=latest[1] if latest else None,
        latest_at=latest[0] if latest else None,
        trend_g=trend,
        change_7_g=change_over(points, 7),
        change_30_g=change_over(points, 30),
        target_g=target_g,
        start_g=start_g,
        direction=goal_direction,
        reached=reached,
        progress=progress(start_g, target_g, trend) if (target_g is not None and trend is not None) else None,
        projection=project([(p.day, p.trend_g) for p in points], target_g, goal_direction or "maintain"),
    )
