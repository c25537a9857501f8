"""A pooled PostgreSQL connection whose backend ended is replaced at checkout, with no round trip
for the live ones (webapp/pool.py, issue 16): a request after a restart or a terminated backend
succeeds the first time."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import User
from webapp.pool import has_news

from .conftest import _dispose
from .support import PG_ADMIN_URL, add_user, build_app


def _backend_pid() -> int:
    return db.session.scalar(sa.text("SELECT pg_backend_pid()"))


def _terminate(pid: int) -> None:
    """End a backend and wait until it has exited (PostgreSQL 14's timeout argument)."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone() == (True,)


@pytest.fixture
def pg_app(tmp_path, postgres_url):
    app = build_app(tmp_path, SQLALCHEMY_DATABASE_URI=postgres_url)
    yield app
    _dispose(app)


def test_a_pooled_connection_whose_backend_was_terminated_is_replaced_before_use(pg_app):
    with pg_app.app_context():
        user_id = add_user("ada@example.com").id
        first = _backend_pid()
        db.session.remove()  # back to the pool, idle

        _terminate(first)
        # The same request as before, the first time: a new connection, not an error.
        assert db.session.get(User, user_id).email == "ada@example.com"
        assert _backend_pid() != first
        db.session.remove()


def test_a_live_pooled_connection_is_kept_and_its_checkout_sends_nothing(pg_app, tmp_path):
    with pg_app.app_context():
        first = _backend_pid()
        db.session.remove()
        with db.engine.connect() as connection:
            raw = connection.connection.dbapi_connection
        # libpq's protocol trace of the pooled connection: every message it sends or receives.
        trace = (tmp_path / "trace").open("w")
        raw.pgconn.trace(trace.fileno())
        try:
            for _ in range(3):
                with db.engine.connect() as connection:
                    assert connection.connection.dbapi_connection is raw
        finally:
            raw.pgconn.untrace()
            trace.close()
        # No ping (pool_pre_ping's ";" showed as a Query and its EmptyQueryResponse each time).
        assert (tmp_path / "trace").read_text() == ""
        assert _backend_pid() == first
        db.session.remove()


def test_an_ended_backend_makes_its_socket_readable(pg_app):
    with pg_app.app_context():
        with db.engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            pid = raw.info.backend_pid
            assert not has_news(raw.fileno())
            _terminate(pid)
            assert has_news(raw.fileno())
            connection.invalidate()
