"""Time helpers: the app stores UTC and shows each user their own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import sqlalchemy as sa


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def in_current_year(local: datetime, zone: tzinfo) -> bool:
    """Whether a time (already in `zone`) falls in this year there: dates shown then leave the year out."""
    return local.year == utcnow().astimezone(zone).year


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    """Every IANA time zone name this machine knows, sorted, for the settings list."""
    # The tz database's files include two that are no zone names: "localtime" (whatever the
    # machine's zone is) and "Factory"; only IANA names go into the list and are accepted.
    return tuple(sorted(available_timezones() - {"localtime", "Factory", "posixrules"}))


def get_zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name, falling back to UTC for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_iso_instant(text: str) -> datetime:
    """Parse an ISO 8601 date or date-time; naive values are taken as UTC. Raises ValueError."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-05:00 is past the last datetime in UTC
        raise ValueError("out of range") from None


class UTCDateTime(sa.types.TypeDecorator):
    """A DateTime stored as naive UTC on every backend and read back as aware UTC."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC)
