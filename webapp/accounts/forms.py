"""Account forms; labels are what people and tests find fields by."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, ValidationError

from ..timeutil import timezone_names


def _normalise_email(value):
    return value.strip().lower() if isinstance(value, str) else value


class SignupForm(FlaskForm):
    email = EmailField(
        "Email",
        filters=[_normalise_email],
        validators=[DataRequired("Enter your email address."), Length(max=254), Email("Enter a valid email address.")],
    )
    password = PasswordField(
        "Password",
        validators=[
            DataRequired("Choose a password."),
            Length(min=8, max=200, message="Use between 8 and 200 characters."),
        ],
    )


class LoginForm(FlaskForm):
    email = EmailField(
        "Email",
        filters=[_normalise_email],
        validators=[DataRequired("Enter your email address."), Length(max=254)],
    )
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=200)])
    remember = BooleanField("Remember me")


class SettingsForm(FlaskForm):
    display_name = StringField(
        "Display name",
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
        validators=[Length(max=80, message="Use at most 80 characters.")],
    )
    unit = SelectField(
        "Unit", choices=[("kg", "Kilograms (kg)"), ("lb", "Pounds (lb)")], validate_choice=True
    )
    timezone = StringField("Time zone", validators=[DataRequired("Choose a time zone.")])
    reminders_enabled = BooleanField("Remind me when I have not logged for a while")

    def validate_timezone(self, field):
        if field.data not in timezone_names():
            raise ValidationError("Choose a time zone from the list, such as Europe/Berlin.")
