"""Tracking forms: a weight entry and the goal. Labels are what people and tests find fields by.

Weights are typed in the user's unit and parsed by webapp.units (one set of rules everywhere);
dates are typed in the user's time zone and stored in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from wtforms import HiddenField, SelectChoice, SelectField, StringField
from wtforms.validators import Length, ValidationError
from wtforms.widgets import DateTimeLocalInput

from ..i18n import Form
from ..text import NoControlCharacters
from ..timeutil import utcnow
from ..units import WeightError, parse_weight

LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")
INPUT_FORMAT = "%Y-%m-%dT%H:%M"
EARLIEST_YEAR = 1900
MAX_NOTE_CHARS = 500


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def local_input_value(moment: datetime, zone: tzinfo) -> str:
    """An aware time as a datetime-local field shows it in `zone`, to the minute."""
    return moment.astimezone(zone).strftime(INPUT_FORMAT)


def parse_local(text: str | None, zone: tzinfo, now: datetime) -> datetime:
    """A date and time typed in `zone` as an aware UTC datetime; raises ValidationError with the message."""
    value = (text or "").strip()
    if not value:
        raise ValidationError(_("Enter the date and time."))
    for fmt in LOCAL_FORMATS:
        try:
            naive = datetime.strptime(value, fmt)
            break
        except ValueError:
            continue
    else:
        raise ValidationError(_("Enter a date and time such as 2025-03-01 07:30."))
    if naive.year < EARLIEST_YEAR:
        raise ValidationError(_("Enter a date from %(year)d on.", year=EARLIEST_YEAR))
    moment = naive.replace(tzinfo=zone)
    # The field only shows minutes, so anything within the current minute is "now", not the future.
    if moment > now.replace(second=59, microsecond=999999):
        raise ValidationError(_("That date and time is in the future."))
    return moment.astimezone(UTC)


class _UserForm(Form):
    """A form that knows the user's unit, time zone and the current time for its checks."""

    # The parsed weight, set by validation: read it only after validate_on_submit() passed, so a
    # form that was never validated fails loudly instead of storing None.
    grams: int

    def __init__(self, *args, unit: str = "kg", zone: tzinfo = UTC, now: datetime | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.unit = unit
        self.zone = zone
        self.now = now or utcnow()


class EntryForm(_UserForm):
    weight = StringField(_l("Weight"), filters=[_strip])
    measured_at = StringField(_l("Date and time"), widget=DateTimeLocalInput(), filters=[_strip])
    # The value the form was rendered with: an untouched field means "now", even if the page
    # stood open for hours before the weight was typed in.
    measured_at_default = HiddenField()
    note = StringField(
        _l("Note (optional)"),
        filters=[_strip],
        validators=[
            # PostgreSQL refuses NUL in text, and other control characters are never typed on purpose.
            NoControlCharacters(_l("Remove the control characters from the note."), multi_line=True),
            Length(max=MAX_NOTE_CHARS, message=_l("Keep the note to 500 characters or fewer.")),
        ],
    )
    # The moment in UTC, set by validation like grams.
    measured_at_utc: datetime

    def prefill_now(self) -> None:
        """Show the current time in the user's zone as the default date and time."""
        value = local_input_value(self.now, self.zone)
        self.measured_at.data = value
        self.measured_at_default.data = value

    def validate_weight(self, field):
        try:
            self.grams = parse_weight(field.data, self.unit)
        except WeightError as error:
            raise ValidationError(str(error)) from None

    def validate_measured_at(self, field):
        if field.data and field.data == self.measured_at_default.data:
            self.measured_at_utc = self.now
            return
        self.measured_at_utc = parse_local(field.data, self.zone, self.now)


class GoalForm(_UserForm):
    target = StringField(_l("Goal weight"), filters=[_strip])

    def validate_target(self, field):
        try:
            self.grams = parse_weight(field.data, self.unit)
        except WeightError as error:
            raise ValidationError(str(error)) from None


class ImportForm(Form):
    """Upload a CSV file; the unit and date order apply only where the file does not say."""

    file = FileField(_l("CSV file"), validators=[FileRequired(_l("Choose a CSV file to import."))])
    unit = SelectField(
        _l("Unit of the weights"),
        choices=[SelectChoice("kg", _l("Kilograms (kg)")), SelectChoice("lb", _l("Pounds (lb)"))],
        validate_choice=False,
    )
    date_order = SelectField(
        _l("Dates such as 03/04/2024 mean"),
        choices=[
            SelectChoice("dmy", _l("day/month/year (3 April 2024)")),
            SelectChoice("mdy", _l("month/day/year (March 4, 2024)")),
        ],
        validate_choice=False,
    )

    def validate_unit(self, field):
        if field.data not in {"kg", "lb"}:
            raise ValidationError(_("Choose kilograms (kg) or pounds (lb)."))

    def validate_date_order(self, field):
        if field.data not in {"dmy", "mdy"}:
            raise ValidationError(_("Choose day/month/year or month/day/year."))
