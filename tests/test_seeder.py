"""The tests' Seeder leaves no database connection open, however a test uses it.

A pooled psycopg connection that nobody closes is reported by its finalizer whenever the garbage
collector runs, so the warning (an error under filterwarnings) lands on some unrelated later test.
"""

from __future__ import annotations

from types import SimpleNamespace

import psycopg

from .support import PG_ADMIN_URL, Seeder, flask_cli, server_env


def _open_connections(database: str) -> int:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
            (database,),
        ).fetchone()
    assert row is not None
    return row[0]


def test_a_seeder_used_after_close_keeps_no_connection_open(tmp_path, postgres_url):
    env = server_env(tmp_path, DATABASE_URL=postgres_url)
    flask_cli(["db", "upgrade"], env)
    seeder = Seeder(SimpleNamespace(env=env, log_path=tmp_path / "seed.log"))
    user_id = seeder.user("ada@example.com")
    seeder.close()
    # As tests/faults/test_database_down.py once did: a client (a login, so a query) after close().
    assert seeder.cookie(user_id)
    assert _open_connections(postgres_url.rsplit("/", 1)[1]) == 0
