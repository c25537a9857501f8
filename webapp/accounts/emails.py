"""Email addresses as accounts know them: one normal form, one validity check, for forms and CLI alike."""

from __future__ import annotations

from flask_babel import gettext as _

MAX_EMAIL_LENGTH = 254


def normalise_email(value):
    """The form in which an address is stored and looked up: trimmed and lower case."""
    return value.strip().lower() if isinstance(value, str) else value


def validated_email(value: str) -> str:
    """The normalised address if it is a valid one; ValueError with a message a person can act on."""
    email = normalise_email(value or "")
    if not email:
        raise ValueError(_("Enter your email address."))
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValueError(_("An email address has at most %(max)d characters.", max=MAX_EMAIL_LENGTH))
    # Imported here: only sign-up, settings and admin forms need it, not a worker's start.
    from email_validator import EmailNotValidError, validate_email

    try:
        # Syntax only: a sign-up must not wait on DNS, and test domains have no mail servers.
        result = validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError(_("Enter a valid email address, such as ada@example.com.")) from None
    return normalise_email(result.normalized)
