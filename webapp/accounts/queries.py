"""The accounts' queries: finding a user the way people name them, by email."""

from __future__ import annotations

from ..extensions import db
from ..models import User


def user_by_email(email: str) -> User | None:
    """The account with this normalised address (normalise_email), or None."""
    return db.session.scalar(db.select(User).where(User.email == email))
