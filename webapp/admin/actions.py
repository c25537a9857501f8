"""What an admin can do to a user: remind them now, grant or remove the admin flag.

Each function changes rows in the current transaction, writes the audit row and the outbox rows
that announce the change; the caller commits (as in webapp.reminders.lifecycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast

import sqlalchemy as sa
from flask_babel import gettext as _

from ..events.outbox import announce, announce_to_user_and_admins
from ..extensions import db
from ..models import ADMINS_CHANNEL, AdminAction, Reminder, User
from ..reminders.escalation import first_email_at
from ..reminders.lifecycle import open_reminder
from ..timeutil import UTCDateTime

REMIND = "remind"
# "Remind now" while a reminder is already open: shown again, never a second one.
REMIND_AGAIN = "remind_again"
GRANT_ADMIN = "grant_admin"
REMOVE_ADMIN = "remove_admin"
REMINDER_ACTIONS = (REMIND, REMIND_AGAIN)
ADMIN_FLAG_ACTIONS = (GRANT_ADMIN, REMOVE_ADMIN)


class AdminActionRefused(Exception):
    """The action cannot be done; the message says why, in words for the admin."""


class RemindTarget(Protocol):
    """What "Remind now" reads of the user it reminds: a User, or a row of `remind_target`."""

    id: int
    email: str
    reminders_enabled: bool
    timezone: str
    email_reminders: bool


_USERS = User.__table__.c
# Built once: the five columns "Remind now" needs, a Core row rather than a loaded User (the ORM's
# load by primary key was an eighth of the POST, issue 16).
_REMIND_TARGET = sa.select(
    _USERS.id, _USERS.email, _USERS.reminders_enabled, _USERS.timezone, _USERS.email_reminders
).where(_USERS.id == sa.bindparam("user_id"))
_OPEN_REMINDER_ID = sa.select(Reminder.__table__.c.id).where(
    Reminder.__table__.c.open_for_user_id == sa.bindparam("user_id")
)


def remind_target(user_id: int) -> RemindTarget | None:
    """The user "Remind now" would remind, or None if there is no such user."""
    return cast("RemindTarget | None", db.session.execute(_REMIND_TARGET, {"user_id": user_id}).first())


@dataclass
class RemindResult:
    reminder_id: int
    repeated: bool  # True when the user's open reminder was shown again instead of a new one


# On PostgreSQL, "Remind now" for a user with no open reminder is this one statement (issue 16):
# the lifecycle's claim (the user's reminder clock cleared), its insert (nothing if one is open,
# by the unique open_for_user_id) and the audit row of what was opened, in one round trip instead
# of three, and without the ORM's unit of work for the audit row. It is open_reminder's SQL, with
# the user's zone and email choice for email_at read from the user the view loaded.
_REMIND_PG = sa.text(
    "WITH claim AS ("
    " UPDATE users SET reminder_clock = NULL WHERE id = :user_id RETURNING id, last_active_at"
    "), opened AS ("
    " INSERT INTO reminders"
    " (user_id, status, open_for_user_id, inactive_since, source, created_by_id, created_at, email_at)"
    " SELECT id, 'open', id, last_active_at, 'admin', :admin_id, :now, :email_at FROM claim"
    " ON CONFLICT (open_for_user_id) DO NOTHING"
    " RETURNING id"
    ") "
    "INSERT INTO admin_actions (admin_id, user_id, action, reminder_id, created_at)"
    " SELECT :admin_id, :user_id, :action, id, :now FROM opened"
    " RETURNING reminder_id"
).bindparams(sa.bindparam("now", type_=UTCDateTime()), sa.bindparam("email_at", type_=UTCDateTime()))


def _open_and_record(admin: User, user: RemindTarget, now: datetime) -> int | None:
    """Open a reminder for the user and write the audit row of it; its id, or None if one is open."""
    if db.session.get_bind().dialect.name == "postgresql":
        opened = db.session.scalar(
            _REMIND_PG,
            {
                "user_id": user.id,
                "admin_id": admin.id,
                "action": REMIND,
                "now": now,
                "email_at": first_email_at(now, user.timezone, user.email_reminders),
            },
        )
        if opened is not None:
            announce_to_user_and_admins(user.id, "reminder")
        return opened
    reminder = open_reminder(user.id, now, source="admin", admin_id=admin.id)
    if reminder is None:
        return None
    _record(admin, user, REMIND, reminder.id, now)
    return reminder.id


def _record(admin: User, user: RemindTarget, action: str, reminder_id: int, now: datetime) -> None:
    db.session.add(
        AdminAction(
            admin_id=admin.id, user_id=user.id, action=action, reminder_id=reminder_id, created_at=now
        )
    )


def remind_now(admin: User, user: RemindTarget, now: datetime) -> RemindResult:
    """Send the user a reminder at once, through the lifecycle; an open one is re-announced, not doubled."""
    if not user.reminders_enabled:
        raise AdminActionRefused(
            _("%(email)s has turned reminders off, so no reminder was sent.", email=user.email)
        )
    # No look for an open one first: the insert finds it (ON CONFLICT) in the same round trip,
    # so the usual case, none open, costs one query fewer (issue 16).
    reminder_id = _open_and_record(admin, user, now)
    if reminder_id is not None:
        return RemindResult(reminder_id, repeated=False)
    # Already open (or opened a moment ago by a scanner): ask their pages to show it again.
    open_id = db.session.scalar(_OPEN_REMINDER_ID, {"user_id": user.id})
    if open_id is None:
        raise AdminActionRefused(
            _("No reminder could be opened for %(email)s; please try again.", email=user.email)
        )
    announce_to_user_and_admins(user.id, "reminder")
    _record(admin, user, REMIND_AGAIN, open_id, now)
    return RemindResult(open_id, repeated=True)


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
