"""Typed models: users with their activity clocks, weights, goals, reminders and the event outbox."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import Model, db
from .passwords import hash_password, password_matches
from .timeutil import UTCDateTime, utcnow

# Outbox ids must grow without bound on PostgreSQL; SQLite only autoincrements INTEGER keys.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

GRAMS_PER_KG = 1000
# The largest id a PostgreSQL INTEGER holds: refusing larger ids from URLs, forms and cookies
# early keeps the database driver from raising an overflow error (a 500) on a tampered value.
MAX_ID = 2**31 - 1
ADMINS_CHANNEL = "admins"


def user_channel(user_id: int) -> str:
    """The broker channel that carries one user's events."""
    return f"user:{user_id}"


def login_channel(user_id: int) -> str:
    """The channel that says "a login of this user may have ended" (events/logins.py).

    Apart from the user's own channel so that a stream checks its login only when one may have
    ended, not on every reminder or weight (issue 16): one query fewer per wake-up."""
    return f"login:{user_id}"


def stream_channels(user_id: int, *, admin: bool = False) -> tuple[str, ...]:
    """What a live transport of this user follows: their own news, their logins, and the admins'."""
    own = (user_channel(user_id), login_channel(user_id))
    return (*own, ADMINS_CHANNEL) if admin else own


