"""The same Alembic migrations build the schema on PostgreSQL as on SQLite, and the scan lock works."""

from __future__ import annotations

import secrets
import threading

import psycopg
import pytest
import sqlalchemy as sa

from webapp.reminders.scanner import scan_lock

from .support import PG_ADMIN_URL, flask_cli, server_env, unavailable

pytestmark = pytest.mark.services


@pytest.fixture
def scratch_database():
    """A fresh, empty PostgreSQL database for one test (weighin_t_<random>), dropped afterwards."""
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as error:
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {error}")
    name = f"weighin_t_{secrets.token_hex(5)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_then_check_on_a_fresh_postgres(tmp_path, scratch_database):
    # A plain postgresql:// URL, as people write it: the app picks psycopg 3 by itself.
    env = server_env(tmp_path, DATABASE_URL=scratch_database)
    flask_cli(["db", "upgrade"], env)
    checked = flask_cli(["db", "check"], env, check=False)
    assert checked.returncode == 0, (
        f"models and migrations differ on PostgreSQL:\n{checked.stdout}\n{checked.stderr}"
    )
    assert len(flask_cli(["db", "heads"], env).stdout.strip().splitlines()) == 1
    # And down again to nothing, so every migration's downgrade runs on PostgreSQL too.
    flask_cli(["db", "downgrade", "base"], env)
    with psycopg.connect(scratch_database) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert tables <= {"alembic_version"}


def test_scan_lock_lets_one_scanner_in(scratch_database):
    engine = sa.create_engine(scratch_database.replace("postgresql://", "postgresql+psycopg://", 1))
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
