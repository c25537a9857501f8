"""The reminder lifecycle and the activity clocks it reads.

Every function here changes rows in the current transaction and writes the outbox rows that
announce the change; the caller commits. See docs/ARCHITECTURE.md for the whole path.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ..events.outbox import announce, announce_to_user_and_admins
from ..extensions import db
from ..models import ADMINS_CHANNEL, Reminder, User, user_channel
from ..timeutil import utcnow
from .escalation import cancel_reminder_mail, first_email_at, rearmed_email_at


def _end_open_reminder(user: User, status: str, now: datetime) -> Reminder | None:
    reminder = user.open_reminder()
    if reminder is None:
        return None
    reminder.status = status
    reminder.open_for_user_id = None
    reminder.ended_at = now
    reminder.email_at = None
    # Back before its message went out: the message is not needed any more.
    cancel_reminder_mail(reminder.id)
    return reminder


def _record_activity(user: User, now: datetime, kind: str) -> None:
    user.last_active_at = max(user.last_active_at, now)
    # Set before the open reminder is looked up, whose autoflush then writes the user's clocks in
    # one UPDATE instead of two.
    user.reminder_clock = user.last_active_at if user.reminders_enabled else None
    _end_open_reminder(user, "resolved", now)
    announce_to_user_and_admins(user.id, kind)


def record_weight_logged(user: User, now: datetime | None = None) -> None:
    """A weight was logged: move the weight clock, and resolve an open reminder."""
    now = now or utcnow()
    user.last_weight_at = now
    _record_activity(user, now, "weight")


def record_goal_changed(user: User, now: datetime | None = None) -> None:
    """The goal was set or changed: move the goal clock, and resolve an open reminder."""
    now = now or utcnow()
    user.last_goal_at = now
    _record_activity(user, now, "goal")


def dismiss(user: User, now: datetime | None = None) -> Reminder | None:
    """The user dismissed the banner; it returns only after another full quiet period."""
    now = now or utcnow()
    reminder = _end_open_reminder(user, "dismissed", now)
    if reminder is None:
        return None
    if user.reminders_enabled:
        user.reminder_clock = now
    announce_to_user_and_admins(user.id, "dismissed")
    return reminder


def set_reminders_enabled(user: User, enabled: bool, now: datetime | None = None) -> None:
    """Turn reminders on or off; off also closes an open reminder."""
    now = now or utcnow()
    if enabled == user.reminders_enabled:
        return
    user.reminders_enabled = enabled
    if enabled:
        user.reminder_clock = user.last_active_at
    else:
        _end_open_reminder(user, "dismissed", now)
        user.reminder_clock = None
    announce_to_user_and_admins(user.id, "settings")


def set_email_reminders(user: User, enabled: bool, now: datetime | None = None) -> None:
    """Turn reminder emails on or off; the open reminder follows at once (a queued message is dropped)."""
    now = now or utcnow()
    if enabled == user.email_reminders:
        return
    user.email_reminders = enabled
    reminder = user.open_reminder()
    if reminder is None:
        return
    if not enabled:
        reminder.email_at = None
        cancel_reminder_mail(reminder.id)
    elif reminder.shown_at is None and reminder.emailed_at is None:
        reminder.email_at = rearmed_email_at(reminder.created_at, now, user.timezone)


def open_reminder(
    user_id: int,
    now: datetime | None = None,
    *,
    due_before: datetime | None = None,
    source: str = "scan",
    admin_id: int | None = None,
) -> Reminder | None:
    """Open a reminder for a user unless one is open already; returns it, or None if none was made.

    With due_before (the scan), the user must still be due: their reminder clock at or before
    it, checked and cleared in one conditional UPDATE so a weight logged meanwhile wins. The
    unique constraint on open_for_user_id settles a race between two scanners.
    """
    now = now or utcnow()
    condition = [User.id == user_id]
    if due_before is not None:
        condition.append(User.reminder_clock <= due_before)
    claimed = db.session.execute(
        sa.update(User)
        .where(*condition)
        .values(reminder_clock=None)
        .returning(User.last_active_at, User.timezone, User.email_reminders)
    ).first()
    if claimed is None:
        return None
    reminder = _insert_open_reminder(
        user_id=user_id,
        status="open",
        open_for_user_id=user_id,
        inactive_since=claimed.last_active_at,
        source=source,
        created_by_id=admin_id,
        created_at=now,
        email_at=first_email_at(now, claimed.timezone, claimed.email_reminders),
    )
    if reminder is None:
        return None  # another process opened it first
    announce_to_user_and_admins(user_id, "reminder")
    return reminder


def _insert_open_reminder(**values) -> Reminder | None:
    """Insert an open reminder, or nothing if the user has one already (the unique constraint on
    open_for_user_id): the new row, loaded into the session, or None.

    ON CONFLICT DO NOTHING rather than a savepoint around a plain insert: one round trip instead
    of three on PostgreSQL (SAVEPOINT, INSERT, RELEASE), for each "Remind now" (issue 16).
    """
    # The app runs on these two (DESIGN); both have ON CONFLICT and RETURNING.
    sqlite_db = db.session.get_bind().dialect.name == "sqlite"
    insert = sqlite.insert if sqlite_db else postgresql.insert
    statement = (
        insert(Reminder)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[Reminder.open_for_user_id])
        .returning(Reminder)
    )
    return db.session.scalars(statement).first()


# A user's own "remind me after (days)"; 0 (the default) follows REMINDER_AFTER_DAYS.
REMIND_AFTER_CHOICES = range(3, 61)
SITE_DEFAULT_DAYS = 0


def cutoffs_by_choice(now: datetime, after_days: int) -> list[tuple[int, datetime]]:
    """(remind_after_days value, the clock cut-off it means) for every value a user may hold."""
    return [
        (SITE_DEFAULT_DAYS, now - timedelta(days=after_days)),
        *((days, now - timedelta(days=days)) for days in REMIND_AFTER_CHOICES),
    ]


def _is_due(cutoffs: list[tuple[int, datetime]]):
    """The SQL condition "this user's clock ran out", whichever number of days they chose."""
    return sa.or_(
        *(sa.and_(User.remind_after_days == days, User.reminder_clock <= cutoff) for days, cutoff in cutoffs)
    )


def due_users_query(now: datetime, after_days: int, limit: int | None = None):
    """Ids of users whose reminder clock ran out, each by their own number of days.

    One range of the (remind_after_days, reminder_clock) index per value a user may choose (the
    site's default and 3 to 60), each ordered and limited on its own and joined with UNION ALL: the
    cost follows the due users, and values nobody chose cost one empty index probe each.
    """
    branches = []
    for days, cutoff in cutoffs_by_choice(now, after_days):
        branch = (
            sa.select(User.id)
            .where(User.remind_after_days == days, User.reminder_clock <= cutoff)
            .order_by(User.reminder_clock)
        )
        if limit is not None:
            branch = branch.limit(limit)
        # A subquery each: SQLite takes no LIMIT on a bare member of a compound select.
        branches.append(sa.select(branch.subquery().c.id))
    return sa.union_all(*branches)


class OpenedReminder(NamedTuple):
    """What a scan reports of a reminder it opened (plain values, readable after the commit)."""

    id: int
    user_id: int
    inactive_since: datetime


def claim_due_users_statement(now: datetime, after_days: int, limit: int):
    """The scan's claim: one UPDATE clearing the reminder clock of up to `limit` due users.

    It returns (id, last_active_at, timezone, email_reminders, remind_after_days) rows.

    The re-check of the clock in the UPDATE itself is what makes the claim safe: a weight logged
    meanwhile moved the clock past the cut-off, and a concurrent scanner's claim set it to NULL.
    On PostgreSQL, SKIP LOCKED lets two scanners share the due users instead of queueing.
    """
    cutoffs = cutoffs_by_choice(now, after_days)
    # PostgreSQL locks no rows of a UNION, so the locking select is an outer one over its ids.
    due = (
        db.select(User.id)
        .where(User.id.in_(due_users_query(now, after_days, limit)))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (
        sa.update(User)
        .where(User.id.in_(due.scalar_subquery()), _is_due(cutoffs))
        .values(reminder_clock=None)
        .returning(User.id, User.last_active_at, User.timezone, User.email_reminders, User.remind_after_days)
        .execution_options(synchronize_session=False)
    )


def _claim_due_users(now: datetime, after_days: int, limit: int):
    """Run the claim (claim_due_users_statement) and return its rows."""
    return db.session.execute(claim_due_users_statement(now, after_days, limit)).all()


def scan(now: datetime | None = None, after_days: int = 7, batch: int = 1000) -> list[OpenedReminder]:
    """Open a reminder for every user who is due one; commits in batches and returns what it made.

    Set-based: each batch is one claiming UPDATE, one multi-row INSERT of reminders and one of
    outbox rows (a row per user's channel, one for the admins'), then a commit, so a first scan
    over many idle users costs seconds rather than a round trip per user.
    """
    now = now or utcnow()
    created: list[OpenedReminder] = []
    while True:
        claimed = _claim_due_users(now, after_days, batch)
        if not claimed:
            db.session.commit()
            return created
        reminders = [
            Reminder(
                user_id=user_id,
                status="open",
                open_for_user_id=user_id,
                inactive_since=last_active_at,
                source="scan",
                created_at=now,
                email_at=first_email_at(now, timezone, email_reminders),
            )
            for user_id, last_active_at, timezone, email_reminders, _ in claimed
        ]
        db.session.add_all(reminders)
        for user_id, *_ in claimed:
            announce(user_channel(user_id), "reminder")
        announce(ADMINS_CHANNEL, "reminder")
        try:
            db.session.flush()
        except IntegrityError:
            # Only possible if an open reminder exists for a user whose clock was still running:
            # undo the batch and let the one-at-a-time path (savepoint per user) sort it out.
            db.session.rollback()
            for user_id, *_, days in claimed:
                cutoff = now - timedelta(days=days or after_days)
                reminder = open_reminder(user_id, now, due_before=cutoff)
                if reminder is not None:
                    db.session.flush()
                    created.append(OpenedReminder(reminder.id, user_id, reminder.inactive_since))
            db.session.commit()
            continue
        created.extend(OpenedReminder(r.id, r.user_id, r.inactive_since) for r in reminders)
        db.session.commit()
