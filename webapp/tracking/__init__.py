"""Tracking: the weight log, goals, the dashboard and the CSV export."""

from flask import Flask
from flask_login import current_user
from jinja2 import pass_context

from ..formatting import format_day_time
from ..timeutil import get_zone, in_current_year
from ..units import format_change, format_weight, format_weight_exact
from .views import bp


def _viewer(context):
    """The logged-in user rendering this template, or None.

    Read from the template context (Flask-Login puts the loaded user there) when it is present:
    going through the current_user proxy costs a context lookup per filter call, and a dashboard
    calls these filters dozens of times. Macros imported without context fall back to the proxy.
    """
    user = context.get("current_user") if context is not None else None
    if user is None:
        user = current_user
    return user if user.is_authenticated else None


def _viewer_unit(context) -> str:
    user = _viewer(context)
    return user.unit if user is not None else "kg"


@pass_context
def weight_filter(context, grams, places: int = 1) -> str:
    """Template filter: grams in the viewer's unit, e.g. '72.5 kg'."""
    return format_weight(grams, _viewer_unit(context), places=places)


@pass_context
def weight_change_filter(context, grams, places: int = 1) -> str:
    """Template filter: a signed difference in grams in the viewer's unit, e.g. '−0.4 kg'."""
    return format_change(grams, _viewer_unit(context), places=places)


@pass_context
def weight_exact_filter(context, grams) -> str:
    """Template filter: an entry's weight as typed (up to two decimals), e.g. '79.25 kg'."""
    return format_weight_exact(grams, _viewer_unit(context))


@pass_context
def entry_when_filter(context, moment) -> str:
    """Template filter: when an entry was measured, short enough for a phone: '3 Mar, 07:30'."""
    if moment is None:
        return ""
    user = _viewer(context)
    zone = get_zone(user.timezone if user is not None else "UTC")
    local = moment.astimezone(zone)
    return format_day_time(local, with_year=not in_current_year(local, zone))


def init_app(app: Flask) -> None:
    app.add_template_filter(entry_when_filter, "entry_when")
    app.add_template_filter(weight_exact_filter, "weight_exact")
    app.add_template_filter(weight_filter, "weight")
    app.add_template_filter(weight_change_filter, "weight_change")


__all__ = ["bp", "init_app"]
