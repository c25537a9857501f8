"""Dates and times as the reader's language writes them, through Babel.

English keeps the app's day-first style ("2 Dec 2026, 05:20"); other languages use their own
CLDR pattern for the same fields (Korean "2026년 12월 2일 05:20"). Times are always 24-hour.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache

from babel.dates import format_skeleton
from flask_babel import get_locale

# The app's English is day-first, as British English writes dates.
_ENGLISH_DATES = "en_GB"


def date_locale() -> str:
    """The Babel locale this request's dates are written in; pass it to format_day when writing many."""
    locale = get_locale()
    if locale is None or locale.language == "en":
        return _ENGLISH_DATES
    return str(locale)


def date_locale_of(language: str) -> str:
    """The Babel locale dates are written in for one of the app's languages (no request needed)."""
    return _ENGLISH_DATES if language == "en" else language


def format_day(value: date, with_year: bool = True, locale: str | None = None) -> str:
    """A calendar day, e.g. '2 Dec 2026' / '2026년 12월 2일', or without the year '2 Dec' / '12월 2일'."""
    return _format_day(value, with_year, locale or date_locale())


# Babel matches the skeleton to the locale's patterns on every call (a few percent of a worker
# during a burst of banners, issue 16); a day's text in a language never changes.
@lru_cache(maxsize=4096)
def _format_day(value: date, with_year: bool, locale: str) -> str:
    return format_skeleton("yMMMd" if with_year else "MMMd", value, locale=locale)


def format_day_time(value: datetime, with_year: bool = True) -> str:
    """A day and a 24-hour time, e.g. '2 Dec 2026, 05:20' / '2026년 12월 2일 05:20'."""
    locale = date_locale()
    day = format_day(value, with_year, locale)
    clock = format_skeleton("Hm", value, locale=locale)
    return f"{day}, {clock}" if locale == _ENGLISH_DATES else f"{day} {clock}"
