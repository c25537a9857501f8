"""Live events: the outbox, the broker, the reminder area and the /events stream."""

from flask import Flask

from .area import reminder_area
from .views import bp


def init_app(app: Flask) -> None:
    """Give templates the reminder area (the layout's banner, rendered as every transport renders it)."""
    app.context_processor(lambda: {"reminder_area": reminder_area})


__all__ = ["bp", "init_app"]
