"""The user's own data and account: download everything (and, below, delete the account)."""

from __future__ import annotations

from flask import Response, stream_with_context
from flask_login import current_user, login_required

from ..timeutil import get_zone, utcnow
from .export import export_document
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
