"""The reminder email: rendered from templates/mail/reminder.*, queued by the escalation."""

from __future__ import annotations

from datetime import datetime

from flask_babel import force_locale, gettext

from ..i18n import language_of
from ..mail.links import public_url
from ..mail.queue import enqueue, render_message
from ..mail.tokens import UNSUBSCRIBE, make_token
from ..models import User
from ..tracking.queries import latest_entry
from ..units import format_weight


def queue_reminder_email(user: User, reminder_id: int, now: datetime) -> None:
    """Queue the reminder's message, in the user's language, in the current transaction (the caller
    commits)."""
    lang = language_of(user)
    unsubscribe_url = public_url("reminders.unsubscribe", token=make_token(UNSUBSCRIBE, user.id))
    latest = latest_entry(user)
    since = user.last_weight_at or user.created_at
    context = {
        "name": user.name,
        "days": max(0, (now - since).days),
        "ever_logged": user.last_weight_at is not None,
        "unit": user.unit,
        "log_url": public_url("tracking.dashboard", _anchor="weight"),
        "settings_url": public_url("accounts.settings"),
        "unsubscribe_url": unsubscribe_url,
        "lang": lang,
    }
    with force_locale(lang):
        # Written in the user's language, as the rest of the message (its decimal sign).
        context["last_weight"] = format_weight(latest.mass_g, user.unit) if latest is not None else ""
        text, html = render_message("reminder", **context)
        subject = gettext("Time to log your weight")
    enqueue(
        kind="reminder",
        to=user.email,
        subject=subject,
        text=text,
        html=html,
        user_id=user.id,
        reminder_id=reminder_id,
        # RFC 8058: mail programs show an "unsubscribe" button that POSTs to this URL.
        headers={
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        now=now,
    )
