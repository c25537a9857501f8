"""Mail health for the admin page: the queue, what was sent today, what is failing and why, and
where each listed user's reminder stands on its way to an email.

Every count reads one index range of mail_queue: `sent_at >= start of today` for what was sent,
and `sent_at IS NULL` (B-trees keep NULLs on both backends) for everything not sent, which stays
small however long the table of sent messages grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

import sqlalchemy as sa

from ..extensions import db
from ..models import QueuedMail, Reminder


@dataclass
class MailHealth:
    queued: int  # waiting to be sent (first try or a retry), or being sent now
    sent_today: int
    failing: int  # still being retried after at least one failed attempt
    given_up: int  # failed for good (a 5xx refusal, or out of attempts)
    last_error: str | None
    last_error_at: datetime | None


def start_of_day(now: datetime, zone) -> datetime:
    """Midnight of today in the viewer's zone, as a UTC instant."""
    local = now.astimezone(zone)
    return datetime.combine(local.date(), time(0), tzinfo=zone).astimezone(now.tzinfo)


def mail_health(now: datetime, zone) -> MailHealth:
    """The mail counts the admin page shows, as of now (today in the viewer's zone)."""
    sent_today = (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(QueuedMail)
            .where(QueuedMail.sent_at >= start_of_day(now, zone))
        )
        or 0
    )
    unsent = sa.select(QueuedMail.status, QueuedMail.attempts).where(QueuedMail.sent_at.is_(None)).subquery()
    counts = db.session.execute(
        sa.select(
            sa.func.count().filter(unsent.c.status.in_(("queued", "sending"))),
            sa.func.count().filter(unsent.c.status.in_(("queued", "sending")), unsent.c.attempts > 0),
            sa.func.count().filter(unsent.c.status == "failed"),
        )
    ).one()
    last = db.session.execute(
        sa.select(QueuedMail.last_error, QueuedMail.last_attempt_at)
        .where(QueuedMail.sent_at.is_(None), QueuedMail.last_error.is_not(None))
        .order_by(QueuedMail.last_attempt_at.desc())
        .limit(1)
    ).first()
    return MailHealth(
        queued=counts[0],
        sent_today=sent_today,
        failing=counts[1],
        given_up=counts[2],
        last_error=last.last_error if last else None,
        last_error_at=last.last_attempt_at if last else None,
    )


def mail_by_reminder(reminder_ids: list[int]) -> dict[int, QueuedMail]:
    """The message of each of these reminders that has one (unique reminder_id: one query)."""
    if not reminder_ids:
        return {}
    rows = db.session.scalars(sa.select(QueuedMail).where(QueuedMail.reminder_id.in_(reminder_ids)))
    return {row.reminder_id: row for row in rows if row.reminder_id is not None}


@dataclass
class EmailState:
    """Where one reminder stands: shown on a page, emailed (and how that went), or waiting."""

    label: str  # shown, emailed, sending, failed, cancelled, waiting, none
    at: datetime | None = None
    error: str | None = None


def email_state(reminder: Reminder | None, mail: QueuedMail | None) -> EmailState:
    if reminder is None:
        return EmailState("none")
    if mail is not None:
        if mail.status == "sent":
            return EmailState("emailed", mail.sent_at)
        if mail.status == "failed":
            return EmailState("failed", mail.last_attempt_at, mail.last_error)
        if mail.status == "cancelled":
            return EmailState("shown" if reminder.shown_at else "cancelled", reminder.shown_at)
        return EmailState("sending", mail.created_at, mail.last_error)
    if reminder.shown_at is not None:
        return EmailState("shown", reminder.shown_at)
    if reminder.email_at is not None:
        return EmailState("waiting", reminder.email_at)
    return EmailState("none")
