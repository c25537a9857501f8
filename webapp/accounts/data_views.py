"""The user's own data and account: download everything (and, below, delete the account)."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, stream_with_context, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, logout_user

from ..extensions import db
from ..timeutil import get_zone, utcnow
from . import deletion
from .export import export_document
from .forms import DeleteAccountForm
from .views import bp


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
