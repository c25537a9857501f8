"""Accounts: sign up, log in and out, settings."""

from flask import Flask
from flask_babel import lazy_gettext as _l

from ..extensions import login_manager
from . import data_views, throttle
from .sessions import load_session_user
from .views import bp

# data_views adds its routes to bp when imported; naming it here keeps that import visible.
__all__ = ["bp", "data_views", "init_app"]

# Every request's session or remember-me cookie is checked against its login row and the
# user's session version (webapp/accounts/sessions.py).
login_manager.user_loader(load_session_user)


def init_app(app: Flask) -> None:
    login_manager.login_view = "accounts.login"
    login_manager.login_message = _l("Please log in to see that page.")
    # Flask-Login flashes the message into the session, which stores only plain strings.
    login_manager.localize_callback = str
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    throttle.init_app(app)
