"""Password hashing that keeps the gevent event loop free.

Werkzeug's default (scrypt) costs about 200 ms of CPU. Run on the event loop, every sign-up or
login would freeze every other greenlet of the process (streams, health checks) for that long.
hashlib releases the GIL while it hashes, so under gevent the hash runs in the hub's thread pool
and the loop goes on serving; without gevent (tests, the CLI) it simply runs here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import current_app, has_app_context
from werkzeug.security import check_password_hash, generate_password_hash

T = TypeVar("T")


def _off_the_loop(func: Callable[..., T], *args: str) -> T:
    from gevent import get_hub, monkey

    if monkey.is_module_patched("threading"):
        return get_hub().threadpool.apply(func, args)
    return func(*args)


def _method() -> str:
    # Tests lower the hash cost through PASSWORD_HASH_METHOD; production keeps werkzeug's default.
    method = current_app.config.get("PASSWORD_HASH_METHOD") if has_app_context() else None
    return method or "scrypt"


def hash_password(password: str) -> str:
    """A salted hash of the password, computed off the event loop."""
    return _off_the_loop(generate_password_hash, password, _method())


def password_matches(password_hash: str, password: str) -> bool:
    """Whether the password is the one hashed, checked off the event loop."""
    return _off_the_loop(check_password_hash, password_hash, password)
