"""Fixtures for the scale-out fault tests: a scratch PostgreSQL database per test (copied from a
migrated template), a private Redis per test, gunicorn instances, and people with streams."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from ..support import (
    PG_ADMIN_URL,
    GunicornProcess,
    RedisServer,
    flask_cli,
    pg_database_url,
    server_env,
    stop_process_group,
    unavailable,
)
from .harness import Database, Person, StreamWatcher, start_pgbouncer


def _admin_connection():
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as error:
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {error}")


@pytest.fixture(scope="session")
def pg_template(tmp_path_factory):
    """A freshly migrated database that each test's database is copied from; dropped at the end."""
    name = f"weighin_t_{secrets.token_hex(4)}_tpl"
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = server_env(tmp_path_factory.mktemp("pg-template"), DATABASE_URL=pg_database_url(name))
        flask_cli(["db", "upgrade"], env)
        yield name
    finally:
        with _admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def scratch_database(pg_template):
    """Make migrated scratch databases, weighin_t_<random> (`make()` gives a URL); dropped afterwards."""
    names: list[str] = []

    def make() -> str:
        name = f"weighin_t_{secrets.token_hex(5)}"
        with _admin_connection() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
        names.append(name)
        return pg_database_url(name)

    yield make
    with _admin_connection() as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(scratch_database):
    """The test's scratch database."""
    return scratch_database()


@pytest.fixture
def db(pg_url) -> Database:
    return Database(pg_url)


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server that the test may stop and restart."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder).start()
    yield server
    server.stop()


@pytest.fixture
def pgbouncer(pg_url):
    """Debian's pgbouncer with docs/DEPLOY.md's pgbouncer.ini in front of the test's database;
    yields its URL (add ?prepare_threshold=none, as the guide says)."""
    # Not under tmp_path: pytest's folders are private to this user, and pgbouncer may run as another.
    folder = Path(tempfile.mkdtemp(prefix="weighin-pgbouncer-"))
    proc, url = start_pgbouncer(folder, pg_url)
    yield url
    stop_process_group(proc, grace=5)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def scaleout_env(tmp_path, pg_url, redis_server):
    """Environment for app processes sharing the test's PostgreSQL database and Redis."""

    def make(name: str = "web", **overrides) -> dict:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        defaults = {
            "DATABASE_URL": pg_url,
            "BROKER_URL": redis_server.url,
            "SSE_HEARTBEAT": 1,
            "REMINDER_SCAN_INTERVAL": 0,
            "WEB_LOG_LEVEL": "info",
        }
        return server_env(folder, **{**defaults, **overrides})

    return make


@pytest.fixture
def gunicorn(tmp_path, scaleout_env):
    """Start gunicorn instances (`start(name, workers)`); all are stopped at teardown."""
    started: list[GunicornProcess] = []

    def start(name: str = "web", workers: int = 2, **env) -> GunicornProcess:
        server = GunicornProcess(scaleout_env(name, **env), tmp_path / f"{name}.log", workers=workers)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def people(db):
    """Make people who sign up through the form (`make(base, n)`); their streams stop at teardown."""
    made: list[Person] = []
    watchers: list[StreamWatcher] = []
    tag = secrets.token_hex(3)

    def make(base: str, count: int) -> list[Person]:
        group = []
        for _ in range(count):
            person = Person(f"p{len(made)}-{tag}@example.com")
            person.signup(base)
            person.id = db.user_id(person.email)
            made.append(person)
            group.append(person)
        return group

    def watch(person: Person, urls: list[str]) -> StreamWatcher:
        watcher = StreamWatcher(person, urls).start()
        watchers.append(watcher)
        return watcher

    make.watch = watch
    yield make
    for watcher in watchers:
        watcher.stop()
    for person in made:
        person.close()
