"""Signed tokens for links in messages: one salt per purpose, so a token does only its own job.

An unsubscribe token never expires (RFC 8058 links are kept in old messages); a password-reset
token is timed and bound to the password it may replace (accounts/reset.py).
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from itsdangerous import BadData, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

UNSUBSCRIBE = "weighin.unsubscribe-reminders"
PASSWORD_RESET = "weighin.password-reset"
EMAIL_CHANGE = "weighin.email-change"


class BadToken(Exception):
    """A token that is malformed, tampered with, for another purpose, or (expired=True) too old."""

    def __init__(self, expired: bool = False):
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


def _serializer(purpose: str) -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=purpose)


def _timed_serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=purpose)


def make_token(purpose: str, payload: Any, *, timed: bool = False) -> str:
    """A URL-safe signed token carrying payload, valid only for purpose."""
    serializer = _timed_serializer(purpose) if timed else _serializer(purpose)
    return str(serializer.dumps(payload))


def read_token(purpose: str, token: str, *, max_age: int | None = None) -> Any:
    """The payload of a token made for purpose (timed when max_age is given); raises BadToken."""
    try:
        if max_age is not None:
            return _timed_serializer(purpose).loads(token, max_age=max_age)
        return _serializer(purpose).loads(token)
    except SignatureExpired:
        raise BadToken(expired=True) from None
    except (BadData, ValueError, TypeError, UnicodeError):
        raise BadToken() from None
