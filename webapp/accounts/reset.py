"""Password reset: a signed, one-hour link that stops working once the password changes.

The token carries the user id and a digest of the password hash it may replace, so setting a new
password (by this link or any other way) retires every reset link sent before: single use with no
table of used tokens. Requests are limited per typed address and per client address, and answer
the same, in the same time, whether or not the address has an account: the message is queued
after the answer has gone out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable

from flask import current_app, request
from flask_babel import force_locale, gettext
from limits import parse as parse_limit

from ..extensions import db
from ..i18n import language_of
from ..mail.links import public_url
from ..mail.queue import enqueue, render_message
from ..mail.sender import wake_sender
from ..mail.tokens import PASSWORD_RESET, BadToken, make_token, read_token
from ..models import User
from ..timeutil import utcnow
from .queries import user_by_email
from .throttle import account_key, limiter_strategy

__all__ = ["BadToken", "make_reset_token", "request_reset", "reset_password", "user_for_token"]

log = logging.getLogger(__name__)

MAX_AGE = 3600  # seconds a reset link works
REQUESTS_PER_ACCOUNT = parse_limit("3 per hour")
REQUESTS_PER_ADDRESS = parse_limit("10 per hour")
_NAMESPACE = "password-reset"


def _password_digest(user: User) -> str:
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


def make_reset_token(user: User) -> str:
    """A timed token for resetting this user's current password."""
    return make_token(PASSWORD_RESET, {"u": user.id, "p": _password_digest(user)}, timed=True)


def user_for_token(token: str) -> User:
    """The user a reset token is for, if it is genuine, under an hour old and its password unchanged.

    Raises BadToken (expired=True when it is only too old)."""
    payload = read_token(PASSWORD_RESET, token, max_age=MAX_AGE)
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("u"), int)
        or not isinstance(payload.get("p"), str)
    ):
        raise BadToken()
    user = db.session.get(User, payload["u"])
    if user is None or not hmac.compare_digest(payload["p"], _password_digest(user)):
        raise BadToken()  # the account is gone, or the password changed since: already used
    return user


def _allowed(email: str) -> bool:
    """Count this request against the typed address and the client; False once either is over."""
    strategy = limiter_strategy()
    if strategy is None:
        return True
    client = request.remote_addr or "unknown"
    try:
        return all(
            [  # both counted, so a client cannot spread one address's requests thin
                strategy.hit(REQUESTS_PER_ACCOUNT, _NAMESPACE, "account", account_key(email)),
                strategy.hit(REQUESTS_PER_ADDRESS, _NAMESPACE, "address", client),
            ]
        )
    except Exception:
        # As for failed logins: a limiter outage must not stop people getting back in.
        log.warning("cannot count a password-reset request; allowing it", exc_info=True)
        return True


def request_reset(email: str) -> Callable[[], None] | None:
    """What to do for a reset request for this (normalised) address: None, or the queueing of its
    message, for the view to run once the answer has gone out.

    Before the answer, both cases cost the same (the limit counters and one indexed lookup); the
    message is rendered, queued and committed afterwards, so the time to answer says nothing
    about whether the address has an account.
    """
    if not _allowed(email):
        return None
    user = user_by_email(email)
    if user is None:
        return None
    user_id = user.id
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def deliver() -> None:
        with app.app_context():
            try:
                user = db.session.get(User, user_id)
                if user is not None:
                    queue_reset_message(user)
                    db.session.commit()
                    wake_sender()
            except Exception:
                log.exception("queueing a password-reset message failed")
                db.session.rollback()
            finally:
                db.session.remove()

    return deliver


def queue_reset_message(user: User) -> None:
    """Queue the reset message for this user, in their language; the caller commits."""
    lang = language_of(user)
    with force_locale(lang):
        text, html = render_message(
            "password_reset",
            name=user.name,
            reset_url=public_url("accounts.reset_password", token=make_reset_token(user)),
            forgot_url=public_url("accounts.forgot_password"),
            minutes=MAX_AGE // 60,
            lang=lang,
        )
        subject = gettext("Set a new Weigh-in password")
    enqueue(kind="reset", to=user.email, subject=subject, text=text, html=html, user_id=user.id, now=utcnow())


def reset_password(user: User, password: str) -> None:
    """Set the new password (which retires the link); the caller ends other sessions and commits."""
    user.set_password(password)
