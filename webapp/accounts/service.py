"""What an account is made of when it starts: shared by the sign-up view and the CLI."""

from __future__ import annotations

from datetime import datetime

from ..models import User
from ..timeutil import utcnow


def new_user(email: str, password: str, now: datetime | None = None) -> User:
    """A user row for a fresh sign-up, its activity clocks starting now; the caller adds and commits."""
    now = now or utcnow()
    user = User(email=email, created_at=now, last_active_at=now, reminder_clock=now)
    user.set_password(password)
    return user
