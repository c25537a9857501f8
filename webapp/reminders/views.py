"""Reminder views: dismissing the banner."""

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..extensions import db
from ..web import is_htmx, safe_next
from .lifecycle import dismiss

bp = Blueprint("reminders", __name__)


@bp.post("/dismiss")
@login_required
def dismiss_banner():
    user = current_user._get_current_object()
    dismiss(user)
    db.session.commit()
    if is_htmx():
        return render_template("reminders/_area.html", reminder=None)
    return redirect(safe_next(request.form.get("next")) or url_for("tracking.dashboard"))
