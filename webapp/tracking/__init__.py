"""Tracking: the weight log, goals, the dashboard and the CSV export."""

from flask import Flask
from flask_login import current_user

from ..timeutil import get_zone, utcnow
from ..units import format_change, format_weight, input_value
from .views import bp


def _viewer_unit() -> str:
    return current_user.unit if current_user.is_authenticated else "kg"


def weight_filter(grams, places: int = 1) -> str:
    """Template filter: grams in the viewer's unit, e.g. '72.5 kg'."""
    return format_weight(grams, _viewer_unit(), places=places)


def weight_change_filter(grams, places: int = 1) -> str:
    """Template filter: a signed difference in grams in the viewer's unit, e.g. '−0.4 kg'."""
    return format_change(grams, _viewer_unit(), places=places)


def weight_exact_filter(grams) -> str:
    """Template filter: an entry's weight as typed (up to two decimals), e.g. '79.25 kg'."""
    if grams is None:
        return ""
    unit = _viewer_unit()
    return f"{input_value(grams, unit)} {unit}"


def entry_when_filter(moment) -> str:
    """Template filter: when an entry was measured, short enough for a phone: '3 Mar, 07:30'."""
    if moment is None:
        return ""
    zone = get_zone(current_user.timezone if current_user.is_authenticated else "UTC")
    local = moment.astimezone(zone)
    year = "" if local.year == utcnow().astimezone(zone).year else f" {local.year}"
    return f"{local.day} {local:%b}{year}, {local:%H:%M}"


def init_app(app: Flask) -> None:
    app.add_template_filter(entry_when_filter, "entry_when")
    app.add_template_filter(weight_exact_filter, "weight_exact")
    app.add_template_filter(weight_filter, "weight")
    app.add_template_filter(weight_change_filter, "weight_change")


__all__ = ["bp", "init_app"]
