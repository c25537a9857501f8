"""Weights in kg and lb: parsing what people type, converting to grams and back."""

from decimal import Decimal

import pytest

from webapp.units import (
    WeightError,
    format_change,
    format_weight,
    from_grams,
    input_value,
    parse_weight,
    to_grams,
)


@pytest.mark.parametrize(
    "text, unit, grams",
    [
        ("72.5", "kg", 72_500),
        ("72,5", "kg", 72_500),  # a decimal comma is accepted as a decimal point everywhere
        (" 72.55 ", "kg", 72_550),
        ("72", "kg", 72_000),
        ("20", "kg", 20_000),
        ("700", "kg", 700_000),
        ("160", "lb", 72_575),  # 160 × 453.59237 g = 72 574.78 g
        ("160,25", "lb", 72_688),
        ("44.1", "lb", 20_003),
        ("1543.2", "lb", 699_984),
    ],
)
def test_parse_good_weights(text, unit, grams):
    assert parse_weight(text, unit) == grams


@pytest.mark.parametrize(
    "text, unit, message",
    [
        ("", "kg", "Enter a weight."),
        ("   ", "kg", "Enter a weight."),
        (None, "kg", "Enter a weight."),
        ("heavy", "kg", "Enter the weight as a plain number, such as 72.5."),
        ("-72", "kg", "A weight cannot be negative."),
        ("-0.5", "lb", "A weight cannot be negative."),
        ("0", "kg", "A weight must be more than zero."),
        ("0.00", "lb", "A weight must be more than zero."),
        ("NaN", "kg", "Enter the weight as a plain number, such as 72.5."),
        ("inf", "kg", "Enter the weight as a plain number, such as 72.5."),
        ("Infinity", "lb", "Enter the weight as a plain number, such as 72.5."),
        ("1e308", "kg", "Enter the weight as a plain number, such as 72.5."),
        ("7e1", "kg", "Enter the weight as a plain number, such as 72.5."),
        ("72.555", "kg", "Use at most two decimal places."),
        ("1,234", "kg", "Use at most two decimal places."),
        ("72.5.1", "kg", "Enter the weight as a plain number, such as 72.5."),
        ("+72", "kg", "Enter the weight as a plain number, such as 72.5."),
        ("٧٢", "kg", "Enter the weight as a plain number, such as 72.5."),  # non-ASCII digits
        ("19.99", "kg", "Enter a weight between 20 and 700 kg."),
        ("700.01", "kg", "Enter a weight between 20 and 700 kg."),
        ("44", "lb", "Enter a weight between 44.1 and 1543.2 lb."),
        ("1543.3", "lb", "Enter a weight between 44.1 and 1543.2 lb."),
        ("1" * 400, "kg", "Enter the weight as a plain number, such as 72.5."),
    ],
)
def test_parse_bad_weights(text, unit, message):
    with pytest.raises(WeightError) as caught:
        parse_weight(text, unit)
    assert str(caught.value) == message


def test_unknown_unit_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_weight("72", "stone")


def test_grams_conversion_both_ways():
    assert to_grams(Decimal("1"), "lb") == 454  # 453.59237 rounds half up
    assert to_grams("2.5", "kg") == 2500
    assert from_grams(72_500, "kg") == 72.5
    assert from_grams(453.59237, "lb") == pytest.approx(1.0)


@pytest.mark.parametrize("typed", ["44.1", "100", "160.01", "160.99", "250.5", "1543.2", "99.99"])
def test_pounds_typed_come_back_exactly(typed):
    """Whatever is typed in lb is shown again exactly, so opening and saving an entry changes nothing."""
    assert input_value(parse_weight(typed, "lb"), "lb") == (typed if "." in typed else typed + ".0")


@pytest.mark.parametrize(
    "grams, unit, text",
    [(72_500, "kg", "72.5"), (72_550, "kg", "72.55"), (72_000, "kg", "72.0"), (72_575, "lb", "160.0")],
)
def test_input_value(grams, unit, text):
    assert input_value(grams, unit) == text


def test_display_formats():
    assert format_weight(72_549, "kg") == "72.5 kg"
    assert format_weight(72_575, "lb") == "160.0 lb"
    assert format_weight(None, "kg") == ""
    assert format_change(-400, "kg") == "\u22120.4 kg"
    assert format_change(1200, "kg") == "+1.2 kg"
    assert format_change(20, "kg") == "0.0 kg"
    assert format_change(None, "kg") == ""


def test_weights_are_shown_with_the_locales_decimal_sign(app):
    """Babel's decimal sign for the reader's locale; the digits round the same in every locale."""
    from flask_babel import force_locale

    from webapp.units import format_change, format_weight

    with app.test_request_context():
        for locale, shown, change in (
            ("en", "72.5 kg", "\u22120.4 kg"),
            ("ko", "72.5 kg", "\u22120.4 kg"),
            ("de", "72,5 kg", "\u22120,4 kg"),
        ):
            with force_locale(locale):
                assert format_weight(72_500, "kg") == shown
                assert format_change(-400, "kg") == change
    # What a German keyboard types back is read as the same weight.
    assert parse_weight("72,5", "kg") == parse_weight("72.5", "kg") == 72_500
