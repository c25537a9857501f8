"""Live events: the outbox, the broker and the /events stream."""

from flask import Flask

from .broker import make_broker
from .views import bp


def init_app(app: Flask) -> None:
    """Give the app its one broker for this process (started lazily, on first subscribe)."""
    app.extensions["weighin_broker"] = make_broker(app.config["BROKER_URL"], app)


def get_broker(app=None):
    from flask import current_app

    return (app or current_app).extensions["weighin_broker"]


__all__ = ["bp", "init_app", "get_broker", "make_broker"]
