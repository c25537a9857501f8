"""The tracking package's queries: a user's weight log and goal history, read for views and mail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa

from ..extensions import db
from ..models import GoalChange, User, WeightEntry

# The outbox kind of a change to the entries that is not activity (an edit, a delete, old history
# imported): on the user's channel only, so their other tabs' dashboards refresh.
ENTRIES_CHANGED = "entries"


def weight_log(user_id: int) -> Sequence[sa.Row]:
    """A user's whole log, newest first, as light rows (id, measured_at, mass_g, note).

    The trend needs the times and weights of every entry, and the dashboard the first few in full
    for the table; four columns serve both, where entries_query() would be ORM objects.
    """
    return db.session.execute(_WEIGHT_LOG, {"user_id": user_id}).all()


_ENTRIES = WeightEntry.__table__
_WEIGHT_LOG = (
    sa.select(_ENTRIES.c.id, _ENTRIES.c.measured_at, _ENTRIES.c.mass_g, _ENTRIES.c.note)
    .where(_ENTRIES.c.user_id == sa.bindparam("user_id"))
    .order_by(_ENTRIES.c.measured_at.desc(), _ENTRIES.c.id.desc())
)


class Goal(NamedTuple):
    """The current goal's columns the dashboard reads (GoalChange's, without loading one)."""

    target_g: int
    start_g: int | None
    created_at: datetime


_GOAL_COLUMNS = GoalChange.__table__.c


def _goal_column(column) -> sa.ScalarSelect:
    # One column of the newest goal, ordered as User.current_goal() orders them.
    return (
        sa.select(column)
        .where(_GOAL_COLUMNS.user_id == sa.bindparam("user_id"))
        .order_by(_GOAL_COLUMNS.created_at.desc(), _GOAL_COLUMNS.id.desc())
        .limit(1)
        .scalar_subquery()
    )


# The current goal and the whole log in one statement (the dashboard's two reads, one round
# trip): one row per entry (weight_log's columns first) with the goal's beside it, or a single
# row of NULL entry columns when the log is empty. Each goal column is its own subquery, run once
# per statement.
_GOAL_AND_LOG = (
    sa.select(
        *_WEIGHT_LOG.selected_columns,
        _goal_column(_GOAL_COLUMNS.target_g).label("goal_target_g"),
        _goal_column(_GOAL_COLUMNS.start_g).label("goal_start_g"),
        _goal_column(_GOAL_COLUMNS.created_at).label("goal_created_at"),
    )
    .select_from(
        sa.select(sa.literal(1).label("one"))
        .subquery("one")
        .outerjoin(_ENTRIES, _ENTRIES.c.user_id == sa.bindparam("user_id"))
    )
    .order_by(_ENTRIES.c.measured_at.desc(), _ENTRIES.c.id.desc())
)


def goal_and_log(user_id: int) -> tuple[Goal | None, Sequence[sa.Row]]:
    """The user's current goal (None if never set) and weight_log(user_id), in one statement."""
    rows = db.session.execute(_GOAL_AND_LOG, {"user_id": user_id}).all()
    first = rows[0]
    goal = None
    if first.goal_target_g is not None:
        goal = Goal(first.goal_target_g, first.goal_start_g, first.goal_created_at)
    return goal, (rows if first.id is not None else [])


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
