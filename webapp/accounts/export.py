"""Download all my data: one JSON document, written a row at a time.

The document's shape is described in docs/DECISIONS.md ("Accounts and data"), with its format
version. Rows are read with yield_per (a server-side cursor on PostgreSQL) and each is turned
into text and handed to the response at once, so twenty years of daily weights never sit in
memory as a list, neither as rows nor as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime

from ..extensions import db
from ..models import GoalChange, QueuedMail, Reminder, User, WeightEntry
from ..timeutil import utcnow

FORMAT = "weighin-export"
FORMAT_VERSION = 1
ROWS_PER_FETCH = 1000
# Messages whose text holds a link that still works (a password reset); the file says they were
# sent, not what they said, so a copy of the file lying around cannot be used to take the account.
WITHHELD_MAIL_KINDS = frozenset({"reset", "email_change"})


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _kg(grams: int | None) -> str | None:
    return f"{grams / 1000:.3f}" if grams is not None else None


def _profile(user: User) -> dict:
    return {
        "email": user.email,
        "display_name": user.display_name,
        "created_at": _time(user.created_at),
        "is_admin": user.is_admin,
    }


def _settings(user: User) -> dict:
    settings = {
        "unit": user.unit,
        "timezone": user.timezone,
        "reminders_enabled": user.reminders_enabled,
        "email_reminders": user.email_reminders,
        "remind_after_days": user.remind_after_days or None,
    }
    settings["locale"] = user.locale or None  # None: the browser's language
    return settings


def _activity(user: User) -> dict:
    return {
        "last_weight_at": _time(user.last_weight_at),
        "last_goal_at": _time(user.last_goal_at),
        "last_active_at": _time(user.last_active_at),
    }


def _weights(user_id: int) -> Iterator[dict]:
    rows = db.session.execute(
        db.select(
            WeightEntry.measured_at,
            WeightEntry.mass_g,
            WeightEntry.note,
            WeightEntry.created_at,
            WeightEntry.updated_at,
        )
        .where(WeightEntry.user_id == user_id)
        .order_by(WeightEntry.measured_at, WeightEntry.id)
        .execution_options(yield_per=ROWS_PER_FETCH)
    )
    for measured_at, mass_g, note, created_at, updated_at in rows:
        yield {
            "measured_at": _time(measured_at),
            "weight_kg": _kg(mass_g),
            "note": note,
            "created_at": _time(created_at),
            "updated_at": _time(updated_at),
        }


def _goals(user_id: int) -> Iterator[dict]:
    rows = db.session.execute(
        db.select(GoalChange.created_at, GoalChange.target_g, GoalChange.start_g)
        .where(GoalChange.user_id == user_id)
        .order_by(GoalChange.created_at, GoalChange.id)
        .execution_options(yield_per=ROWS_PER_FETCH)
    )
    for created_at, target_g, start_g in rows:
        yield {"set_at": _time(created_at), "goal_kg": _kg(target_g), "weight_then_kg": _kg(start_g)}


def _reminders(user_id: int) -> Iterator[dict]:
    rows = db.session.scalars(
        db.select(Reminder)
        .where(Reminder.user_id == user_id)
        .order_by(Reminder.created_at, Reminder.id)
        .execution_options(yield_per=ROWS_PER_FETCH)
    )
    for reminder in rows:
        yield {
            "status": reminder.status,
            "source": reminder.source,
            "inactive_since": _time(reminder.inactive_since),
            "created_at": _time(reminder.created_at),
            "shown_at": _time(reminder.shown_at),
            "emailed_at": _time(reminder.emailed_at),
            "ended_at": _time(reminder.ended_at),
        }


def _mail(user_id: int) -> Iterator[dict]:
    rows = db.session.scalars(
        db.select(QueuedMail)
        .where(QueuedMail.user_id == user_id)
        .order_by(QueuedMail.created_at, QueuedMail.id)
        .execution_options(yield_per=ROWS_PER_FETCH)
    )
    for message in rows:
        withheld = message.kind in WITHHELD_MAIL_KINDS
        yield {
            "kind": message.kind,
            "to": message.to_address,
            "subject": message.subject,
            "status": message.status,
            "queued_at": _time(message.created_at),
            "sent_at": _time(message.sent_at),
            "attempts": message.attempts,
            "last_error": message.last_error,
            "text": None if withheld else message.body_text,
        }


def _array(items: Iterable[dict]) -> Iterator[str]:
    yield "["
    first = True
    for item in items:
        yield ("\n    " if first else ",\n    ") + json.dumps(item, ensure_ascii=False)
        first = False
    yield "\n  ]" if not first else "]"


def export_document(user: User, now: datetime | None = None) -> Iterator[str]:
    """The user's whole export as pieces of JSON text, in order; join them and you have the file."""
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "exported_at": _time(now or utcnow()),
        "profile": _profile(user),
        "settings": _settings(user),
        "activity": _activity(user),
    }
    user_id = user.id
    # The fixed part first, then each list as it is read.
    yield json.dumps(header, ensure_ascii=False, indent=2)[:-2]
    for key, items in (
        ("weights", _weights(user_id)),
        ("goals", _goals(user_id)),
        ("reminders", _reminders(user_id)),
        ("mail", _mail(user_id)),
    ):
        yield f',\n  "{key}": '
        yield from _array(items)
    yield "\n}\n"
