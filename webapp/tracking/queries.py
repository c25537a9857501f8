"""The tracking package's queries: a user's weight log and goal history, read for views and mail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..extensions import db
from ..models import GoalChange, User, WeightEntry

# The outbox kind of a change to the entries that is not activity (an edit, a delete, old history
# imported): on the user's channel only, so their other tabs' dashboards refresh.
ENTRIES_CHANGED = "entries"


def weight_log(user_id: int) -> Sequence[sa.Row]:
    """A user's whole log, newest first, as light rows (id, measured_at, mass_g, note).

    The dashboard needs the times and weights of every entry for the trend and the first few
    entries in full for the table; one query of four columns serves both, where entries_query()
    would be ORM objects for rows that are only read.
    """
    return db.session.execute(
        db.select(WeightEntry.id, WeightEntry.measured_at, WeightEntry.mass_g, WeightEntry.note)
        .where(WeightEntry.user_id == user_id)
        .order_by(WeightEntry.measured_at.desc(), WeightEntry.id.desc())
    ).all()


def measurements(log: Sequence[sa.Row]) -> list[tuple[datetime, int]]:
    """The (measured_at, grams) pairs of a weight_log, which is what the trend maths reads."""
    return [(row.measured_at, row.mass_g) for row in log]


def latest_entry(user: User) -> WeightEntry | None:
    """The user's newest entry, if any."""
    return db.session.scalars(user.entries_query().limit(1)).first()


def entries_oldest_first(user_id: int) -> sa.Select:
    """A user's entries in the order they were measured, for the export."""
    return (
        db.select(WeightEntry)
        .where(WeightEntry.user_id == user_id)
        .order_by(WeightEntry.measured_at, WeightEntry.id)
    )


def goal_history(user_id: int, limit: int) -> Sequence[GoalChange]:
    """The user's latest goal settings, newest first."""
    return db.session.scalars(
        db.select(GoalChange)
        .where(GoalChange.user_id == user_id)
        .order_by(GoalChange.created_at.desc(), GoalChange.id.desc())
        .limit(limit)
    ).all()


REPEAT_WINDOW = timedelta(minutes=1)


def is_repeat_entry(user: User, grams: int, now: datetime) -> bool:
    """Whether the user saved this exact weight within the last minute (a second tap, not a new weighing)."""
    return (
        db.session.scalar(
            db.select(WeightEntry.id)
            .where(
                WeightEntry.user_id == user.id,
                WeightEntry.mass_g == grams,
                WeightEntry.created_at > now - REPEAT_WINDOW,
            )
            .limit(1)
        )
        is not None
    )
