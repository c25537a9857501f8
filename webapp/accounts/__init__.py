"""Accounts: sign up, log in and out, settings."""

from flask import Flask

from ..extensions import db, login_manager
from ..models import User
from .views import bp


@login_manager.user_loader
def _load_user(user_id: str):
    if not user_id.isdigit():
        return None
    return db.session.get(User, int(user_id))


def init_app(app: Flask) -> None:
    login_manager.login_view = "accounts.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"


__all__ = ["bp", "init_app"]
