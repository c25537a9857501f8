"""Tracking views: the dashboard with its quick-add form, the weight history, the goal and the export.

Only a NEW entry counts as activity (record_weight_logged): logging a weight is what the reminder
rule asks for, while correcting or deleting an old entry is bookkeeping and leaves the clocks alone.
Setting the goal, even to the same value, counts as a goal change.
"""

from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user, login_required

from ..csvcells import spreadsheet_safe
from ..events.area import read_only_view
from ..events.outbox import announce_to_user
from ..extensions import db
from ..models import MAX_ID, GoalChange, User, WeightEntry
from ..reminders.lifecycle import record_goal_changed, record_weight_logged
from ..timeutil import get_zone, utcnow
from ..units import format_weight_exact, from_grams, input_value
from ..web import MEGABYTE, allows_upload, is_htmx, render_page_or_fragment
from . import imports
from .chart import build_chart
from .csv_formats import FORMAT_NAMES, ImportFileError, ImportOptions
from .forms import EntryForm, GoalForm, ImportForm, local_input_value
from .queries import (
    ENTRIES_CHANGED,
    entries_oldest_first,
    goal_and_log,
    goal_history,
    is_repeat_entry,
    measurements,
    weight_log,
)
from .trend import summarize

bp = Blueprint("tracking", __name__)

ENTRIES_PER_PAGE = 20
RECENT_ENTRIES = 5
GOAL_HISTORY = 20
MAX_PAGE = 100_000
IMPORT_MAX_BYTES = 20 * MEGABYTE


def _user() -> User:
    return current_user._get_current_object()


def _entry_form(user: User, **kwargs) -> EntryForm:
    return EntryForm(unit=user.unit, zone=get_zone(user.timezone), **kwargs)


def _own_entry(entry_id: int) -> WeightEntry:
    """The current user's entry with this id; 404 for anyone else's, so ids do not leak."""
    if entry_id > MAX_ID:
        abort(404)
    return db.one_or_404(db.select(WeightEntry).filter_by(id=entry_id, user_id=current_user.id))


def _dashboard_context(
    user: User, form: EntryForm | None = None, message: str | None = None, submitted: bool = False
) -> dict:
    """What the dashboard page and its live fragment show, computed from the user's whole log."""
    zone = get_zone(user.timezone)
    goal, log = goal_and_log(user.id)
    summary = summarize(
        measurements(log),
        zone,
        target_g=goal.target_g if goal else None,
        start_g=goal.start_g if goal else None,
        goal_set_at=goal.created_at if goal else None,
    )
    today = utcnow().astimezone(zone).date()
    if form is None:
        # A fresh form, not the one just posted: after a save the field is empty, so a second
        # tap cannot save the same weight again.
        form = _entry_form(user, formdata=None)
        form.prefill_now()
    return {
        "summary": summary,
        "chart": build_chart(summary.points, summary.target_g, user.unit, today=today),
        "today": today,
        "recent": log[:RECENT_ENTRIES],
        "form": form,
        "message": message,
        "submitted": submitted,
    }


@bp.get("/")
def index():
    """The dashboard for a signed-in user; for anyone else, a few lines on what Weigh-in is."""
    if current_user.is_authenticated:
        return redirect(url_for("tracking.dashboard"))
    return render_template("tracking/welcome.html")


@bp.get("/dashboard")
@read_only_view
@login_required
def dashboard():
    """Where the user stands: stats, chart, recent entries and the quick-add form."""
    return render_page_or_fragment(
        "tracking/dashboard.html", "tracking/_dashboard_live.html", **_dashboard_context(_user())
    )


@bp.get("/dashboard/summary")
@read_only_view
@login_required
def dashboard_summary():
    """The dashboard's summary alone (chart, stats, recent entries): what a "changed" event refreshes."""
    return render_page_or_fragment(
        "tracking/dashboard.html", "tracking/_dashboard_summary.html", **_dashboard_context(_user())
    )


