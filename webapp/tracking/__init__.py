"""Tracking: the weight log, goals, the dashboard and the CSV export."""

from flask import Flask

from .views import bp


def init_app(app: Flask) -> None:
    pass


__all__ = ["bp", "init_app"]
