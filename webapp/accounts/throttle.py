"""Failed-login limits, per account and per address, counted in Flask-Limiter's storage.

The counts live where RATELIMIT_STORAGE_URI points (memory:// in one process, the broker's
Redis when BROKER_URL is redis://), so every worker and host sees the same count.
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, current_app, request
from limits import parse as parse_limit
from limits.strategies import RateLimiter

from ..extensions import limiter

log = logging.getLogger(__name__)

FAILED_LOGINS_PER_ACCOUNT = parse_limit("5 per 15 minutes")
FAILED_LOGINS_PER_ADDRESS = parse_limit("20 per 15 minutes")
_NAMESPACE = "failed-login"
_EXTENSION = "weighin_login_throttle"


def limiter_strategy() -> RateLimiter | None:
    """This app's Flask-Limiter strategy (None when rate limits are off); password resets count here too."""
    return current_app.extensions.get(_EXTENSION)


def _limits(email: str):
    address = request.remote_addr or "unknown"
    return ((FAILED_LOGINS_PER_ACCOUNT, "account", email), (FAILED_LOGINS_PER_ADDRESS, "address", address))


def blocked_minutes(email: str) -> int | None:
    """Whole minutes until this account or address may try again, or None if it may try now."""
    strategy = limiter_strategy()
    if strategy is None:
        return None
    try:
        for limit, kind, key in _limits(email):
            if not strategy.test(limit, _NAMESPACE, kind, key):
                reset_at = strategy.get_window_stats(limit, _NAMESPACE, kind, key).reset_time
                return max(1, math.ceil((reset_at - time.time()) / 60))
    except Exception:
        # Failing open: a Redis outage must not lock every user out; the outage is logged.
        log.warning("cannot read failed-login counts; allowing the attempt", exc_info=True)
    return None


def count_failure(email: str) -> None:
    """Count one failed login against the account and the address."""
    strategy = limiter_strategy()
    if strategy is None:
        return
    try:
        for limit, kind, key in _limits(email):
            strategy.hit(limit, _NAMESPACE, kind, key)
    except Exception:
        log.warning("cannot count a failed login", exc_info=True)


def forget_failures(email: str) -> None:
    """A successful login clears the account's count (the address keeps its own)."""
    strategy = limiter_strategy()
    if strategy is None:
        return
    try:
        strategy.clear(FAILED_LOGINS_PER_ACCOUNT, _NAMESPACE, "account", email)
    except Exception:
        log.warning("cannot clear failed-login counts", exc_info=True)


def init_app(app: Flask) -> None:
    """Keep this app's Flask-Limiter strategy; the Limiter object is shared by every app in a process."""
    app.extensions[_EXTENSION] = limiter.limiter if limiter.enabled else None
