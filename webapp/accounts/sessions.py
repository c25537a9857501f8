"""Login sessions that the server can revoke: one row per login, and a version on the user.

Flask-Login keeps whatever ``User.get_id()`` returns in the session cookie and, signed, in the
remember-me cookie (its "alternative token" pattern). Here that is ``<user id>:<session
version>:<login token>``, and the user loader accepts it only while the user's version still
matches and the login's row still exists and is younger than REMEMBER_COOKIE_DURATION. So:

- logging out deletes that login's row: a copy of its session or remember cookie stops working;
- ``revoke_all(user)`` (log out everywhere, password change or reset, account deletion) bumps
  the version and deletes every row: every cookie of that user stops working at once.

The database keeps only a digest of each token, so a copy of the table cannot be replayed.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import MAX_ID, LoginSession, User
from ..timeutil import utcnow

_MAX_TOKEN_LENGTH = 64


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def lifetime() -> timedelta:
    """How long a login lasts at most, remembered or not: REMEMBER_COOKIE_DURATION."""
    return current_app.config["REMEMBER_COOKIE_DURATION"]


def start_session(user: User) -> str:
    """Record a new login of this user and return the id its cookies carry; the caller commits.

    Also drops the user's logins that have outlived lifetime(), so the table stays small."""
    now = utcnow()
    db.session.execute(
        db.delete(LoginSession).where(
            LoginSession.user_id == user.id, LoginSession.created_at < now - lifetime()
        )
    )
    token = secrets.token_urlsafe(32)
    db.session.add(LoginSession(token_digest=_digest(token), user_id=user.id, created_at=now))
    user.use_login(token, expires_at=now + lifetime())
    return user.get_id()


def _parse(session_id: str) -> tuple[int, int, str] | None:
    parts = session_id.split(":")
    if len(parts) != 3:
        return None
    user_id, version, token = parts
    # Ids come back from signed cookies, but a leaked key must still not crash a query (MAX_ID).
    for number in (user_id, version):
        if not (number.isascii() and number.isdigit() and len(number) <= 10 and int(number) <= MAX_ID):
            return None
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        return None
    return int(user_id), int(version), token


# Built once: every request with a login runs it, and building the select and its cache key each
# time was about a fifth of the statement's cost (issue 16).
_LIVE_LOGIN = (
    sa.select(User, LoginSession.created_at)
    .join(LoginSession, LoginSession.user_id == User.id)
    .where(
        User.id == sa.bindparam("user_id"),
        User.session_version == sa.bindparam("version"),
        LoginSession.token_digest == sa.bindparam("digest"),
        LoginSession.created_at >= sa.bindparam("since"),
    )
)


def load_session_user(session_id: str) -> User | None:
    """The user whose live login this cookie id names, or None (revoked, expired, malformed)."""
    parsed = _parse(session_id)
    if parsed is None:
        return None
    user_id, version, token = parsed
    longest = lifetime()
    found = db.session.execute(
        _LIVE_LOGIN,
        {"user_id": user_id, "version": version, "digest": _digest(token), "since": utcnow() - longest},
    ).first()
    if found is None:
        return None
    user, created_at = found
    # The moment this loader stops accepting the login: nothing announces it, so a stream opened
    # under it ends by then on its own (events/views.py), and checks nothing until it does.
    user.use_login(token, expires_at=created_at + longest)
    return user


def end_session(user: User) -> None:
    """Forget the login this request came with (log out); the caller commits."""
    token = user.login_token
    if token:
        db.session.execute(db.delete(LoginSession).where(LoginSession.token_digest == _digest(token)))


def revoke_all(user: User) -> None:
    """End every login of this user, everywhere, at once; the caller commits.

    For log out everywhere, a password change or reset and account deletion. Streams learn of it
    by comparing ``user.session_version`` with the one they started under."""
    user.session_version = User.session_version + 1
    db.session.execute(db.delete(LoginSession).where(LoginSession.user_id == user.id))
    user.use_login(None)
