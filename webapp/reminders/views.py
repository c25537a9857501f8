"""Reminder views: dismissing the banner."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, request, url_for
from flask_login import current_user, login_required

from ..events.area import render_area
from ..extensions import db
from ..web import is_htmx, safe_next
from .lifecycle import dismiss

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
        return render_area(current_user.id), 200, {"Vary": "HX-Request"}
    return redirect(_back_to_page())
