"""Deleting an account: every row of the user's goes, in one transaction; the audit keeps its facts.

Weights, goal changes, reminders, queued and sent mail, pending imports and the outbox rows of
the user's channel are deleted. Admins' audit rows stay, with the user (or the admin) replaced by
NULL: what was done and when remains, who it was done to does not. Explicit deletes rather than
ON DELETE CASCADE, because SQLite does not enforce foreign keys here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask_babel import gettext as _

from ..admin.actions import set_admin
from ..events.outbox import announce
from ..extensions import db
from ..models import (
    ADMINS_CHANNEL,
    AdminAction,
    GoalChange,
    OutboxEvent,
    QueuedMail,
    Reminder,
    User,
    WeightEntry,
    login_channel,
    user_channel,
)
from ..timeutil import utcnow
from ..tracking.imports import delete_pending_imports_of
from .emails import normalise_email
from .queries import user_by_email
from .sessions import revoke_all


class DeletionRefused(Exception):
    """The account cannot be deleted as asked; the message says why, in words for the user."""


@dataclass(frozen=True)
class AccountContents:
    """What deleting the account removes, counted for the confirmation page."""

    weights: int
    goals: int
    reminders: int
    mail: int


def _count(model, user_id: int) -> int:
    return (
        db.session.scalar(db.select(sa.func.count()).select_from(model).where(model.user_id == user_id)) or 0
    )


def account_contents(user: User) -> AccountContents:
    return AccountContents(
        weights=_count(WeightEntry, user.id),
        goals=_count(GoalChange, user.id),
        reminders=_count(Reminder, user.id),
        mail=_count(QueuedMail, user.id),
    )


def is_last_admin(user: User) -> bool:
    if not user.is_admin:
        return False
    others = db.session.scalar(
        db.select(sa.func.count()).select_from(User).where(User.is_admin.is_(True), User.id != user.id)
    )
    return not others


def _successor(user: User, email: str | None) -> User:
    address = normalise_email(email or "")
    if not address:
        raise DeletionRefused(
            _(
                "You are the last admin. Name someone who becomes admin in your place, then delete your account."
            )
        )
    successor = user_by_email(address)
    if successor is None:
        raise DeletionRefused(_("There is no account with the email %(email)s.", email=address))
    if successor.id == user.id:
        raise DeletionRefused(_("Name someone other than yourself to become admin."))
    return successor


def delete_account(user: User, successor_email: str | None = None, now: datetime | None = None) -> None:
    """Delete the user and all their rows; the last admin first hands the flag to someone named.

    Raises DeletionRefused (nothing changed); commits on success.
    """
    now = now or utcnow()
    user_id = user.id
    if user.is_admin:
        # Locked as set_admin locks them, so two last admins deleting at once take turns.
        admin_ids = list(
            db.session.scalars(db.select(User.id).where(User.is_admin.is_(True)).with_for_update())
        )
        if admin_ids == [user_id]:
            set_admin(user, _successor(user, successor_email), True, now)
    # Its logins go first: on SQLite a later sign-up can be given the same id.
    revoke_all(user)
    delete_pending_imports_of(user_id)
    reminder_ids = db.select(Reminder.id).where(Reminder.user_id == user_id)
    db.session.execute(
        sa.update(AdminAction).where(AdminAction.reminder_id.in_(reminder_ids)).values(reminder_id=None)
    )
    db.session.execute(
        sa.update(QueuedMail).where(QueuedMail.reminder_id.in_(reminder_ids)).values(reminder_id=None)
    )
    db.session.execute(
        sa.update(Reminder).where(Reminder.created_by_id == user_id).values(created_by_id=None)
    )
    db.session.execute(sa.update(AdminAction).where(AdminAction.user_id == user_id).values(user_id=None))
    db.session.execute(sa.update(AdminAction).where(AdminAction.admin_id == user_id).values(admin_id=None))
    for model in (QueuedMail, Reminder, GoalChange, WeightEntry):
        db.session.execute(sa.delete(model).where(model.user_id == user_id))
    db.session.execute(
        sa.delete(OutboxEvent).where(OutboxEvent.channel.in_((user_channel(user_id), login_channel(user_id))))
    )
    db.session.execute(sa.delete(User).where(User.id == user_id))
    announce(ADMINS_CHANNEL, "account_deleted")  # the admins' lists drop the user
    db.session.commit()
