"""No stream outlives the login it was opened with (issue 10, item 5).

A stream, long poll or WebSocket remembers the login it started under (`current_user.get_id()`,
what the session and remember-me cookies carry). Whenever its user's login channel has news
(`login_channel`, apart from the user's own so that reminders and weights cost no login check,
issue 16), it asks the app's user loader again whether that login still stands: a login that was ended (log
out, log out everywhere, a password change or reset, a deleted account: whatever the loader no
longer accepts) ends the stream with the signed-out notice; an admin who lost the flag has the
stream ended so that its reconnect follows the user's own channel only.

What wakes them: any transaction that changes a user's `is_admin` or `session_version` (or
deletes the user) announces `login` on that user's login channel when it commits (the session hooks
below), and logging out announces it explicitly (`announce_login_change`). That is an ordinary
outbox row, so it reaches every worker and host through the broker and, if the broker misses
it, through the outbox catch-up. The one end of a login that nothing announces is its age
(REMEMBER_COOKIE_DURATION): a transport opened under it ends by `User.login_expires_at`.
"""

from __future__ import annotations

import math
import random

import sqlalchemy as sa
from flask import current_app
from flask_login import current_user
from sqlalchemy.orm import Session

from ..extensions import db, login_manager
from ..models import ADMINS_CHANNEL, User, login_channel
from ..timeutil import utcnow
from .outbox import announce, announce_in

SIGNED_OUT = "signed-out"  # the login is over: show the signed-out notice and stop for good
ADMIN_REMOVED = "admin-removed"  # no longer an admin: reconnect without the admins' channel
KIND = "login"
# The user columns whose change ends streams; a column the schema does not have is skipped.
WATCHED = ("is_admin", "session_version")
_CHANGED = "weighin_login_changes"


def announce_login_change(user_id: int) -> None:
    """Wake the user's streams everywhere when this transaction commits, so they check their login."""
    announce(login_channel(user_id), KIND)


def login_seconds_left(user: User) -> float:
    """Seconds until the loader stops accepting this request's login (its age), or inf if unknown.

    A transport ends by then, so a login that expires unannounced cannot keep a stream alive."""
    expires_at = user.login_expires_at
    if expires_at is None:
        return math.inf
    return max(0.0, (expires_at - utcnow()).total_seconds())


def transport_lifetime() -> float:
    """How long a stream or WebSocket of the current request may live: SSE_MAX_LIFETIME less up to
    a fifth (so connections rebalance), and never past the login's own end (its age is announced
    by nothing). Needs a request context with a logged-in user."""
    jittered = current_app.config["SSE_MAX_LIFETIME"] * random.uniform(0.8, 1.0)
    return min(jittered, login_seconds_left(current_user))


def login_verdict(login_id: str | None, user_id: int, channels) -> str | None:
    """Why a stream opened under login_id must end now (SIGNED_OUT, ADMIN_REMOVED), or None.

    Needs an app context; uses a short session and gives its connection back.
    """
    try:
        # Flask-Login keeps the loader it was given here; asking it keeps one rule for cookies
        # and streams, whatever the accounts code decides a live login is.
        user = login_manager._user_callback(login_id) if login_id else None
        if user is None or user.id != user_id:
            return SIGNED_OUT
        if ADMINS_CHANNEL in channels and not user.is_admin:
            return ADMIN_REMOVED
        return None
    finally:
        db.session.remove()


def _watched_change(user: User) -> bool:
    state: sa.orm.InstanceState = sa.inspect(user)
    return any(name in state.attrs and state.attrs[name].history.has_changes() for name in WATCHED)


@sa.event.listens_for(Session, "before_flush")
def _note_login_changes(session, flush_context, instances):
    changed = {
        obj.id
        for obj in (*session.dirty, *session.deleted)
        if isinstance(obj, User) and (obj in session.deleted or _watched_change(obj))
    }
    if changed:
        session.info.setdefault(_CHANGED, set()).update(changed)


def _announce_login_changes(session):
    if session.in_nested_transaction():
        return
    session.flush()  # changes not flushed yet are noted by the hook above
    for user_id in sorted(session.info.pop(_CHANGED, ())):
        announce_in(session, login_channel(user_id), KIND)


# Before the outbox's own before_commit hook, which writes the transaction's announcements.
sa.event.listen(Session, "before_commit", _announce_login_changes, insert=True)


@sa.event.listens_for(Session, "after_soft_rollback")
def _forget_login_changes(session, previous_transaction):
    # A savepoint's rollback may leave a note behind: one wake-up for nothing, which is harmless.
    if not previous_transaction.nested:
        session.info.pop(_CHANGED, None)
