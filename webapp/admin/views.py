"""Admin views: the live inactive-users page, its CSV, "remind now", and who is an admin."""

from __future__ import annotations

import csv
import io
from functools import wraps

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required

from ..accounts.emails import MAX_EMAIL_LENGTH, normalise_email
from ..accounts.queries import user_by_email
from ..csvcells import spreadsheet_safe
from ..extensions import current_broker, db
from ..models import MAX_ID, Reminder, User
from ..text import has_control_characters
from ..timeutil import get_zone, utcnow
from ..web import is_htmx, render_page_or_fragment, safe_next
from . import actions
from .mail_health import email_state, mail_by_reminder, mail_health
from .queries import (
    KINDS,
    REMINDER_STATES,
    SORTS,
    InactiveFilter,
    days_inactive,
    emails_by_id,
    inactive_users_page,
    iter_inactive_users,
    latest_reminders,
    overview_counts,
    recent_admin_actions,
    reminder_state,
)

bp = Blueprint("admin", __name__)

DEFAULT_PAGE_SIZE = 50


def admin_required(view):
    """Anonymous users go to log in; logged-in users who are not admins get 403."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def _filter() -> InactiveFilter:
    return InactiveFilter.from_args(request.args, current_app.config["REMINDER_AFTER_DAYS"])


def _reminded_by(reminder: Reminder | None, emails: dict[int, str]) -> str | None:
    """The email of the admin who sent this reminder, if an admin did."""
    if reminder is None or reminder.created_by_id is None:
        return None
    return emails.get(reminder.created_by_id)


def _inactive_context(flt: InactiveFilter) -> dict:
    """Everything the inactive-users page and its live fragment show."""
    now = utcnow()
    size = current_app.config.get("ADMIN_PAGE_SIZE", DEFAULT_PAGE_SIZE)
    page = inactive_users_page(flt, now, size)
    latest = latest_reminders([user.id for user in page.users])
    recent = recent_admin_actions(actions.REMINDER_ACTIONS)
    emails = emails_by_id(reminder.created_by_id for reminder in latest.values())
    mails = mail_by_reminder([reminder.id for reminder in latest.values()])
    rows = [
        {
            "user": user,
            "days": days_inactive(user, now),
            "state": reminder_state(user, latest.get(user.id)),
            "reminder": latest.get(user.id),
            "reminded_by": _reminded_by(latest.get(user.id), emails),
            "email": email_state(
                latest.get(user.id), mails.get(latest[user.id].id) if user.id in latest else None
            ),
        }
        for user in page.users
    ]
    return {
        "flt": flt,
        "rows": rows,
        "pager": page,
        "counts": overview_counts(now, current_app.config["REMINDER_AFTER_DAYS"]),
        "after_days": current_app.config["REMINDER_AFTER_DAYS"],
        "streams": current_broker().stream_count(),
        "mail": mail_health(now, get_zone(current_user.timezone)),
        "recent_reminders": recent,
        "kinds": KINDS,
        "reminder_states": REMINDER_STATES,
        "sorts": SORTS,
        "here": url_for("admin.inactive_users", **flt.params(after=_enc(flt.after), before=_enc(flt.before))),
    }


def _enc(cursor) -> str | None:
    return cursor.encode() if cursor else None


@bp.get("/")
@admin_required
def inactive_users():
    """The inactive-users page; for htmx, the filters and the live part (a filter or page change)."""
    return render_page_or_fragment("admin/inactive.html", "admin/_page.html", **_inactive_context(_filter()))


@bp.get("/live")
@admin_required
def live():
    """The live part alone (counts, table, recent reminders): what the admins' event refreshes."""
    return render_page_or_fragment("admin/inactive.html", "admin/_live.html", **_inactive_context(_filter()))


CSV_COLUMNS = (
    "email",
    "display_name",
    "last_weight_at",
    "last_goal_at",
    "last_active_at",
    "days_inactive",
    "remind_after_days",
    "reminder_state",
    "last_reminder_at",
    "reminder_email",
    "reminder_email_at",
)


