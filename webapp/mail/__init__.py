"""Mail: the durable queue, its sender loop, the `mail send` command and the .eml file backend."""

from __future__ import annotations

from flask import Flask

from ..extensions import mail


def init_app(app: Flask) -> None:
    """Bind Flask-Mailman to MAIL_URL's settings and add the `mail` commands."""
    from . import cli

    mail.init_app(app)
    cli.init_app(app)


def destination(app: Flask) -> str:
    """Where this app's mail goes, as the console line at start says it."""
    return app.config["MAIL_DESTINATION"]


__all__ = ["init_app", "destination"]
