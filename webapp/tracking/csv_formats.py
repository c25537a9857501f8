"""Reading weight logs from CSV files: Weigh-in's own export, a plain date-and-weight file,
openScale's export (2.x and 3.x) and Libra's export, one row at a time.

The file is read as a stream of lines (never all at once), each line bounded in length, so a
20 MB upload costs a line of memory, not the file. A problem with the whole file (not text, an
unknown header, a line that is megabytes long) raises ImportFileError, and the caller stores
nothing; a problem with one row is yielded as a RefusedRow with its line number and the reason.

The formats, as their authors write them:

- Weigh-in (webapp/tracking/views.py, export_csv): ``measured_at,weight_kg,weight,unit,note``,
  ISO 8601 times with their offset, weight_kg with three decimals (whole grams), notes that a
  spreadsheet would run as a formula prefixed with ``'``.
- openScale 2.x (core/datatypes/ScaleMeasurement.java, written by simplecsv): a quoted header
  ``"biceps","bone",...,"comment","dateTime","fat",...,"weight"``, columns in any order, dateTime
  as ``yyyy-MM-dd HH:mm`` in the phone's local time (``dd.MM.yyyy HH:mm`` before 2.0, and
  older files without a header at all are not read), weight in kilograms.
- openScale 3.x (core/usecase/ImportExportUseCases.kt): ``DATE,TIME,`` then the measurement
  keys sorted (``WEIGHT``, ``BODY_FAT``, ..., ``COMMENT``); DATE is ISO_LOCAL_DATE, TIME is
  ISO_LOCAL_TIME (``08:30:05``, also ``08:30``), local time; a missing TIME means noon. The
  weight is in the unit the user chose in openScale, which the file does not say: the import
  form's unit applies.
- Libra (libra-app.eu/support/csv): "#Version:5" (optional, must be 5), "#Units:kg" or
  "#Units:lbs", a commented header "#date;weight;weight trend;body fat;body fat trend;log",
  then rows with exactly five semicolons, ``2008-09-05T06:00:00.000Z;83.1;83.1;;;``; date and
  weight are required, the log column is the note.
- Plain: a header naming a date column and a weight column (``date,weight``; also a time and a
  note column), or no header at all when the first row is already a date and a weight. Commas,
  semicolons or tabs between columns; ``72.5`` or ``72,5``; dates ISO 8601 (with or without a
  time and an offset), ``31.12.2024``, ``2024/12/31``, and ``31/12/2024`` or ``12/31/2024`` as
  the form's date order says. The form's unit applies unless the header says ``kg`` or ``lb``.

Times without an offset are taken in the user's time zone.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import IO

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..csvcells import FORMULA_STARTS
from ..text import has_control_characters
from ..units import BOUNDS, MAX_GRAMS, MIN_GRAMS, to_grams
from .forms import EARLIEST_YEAR, MAX_NOTE_CHARS

MAX_LINE_BYTES = 16 * 1024

FORMAT_NAMES = {
    "weighin": _l("Weigh-in export"),
    "plain": _l("date and weight"),
    "openscale2": _l("openScale 2 export"),
    "openscale3": _l("openScale 3 export"),
    "libra": _l("Libra export"),
}

_NUMBER = re.compile(r"([0-9]{1,4})(?:[.,]([0-9]{1,15}))?", re.ASCII)
_NEGATIVE = re.compile(r"-\s*[0-9]", re.ASCII)
_DATE_HEADERS = {"date", "datetime", "date_time", "date time", "timestamp", "measured_at", "day", "when"}
_TIME_HEADERS = {"time"}
_NOTE_HEADERS = {"note", "notes", "comment", "comments", "log"}
_WEIGHT_HEADER = re.compile(r"(weight|mass|kg|lbs?)\b.*", re.IGNORECASE)
_DOT_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y")
_YMD_SLASH_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d")
_DMY_SLASH_FORMATS = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y")
_MDY_SLASH_FORMATS = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y")


class ImportFileError(ValueError):
    """The file as a whole cannot be read; str() is the message for the person who sent it."""


class RowError(ValueError):
    """One row cannot be read; str() is the reason shown after its line number."""


@dataclass(frozen=True)
class ParsedRow:
    line: int
    measured_at: datetime  # aware UTC, whole seconds
    mass_g: int
    note: str


@dataclass(frozen=True)
class RefusedRow:
    line: int
    reason: str


@dataclass(frozen=True)
class ImportOptions:
    zone: tzinfo
    unit: str = "kg"  # for files that do not say: plain and openScale 3
    day_first: bool = True  # for 03/04/2024
    now: datetime | None = None


# -- values -----------------------------------------------------------------------------------


def parse_import_weight(text: str, unit: str) -> int:
    """A weight as an export writes it (any number of decimals, as spreadsheets write floats) in whole grams."""
    value = text.strip()
    if not value:
        raise RowError(_("there is no weight"))
    if len(value) > 24:
        raise RowError(_("the weight is not a number"))
    if _NEGATIVE.match(value):
        raise RowError(_("weight %(value)s is negative", value=value))
    match = _NUMBER.fullmatch(value)
    if match is None:
        raise RowError(_('weight "%(value)s" is not a number', value=value))
    whole, fraction = match.group(1), match.group(2) or "0"
    grams = to_grams(Decimal(f"{whole}.{fraction}"), unit)
    low, high = BOUNDS[unit]
    shown = value.replace(",", ".")
    if grams < MIN_GRAMS:
        raise RowError(_("weight %(value)s is below %(limit)s %(unit)s", value=shown, limit=low, unit=unit))
    if grams > MAX_GRAMS:
        raise RowError(_("weight %(value)s is above %(limit)s %(unit)s", value=shown, limit=high, unit=unit))
    return grams


def _checked_instant(moment: datetime, options: ImportOptions) -> datetime:
    if moment.year < EARLIEST_YEAR:
        raise RowError(_("the date is before %(year)d", year=EARLIEST_YEAR))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=options.zone)
    instant = moment.astimezone(UTC).replace(microsecond=0)
    now = options.now or datetime.now(UTC)
    if instant > now + timedelta(minutes=1):
        raise RowError(_("the date %(date)s is in the future", date=moment.strftime("%Y-%m-%d %H:%M")))
    return instant


def _parse_iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def parse_when(text: str, options: ImportOptions) -> datetime:
    """A date with or without a time and an offset, as an aware UTC instant to the second."""
    value = text.strip()
    if not value:
        raise RowError(_("there is no date"))
    if len(value) > 40:
        raise RowError(_("the date is not one Weigh-in can read"))
    moment = _parse_iso(value)
    if moment is None:
        if "." in value:
            formats: tuple[str, ...] = _DOT_FORMATS
        elif re.match(r"[0-9]{4}/", value):
            formats = _YMD_SLASH_FORMATS
        else:
            formats = _DMY_SLASH_FORMATS if options.day_first else _MDY_SLASH_FORMATS
        for fmt in formats:
            try:
                moment = datetime.strptime(value, fmt)
                break
            except ValueError:
                continue
    if moment is None:
        raise RowError(
            _('date "%(value)s" is not one Weigh-in can read (such as 2024-03-01 07:30)', value=value)
        )
    return _checked_instant(moment, options)


def _parse_date_and_time(day_text: str, time_text: str, options: ImportOptions) -> datetime:
    day_value = day_text.strip()
    if not time_text.strip():
        return parse_when(day_value, options)
    try:
        day = date.fromisoformat(day_value)
    except ValueError:
        day = parse_when(day_value, options).astimezone(options.zone).date()
    try:
        clock = time.fromisoformat(time_text.strip())
    except ValueError:
        raise RowError(
            _('time "%(value)s" is not one Weigh-in can read (such as 07:30)', value=time_text.strip())
        ) from None
    return _checked_instant(datetime.combine(day, clock.replace(tzinfo=None)), options)


def clean_note(text: str) -> str:
    """A note as it will be stored: trimmed, at most MAX_NOTE_CHARS, without control characters."""
    note = text.strip()
    if len(note) > MAX_NOTE_CHARS:
        raise RowError(_("the note is longer than %(max)d characters", max=MAX_NOTE_CHARS))
    if has_control_characters(note, multi_line=True):
        raise RowError(_("the note has control characters"))
    return note


def _unescape_weighin_note(note: str) -> str:
    # Undo the export's spreadsheet guard, so export -> import gives back the note as typed.
    if note.startswith("'") and note[1:2] and note[1:].startswith(FORMULA_STARTS):
        return note[1:]
    return note


# -- lines ------------------------------------------------------------------------------------


def _text_lines(stream: IO[bytes]) -> Iterator[str]:
    """The file's lines as text, each at most MAX_LINE_BYTES; ImportFileError for anything else."""
    head = stream.read(4)
    stream.seek(0)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Spreadsheets' "Unicode text": decoded in chunks, so a bad byte's line is approximate.
        lines: Iterator[bytes | str] = iter(io.TextIOWrapper(stream, encoding="utf-16", newline=""))
    else:
        lines = iter(lambda: stream.readline(MAX_LINE_BYTES + 1), b"")
    number = 0
    while True:
        number += 1
        try:
            raw = next(lines)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise _not_utf8(number) from None
        if len(raw) > MAX_LINE_BYTES:
            raise ImportFileError(
                _(
                    "Line %(line)d is longer than %(size)d KiB, so this is not a weight log Weigh-in can "
                    "read. Nothing was imported.",
                    line=number,
                    size=MAX_LINE_BYTES // 1024,
                )
            )
        if isinstance(raw, str):
            line = raw
        else:
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise _not_utf8(number) from None
        if "\x00" in line:
            raise ImportFileError(_("This is not a text file. Choose a CSV file. Nothing was imported."))
        yield line


