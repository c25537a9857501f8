"""Weights as people type and read them (kg or lb) and as the database keeps them (whole grams).

Input rules, the same for every weight field:
- a plain decimal number with at most two decimal places; a decimal comma is accepted as a
  decimal point ("72,5" means 72.5), because people on phones with a European keyboard type it
  and no weight in range needs a thousands separator;
- signs, exponents, NaN, infinity and anything else are refused with a message, never stored;
- the weight must lie between 20 and 700 kg; in pounds the same range, rounded inward to
  44.1–1543.2 lb so the message states exactly what is accepted.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

from babel.numbers import get_decimal_symbol
from flask_babel import get_locale
from flask_babel import gettext as _

GRAMS_PER_KG = Decimal(1000)
GRAMS_PER_LB = Decimal("453.59237")  # the international avoirdupois pound, exactly
UNITS = ("kg", "lb")

MIN_GRAMS = 20_000
MAX_GRAMS = 700_000
# Bounds as people see them; the lb pair is 20 kg and 700 kg rounded inward to 0.1 lb.
BOUNDS = {"kg": (Decimal("20"), Decimal("700")), "lb": (Decimal("44.1"), Decimal("1543.2"))}

_PLAIN_NUMBER = re.compile(r"([0-9]+)(?:[.,]([0-9]+))?", re.ASCII)
_NEGATIVE_NUMBER = re.compile(r"-\s*[0-9]+(?:[.,][0-9]*)?", re.ASCII)
# No real weight needs more characters than this; it also bounds the work on hostile input.
MAX_INPUT_LENGTH = 20


class WeightError(ValueError):
    """A weight that cannot be accepted; str() is the message to show beside the field."""


def _check_unit(unit: str) -> str:
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}")
    return unit


def parse_weight(text: str | None, unit: str) -> int:
    """Turn what a person typed, in their unit, into whole grams, or raise WeightError."""
    _check_unit(unit)
    value = (text or "").strip()
    if not value:
        raise WeightError(_("Enter a weight."))
    if len(value) > MAX_INPUT_LENGTH:
        raise WeightError(_("Enter the weight as a plain number, such as 72.5."))
    if _NEGATIVE_NUMBER.fullmatch(value):
        raise WeightError(_("A weight cannot be negative."))
    match = _PLAIN_NUMBER.fullmatch(value)
    if match is None:
        raise WeightError(_("Enter the weight as a plain number, such as 72.5."))
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > 2:
        raise WeightError(_("Use at most two decimal places."))
    try:
        number = Decimal(f"{whole}.{fraction or '0'}")
    except InvalidOperation:  # the pattern makes this unreachable; kept so no input can raise
        raise WeightError(_("Enter the weight as a plain number, such as 72.5.")) from None
    if number == 0:
        raise WeightError(_("A weight must be more than zero."))
    low, high = BOUNDS[unit]
    if not low <= number <= high:
        raise WeightError(
            _("Enter a weight between %(low)s and %(high)s %(unit)s.", low=low, high=high, unit=unit)
        )
    return to_grams(number, unit)


def to_grams(value: Decimal | float | int | str, unit: str) -> int:
    """An amount in kg or lb as whole grams, rounding half up."""
    factor = GRAMS_PER_KG if _check_unit(unit) == "kg" else GRAMS_PER_LB
    return int((Decimal(str(value)) * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_grams(grams: int | float, unit: str) -> float:
    """Grams as a float amount in kg or lb, for arithmetic and charts."""
    factor = GRAMS_PER_KG if _check_unit(unit) == "kg" else GRAMS_PER_LB
    return float(Decimal(str(grams)) / factor)


def input_value(grams: int, unit: str) -> str:
    """Grams as the text an edit field is prefilled with: two decimals at most, no trailing zeros.

    Two decimals are enough for a value typed in either unit to come back exactly as typed
    (one gram is 0.0022 lb), so opening and saving an entry does not change it.
    """
    factor = GRAMS_PER_KG if _check_unit(unit) == "kg" else GRAMS_PER_LB
    amount = (Decimal(grams) / factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    text = f"{amount:f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


@lru_cache(maxsize=16)
def _decimal_symbol(locale: str) -> str:
    return get_decimal_symbol(locale)


def decimal_sign() -> str:
    """This request's decimal sign ('.' in English and Korean, ',' in German); '.' outside a request.

    For code that writes many numbers at once (the chart): read it once and pass it to
    localise_number, rather than asking Flask-Babel for the locale per number.
    """
    locale = get_locale()
    return "." if locale is None else _decimal_symbol(str(locale))


def localise_number(text: str, sign: str | None = None) -> str:
    """A number written with a decimal point ('72.5'), in the reader's locale ('72,5' in German).

    The digits are rounded by Python's formatting first, so every place rounds alike; Babel gives
    the locale's decimal sign (outside any app or request: English), unless `sign` is given.
    """
    if sign is None:
        sign = decimal_sign()
    return text if sign == "." else text.replace(".", sign)


def format_weight(grams: int | float | None, unit: str, places: int = 1, with_unit: bool = True) -> str:
    """Grams for display in the user's unit, e.g. '72.5 kg'; an empty string for None."""
    if grams is None:
        return ""
    amount = from_grams(grams, unit)
    text = localise_number(f"{amount:.{places}f}")
    return f"{text} {unit}" if with_unit else text


def format_weight_exact(grams: int | None, unit: str) -> str:
    """An entry's weight as typed (up to two decimals, no trailing zeros), e.g. '79.25 kg', '72.5 kg'.

    What the weight table, the latest figure and the "Logged ..." message all show, so a weight
    reads the same everywhere it is repeated.
    """
    if grams is None:
        return ""
    return f"{localise_number(input_value(grams, unit))} {unit}"


def format_change(grams: int | float | None, unit: str, places: int = 1) -> str:
    """A signed difference for display, e.g. '−0.4 kg' or '+1.2 lb' (a true minus sign)."""
    if grams is None:
        return ""
    amount = round(from_grams(grams, unit), places)
    if amount == 0:
        return f"{localise_number(f'{0:.{places}f}')} {unit}"
    sign = "+" if amount > 0 else "\u2212"
    return f"{sign}{localise_number(f'{abs(amount):.{places}f}')} {unit}"
