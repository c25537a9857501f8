"""Reading the CSV formats Weigh-in imports: sample files of each, and the bad files people send."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from webapp.tracking.csv_formats import CsvImport, ImportFileError, ImportOptions, ParsedRow, RefusedRow

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def read(data: bytes | str, unit: str = "kg", day_first: bool = True, zone=BERLIN):
    raw = data.encode() if isinstance(data, str) else data
    parsed = CsvImport(io.BytesIO(raw), ImportOptions(zone=zone, unit=unit, day_first=day_first, now=NOW))
    return parsed, list(parsed)


def at(*parts) -> datetime:
    return datetime(*parts).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "name, unit, fmt, expected",
    [
        (
            "weighin.csv",
            "lb",  # ignored: the export says kg
            "weighin",
            [
                (at(2024, 3, 1, 6, 30), 80_250, "after run"),
                (at(2024, 3, 2, 6, 45, 10), 80_100, 'comma, and "quotes"'),
                (at(2024, 3, 3, 7, 0), 79_900, "=SUM(A1)"),  # the export's ' guard is undone
            ],
        ),
        (
            "plain.csv",
            "kg",
            "plain",
            [
                (at(2024, 2, 29, 23), 80_500, ""),
                (at(2024, 3, 1, 18), 80_900, ""),
                (at(2024, 3, 1, 23), 80_200, ""),
            ],
        ),
        (
            "plain_semicolon_lb.csv",
            "lb",
            "plain",
            [(at(2024, 2, 29, 23), 80_059, "morning"), (at(2024, 3, 1, 23), 79_878, "")],
        ),
        (
            "openscale2.csv",
            "lb",  # ignored: openScale 2 stores kilograms
            "openscale2",
            [(at(2025, 8, 11, 21, 48), 74_950, ""), (at(2025, 8, 10, 17, 45), 74_300, "after holiday")],
        ),
        (
            "openscale3.csv",
            "kg",
            "openscale3",
            [
                (at(2025, 4, 7, 6, 30, 5), 72_500, ""),
                (at(2025, 4, 8, 5, 10), 72_300, "felt good"),
                (at(2025, 4, 9, 10, 0), 72_400, ""),  # no time: noon, as openScale assumes
            ],
        ),
        (
            "libra.csv",
            "lb",  # ignored: #Units:kg
            "libra",
            [
                (at(2008, 9, 5, 6), 83_100, ""),
                (at(2008, 9, 6, 6), 83_300, ""),
                (at(2008, 9, 7, 6), 84_100, "This is a comment"),
            ],
        ),
    ],
)
def test_sample_files_of_each_format(name, unit, fmt, expected):
    parsed, rows = read((FIXTURES / name).read_bytes(), unit=unit)
    assert parsed.format == fmt
    assert [(row.measured_at, row.mass_g, row.note) for row in rows] == expected


def test_libra_in_pounds():
    parsed, rows = read(
        "#Version:5\n#Units:lbs\n\n#date;weight;weight trend;body fat;body fat trend;log\n2020-01-02T07:00:00.000Z;180.0;;;;\n"
    )
    assert parsed.unit == "lb" and rows == [ParsedRow(5, at(2020, 1, 2, 7), 81_647, "")]


def test_bom_crlf_and_utf16_are_read():
    text = "date,weight,note\r\n2024-03-01 07:00,80.5,Gewicht nach dem Frühstück\r\n"
    for raw in (b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16")):
        _, rows = read(raw)
        assert rows == [ParsedRow(2, at(2024, 3, 1, 6), 80_500, "Gewicht nach dem Frühstück")]


def test_headerless_date_weight_file():
    parsed, rows = read("2024-03-01,80.5\n2024-03-02,80.1\n")
    assert parsed.format == "plain" and [row.line for row in rows] == [1, 2]


@pytest.mark.parametrize("day_first, expected", [(True, at(2024, 4, 2, 22)), (False, at(2024, 3, 3, 23))])
def test_slash_dates_follow_the_chosen_order(day_first, expected):
    _, [row] = read("date,weight\n03/04/2024,80\n", day_first=day_first)
    assert row.measured_at == expected


def test_header_unit_wins_over_the_form():
    parsed, [row] = read("Date,Weight (lb)\n2024-03-01T00:00:00Z,180\n", unit="kg")
    assert parsed.unit == "lb" and row.mass_g == 81_647


@pytest.mark.parametrize(
    "line, reason",
    [
        ("2024-03-01,0", "weight 0 is below 20 kg"),
        ("2024-03-01,-70", "weight -70 is negative"),
        ("2024-03-01,800", "weight 800 is above 700 kg"),
        ("2024-03-01,nan", 'weight "nan" is not a number'),
        ("2024-03-01,1e3", 'weight "1e3" is not a number'),
        ("2024-03-01,", "there is no weight"),
        ("yesterday,70", 'date "yesterday" is not one Weigh-in can read (such as 2024-03-01 07:30)'),
        ("2030-01-01,70", "the date 2030-01-01 00:00 is in the future"),
        ("1850-01-01,70", "the date is before 1900"),
        ('2024-03-01,70,"' + "x" * 501 + '"', "the note is longer than 500 characters"),
        ("2024-03-01,70,bell\x07", "the note has control characters"),
    ],
)
def test_bad_rows_are_refused_with_their_line_and_reason(line, reason):
    _, rows = read(f"date,weight,note\n2024-02-01,70,\n{line}\n")
    assert rows[1] == RefusedRow(3, reason)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "The file is empty."),
        (b"\n\n", "The file is empty."),
        (b"name,age\nada,36\n", "The first line does not match any format"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text"),
        (b"date,weight\n2024-03-01,70,\x00\n", "This is not a text file"),
        ("date,weight,note\n2024-03-01,70,caf\xe9\n".encode("latin-1"), "Line 2 is not UTF-8 text"),
        (b"date,weight\n" + b"x" * 10_000_000, "Line 2 is longer than 16 KiB"),
        (b'date,weight\n2024-03-01,"70\n', "cannot be read as CSV"),
        (b"2024-03-01,72,5\n", "decimal commas"),
        (b"#Version:4\n#Units:kg\n", "version 4"),
    ],
)
def test_bad_files_get_one_clear_message(data, message):
    with pytest.raises(ImportFileError) as error:
        read(data)
    assert message in str(error.value)


def test_decimal_comma_in_a_comma_file_is_explained():
    _, rows = read("date,weight\n2024-03-01,72,5\n")
    assert isinstance(rows[0], RefusedRow) and "semicolons" in rows[0].reason


def test_a_huge_file_is_read_a_line_at_a_time():
    lines = "".join(f"2000-01-01T00:00:{i % 60:02d}Z,{70 + i % 10}\n" for i in range(50_000))
    parsed, rows = read("date,weight\n" + lines)
    assert len(rows) == 50_000 and all(isinstance(row, ParsedRow) for row in rows)
