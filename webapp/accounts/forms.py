"""Account forms; labels are what people and tests find fields by."""

from __future__ import annotations

import re

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, EmailField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from ..i18n import LANGUAGE_NAMES, Form, zone_from_accept_language
from ..reminders.lifecycle import REMIND_AFTER_CHOICES, SITE_DEFAULT_DAYS
from ..text import NoControlCharacters
from ..timeutil import timezone_names
from .emails import MAX_EMAIL_LENGTH, normalise_email, validated_email

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 200
MAX_DISPLAY_NAME_LENGTH = 80
UNITS = (SelectChoice("kg", _l("Kilograms (kg)")), SelectChoice("lb", _l("Pounds (lb)")))


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _valid_address(form, field) -> None:
    """Validator: a well-formed address, stored normalised; quiet when an earlier check failed."""
    if field.errors:
        return
    try:
        field.data = validated_email(field.data)
    except ValueError as error:
        raise ValidationError(str(error)) from None


def _email_field(label=None, required=None, *, check_address: bool = False) -> EmailField:
    """An email field, normalised; `check_address` also refuses a malformed address (not at login,
    where any text is looked up and fails as a wrong password would)."""
    return EmailField(
        label or _l("Email"),
        filters=[normalise_email],
        validators=[
            DataRequired(required or _l("Enter your email address.")),
            NoControlCharacters(_l("Remove the control characters from the email address.")),
            Length(
                max=MAX_EMAIL_LENGTH,
                message=_l("An email address has at most %(max)d characters.", max=MAX_EMAIL_LENGTH),
            ),
            *([_valid_address] if check_address else []),
        ],
    )


def _check_password_length(form, field) -> None:
    # Two messages rather than WTForms' "between 8 and 200": a person needs to know which end they hit.
    if len(field.data) < MIN_PASSWORD_LENGTH:
        raise ValidationError(_("Use at least %(min)d characters.", min=MIN_PASSWORD_LENGTH))
    if len(field.data) > MAX_PASSWORD_LENGTH:
        raise ValidationError(_("Use at most %(max)d characters.", max=MAX_PASSWORD_LENGTH))


def _timezone_select() -> SelectField:
    return SelectField(_l("Time zone"), choices=[], validate_choice=False)


def _language_select() -> SelectField:
    return SelectField(
        _l("Language"),
        choices=[SelectChoice(code, name) for code, name in LANGUAGE_NAMES.items()],
        validate_choice=False,
    )


class SignupForm(Form):
    email = _email_field(check_address=True)
    password = PasswordField(
        _l("Password"), validators=[DataRequired(_l("Choose a password.")), _check_password_length]
    )
    # Prefilled with the zone the browser's language points at; the person sees and confirms it.
    timezone = _timezone_select()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timezone.choices = [SelectChoice(name, name.replace("_", " ")) for name in timezone_names()]

    def validate_timezone(self, field) -> None:
        if field.raw_data == []:
            # Not sent at all (a client that predates the field): the browser's guess, else UTC.
            field.data = zone_from_accept_language() or "UTC"
            return
        canonical = canonical_timezone(field.data)
        if canonical is None:
            raise ValidationError(_("Choose a time zone from the list."))
        field.data = canonical


class LoginForm(Form):
    email = _email_field()
    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(_l("Enter your password.")),
            Length(max=MAX_PASSWORD_LENGTH, message=_l("That email and password do not match an account.")),
        ],
    )
    remember = BooleanField(_l("Remember me"))


class DaysField(StringField):
    """A number of days, shown empty while the user follows the site's default (stored as 0)."""

    days = SITE_DEFAULT_DAYS

    def process_data(self, value) -> None:
        self.data = "" if not value else str(value)


