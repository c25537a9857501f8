"""What an admin can do to a user: remind them now, grant or remove the admin flag.

Each function changes rows in the current transaction, writes the audit row and the outbox rows
that announce the change; the caller commits (as in webapp.reminders.lifecycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _

from ..events.outbox import announce, announce_to_user_and_admins
from ..extensions import db
from ..models import ADMINS_CHANNEL, AdminAction, Reminder, User
from ..reminders.lifecycle import open_reminder

REMIND = "remind"
# "Remind now" while a reminder is already open: shown again, never a second one.
REMIND_AGAIN = "remind_again"
GRANT_ADMIN = "grant_admin"
REMOVE_ADMIN = "remove_admin"
REMINDER_ACTIONS = (REMIND, REMIND_AGAIN)
ADMIN_FLAG_ACTIONS = (GRANT_ADMIN, REMOVE_ADMIN)


class AdminActionRefused(Exception):
    """The action cannot be done; the message says why, in words for the admin."""


@dataclass
class RemindResult:
    reminder: Reminder
    repeated: bool  # True when the user's open reminder was shown again instead of a new one


def remind_now(admin: User, user: User, now: datetime) -> RemindResult:
    """Send the user a reminder at once, through the lifecycle; an open one is re-announced, not doubled."""
    if not user.reminders_enabled:
        raise AdminActionRefused(
            _("%(email)s has turned reminders off, so no reminder was sent.", email=user.email)
        )
    # No look for an open one first: the insert finds it (ON CONFLICT) in the same round trip,
    # so the usual case, none open, costs one query fewer (issue 16).
    reminder = open_reminder(user.id, now, source="admin", admin_id=admin.id)
    repeated = reminder is None
    if reminder is None:
        # Already open (or opened a moment ago by a scanner): ask their pages to show it again.
        reminder = user.open_reminder()
        if reminder is None:
            raise AdminActionRefused(
                _("No reminder could be opened for %(email)s; please try again.", email=user.email)
            )
        announce_to_user_and_admins(user.id, "reminder")
    db.session.add(
        AdminAction(
            admin_id=admin.id,
            user_id=user.id,
            action=REMIND_AGAIN if repeated else REMIND,
            reminder_id=reminder.id,
            created_at=now,
        )
    )
    return RemindResult(reminder, repeated)


def _admin_ids_locked() -> list[int]:
    # FOR UPDATE (ignored by SQLite, whose writers are serialised anyway) makes two admins who
    # remove each other at once take turns, so the second sees the first's change.
    return list(db.session.scalars(db.select(User.id).where(User.is_admin.is_(True)).with_for_update()))


def set_admin(actor: User, user: User, make_admin: bool, now: datetime) -> None:
    """Grant or remove the admin flag; the last admin cannot remove their own."""
    if make_admin:
        if user.is_admin:
            raise AdminActionRefused(_("%(email)s is already an admin.", email=user.email))
    else:
        admin_ids = _admin_ids_locked()
        db.session.refresh(user)
        if not user.is_admin:
            raise AdminActionRefused(_("%(email)s is not an admin.", email=user.email))
        if admin_ids == [user.id]:
            if user.id == actor.id:
                raise AdminActionRefused(
                    _(
                        "You cannot remove the admin flag: you are the last admin. Make someone else an admin first."
                    )
                )
            raise AdminActionRefused(
                _(
                    "You cannot remove the admin flag: %(email)s is the last admin. "
                    "Make someone else an admin first.",
                    email=user.email,
                )
            )
    user.is_admin = make_admin
    db.session.add(
        AdminAction(
            admin_id=actor.id,
            user_id=user.id,
            action=GRANT_ADMIN if make_admin else REMOVE_ADMIN,
            created_at=now,
        )
    )
    announce(ADMINS_CHANNEL, "admins")
