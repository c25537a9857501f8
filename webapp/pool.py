"""A pooled PostgreSQL connection is checked at checkout without a round trip (issue 16).

SQLAlchemy's `pool_pre_ping` sends a statement each time a connection leaves the pool, which is a
round trip on every request, stream connect, banner read and group commit. A connection that sits
in the pool has nothing to read: the server sends nothing unasked on a connection that does not
LISTEN. When a backend ends (a restart, a failover, `pg_terminate_backend`, an idle timeout), the
server writes its FATAL notice and closes the socket, and the socket becomes readable. So one
`poll` with no timeout tells a dead pooled connection from a live one, and the pool replaces it
before anyone uses it, as the ping would have. Anything readable gets the ping itself before the
connection is given up (some other bytes, such as a TLS record, would also make it readable), so
this is never less careful than `pool_pre_ping`, only cheaper where nothing happened. A peer that
vanished without closing (a host powered off) answers neither, and the first statement fails; a
ping would have waited for TCP's timeout there too. See docs/DECISIONS.md ("A pooled connection is checked without a round trip").
"""

from __future__ import annotations

import select

import sqlalchemy as sa
from gevent import monkey

# The real poll even where gevent patched the module: with no timeout it never blocks, and
# gevent's would go through the hub for nothing.
_poll = monkey.get_original("select", "poll")
_NEWS = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


def has_news(fd: int) -> bool:
    """Whether the socket has something to read, or was closed or broke (never waits)."""
    poller = _poll()
    poller.register(fd, _NEWS)
    return bool(poller.poll(0))


def install_liveness_check(engine: sa.Engine) -> None:
    """Check an engine's pooled PostgreSQL connections as they are checked out (SQLite's need none)."""
    if engine.dialect.name != "postgresql":
        return
    dialect = engine.dialect

    def check(dbapi_connection, connection_record, connection_proxy) -> None:
        if dbapi_connection.closed or dbapi_connection.broken:
            alive = False
        elif not has_news(dbapi_connection.fileno()):
            return
        else:
            try:
                alive = bool(dialect.do_ping(dbapi_connection))
            except Exception:
                alive = False
        if not alive:
            # The pool closes this connection and checks out another (a new one if need be).
            raise sa.exc.DisconnectionError("the database ended this pooled connection")

    sa.event.listen(engine, "checkout", check)
