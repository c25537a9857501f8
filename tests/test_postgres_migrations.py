"""The same Alembic migrations build the schema on PostgreSQL as on SQLite, and the scan lock works."""

from __future__ import annotations

import threading

import psycopg
import pytest
import sqlalchemy as sa

from webapp.reminders.scanner import scan_lock

from .support import flask_cli, server_env

pytestmark = pytest.mark.services


def test_upgrade_then_check_on_a_fresh_postgres(tmp_path, postgres_url):
    # A plain postgresql:// URL, as people write it: the app picks psycopg 3 by itself.
    env = server_env(tmp_path, DATABASE_URL=postgres_url)
    flask_cli(["db", "upgrade"], env)
    checked = flask_cli(["db", "check"], env, check=False)
    assert checked.returncode == 0, (
        f"models and migrations differ on PostgreSQL:\n{checked.stdout}\n{checked.stderr}"
    )
    assert len(flask_cli(["db", "heads"], env).stdout.strip().splitlines()) == 1
    # And down again to nothing, so every migration's downgrade runs on PostgreSQL too.
    flask_cli(["db", "downgrade", "base"], env)
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert tables <= {"alembic_version"}


def test_scan_lock_lets_one_scanner_in(postgres_url):
    engine = sa.create_engine(postgres_url)
    try:
        holding = threading.Event()
        release = threading.Event()
        results = {}

        def first():
            with scan_lock(engine) as mine:
                results["first"] = mine
                holding.set()
                release.wait(10)

        thread = threading.Thread(target=first)
        thread.start()
        assert holding.wait(10)
        with scan_lock(engine) as mine:
            results["second"] = mine
        release.set()
        thread.join(10)
        with scan_lock(engine) as mine:  # released with its transaction
            results["after"] = mine
        assert results == {"first": True, "second": False, "after": True}
    finally:
        engine.dispose()


def test_scan_lock_is_a_no_op_on_sqlite(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with scan_lock(engine) as mine, scan_lock(engine) as also_mine:
        assert mine and also_mine
    engine.dispose()