@bp.post("/entries")
@login_required
def add_entry():
    """Log a weight (the quick-add form); htmx gets the refreshed dashboard fragment back."""
    user = _user()
    form = _entry_form(user)
    if not form.validate_on_submit():
        return render_page_or_fragment(
            "tracking/dashboard.html",
            "tracking/_dashboard_live.html",
            status=422,
            **_dashboard_context(user, form=form, submitted=True),
        )
    now = form.now
    if is_repeat_entry(user, form.grams, now):
        form.weight.errors.append(_("You logged this weight less than a minute ago; it is saved once."))
        return render_page_or_fragment(
            "tracking/dashboard.html",
            "tracking/_dashboard_live.html",
            status=422,
            **_dashboard_context(user, form=form, submitted=True),
        )
    entry = WeightEntry(
        user_id=user.id,
        measured_at=form.measured_at_utc,
        mass_g=form.grams,
        note=form.note.data or "",
        created_at=now,
        updated_at=now,
    )
    db.session.add(entry)
    record_weight_logged(user, now)  # same transaction: the clock, the reminder and the outbox
    # Worded before the commit, which expires the entry: reading its weight back afterwards
    # would cost a SELECT of its own.
    message = _("Logged %(weight)s.", weight=format_weight_exact(form.grams, user.unit))
    db.session.commit()
    if is_htmx():
        return render_page_or_fragment(
            "tracking/dashboard.html",
            "tracking/_dashboard_live.html",
            **_dashboard_context(user, message=message, submitted=True),
        )
    flash(message, "success")
    return redirect(url_for("tracking.dashboard"))


@bp.get("/entries")
@login_required
def history():
    """Every entry, newest first, a page at a time."""
    user = _user()
    page = min(max(request.args.get("page", 1, type=int), 1), MAX_PAGE)
    pagination = db.paginate(user.entries_query(), page=page, per_page=ENTRIES_PER_PAGE, error_out=False)
    # For htmx, the entries alone: what #history-live fetches when another tab changed them.
    return render_page_or_fragment("tracking/history.html", "tracking/_history.html", pagination=pagination)


@bp.route("/entries/<int:entry_id>/edit", methods=["GET", "POST"])
@login_required
def edit_entry(entry_id: int):
    """Correct an entry's weight, time or note; not counted as activity."""
    user = _user()
    entry = _own_entry(entry_id)
    zone = get_zone(user.timezone)
    shown_weight = input_value(entry.mass_g, user.unit)
    form = _entry_form(user)
    if request.method == "GET":
        form.weight.data = shown_weight
        form.measured_at.data = form.measured_at_default.data = local_input_value(entry.measured_at, zone)
        form.note.data = entry.note
    elif form.validate_on_submit():
        # Untouched fields keep their stored value, so the minute-wide field and a unit
        # conversion cannot nudge an entry that was only opened to fix its note.
        if form.weight.data != shown_weight:
            entry.mass_g = form.grams
        if form.measured_at.data != local_input_value(entry.measured_at, zone):
            entry.measured_at = form.measured_at_utc
        entry.note = form.note.data or ""
        entry.updated_at = utcnow()
        announce_to_user(user.id, ENTRIES_CHANGED)  # not activity, but other tabs show the entries
        db.session.commit()
        flash(_("Entry updated."), "success")
        return redirect(url_for("tracking.history"))
    status = 422 if form.errors else 200
    return render_template("tracking/edit.html", form=form, entry=entry), status


@bp.route("/entries/<int:entry_id>/delete", methods=["GET", "POST"])
@login_required
def delete_entry(entry_id: int):
    """Ask first (GET), then delete (POST)."""
    entry = _own_entry(entry_id)
    if request.method == "POST":
        db.session.delete(entry)
        announce_to_user(entry.user_id, ENTRIES_CHANGED)
        db.session.commit()
        flash(_("Entry deleted."), "success")
        return redirect(url_for("tracking.history"))
    return render_template("tracking/delete.html", entry=entry)


@bp.route("/goal", methods=["GET", "POST"])
@login_required
def goal():
    """Set or change the goal weight; every setting is kept as history."""
    user = _user()
    current = user.current_goal()
    form = GoalForm(unit=user.unit)
    if request.method == "GET" and current is not None:
        form.target.data = input_value(current.target_g, user.unit)
    if form.validate_on_submit():
        now = form.now
        summary = summarize(measurements(weight_log(user.id)), get_zone(user.timezone))
        # Where the goal starts decides whether it means losing or gaining: the trend now,
        # or nothing yet (the dashboard then takes the first trend after this moment).
        start = round(summary.trend_g) if summary.trend_g is not None else None
        db.session.add(GoalChange(user_id=user.id, target_g=form.grams, start_g=start, created_at=now))
        record_goal_changed(user, now)
        db.session.commit()
        flash(_("Goal set to %(weight)s.", weight=format_weight_exact(form.grams, user.unit)), "success")
        return redirect(url_for("tracking.dashboard"))
    history = goal_history(user.id, GOAL_HISTORY)
    status = 422 if form.errors else 200
    return render_template("tracking/goal.html", form=form, current=current, history=history), status


