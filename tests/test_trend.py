"""The dashboard maths with worked examples whose answers can be checked by hand."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from webapp.tracking.chart import build_chart
from webapp.tracking.trend import (
    DayPoint,
    change_over,
    daily_weights,
    direction,
    is_reached,
    linear_fit,
    progress,
    project,
    smooth,
    summarize,
    trend_at,
)

UTC = UTC
D0 = date(2025, 3, 1)


def day(n: int) -> date:
    return D0 + timedelta(days=n)


def at(n: int, hour: int = 8) -> datetime:
    return datetime(2025, 3, 1, hour, tzinfo=UTC) + timedelta(days=n)


def test_trend_starts_at_the_first_weight_and_moves_ten_percent_a_day():
    points = smooth([(day(0), 100_000), (day(1), 90_000)])
    assert [p.trend_g for p in points] == [100_000, pytest.approx(99_000)]


def test_a_gap_of_two_days_moves_nineteen_percent():
    # alpha = 1 - 0.9**2 = 0.19: 99 kg + 0.19 × (90 - 99) kg = 97.29 kg
    points = smooth([(day(0), 100_000), (day(1), 90_000), (day(3), 90_000)])
    assert points[-1].trend_g == pytest.approx(97_290)


def test_a_gap_counts_like_the_days_it_skipped():
    """One entry after two days lands where two daily entries of the same weight would."""
    daily = smooth([(day(0), 100_000), (day(1), 90_000), (day(2), 90_000)])
    gapped = smooth([(day(0), 100_000), (day(2), 90_000)])
    assert gapped[-1].trend_g == pytest.approx(daily[-1].trend_g) == pytest.approx(98_100)


def test_entries_on_one_local_day_are_averaged():
    berlin = ZoneInfo("Europe/Berlin")  # UTC+1 in March before the switch
    entries = [
        (datetime(2025, 3, 1, 23, 30, tzinfo=UTC), 80_000),  # 00:30 on 2 March in Berlin
        (datetime(2025, 3, 2, 6, 0, tzinfo=UTC), 81_000),  # 07:00 on 2 March in Berlin
        (datetime(2025, 3, 1, 7, 0, tzinfo=UTC), 82_000),
    ]
    assert daily_weights(entries, berlin) == [(date(2025, 3, 1), 82_000), (date(2025, 3, 2), 80_500)]
    # In UTC the first two fall on different days.
    assert daily_weights(entries, UTC) == [(date(2025, 3, 1), 81_000), (date(2025, 3, 2), 81_000)]


def test_trend_at_and_change_over_days():
    points = [DayPoint(day(n), 0, 100_000 - 100 * n) for n in (0, 2, 5, 9, 12)]
    assert trend_at(points, day(4)) == 99_800  # held from day 2
    assert trend_at(points, day(-1)) is None
    # 7 days before day 12 is day 5 (trend 99 500); the latest trend is 98 800
    assert change_over(points, 7) == -700
    assert change_over(points, 30) is None  # no data that old
    assert change_over([], 7) is None


@pytest.mark.parametrize(
    "start, target, trend, expected",
    [
        (100_000, 90_000, 95_000, 0.5),  # lose, half way
        (60_000, 70_000, 65_000, 0.5),  # gain, half way
        (100_000, 90_000, 88_000, 1.0),  # past the goal
        (100_000, 90_000, 102_000, 0.0),  # went the wrong way
        (80_000, 80_000, 81_000, None),  # maintain
        (None, 80_000, 81_000, None),  # no start weight known
    ],
)
def test_progress_is_measured_from_start_to_goal(start, target, trend, expected):
    assert progress(start, target, trend) == expected


@pytest.mark.parametrize(
    "start, target, trend, goal_direction, reached",
    [
        (100_000, 90_000, 90_000, "lose", True),
        (100_000, 90_000, 90_001, "lose", False),
        (60_000, 70_000, 70_000, "gain", True),
        (60_000, 70_000, 69_999, "gain", False),
        (80_000, 80_000, 80_900, "maintain", True),
        (80_000, 80_000, 81_100, "maintain", False),
    ],
)
def test_reached_means_the_right_thing_either_way(start, target, trend, goal_direction, reached):
    assert direction(start, target) == goal_direction
    assert is_reached(goal_direction, trend, target) is reached


def test_linear_fit_known_lines():
    assert linear_fit([0, 1, 2], [1, 3, 5]) == pytest.approx((2, 1))
    slope, intercept = linear_fit([-14, -7, 0], [100, 99, 98])
    assert slope == pytest.approx(-1 / 7)
    assert intercept == pytest.approx(98)
    with pytest.raises(ValueError):
        linear_fit([3, 3], [1, 2])


def test_projection_follows_the_line_to_the_goal():
    # Losing 1 kg a week at 98 kg with a goal of 95 kg: 3 kg in 21 days after day 14.
    points = [(day(0), 100_000), (day(7), 99_000), (day(14), 98_000)]
    result = project(points, 95_000, "lose")
    assert result.status == "on_track"
    assert result.date == day(35)
    assert result.slope_g_per_day * 7 == pytest.approx(-1000)


def test_projection_for_a_gain_goal():
    points = [(day(0), 60_000), (day(10), 61_000), (day(20), 62_000)]
    result = project(points, 63_500, "gain")
    assert (result.status, result.date) == ("on_track", day(35))  # 1.5 kg at 0.1 kg/day


def test_projection_uses_only_the_last_four_weeks():
    recent = [(day(30), 100_000), (day(37), 99_000), (day(44), 98_000)]
    # A far older point that would flatten the line is left out of the fit.
    assert project([(day(0), 98_000)] + recent, 95_000, "lose").date == day(65)


@pytest.mark.parametrize(
    "points, target, goal_direction, status",
    [
        ([(day(0), 100_000), (day(7), 99_000), (day(14), 98_000)], None, "maintain", "no_goal"),
        ([], 90_000, "lose", "not_enough_data"),
        ([(day(0), 100_000), (day(14), 98_000)], 90_000, "lose", "not_enough_data"),  # two points
        (
            [(day(0), 100_000), (day(3), 99_000), (day(6), 98_000)],
            90_000,
            "lose",
            "not_enough_data",
        ),  # < 7 days
        ([(day(0), 100_000), (day(7), 99_000), (day(14), 89_000)], 90_000, "lose", "reached"),
        ([(day(0), 98_000), (day(7), 99_000), (day(14), 100_000)], 90_000, "lose", "moving_away"),
        ([(day(0), 98_000), (day(7), 98_000), (day(14), 98_000)], 90_000, "lose", "moving_away"),  # flat
        ([(day(0), 98_014), (day(7), 98_007), (day(14), 98_000)], 90_000, "lose", "too_far"),  # 1 g a day
    ],
)
def test_projection_statuses(points, target, goal_direction, status):
    assert project(points, target, goal_direction).status == status


def test_summary_of_a_log():
    entries = [(at(0), 100_000), (at(1), 90_000), (at(3), 90_000)]
    summary = summarize(entries, UTC, target_g=85_000, start_g=100_000)
    assert summary.latest_g == 90_000
    assert summary.latest_at == at(3)
    assert summary.trend_g == pytest.approx(97_290)
    assert summary.direction == "lose"
    assert summary.progress == pytest.approx(2_710 / 15_000)
    assert summary.change_7_g is None
    assert summary.reached is False


def test_a_goal_set_before_any_weight_starts_from_the_first_trend_after_it():
    entries = [(at(0), 80_000), (at(5), 70_000), (at(6), 70_000)]
    summary = summarize(entries, UTC, target_g=75_000, start_g=None, goal_set_at=at(4))
    assert summary.start_g == pytest.approx(80_000 - 10_000 * (1 - 0.9**5))
    assert summary.direction == "lose"


def test_empty_summary():
    summary = summarize([], UTC)
    assert (summary.latest_g, summary.trend_g, summary.progress) == (None, None, None)
    assert summary.projection.status == "no_goal"


def test_chart_geometry():
    points = smooth([(day(0), 80_000), (day(10), 78_000)])
    chart = build_chart(points, 75_000, "kg")
    left, top, right, bottom = chart.plot
    assert [x for x, _, _ in chart.dots] == [left, right]
    # The y axis runs from 75 to 80 kg in 1 kg steps, so the goal sits on the bottom line.
    assert [label for _, label in chart.y_ticks] == ["75", "76", "77", "78", "79", "80"]
    assert chart.goal_y == bottom
    assert chart.dots[0][1] == top  # 80 kg at the top
    assert chart.dots[0][2] == "1 Mar: 80.0 kg"
    assert chart.trend_line.startswith(f"{float(left)},{float(top)} ")
    assert "Goal 75.0 kg" in chart.description
    assert chart.x_ticks[0][1] == "1 Mar" and chart.x_ticks[-1][1] == "11 Mar"
    assert [row[0] for row in chart.rows] == [day(10), day(0)]  # newest first in the table


def test_chart_of_one_day_and_of_nothing():
    single = build_chart(smooth([(day(0), 80_000)]), None, "lb")
    assert len(single.dots) == 1 and single.goal_y is None
    assert single.x_ticks == [(single.dots[0][0], "1 Mar")]
    assert "176.4 lb" in single.description
    assert build_chart([], None, "kg").empty


def test_the_chart_ends_today_for_someone_idle():
    """A week without weights shows as room at the right, not as a chart that looks current."""
    points = smooth([(day(0), 80_000), (day(10), 78_000)])
    chart = build_chart(points, None, "kg", today=day(20))
    left, top, right, bottom = chart.plot
    xs = [x for x, _, _ in chart.dots]
    assert xs[0] == left and xs[-1] == round(left + (right - left) / 2, 1)
    assert chart.x_ticks[-1][1] == "21 Mar"
    assert "from 1 Mar to 11 Mar" in chart.description
    # Idle for longer than the chart's window: the last weight is still drawn.
    assert len(build_chart(points, None, "kg", today=day(400)).dots) == 1
