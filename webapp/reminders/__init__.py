"""Reminders: the inactivity rule, the lifecycle, the scan and the banner."""

from flask import Flask

from .views import bp


def init_app(app: Flask) -> None:
    from . import cli

    cli.init_app(app)
    app.context_processor(_reminder_context)


def _reminder_context():
    from flask_login import current_user

    def current_reminder():
        if not current_user.is_authenticated:
            return None
        return current_user.open_reminder()

    return {"current_reminder": current_reminder}


__all__ = ["bp", "init_app"]
