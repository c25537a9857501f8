"""Accounts: sign up, log in and out, settings."""

from flask import Flask
from flask_babel import lazy_gettext as _l

from ..extensions import db, login_manager
from ..models import MAX_ID, User
from . import data_views, throttle
from .views import bp

# data_views adds its routes to bp when imported; naming it here keeps that import visible.
__all__ = ["bp", "data_views", "init_app"]

# Ids come back from signed cookies, but a leaked key must still not crash a query (MAX_ID).


@login_manager.user_loader
def _load_user(user_id: str):
    if not (user_id.isascii() and user_id.isdigit() and len(user_id) <= 10 and int(user_id) <= MAX_ID):
        return None
    return db.session.get(User, int(user_id))


def init_app(app: Flask) -> None:
    login_manager.login_view = "accounts.login"
    login_manager.login_message = _l("Please log in to see that page.")
    # Flask-Login flashes the message into the session, which stores only plain strings.
    login_manager.localize_callback = str
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    throttle.init_app(app)
