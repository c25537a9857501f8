"""The user's own data and account: download everything, delete the account, change the email
or the password, log out everywhere."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, stream_with_context, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, logout_user
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..mail.sender import wake_sender
from ..timeutil import get_zone, utcnow
from . import deletion, email_change
from .export import export_document
from .forms import ChangeEmailForm, ChangePasswordForm, ConfirmForm, DeleteAccountForm
from .sessions import revoke_all
from .views import bp, log_in


@bp.get("/export.json")
@login_required
def export_data():
    """Download all my data as one JSON file, streamed as it is read."""
    user = current_user._get_current_object()
    now = utcnow()
    filename = f"weighin-data-{now.astimezone(get_zone(user.timezone)):%Y-%m-%d}.json"
    return Response(
        stream_with_context(export_document(user, now)),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@bp.route("/delete", methods=["GET", "POST"])
@login_required
def delete_account():
    """Say what will go and ask for the password (GET); delete everything (POST)."""
    user = current_user._get_current_object()
    form = DeleteAccountForm()
    last_admin = deletion.is_last_admin(user)
    error = None
    if form.validate_on_submit():
        if not user.check_password(form.password.data):
            form.password.errors.append(_("That password is not right."))
        else:
            try:
                deletion.delete_account(user, form.successor.data if last_admin else None)
            except deletion.DeletionRefused as refused:
                db.session.rollback()
                error = str(refused)
            else:
                logout_user()
                flash(_("Your account and everything in it have been deleted."), "info")
                return redirect(url_for("accounts.signup"))
    status = 422 if (form.errors or error) else 200
    return render_template(
        "accounts/delete.html",
        form=form,
        error=error,
        last_admin=last_admin,
        contents=deletion.account_contents(user),
    ), status


@bp.route("/email", methods=["GET", "POST"])
@login_required
def change_email():
    """Ask for a new address; a link sent there makes the change, a notice goes to the old one."""
    user = current_user._get_current_object()
    form = ChangeEmailForm()
    if form.validate_on_submit():
        new_email = form.email.data
        if not user.check_password(form.password.data):
            form.password.errors.append(_("That password is not right."))
        elif new_email == user.email:
            form.email.errors.append(_("That is already your email address."))
        elif email_change.address_taken(new_email, user):
            form.email.errors.append(_("Another account already uses this email address."))
        else:
            email_change.queue_change_messages(user, new_email)
            db.session.commit()
            wake_sender()
            flash(
                _(
                    "We sent a link to %(email)s. Your email address changes when you open it (within an hour).",
                    email=new_email,
                ),
                "info",
            )
            return redirect(url_for("accounts.settings"))
    status = 422 if form.errors else 200
    return render_template("accounts/change_email.html", form=form), status


@bp.route("/email/confirm/<token>", methods=["GET", "POST"])
def confirm_email(token: str):
    """Confirm a new address from the emailed link (a button, so a mail scanner's visit does nothing)."""
    try:
        change = email_change.change_for_token(token)
    except email_change.BadToken as bad:
        return render_template("accounts/email_invalid.html", expired=bad.expired), 400
    form = ConfirmForm()
    error = None
    if form.validate_on_submit():
        if email_change.address_taken(change.new_email, change.user):
            error = _("Another account already uses this email address.")
        else:
            email_change.apply_change(change)
            try:
                db.session.commit()
            except IntegrityError:
                db.session.rollback()
                error = _("Another account already uses this email address.")
            else:
                flash(_("Your email address is now %(email)s.", email=change.new_email), "success")
                return redirect(
                    url_for("accounts.settings" if current_user.is_authenticated else "accounts.login")
                )
    return render_template(
        "accounts/confirm_email.html", form=form, token=token, change=change, error=error
    ), (422 if error else 200)


def _keep_this_login_only(user) -> None:
    """End every login of the user, then log this browser back in: "every other session" ends."""
    revoke_all(user)
    db.session.commit()
    log_in(user)


@bp.route("/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Current password, a new one twice; every other browser of the user is logged out."""
    user = current_user._get_current_object()
    form = ChangePasswordForm()
    if form.validate_on_submit():
        if not user.check_password(form.current_password.data):
            form.current_password.errors.append(_("That password is not right."))
        elif form.password.data == form.current_password.data:
            form.password.errors.append(_("Choose a password other than your current one."))
        else:
            user.set_password(form.password.data)
            _keep_this_login_only(user)
            flash(_("Your password is changed. Every other browser has been logged out."), "success")
            return redirect(url_for("accounts.settings"))
    status = 422 if form.errors else 200
    return render_template("accounts/change_password.html", form=form), status


@bp.post("/logout-everywhere")
@login_required
def logout_everywhere():
    """Log out every other browser and remember-me cookie of the user, at once."""
    _keep_this_login_only(current_user._get_current_object())
    flash(_("Every other browser has been logged out."), "success")
    return redirect(url_for("accounts.settings"))
