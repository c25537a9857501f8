"""Admin: the inactive-users page, for admins only."""

from flask import Flask

from .views import bp


def init_app(app: Flask) -> None:
    pass


__all__ = ["bp", "init_app"]
