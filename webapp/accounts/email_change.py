"""Changing the email address: nothing changes until a link sent to the new address is followed.

The link's token is signed for this purpose only, works for an hour, and names the address it
replaces: once the change is made the account's address no longer matches, so the link works once
(and a link for an address the user has since changed away from is dead too). The old address is
told that a change was asked for, so someone who did not ask can act.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import force_locale, gettext

from ..extensions import db
from ..i18n import language_of
from ..mail.links import public_url
from ..mail.queue import enqueue, render_message
from ..mail.tokens import EMAIL_CHANGE, BadToken, make_token, read_token
from ..models import User
from ..timeutil import utcnow
from .queries import user_by_email

MAX_AGE = 3600  # seconds the confirmation link works
CONFIRM_KIND = "email_change"
NOTICE_KIND = "email_notice"

__all__ = ["BadToken", "EmailChange", "MAX_AGE", "queue_change_messages", "change_for_token", "apply_change"]


@dataclass(frozen=True)
class EmailChange:
    user: User
    new_email: str


def make_change_token(user: User, new_email: str) -> str:
    return make_token(EMAIL_CHANGE, {"u": user.id, "from": user.email, "to": new_email}, timed=True)


def change_for_token(token: str) -> EmailChange:
    """The change a link asks for, if it is genuine, under an hour old and not yet made; BadToken."""
    payload = read_token(EMAIL_CHANGE, token, max_age=MAX_AGE)
    if not isinstance(payload, dict) or not all(
        isinstance(payload.get(key), expected) for key, expected in (("u", int), ("from", str), ("to", str))
    ):
        raise BadToken()
    user = db.session.get(User, payload["u"])
    if user is None or user.email != payload["from"]:
        raise BadToken()  # the account is gone, or its address changed since: already used
    return EmailChange(user, payload["to"])


def address_taken(email: str, user: User) -> bool:
    other = user_by_email(email)
    return other is not None and other.id != user.id


def queue_change_messages(user: User, new_email: str) -> None:
    """The confirmation link to the new address and a notice to the old one; the caller commits."""
    lang = language_of(user)
    now = utcnow()
    with force_locale(lang):
        context = {
            "name": user.name,
            "old_email": user.email,
            "new_email": new_email,
            "minutes": MAX_AGE // 60,
            "lang": lang,
        }
        text, html = render_message(
            "email_change",
            confirm_url=public_url("accounts.confirm_email", token=make_change_token(user, new_email)),
            **context,
        )
        enqueue(
            kind=CONFIRM_KIND,
            to=new_email,
            subject=gettext("Confirm your new Weigh-in email address"),
            text=text,
            html=html,
            user_id=user.id,
            now=now,
        )
        text, html = render_message("email_notice", settings_url=public_url("accounts.settings"), **context)
        enqueue(
            kind=NOTICE_KIND,
            to=user.email,
            subject=gettext("A change of your Weigh-in email address was asked for"),
            text=text,
            html=html,
            user_id=user.id,
            now=now,
        )


def apply_change(change: EmailChange) -> None:
    """Make the change; the caller commits (and handles the unique index's IntegrityError)."""
    change.user.email = change.new_email
