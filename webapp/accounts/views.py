"""Account views."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from limits import parse as parse_limit

from ..extensions import db, limiter
from ..models import User
from ..reminders.lifecycle import set_reminders_enabled
from ..timeutil import timezone_names, utcnow
from ..web import safe_next
from .forms import LoginForm, SettingsForm, SignupForm

bp = Blueprint("accounts", __name__)

FAILED_LOGINS_PER_ACCOUNT = parse_limit("5 per 15 minutes")
FAILED_LOGINS_PER_ADDRESS = parse_limit("20 per 15 minutes")


def _login_limits(email: str):
    address = request.remote_addr or "unknown"
    return ((FAILED_LOGINS_PER_ACCOUNT, "account", email), (FAILED_LOGINS_PER_ADDRESS, "address", address))


def _login_blocked_minutes(email: str) -> int | None:
    """Minutes until another login attempt is allowed, or None when one is allowed now."""
    strategy = limiter.limiter
    for limit, kind, key in _login_limits(email):
        if not strategy.test(limit, "failed-login", kind, key):
            reset_at = strategy.get_window_stats(limit, "failed-login", kind, key).reset_time
            seconds = max(0, reset_at - utcnow().timestamp())
            return max(1, int(seconds // 60) + (1 if seconds % 60 else 0))
    return None


def _count_failed_login(email: str) -> None:
    for limit, kind, key in _login_limits(email):
        limiter.limiter.hit(limit, "failed-login", kind, key)


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("tracking.dashboard"))
    form = SignupForm()
    if form.validate_on_submit():
        exists = db.session.scalar(db.select(User.id).where(User.email == form.email.data))
        if exists:
            form.email.errors.append("An account with this email already exists. Log in instead.")
        else:
            now = utcnow()
            user = User(email=form.email.data, created_at=now, last_active_at=now, reminder_clock=now)
            user.set_password(form.password.data)
            db.session.add(user)
            db.session.commit()
            login_user(user)
            flash("Welcome to Weigh-in! Log your first weight below.", "success")
            return redirect(url_for("tracking.dashboard"))
    status = 422 if form.errors else 200
    return render_template("accounts/signup.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url or url_for("tracking.dashboard"))
    form = LoginForm()
    error = None
    status = 200
    if form.validate_on_submit():
        email = form.email.data
        blocked = _login_blocked_minutes(email)
        if blocked is not None:
            error = f"Too many failed attempts. Try again in {blocked} minute{'s' if blocked != 1 else ''}."
            status = 429
        else:
            user = db.session.scalar(db.select(User).where(User.email == email))
            if user is not None and user.check_password(form.password.data):
                login_user(user, remember=form.remember.data)
                return redirect(next_url or url_for("tracking.dashboard"))
            _count_failed_login(email)
            error = "That email and password do not match an account."
            status = 422
    elif form.errors:
        status = 422
    return render_template("accounts/login.html", form=form, error=error, next_url=next_url), status


@bp.post("/logout")
def logout():
    logout_user()
    flash("You have logged out.", "info")
    return redirect(url_for("accounts.login"))


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings():
    form = SettingsForm(obj=current_user)
    if form.validate_on_submit():
        user = current_user._get_current_object()
        user.display_name = form.display_name.data or ""
        user.unit = form.unit.data
        user.timezone = form.timezone.data
        set_reminders_enabled(user, form.reminders_enabled.data, utcnow())
        db.session.commit()
        flash("Settings saved.", "success")
        return redirect(url_for("accounts.settings"))
    status = 422 if form.errors else 200
    return render_template("accounts/settings.html", form=form, timezones=timezone_names()), status
