"""Reminders: the inactivity rule, the lifecycle, the scan and the banner."""

from flask import Flask

from .views import bp


def init_app(app: Flask) -> None:
    from . import cli

    cli.init_app(app)


__all__ = ["bp", "init_app"]