@bp.get("/export.csv")
@login_required
def export_csv():
    """Download one's own entries as CSV, oldest first, times in the user's zone with offset."""
    user = _user()
    zone = get_zone(user.timezone)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["measured_at", "weight_kg", "weight", "unit", "note"])
    rows = db.session.scalars(entries_oldest_first(user.id))
    for entry in rows:
        writer.writerow(
            [
                entry.measured_at.astimezone(zone).isoformat(timespec="seconds"),
                f"{from_grams(entry.mass_g, 'kg'):.3f}",
                input_value(entry.mass_g, user.unit),
                user.unit,
                spreadsheet_safe(entry.note),
            ]
        )
    filename = f"weighin-{utcnow().astimezone(zone):%Y-%m-%d}.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@bp.route("/entries/import", methods=["GET", "POST"])
@login_required
@allows_upload(IMPORT_MAX_BYTES)
def import_upload():
    """Upload a CSV file (up to 20 MB); it is read and shown as a preview, nothing is saved yet."""
    user = _user()
    form = ImportForm()
    if request.method == "GET":
        form.unit.data = user.unit
    error = None
    if form.validate_on_submit():
        upload = form.file.data
        options = ImportOptions(
            zone=get_zone(user.timezone), unit=form.unit.data, day_first=form.date_order.data == "dmy"
        )
        try:
            pending = imports.stage_import(user, upload.stream, upload.filename or "", options)
        except ImportFileError as problem:
            error = str(problem)
        else:
            preview = url_for("tracking.import_preview", token=pending.token)
            if is_htmx():
                return "", 200, {"HX-Redirect": preview}
            return redirect(preview)
    status = 422 if (form.errors or error) else 200
    return render_page_or_fragment(
        "tracking/import.html",
        "tracking/_import_form.html",
        status=status,
        form=form,
        error=error,
        max_mb=IMPORT_MAX_BYTES // MEGABYTE,
    )


@bp.get("/entries/import/progress")
@login_required
def import_progress():
    """How far the server has read the user's upload: the fragment the import page polls."""
    return render_template("tracking/_import_progress.html", reading=imports.import_in_progress(_user()))


def _own_pending_import(token: str):
    """The user's pending import, or None (expired, saved, cancelled, or not theirs)."""
    return imports.pending_import(_user(), token)


GONE_MESSAGE = _l(
    "That import is no longer waiting: it was saved or cancelled, or it is more than an hour old. "
    "Upload the file again."
)


@bp.route("/entries/import/<token>", methods=["GET", "POST"])
@login_required
def import_preview(token: str):
    """What the upload would add, skip and refuse (GET); save it in one transaction (POST)."""
    pending = _own_pending_import(token)
    if pending is None:
        flash(str(GONE_MESSAGE), "info")
        return redirect(url_for("tracking.import_upload"))
    if request.method == "POST":
        result = imports.confirm_import(_user(), pending)
        if result is None:
            flash(str(GONE_MESSAGE), "info")
            return redirect(url_for("tracking.import_upload"))
        flash(ngettext("Imported %(num)d entry.", "Imported %(num)d entries.", result.added), "success")
        return redirect(url_for("tracking.history"))
    return render_template(
        "tracking/import_preview.html",
        pending=pending,
        problems=imports.problems_of(pending),
        format_name=FORMAT_NAMES.get(pending.file_format, pending.file_format),
        shown_problems=imports.SHOWN_PROBLEMS,
    )


@bp.post("/entries/import/<token>/cancel")
@login_required
def import_cancel(token: str):
    """Drop a pending import; nothing of it is saved."""
    pending = _own_pending_import(token)
    if pending is not None:
        imports.discard_import(pending)
    flash(_("Import cancelled; nothing was saved."), "info")
    return redirect(url_for("tracking.import_upload"))
