"""Escalation: a reminder that no open page showed is emailed once, at a decent hour for its user.

A reminder's `email_at` is set when it opens (REMINDER_EMAIL_AFTER later, moved into the user's
REMINDER_EMAIL_HOURS in their own zone) and cleared the moment a page shows the banner, the
reminder ends, or the user turns email reminders off, so `escalate` reads one index range of
reminders that are due. The claim that clears `email_at` and the queued message commit together,
and mail_queue.reminder_id is unique: one message per reminder, whatever races. See
docs/DECISIONS.md ("Mail (issue 13)").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app

from ..batches import GroupCall
from ..events.outbox import announce
from ..extensions import db
from ..models import ADMINS_CHANNEL, QueuedMail, Reminder, User
from ..timeutil import UTCDateTime, get_zone, utcnow

BATCH = 200


def in_hours(hour: int, hours: tuple[int, int]) -> bool:
    """Whether a local hour lies in START-END (END not included; 22-6 wraps past midnight)."""
    start, end = hours
    return start <= hour < end if start < end else hour >= start or hour < end


def next_in_hours(moment: datetime, zone: ZoneInfo, hours: tuple[int, int]) -> datetime:
    """The first instant at or after `moment` whose local hour in `zone` lies in `hours` (UTC)."""
    local = moment.astimezone(zone)
    if in_hours(local.hour, hours):
        return moment
    start = datetime.combine(local.date(), time(hours[0]), tzinfo=zone)
    if start <= local:
        start = datetime.combine(local.date() + timedelta(days=1), time(hours[0]), tzinfo=zone)
    return start.astimezone(moment.tzinfo)


def first_email_at(opened_at: datetime, timezone: str, email_reminders: bool) -> datetime | None:
    """When a reminder opened at `opened_at` may first be emailed (None: never, email is off)."""
    if not email_reminders:
        return None
    config = current_app.config
    after = opened_at + timedelta(seconds=config["REMINDER_EMAIL_AFTER"])
    return next_in_hours(after, get_zone(timezone), config["REMINDER_EMAIL_HOURS"])


def rearmed_email_at(opened_at: datetime, now: datetime, timezone: str) -> datetime:
    """When an open reminder may be emailed after email reminders were turned back on."""
    config = current_app.config
    after = max(opened_at + timedelta(seconds=config["REMINDER_EMAIL_AFTER"]), now)
    return next_in_hours(after, get_zone(timezone), config["REMINDER_EMAIL_HOURS"])


def cancel_reminder_mail(*reminder_ids: int) -> None:
    """Drop the reminders' messages that no sender has taken yet (the user came back first)."""
    db.session.execute(
        sa.update(QueuedMail)
        .where(QueuedMail.reminder_id.in_(reminder_ids), QueuedMail.status == "queued")
        .values(status="cancelled", due_at=None)
        .execution_options(synchronize_session=False)
    )


_MARK_SHOWN = (
    sa.update(Reminder)
    .where(Reminder.id.in_(sa.bindparam("reminder_ids", expanding=True)), Reminder.shown_at.is_(None))
    .values(shown_at=sa.bindparam("now"), email_at=None)
    .returning(Reminder.id)
    .execution_options(synchronize_session=False)
)


# PostgreSQL: the showing and the cancel of its queued message in one round trip (issue 16); a
# data-modifying CTE runs whether or not the outer query reads it. The same rule as _MARK_SHOWN
# followed by cancel_reminder_mail, which SQLite (no data-modifying CTEs) runs one after the other.
_MARK_SHOWN_AND_CANCEL_PG = sa.text(
    "WITH shown AS ("
    " UPDATE reminders SET shown_at = :now, email_at = NULL"
    " WHERE id = ANY(:reminder_ids) AND shown_at IS NULL RETURNING id"
    "), cancelled AS ("
    " UPDATE mail_queue SET status = 'cancelled', due_at = NULL"
    " WHERE reminder_id IN (SELECT id FROM shown) AND status = 'queued'"
    ") "
    "SELECT id FROM shown"
).bindparams(sa.bindparam("now", type_=UTCDateTime()))


