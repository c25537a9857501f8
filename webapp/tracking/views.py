"""Tracking views."""

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user, login_required

bp = Blueprint("tracking", __name__)


@bp.get("/")
def index():
    if current_user.is_authenticated:
        return redirect(url_for("tracking.dashboard"))
    return redirect(url_for("accounts.login"))


@bp.get("/dashboard")
@login_required
def dashboard():
    return render_template("tracking/dashboard.html")
