"""Limits on logins and sign-ups, counted in Flask-Limiter's storage.

The counts live where RATELIMIT_STORAGE_URI points (memory:// in one process, the broker's
Redis when BROKER_URL is redis://, under REDIS_PREFIX), so every worker and host sees the same
count. An attempt is counted *before* the password is checked, in one atomic increment (Redis
INCR, or the memory storage's locked add), so parallel requests cannot all pass a check that
only the finished ones have been counted against. Accounts appear in the keys only as a keyed
digest of the address, never as the address itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time

from flask import Flask, current_app, request
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.strategies import FixedWindowRateLimiter

from ..extensions import limiter

log = logging.getLogger(__name__)

FAILED_LOGINS_PER_ACCOUNT = parse_limit("5 per 15 minutes")
FAILED_LOGINS_PER_ADDRESS = parse_limit("20 per 15 minutes")
SIGNUPS_PER_ADDRESS = parse_limit("10 per hour")
_LOGIN = "failed-login"
_SIGNUP = "signup"
_EXTENSION = "weighin_login_throttle"


def limiter_strategy() -> FixedWindowRateLimiter | None:
    """This app's fixed-window counter over Flask-Limiter's storage (None when limits are off);
    password resets count here too."""
    return current_app.extensions.get(_EXTENSION)


def account_key(email: str) -> str:
    """What stands for an email address in a limit's key: a digest keyed with SECRET_KEY, so the
    storage (Redis) holds no addresses and a guessed address cannot be checked against it."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, b"weighin limit\0" + email.encode(), hashlib.sha256).hexdigest()[:32]


def client_address() -> str:
    return request.remote_addr or "unknown"


def _minutes_until_reset(strategy: FixedWindowRateLimiter, limit: RateLimitItem, *key: str) -> int:
    reset_at = strategy.get_window_stats(limit, *key).reset_time
    return max(1, math.ceil((reset_at - time.time()) / 60))


def _login_limits(email: str) -> tuple[tuple[RateLimitItem, tuple[str, ...]], ...]:
    return (
        (FAILED_LOGINS_PER_ACCOUNT, (_LOGIN, "account", account_key(email))),
        (FAILED_LOGINS_PER_ADDRESS, (_LOGIN, "address", client_address())),
    )


def claim_login_attempt(email: str) -> int | None:
    """Count this attempt against the account and the address before the password is checked.

    Returns the whole minutes to wait when either is over its limit (the password must then not
    be checked at all), else None. A storage outage allows the attempt and logs a warning: a
    Redis outage must not lock every user out."""
    strategy = limiter_strategy()
    if strategy is None:
        return None
    try:
        limits = _login_limits(email)
        # Both are counted even when one is over, so neither can be spread thin.
        allowed = [strategy.hit(limit, *key) for limit, key in limits]
        for (limit, key), ok in zip(limits, allowed, strict=True):
            if not ok:
                return _minutes_until_reset(strategy, limit, *key)
    except Exception:
        log.warning("cannot count a login attempt; allowing it", exc_info=True)
    return None


def login_succeeded(email: str) -> None:
    """A correct password clears the account's count and takes this attempt off the address's,
    which counts failures only (a household behind one address logs in many times a day)."""
    strategy = limiter_strategy()
    if strategy is None:
        return
    try:
        strategy.clear(FAILED_LOGINS_PER_ACCOUNT, _LOGIN, "account", account_key(email))
        # The fixed window's counter is a plain INCRBY: a negative cost gives the hit back.
        strategy.hit(FAILED_LOGINS_PER_ADDRESS, _LOGIN, "address", client_address(), cost=-1)
    except Exception:
        log.warning("cannot clear failed-login counts", exc_info=True)


def forget_failures(email: str) -> None:
    """Clear the account's failed logins (a password was reset by its emailed link)."""
    strategy = limiter_strategy()
    if strategy is None:
        return
    try:
        strategy.clear(FAILED_LOGINS_PER_ACCOUNT, _LOGIN, "account", account_key(email))
    except Exception:
        log.warning("cannot clear failed-login counts", exc_info=True)


def claim_signup() -> int | None:
    """Count a sign-up attempt from this address before any hashing; minutes to wait if over."""
    strategy = limiter_strategy()
    if strategy is None:
        return None
    try:
        if not strategy.hit(SIGNUPS_PER_ADDRESS, _SIGNUP, "address", client_address()):
            return _minutes_until_reset(strategy, SIGNUPS_PER_ADDRESS, _SIGNUP, "address", client_address())
    except Exception:
        log.warning("cannot count a sign-up; allowing it", exc_info=True)
    return None


def init_app(app: Flask) -> None:
    """Keep a counter over this app's Flask-Limiter storage; the Limiter object is shared by every
    app in a process, so each app keeps its own from the moment it was bound."""
    app.extensions[_EXTENSION] = FixedWindowRateLimiter(limiter.storage) if limiter.enabled else None
