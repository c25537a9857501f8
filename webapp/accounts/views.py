"""Account views: sign up, log in, log out, settings."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import get_locale, ngettext, refresh
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy.exc import IntegrityError

from ..events.logins import announce_login_change
from ..extensions import db
from ..i18n import DEFAULT_LANGUAGE, zone_from_accept_language
from ..models import User
from ..passwords import hash_password, password_matches
from ..reminders.lifecycle import set_email_reminders, set_reminders_enabled
from ..timeutil import timezone_names, utcnow
from ..web import safe_next
from . import reset, throttle
from .forms import ForgotPasswordForm, LoginForm, ResetPasswordForm, SettingsForm, SignupForm
from .queries import user_by_email
from .service import new_user
from .sessions import end_session, revoke_all, start_session

bp = Blueprint("accounts", __name__)

DUPLICATE_EMAIL = _l("An account with this email already exists. Log in instead.")
WRONG_CREDENTIALS = _l("That email and password do not match an account.")


def _rotate_csrf_token() -> None:
    # A token seen before logging in (or out) must not be good after it: the next form gets a new one.
    name = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    session.pop(name, None)
    g.pop(name, None)


def log_in(user: User, remember: bool = False) -> None:
    """Start a revocable login for this user in this browser (accounts/sessions.py)."""
    start_session(user)
    db.session.commit()
    _rotate_csrf_token()
    login_user(user, remember=remember)


def _dummy_password_check(password: str) -> None:
    # Spend as long on an unknown email as on a known one, so timing does not reveal accounts.
    dummy = current_app.extensions.get("weighin_dummy_hash")
    if dummy is None:
        dummy = hash_password("not a real password")
        current_app.extensions["weighin_dummy_hash"] = dummy
    password_matches(dummy, password)


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    """Create an account and log straight into it."""
    if current_user.is_authenticated:
        return redirect(url_for("tracking.dashboard"))
    form = SignupForm()
    if not form.is_submitted():
        form.timezone.data = zone_from_accept_language() or "UTC"
    status = 200
    if form.validate_on_submit():
        # Counted before the hash and the duplicate check: the "already exists" answer stays,
        # slowed to this many addresses an hour.
        blocked = throttle.claim_signup()
        if blocked is not None:
            form.email.errors.append(
                ngettext(
                    "Too many sign-ups from your network. Try again in %(num)d minute.",
                    "Too many sign-ups from your network. Try again in %(num)d minutes.",
                    blocked,
                )
            )
            status = 429
        elif user_by_email(form.email.data) is not None:
            form.email.errors.append(str(DUPLICATE_EMAIL))
        else:
            user = new_user(form.email.data, form.password.data)
            user.timezone = form.timezone.data
            user.locale = str(get_locale() or DEFAULT_LANGUAGE)
            db.session.add(user)
            try:
                db.session.commit()
            except IntegrityError:
                # Two sign-ups with one address at the same moment: the unique index decides.
                db.session.rollback()
                form.email.errors.append(str(DUPLICATE_EMAIL))
            else:
                log_in(user)
                flash(_("Welcome to Weigh-in! Log your first weight below."), "success")
                return redirect(url_for("tracking.dashboard"))
    if form.errors and status == 200:
        status = 422
    return render_template("accounts/signup.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Log in, then go to `next` if it is a path on this site, else the dashboard."""
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url or url_for("tracking.dashboard"))
    form = LoginForm()
    error = None
    status = 200
    if form.validate_on_submit():
        email = form.email.data
        # Counted before the password is checked, so parallel guesses cannot all get through.
        blocked = throttle.claim_login_attempt(email)
        if blocked is not None:
            error = ngettext(
                "Too many failed attempts. Try again in %(num)d minute.",
                "Too many failed attempts. Try again in %(num)d minutes.",
                blocked,
            )
            status = 429
        else:
            user = user_by_email(email)
            if user is None:
                _dummy_password_check(form.password.data)
            elif user.check_password(form.password.data):
                throttle.login_succeeded(email)
                log_in(user, remember=form.remember.data)
                return redirect(next_url or url_for("tracking.dashboard"))
            error = str(WRONG_CREDENTIALS)
            status = 422
    elif form.errors:
        status = 422
    return render_template("accounts/login.html", form=form, error=error, next_url=next_url), status


@bp.post("/logout")
def logout():
    """Log out (POST only, so a link or an image elsewhere cannot do it); copies of this
    browser's cookies stop working too, other browsers stay logged in."""
    if current_user.is_authenticated:
        end_session(current_user._get_current_object())
        # This login's streams in other tabs, on every worker, check it again and end.
        announce_login_change(current_user.id)
        db.session.commit()
    logout_user()
    _rotate_csrf_token()
    flash(_("You have logged out."), "info")
    return redirect(url_for("accounts.login"))


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings():
    """Display name, unit, time zone and whether to get reminders."""
    form = SettingsForm(obj=current_user)
    if form.validate_on_submit():
        user = current_user._get_current_object()
        user.display_name = form.display_name.data or ""
        user.unit = form.unit.data
        user.timezone = form.timezone.data
        if form.locale.raw_data:
            user.locale = form.locale.data
        refresh()  # the flash below, and the next page, in the language just chosen
        now = utcnow()
        set_reminders_enabled(user, form.reminders_enabled.data, now)
        set_email_reminders(user, form.email_reminders.data, now)
        user.remind_after_days = form.remind_after_days.days
        db.session.commit()
        flash(_("Settings saved."), "success")
        return redirect(url_for("accounts.settings"))
    status = 422 if form.errors else 200
    return (
        render_template(
            "accounts/settings.html",
            form=form,
            timezones=timezone_names(),
            site_days=current_app.config["REMINDER_AFTER_DAYS"],
        ),
        status,
    )


# Password reset (webapp/accounts/reset.py holds the rules).
RESET_SENT = _l(
    "If an account uses that address, we have sent it a link to set a new password. "
    "The link works for one hour."
)


@bp.route("/forgot", methods=["GET", "POST"])
def forgot_password():
    """Ask for a reset link; the answer is the same whether or not the address has an account."""
    form = ForgotPasswordForm()
    deliver = reset.request_reset(form.email.data) if form.validate_on_submit() else None
    status = 422 if form.errors else 200
    sent = form.is_submitted() and not form.errors
    response = make_response(
        render_template("accounts/forgot.html", form=form, sent=sent, message=RESET_SENT), status
    )
    if deliver is not None:
        response.call_on_close(deliver)  # after the answer, so its timing is the same for everyone
    return response


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    """Set a new password from an emailed link, then log in; a used, old or forged link is refused."""
    try:
        user = reset.user_for_token(token)
    except reset.BadToken as error:
        return render_template("accounts/reset_invalid.html", expired=error.expired), 400
    form = ResetPasswordForm()
    if form.validate_on_submit():
        reset.reset_password(user, form.password.data)
        revoke_all(user)  # whoever had the old password is logged out everywhere
        db.session.commit()
        throttle.forget_failures(user.email)
        log_in(user)
        flash(_("Your new password is set, and you are logged in."), "success")
        return redirect(url_for("tracking.dashboard"))
    status = 422 if form.errors else 200
    return render_template("accounts/reset.html", form=form, token=token, email=user.email), status