def record_shown(*reminder_ids: int, now: datetime | None = None) -> None:
    """Pages got the reminders' banners: note it (first time only), so no email follows; commits.

    Called only while a reminder's shown_at reads NULL, so each reminder pays this once; the
    transports call it through `ShownRecorder`, a batch per commit.
    """
    # Ascending ids: two batches that share reminders lock their rows in the same order.
    ids = sorted(set(reminder_ids))
    values = {"reminder_ids": ids, "now": now or utcnow()}
    if db.session.get_bind().dialect.name == "postgresql":
        shown = db.session.scalars(_MARK_SHOWN_AND_CANCEL_PG, values).all()
    else:
        shown = db.session.scalars(_MARK_SHOWN, values).all()
        if shown:
            cancel_reminder_mail(*shown)
    if shown:
        announce(ADMINS_CHANNEL, "shown")  # the admin page's "shown on a page", once per batch
    db.session.commit()


class ShownRecorder(GroupCall[int, None]):
    """Group commit of the transports' first showings of banners (issue 16): one per process.

    A stream, poll or WebSocket that is about to send a banner no page has shown yet waits here
    until that showing is committed (so the email rule never misses a banner that went out); the
    showings that arrive while a batch commits go in the next batch, one UPDATE and one COMMIT for
    all of them, on a connection of the recorder's own (the waiting stream has given its back).
    """

    name = "shown recorder"

    def record(self, reminder_id: int) -> None:
        """Return once the showing is committed; raises what its batch's commit raised."""
        self.call(reminder_id)

    def run_batch(self, items: Sequence[int]) -> list[None]:
        with self._app.app_context():
            try:
                record_shown(*items)
            finally:
                db.session.remove()
        return [None] * len(items)


def shown_recorder() -> ShownRecorder:
    """This app's ShownRecorder (needs an app context)."""
    return ShownRecorder.of_current_app()


class Escalated(NamedTuple):
    """What an escalation pass queued (plain values, readable after the commit)."""

    reminder_id: int
    user_id: int
    to: str


def _claim_due(now: datetime, limit: int) -> tuple[list[tuple[int, int]], int]:
    """Clear email_at of up to `limit` due reminders; returns (reminder id, user id) of those still
    open and unshown, and how many rows it cleared in all.

    As with the scan's claim, the UPDATE re-checks what the subquery chose: a banner shown or a
    reminder ended meanwhile cleared email_at, and a concurrent escalation's claim did too. A due
    row that is no longer open or was shown (which clears email_at, so only older data) is cleared
    too rather than left to fill every batch.
    """
    due = (
        sa.select(Reminder.id)
        .where(Reminder.email_at <= now)
        .order_by(Reminder.email_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = db.session.execute(
        sa.update(Reminder)
        .where(Reminder.id.in_(due.scalar_subquery()), Reminder.email_at <= now)
        .values(email_at=None)
        .returning(Reminder.id, Reminder.user_id, Reminder.shown_at, Reminder.open_for_user_id)
        .execution_options(synchronize_session=False)
    ).all()
    eligible = [
        (row.id, row.user_id) for row in rows if row.shown_at is None and row.open_for_user_id is not None
    ]
    return eligible, len(rows)


def escalate(now: datetime | None = None, batch: int = BATCH) -> list[Escalated]:
    """Queue the email of every reminder that is due one; commits per batch, returns what it queued.

    A claimed reminder whose user's hour is (now) outside REMINDER_EMAIL_HOURS, say after a time
    zone change or a late scan, gets a new email_at instead; one whose user turned email off, none.
    """
    from .emails import queue_reminder_email

    now = now or utcnow()
    hours = current_app.config["REMINDER_EMAIL_HOURS"]
    queued: list[Escalated] = []
    while True:
        claimed, took = _claim_due(now, batch)
        if not took:
            db.session.commit()
            return queued
        emailed: list[Escalated] = []
        users = {
            user.id: user
            for user in db.session.scalars(sa.select(User).where(User.id.in_([u for _, u in claimed])))
        }
        for reminder_id, user_id in claimed:
            user = users.get(user_id)
            if user is None or not user.email_reminders or not user.reminders_enabled:
                continue
            zone = get_zone(user.timezone)
            if not in_hours(now.astimezone(zone).hour, hours):
                db.session.execute(
                    sa.update(Reminder)
                    .where(Reminder.id == reminder_id)
                    .values(email_at=next_in_hours(now, zone, hours))
                    .execution_options(synchronize_session=False)
                )
                continue
            queue_reminder_email(user, reminder_id, now)
            emailed.append(Escalated(reminder_id, user_id, user.email))
        if emailed:
            db.session.execute(
                sa.update(Reminder)
                .where(Reminder.id.in_([item.reminder_id for item in emailed]))
                .values(emailed_at=now)
                .execution_options(synchronize_session=False)
            )
            announce(ADMINS_CHANNEL, "mail")
            queued.extend(emailed)
        db.session.commit()