def _not_utf8(number: int) -> ImportFileError:
    return ImportFileError(
        _(
            "Line %(line)d is not UTF-8 text. Save the file as CSV with UTF-8 encoding and try again. "
            "Nothing was imported.",
            line=number,
        )
    )


def _delimiter(line: str) -> str:
    if line.startswith("#") or line.count(";") > line.count(","):
        return ";"
    if "\t" in line:
        return "\t"
    return ","


# -- formats ----------------------------------------------------------------------------------


class CsvImport:
    """One uploaded file: `format` once the header is read, then its rows by iterating."""

    def __init__(self, stream: IO[bytes], options: ImportOptions):
        self.options = options
        self.unit = options.unit
        self._lines = _text_lines(stream)
        self._first_data: list[str] | None = None
        self._first_line = 0
        self.format = ""
        self._read_header()

    # The header decides the format; the first non-empty line is the only one looked at.
    def _read_header(self) -> None:
        self._delimiter = ","
        self._columns: dict[str, int] = {}
        first = ""
        for line in self._lines:
            self._first_line += 1
            if line.strip():
                first = line
                break
        if not first:
            raise ImportFileError(_("The file is empty. Nothing was imported."))
        stripped = first.strip()
        if stripped.startswith("#") and re.match(r"#\s*(version|units|date;)", stripped, re.IGNORECASE):
            self.format = "libra"
            self._libra_directive(stripped)
            return
        self._delimiter = _delimiter(first)
        fields = next(csv.reader([first], delimiter=self._delimiter))
        names = [field.strip() for field in fields]
        lowered = [name.lower() for name in names]
        if "measured_at" in lowered and "weight_kg" in lowered:
            self.format = "weighin"
            self._columns = {
                name: lowered.index(name) for name in ("measured_at", "weight_kg", "note") if name in lowered
            }
            self.unit = "kg"
        elif "dateTime" in names and "weight" in names:
            self.format = "openscale2"
            self._columns = {"when": names.index("dateTime"), "weight": names.index("weight")}
            if "comment" in names:
                self._columns["note"] = names.index("comment")
            self.unit = "kg"
        elif "DATE" in names and "WEIGHT" in names:
            self.format = "openscale3"
            self._columns = {"when": names.index("DATE"), "weight": names.index("WEIGHT")}
            for key, column in (("time", "TIME"), ("note", "COMMENT")):
                if column in names:
                    self._columns[key] = names.index(column)
        else:
            self.format = "plain"
            self._plain_header(names, lowered, first)

    def _plain_header(self, names: list[str], lowered: list[str], line: str) -> None:
        columns: dict[str, int] = {}
        for index, name in enumerate(lowered):
            if name in _DATE_HEADERS and "when" not in columns:
                columns["when"] = index
            elif name in _TIME_HEADERS and "time" not in columns:
                columns["time"] = index
            elif name in _NOTE_HEADERS and "note" not in columns:
                columns["note"] = index
            elif _WEIGHT_HEADER.fullmatch(name) and "weight" not in columns:
                columns["weight"] = index
                if re.search(r"\blbs?\b", name):
                    self.unit = "lb"
                elif re.search(r"\bkg\b", name):
                    self.unit = "kg"
        if "when" in columns and "weight" in columns:
            self._columns = columns
            return
        # No header: fine if the first row is already a date and a weight.
        if len(names) >= 2:
            try:
                parse_when(names[0], self.options)
                parse_import_weight(names[1], self.unit)
            except RowError:
                pass
            else:
                if self._delimiter == "," and len(names) == 3 and names[2].strip().isdigit():
                    raise ImportFileError(
                        _(
                            "The weights seem to have decimal commas in a comma-separated file. Separate "
                            "the columns with semicolons (;) and try again. Nothing was imported."
                        )
                    )
                self._columns = {"when": 0, "weight": 1}
                if len(names) >= 3:
                    self._columns["note"] = 2
                self._first_data = next(csv.reader([line], delimiter=self._delimiter))
                return
        raise ImportFileError(
            _(
                "The first line does not match any format Weigh-in can import. Use a Weigh-in, openScale "
                "or Libra export, or a file whose first line is a header such as date,weight. "
                "Nothing was imported."
            )
        )

    def _libra_directive(self, line: str) -> None:
        key, _colon, value = line[1:].partition(":")
        key, value = key.strip().lower(), value.strip().lower()
        if key == "version" and value != "5":
            raise ImportFileError(
                _(
                    "This is a Libra file of version %(version)s; Weigh-in reads version 5. Export again "
                    "from a current Libra. Nothing was imported.",
                    version=value or "?",
                )
            )
        if key == "units":
            if value in {"kg", "kgs"}:
                self.unit = "kg"
            elif value in {"lb", "lbs"}:
                self.unit = "lb"
            else:
                raise ImportFileError(
                    _(
                        'The Libra file\'s unit "%(unit)s" is neither kg nor lbs. Nothing was imported.',
                        unit=value,
                    )
                )

    def __iter__(self) -> Iterator[ParsedRow | RefusedRow]:
        if self.format == "libra":
            yield from self._libra_rows()
        else:
            yield from self._csv_rows()

    def _libra_rows(self) -> Iterator[ParsedRow | RefusedRow]:
        number = self._first_line
        for line in self._lines:
            number += 1
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                self._libra_directive(stripped)
                continue
            fields = stripped.split(";", 5)
            if len(fields) < 2:
                yield RefusedRow(number, _("a Libra row has a date and a weight separated by ;"))
                continue
            yield self._row(number, fields[0], "", fields[1], fields[5] if len(fields) == 6 else "")

    def _csv_rows(self) -> Iterator[ParsedRow | RefusedRow]:
        if self._first_data is not None:
            yield self._csv_row(self._first_line, self._first_data)
        reader = csv.reader(self._lines, delimiter=self._delimiter, strict=True)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise ImportFileError(
                    _(
                        "Line %(line)d cannot be read as CSV (%(error)s). Nothing was imported.",
                        line=self._first_line + reader.line_num,
                        error=error,
                    )
                ) from None
            if not any(field.strip() for field in fields):
                continue
            yield self._csv_row(self._first_line + reader.line_num, fields)

    def _csv_row(self, number: int, fields: list[str]) -> ParsedRow | RefusedRow:
        columns = self._columns

        def cell(key: str) -> str:
            index = columns.get(key)
            return fields[index] if index is not None and index < len(fields) else ""

        if self.format == "weighin":
            note = _unescape_weighin_note(cell("note"))
            return self._row(number, cell("measured_at"), "", cell("weight_kg"), note)
        if self.format == "plain" and self._delimiter == "," and len(fields) > len(columns):
            # "72,5" in a comma-separated file splits into two columns; say so rather than guess.
            extra = fields[columns["weight"] + 1] if columns["weight"] + 1 < len(fields) else ""
            if extra.strip().isdigit() and "note" not in columns:
                return RefusedRow(
                    number,
                    _(
                        "the row has more columns than the header; with decimal commas, separate the "
                        "columns with semicolons (;) or put the weight in quotes"
                    ),
                )
        clock = cell("time")
        if self.format == "openscale3" and not clock.strip():
            clock = "12:00"  # what openScale itself assumes for a row without a time
        return self._row(number, cell("when"), clock, cell("weight"), cell("note"))

    def _row(self, number: int, when: str, clock: str, weight: str, note: str) -> ParsedRow | RefusedRow:
        try:
            if clock.strip():
                measured_at = _parse_date_and_time(when, clock, self.options)
            else:
                measured_at = parse_when(when, self.options)
            grams = parse_import_weight(weight, self.unit)
            return ParsedRow(number, measured_at, grams, clean_note(note))
        except RowError as error:
            return RefusedRow(number, str(error))