@bp.get("/export.csv")
@admin_required
def export_csv():
    """The filtered inactive list (every page) as CSV, streamed in keyset batches."""
    flt = _filter()
    flt.after = flt.before = None
    now = utcnow()

    def iso(value):
        return value.isoformat() if value else ""

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        batch: list = []
        for user in iter_inactive_users(flt, now):
            batch.append(user)
            if len(batch) == 500:
                yield from _csv_rows(writer, buffer, batch, now, iso)
                batch = []
        yield from _csv_rows(writer, buffer, batch, now, iso, final=True)

    filename = f"weighin-inactive-{now:%Y-%m-%d}.csv"  # the same form as the own-data export
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _csv_rows(writer, buffer, users, now, iso, final=False):
    site_days = current_app.config["REMINDER_AFTER_DAYS"]
    latest = latest_reminders([user.id for user in users])
    mails = mail_by_reminder([reminder.id for reminder in latest.values()])
    for user in users:
        reminder = latest.get(user.id)
        email = email_state(reminder, mails.get(reminder.id) if reminder else None)
        writer.writerow(
            [
                spreadsheet_safe(cell)
                for cell in (
                    user.email,
                    user.display_name,
                    iso(user.last_weight_at),
                    iso(user.last_goal_at),
                    iso(user.last_active_at),
                    days_inactive(user, now),
                    user.remind_after_days or site_days,
                    reminder_state(user, reminder),
                    iso(reminder.created_at) if reminder else "",
                    email.label,
                    iso(email.at),
                )
            ]
        )
    if buffer.tell() or final:
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _could_be_a_user(user_id: int) -> bool:
    # The URL converter takes any size of number; beyond an INTEGER it cannot be a user.
    return 0 < user_id <= MAX_ID


def _load_user(user_id: int) -> User | None:
    return db.session.get(User, user_id) if _could_be_a_user(user_id) else None


def _refuse(status: int, message: str, fallback: str):
    """Say why an admin action was not done: in the page's status line for htmx, else flashed on the page."""
    if is_htmx():
        return render_template("errors/_error.html", code=status, message=message), status
    flash(message, "error")
    return redirect(safe_next(request.form.get("next")) or fallback, 303)


def _done(message: str, fallback: str):
    """Report success: the status line for htmx, else a flash and back to where the form was."""
    if is_htmx():
        return render_template("admin/_status.html", message=message)
    flash(message, "success")
    return redirect(safe_next(request.form.get("next")) or fallback, 303)


@bp.post("/users/<int:user_id>/remind")
@admin_required
def remind(user_id: int):
    """Send one user a reminder now (or show their open one again); recorded as an admin action."""
    back = url_for("admin.inactive_users")
    user = actions.remind_target(user_id) if _could_be_a_user(user_id) else None
    if user is None:
        return _refuse(404, _("There is no such user (it may have been deleted). Nothing was sent."), back)
    try:
        result = actions.remind_now(current_user._get_current_object(), user, utcnow())
    except actions.AdminActionRefused as refused:
        db.session.rollback()
        return _refuse(409, str(refused), back)
    # Worded before the commit, which expires every loaded row: afterwards the email (and the
    # admin's language) would cost a transaction of their own to read again (issue 16).
    if result.repeated:
        message = _(
            "%(email)s already had an open reminder; it was shown again on their open pages.",
            email=user.email,
        )
    else:
        message = _("Reminder sent to %(email)s.", email=user.email)
    db.session.commit()
    return _done(message, back)


@bp.get("/admins")
@admin_required
def admins():
    """Who is an admin, a form to make someone one, and the record of who changed that."""
    admin_users = list(
        db.session.scalars(db.select(User).where(User.is_admin.is_(True)).order_by(User.email))
    )
    history = recent_admin_actions(actions.ADMIN_FLAG_ACTIONS, limit=20)
    return render_template("admin/admins.html", admins=admin_users, history=history)


@bp.post("/admins")
@admin_required
def grant_admin():
    """Make the account with the given email an admin."""
    back = url_for("admin.admins")
    email = normalise_email(request.form.get("email", ""))
    if not email or len(email) > MAX_EMAIL_LENGTH:
        return _refuse(422, _("Enter the email address of an existing account."), back)
    if has_control_characters(email):
        return _refuse(422, _("Remove the control characters from the email address."), back)
    user = user_by_email(email)
    if user is None:
        return _refuse(404, _("There is no account with the email “%(email)s”.", email=email), back)
    try:
        actions.set_admin(current_user._get_current_object(), user, True, utcnow())
    except actions.AdminActionRefused as refused:
        db.session.rollback()
        return _refuse(409, str(refused), back)
    db.session.commit()
    return _done(_("%(email)s is now an admin.", email=user.email), back)


@bp.post("/admins/<int:user_id>/remove")
@admin_required
def remove_admin(user_id: int):
    """Remove the admin flag; refused for the last admin."""
    back = url_for("admin.admins")
    user = _load_user(user_id)
    if user is None:
        return _refuse(404, _("There is no such user (it may have been deleted)."), back)
    actor = current_user._get_current_object()
    try:
        actions.set_admin(actor, user, False, utcnow())
    except actions.AdminActionRefused as refused:
        db.session.rollback()
        return _refuse(409, str(refused), back)
    db.session.commit()
    if user.id == actor.id:
        # They can no longer see the admin pages; send them somewhere they can.
        flash(_("You are no longer an admin."), "info")
        if is_htmx():
            return "", 200, {"HX-Redirect": url_for("tracking.dashboard")}
        return redirect(url_for("tracking.dashboard"), 303)
    return _done(_("%(email)s is no longer an admin.", email=user.email), back)