class User(UserMixin, Model):
    __tablename__ = "users"
    # The scan's index: one range per "remind me after" value (0 = the site's REMINDER_AFTER_DAYS);
    # and the admin page's count of who is still active by their own days, the same way.
    __table_args__ = (
        sa.Index("ix_users_remind_after_days_clock", "remind_after_days", "reminder_clock"),
        sa.Index("ix_users_remind_after_days_last_active", "remind_after_days", "last_active_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    display_name: Mapped[str] = mapped_column(sa.String(80), default="")
    unit: Mapped[str] = mapped_column(sa.String(2), default="kg")
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    # The language of the pages, the streamed banner and the mail: chosen in Settings, first taken
    # from the browser at sign-up (webapp/i18n.py LANGUAGES); "" (accounts from before languages)
    # follows the browser, and English where there is none.
    locale: Mapped[str] = mapped_column(sa.String(8), default="", server_default="")
    reminders_enabled: Mapped[bool] = mapped_column(default=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The activity clocks the reminder rule reads; see docs/ARCHITECTURE.md.
    last_weight_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_goal_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_active_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # When inactivity starts counting towards the next reminder; NULL while one is open
    # or reminders are off, so the scan's range query only ever sees users who may need one.
    reminder_clock: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The user's own "remind me after (days)"; 0 follows REMINDER_AFTER_DAYS.
    remind_after_days: Mapped[int] = mapped_column(sa.SmallInteger, default=0, server_default="0")
    # Email a reminder that no open page showed (off after an unsubscribe link).
    email_reminders: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # Carried by every session and remember-me cookie; raising it ends every login at once
    # (webapp/accounts/sessions.py).
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")

    def use_login(self, token: str | None, expires_at: datetime | None = None) -> None:
        """Remember which login this request came with, and when it ends (not columns); see
        accounts.sessions. A stream opened under it ends by then (events/views.py)."""
        self._login_token = token
        self._login_expires_at = expires_at

    @property
    def login_token(self) -> str | None:
        return getattr(self, "_login_token", None)

    @property
    def login_expires_at(self) -> datetime | None:
        """When this request's login stops being accepted (aware UTC), if it came with one."""
        return getattr(self, "_login_expires_at", None)

    def get_id(self) -> str:
        """What Flask-Login keeps in the session and remember-me cookies: id, version and login."""
        return f"{self.id}:{self.session_version}:{self.login_token or ''}"

    def set_password(self, password: str) -> None:
        self.password_hash = hash_password(password)

    def check_password(self, password: str) -> bool:
        return password_matches(self.password_hash, password)

    @property
    def name(self) -> str:
        """What the interface calls the user: the display name, else the email's local part."""
        return self.display_name or self.email.split("@", 1)[0]

    @property
    def channel(self) -> str:
        return user_channel(self.id)

    def current_goal(self) -> GoalChange | None:
        return db.session.scalars(
            db.select(GoalChange)
            .where(GoalChange.user_id == self.id)
            .order_by(GoalChange.created_at.desc(), GoalChange.id.desc())
            .limit(1)
        ).first()

    def entries_query(self):
        """A select of this user's entries, newest first, for the view to paginate."""
        return (
            db.select(WeightEntry)
            .where(WeightEntry.user_id == self.id)
            .order_by(WeightEntry.measured_at.desc(), WeightEntry.id.desc())
        )

    def open_reminder(self) -> Reminder | None:
        return db.session.scalars(db.select(Reminder).where(Reminder.open_for_user_id == self.id)).first()


class LoginSession(Model):
    """One login (a browser's session and remember-me cookies), known by its token's digest."""

    __tablename__ = "login_sessions"

    token_digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WeightEntry(Model):
    __tablename__ = "weight_entries"
    __table_args__ = (
        sa.Index("ix_weight_entries_user_measured", "user_id", "measured_at"),
        sa.CheckConstraint("mass_g > 0", name="mass_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Kilograms with fixed precision, held as whole grams so no backend rounds them.
    mass_g: Mapped[int] = mapped_column(sa.Integer)
    note: Mapped[str] = mapped_column(sa.String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship()

    @property
    def kg(self) -> float:
        return self.mass_g / GRAMS_PER_KG


class GoalChange(Model):
    """One setting of the goal weight; the newest row is the current goal."""

    __tablename__ = "goal_changes"
    __table_args__ = (
        sa.Index("ix_goal_changes_user_created", "user_id", "created_at"),
        sa.CheckConstraint("target_g > 0", name="target_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    target_g: Mapped[int] = mapped_column(sa.Integer)
    # The weight when the goal was set: whether "reached" means at-or-below or at-or-above.
    start_g: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def direction(self) -> str:
        """'lose', 'gain' or 'maintain', from the weight when the goal was set."""
        if self.start_g is None or self.start_g == self.target_g:
            return "maintain"
        return "lose" if self.start_g > self.target_g else "gain"


class Reminder(Model):
    """A nudge to an inactive user: open, then resolved (activity) or dismissed."""

    __tablename__ = "reminders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="open")
    # Equal to user_id while open and NULL after: the unique constraint on it is what makes
    # "at most one open reminder per user" hold across concurrent scanners and hosts.
    open_for_user_id: Mapped[int | None] = mapped_column(sa.Integer, unique=True)
    inactive_since: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(sa.String(10), default="scan")
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    # The first time a page showed the banner (stream, poll, long poll, WebSocket or page load).
    shown_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the escalation looks at it next: set at opening, pushed into the user's hours, and
    # NULL once shown, emailed, ended or not to be emailed, so its scan sees only due reminders.
    email_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(foreign_keys=[user_id])


class AdminAction(Model):
    """An audit row for what an admin did to a user (remind now, grant or revoke admin)."""

    __tablename__ = "admin_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    admin_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    # NULL once the user deleted their account: the row still says what was done, and when.
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(sa.String(20))
    reminder_id: Mapped[int | None] = mapped_column(sa.ForeignKey("reminders.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    admin: Mapped[User | None] = relationship(foreign_keys=[admin_id])
    user: Mapped[User | None] = relationship(foreign_keys=[user_id])


class OutboxEvent(Model):
    """'Channel X has news': written in the same transaction as the change it announces."""

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_channel_id", "channel", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class QueuedMail(Model):
    """One message to send, written in the transaction that decided it; see webapp/mail/queue.py."""

    __tablename__ = "mail_queue"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # At most one message per reminder, whatever races: the database decides.
    reminder_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("reminders.id", ondelete="SET NULL"), unique=True
    )
    to_address: Mapped[str] = mapped_column(sa.String(254))
    subject: Mapped[str] = mapped_column(sa.String(200))
    body_text: Mapped[str] = mapped_column(sa.Text)
    body_html: Mapped[str] = mapped_column(sa.Text)
    # Extra headers as JSON (List-Unsubscribe...); the Message-ID is fixed when queued, so a
    # message sent again after a crash is recognisably the same message.
    headers: Mapped[str] = mapped_column(sa.Text, default="{}")
    message_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    # queued -> sending -> sent, or back to queued (retry), or failed (given up); a queued
    # reminder message whose reminder was shown or ended first becomes cancelled.
    status: Mapped[str] = mapped_column(sa.String(10), default="queued")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    # When a sender may take it: the next try while queued, the lease's end while sending,
    # NULL when sent or failed. The claim is one range on this index.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    lease: Mapped[str | None] = mapped_column(sa.String(32))
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class PendingImport(Model):
    """An uploaded CSV file between its preview and the click that saves it (or its expiry).

    The parsed rows wait server-side in pending_import_rows, so the confirmation trusts nothing
    the browser sends back except the import's random token, which only its owner can use.
    """

    __tablename__ = "pending_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(sa.String(255), default="")
    file_format: Mapped[str] = mapped_column(sa.String(20))
    unit: Mapped[str] = mapped_column(sa.String(2))
    # Counts from the preview, and the first refused rows and conflicts as JSON [[line, reason]].
    added_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    duplicate_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    conflict_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    refused_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    problems: Mapped[str] = mapped_column(sa.Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # While the file is read: how far (percent of its bytes, lines), for the progress the page
    # polls; ready once every row is staged and classified, and only then can it be previewed.
    percent_read: Mapped[int] = mapped_column(sa.SmallInteger, default=0, server_default="0")
    lines_read: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    ready: Mapped[bool] = mapped_column(default=False, server_default=sa.true())


class PendingImportRow(Model):
    """One readable row of a pending import, and whether it is new, a duplicate or a conflict."""

    __tablename__ = "pending_import_rows"
    __table_args__ = (sa.Index("ix_pending_import_rows_import_measured", "import_id", "measured_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    import_id: Mapped[int] = mapped_column(sa.ForeignKey("pending_imports.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(sa.Integer)
    # Whole seconds, and the end of that second: an existing entry within it is the same moment,
    # whatever fraction of a second the form stored it with.
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    measured_until: Mapped[datetime] = mapped_column(UTCDateTime)
    mass_g: Mapped[int] = mapped_column(sa.Integer)
    note: Mapped[str] = mapped_column(sa.String(500), default="")
    # new, duplicate (same moment and weight as an entry or an earlier row) or conflict
    # (same moment, another weight: the existing entry is kept, as Libra does).
    status: Mapped[str] = mapped_column(sa.String(10), default="new")
