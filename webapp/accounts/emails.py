"""Email addresses as accounts know them: one normal form, one validity check, for forms and CLI alike."""

from __future__ import annotations

from flask_babel import gettext as _

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART_OCTETS = 64


def _mixes_scripts(text: str) -> bool:
    """Whether one part of an address mixes Latin, Cyrillic and Greek letters, as a Cyrillic "а"
    among Latin ones does: a look-alike of another address, never a real need."""
    import unicodedata

    scripts = {unicodedata.name(c, "?").split(" ")[0] for c in text if c.isalpha()}
    # The alphabets whose letters look alike; Hangul or kana beside Latin are told apart at a glance.
    return len(scripts & {"LATIN", "CYRILLIC", "GREEK"}) > 1


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
    # RFC 5321 4.5.3.1.1: a local part has at most 64 octets (email-validator does not check it).
    if len(result.local_part.encode()) > MAX_LOCAL_PART_OCTETS:
        raise ValueError(
            _("The part before the @ has at most %(max)d characters.", max=MAX_LOCAL_PART_OCTETS)
        )
    if any(_mixes_scripts(part) for part in [result.local_part, *result.domain.split(".")]):
        raise ValueError(_("Use the letters of one alphabet in each part of the address."))
    return normalise_email(result.normalized)