def parse_remind_after_days(text: str | None) -> int:
    """What the "Remind me after (days)" field means: 3 to 60, or 0 (the site's default) when empty."""
    low, high = REMIND_AFTER_CHOICES[0], REMIND_AFTER_CHOICES[-1]
    if not text:
        return SITE_DEFAULT_DAYS
    if not re.fullmatch(r"[0-9]{1,4}", text):
        raise ValidationError(
            _(
                "Enter a whole number of days from %(low)d to %(high)d, or leave it empty for the "
                "site's default.",
                low=low,
                high=high,
            )
        )
    days = int(text)
    if days not in REMIND_AFTER_CHOICES:
        raise ValidationError(_("Choose from %(low)d to %(high)d days.", low=low, high=high))
    return days


class SettingsForm(Form):
    display_name = StringField(
        _l("Display name"),
        filters=[_strip],
        validators=[
            NoControlCharacters(_l("Use letters, digits, spaces and punctuation only.")),
            Length(
                max=MAX_DISPLAY_NAME_LENGTH,
                message=_l("Use at most %(max)d characters.", max=MAX_DISPLAY_NAME_LENGTH),
            ),
        ],
    )
    unit = SelectField(_l("Unit"), choices=list(UNITS), validate_choice=False)
    timezone = StringField(
        _l("Time zone"), filters=[_strip], validators=[DataRequired(_l("Choose a time zone."))]
    )
    locale = _language_select()
    reminders_enabled = BooleanField(_l("Remind me when I have not logged for a while"))
    email_reminders = BooleanField(_l("Email me reminders"))
    remind_after_days = DaysField(_l("Remind me after (days)"), filters=[_strip])

    def validate_locale(self, field) -> None:
        # Not sent at all (a client that predates the field) keeps the language as it is.
        if field.raw_data != [] and field.data not in LANGUAGE_NAMES:
            raise ValidationError(_("Choose English or Korean."))

    def validate_unit(self, field) -> None:
        if field.data not in {choice.value for choice in UNITS}:
            raise ValidationError(_("Choose kilograms (kg) or pounds (lb)."))

    def validate_remind_after_days(self, field) -> None:
        field.days = parse_remind_after_days(field.data)

    def validate_timezone(self, field) -> None:
        canonical = canonical_timezone(field.data)
        if canonical is None:
            raise ValidationError(
                _("Choose a time zone from the list, such as Europe/Berlin or America/New_York.")
            )
        field.data = canonical


def canonical_timezone(name: str | None) -> str | None:
    """The IANA name as the list spells it, matched without regard to case; None if unknown."""
    if not name or len(name) > 64:
        return None
    names = timezone_names()
    if name in names:
        return name
    return {zone.lower(): zone for zone in names}.get(name.lower())


class ForgotPasswordForm(Form):
    email = _email_field(check_address=True)


class ResetPasswordForm(Form):
    password = PasswordField(
        _l("New password"), validators=[DataRequired(_l("Choose a password.")), _check_password_length]
    )


class DeleteAccountForm(Form):
    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(_l("Enter your password to delete your account.")),
            Length(max=MAX_PASSWORD_LENGTH, message=_l("That password is not right.")),
        ],
    )
    # Asked only of the last admin: who keeps the site running after them.
    successor = EmailField(_l("New admin's email"), filters=[normalise_email])


class ChangeEmailForm(Form):
    email = _email_field(_l("New email"), _l("Enter your new email address."), check_address=True)
    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(_l("Enter your password to change your email address.")),
            Length(max=MAX_PASSWORD_LENGTH, message=_l("That password is not right.")),
        ],
    )


class ConfirmForm(Form):
    """A button and its CSRF token: following a link in a message must not change anything alone."""


class ChangePasswordForm(Form):
    current_password = PasswordField(
        _l("Current password"),
        validators=[
            DataRequired(_l("Enter your current password.")),
            Length(max=MAX_PASSWORD_LENGTH, message=_l("That password is not right.")),
        ],
    )
    password = PasswordField(
        _l("New password"), validators=[DataRequired(_l("Choose a new password.")), _check_password_length]
    )
    confirm = PasswordField(
        _l("Confirm new password"),
        validators=[
            DataRequired(_l("Type the new password again.")),
            EqualTo("password", message=_l("The two new passwords are not the same.")),
        ],
    )
