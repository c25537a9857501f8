"""Reminder views: dismissing the banner, and the one-click unsubscribe link of reminder emails."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..events.area import render_area
from ..extensions import csrf, db
from ..mail.tokens import UNSUBSCRIBE, BadToken, read_token
from ..models import User
from ..web import is_htmx, safe_next
from .lifecycle import dismiss, set_email_reminders

bp = Blueprint("reminders", __name__)


def _back_to_page() -> str:
    """Where a form post without JavaScript returns: the page it came from, if it was ours."""
    referrer = request.referrer
    if referrer:
        parts = urlsplit(referrer)
        if parts.netloc == request.host:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if (local := safe_next(path)) is not None:
                return local
    return url_for("tracking.dashboard")


@bp.post("/dismiss")
@login_required
def dismiss_banner():
    """Dismiss the open reminder (if any): htmx gets the new, empty area; a plain form goes back."""
    dismiss(current_user._get_current_object())
    db.session.commit()
    if is_htmx():
        # The empty area, and out of band a note that takes the focus the Dismiss button had.
        body = render_area(current_user.id) + render_template("reminders/_dismissed.html")
        return body, 200, {"Vary": "HX-Request"}
    return redirect(_back_to_page())


def _unsubscribing_user(token: str) -> User | None:
    """The user an unsubscribe token was made for (None: bad token, or the account is gone)."""
    try:
        user_id = read_token(UNSUBSCRIBE, token)
    except BadToken:
        return None
    return db.session.get(User, user_id) if isinstance(user_id, int) else None


# The one POST without a CSRF token: RFC 8058's one-click POST comes from a mail program, with no
# session or cookie. The signed token in the URL is what authorizes it, and all it can do is
# turn that one user's reminder emails off.
@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt
def unsubscribe(token: str):
    """GET: a page with a button (so a link scanner cannot unsubscribe anyone); POST: emails off."""
    user = _unsubscribing_user(token)
    if user is None:
        return render_template("reminders/unsubscribe.html", state="invalid"), 400
    if request.method == "GET":
        state = "confirm" if user.email_reminders else "done"
        return render_template("reminders/unsubscribe.html", state=state, email=user.email, token=token)
    set_email_reminders(user, False)
    db.session.commit()
    return render_template("reminders/unsubscribe.html", state="done", email=user.email)
