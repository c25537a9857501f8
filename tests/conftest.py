"""Shared fixtures: a fresh app and database per test, a client, a CLI runner and an auth helper."""

from __future__ import annotations

import os
import secrets
import shutil

import psycopg
import pytest

from webapp.extensions import db
from webapp.models import User

from .support import (
    PG_ADMIN_URL,
    Seeder,
    ServerProcess,
    build_app,
    flask_cli,
    pg_database_url,
    server_env,
    translations_script,
    unavailable,
)

# Fixtures that reach PostgreSQL or Redis (or start a private redis-server). A test that uses one,
# even through another fixture, gets the `services` marker, so `-m "not services"` runs with
# neither server; a test that connects on its own carries the marker itself.
SERVICE_FIXTURES = {
    "postgres_url",
    "pg_template",
    "scratch_database",
    "pg_url",
    "redis_server",
    "private_redis",
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session", autouse=True)
def compiled_translations():
    """The .mo files built from the .po files as they are now (git keeps only the .po files)."""
    translations_script("compile")


def _dispose(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(tmp_path):
    app = build_app(tmp_path)
    yield app
    _dispose(app)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def either_db_app(request, tmp_path):
    """A fresh app on SQLite, then on a fresh PostgreSQL database: for code with a path of its own
    on each (the PostgreSQL-only statements of issue 16)."""
    overrides = {}
    if request.param == "postgresql":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("postgres_url")
    app = build_app(tmp_path, **overrides)
    yield app
    _dispose(app)


@pytest.fixture
def csrf_app(tmp_path):
    """The app as it runs for real: CSRF checks on."""
    app = build_app(tmp_path, "csrf", WTF_CSRF_ENABLED=True)
    yield app
    _dispose(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AuthActions:
    def __init__(self, client, app):
        self._client = client
        self._app = app

    def register(self, email="ada@example.com", password="correct horse"):
        return self._client.post("/account/signup", data={"email": email, "password": password})

    def login(self, email="ada@example.com", password="correct horse", **extra):
        return self._client.post("/account/login", data={"email": email, "password": password, **extra})

    def logout(self):
        return self._client.post("/account/logout")

    def user(self, email="ada@example.com") -> User:
        return db.session.scalar(db.select(User).where(User.email == email))

    def make_admin(self, email="ada@example.com"):
        with self._app.app_context():
            user = self.user(email)
            user.is_admin = True
            db.session.commit()


@pytest.fixture
def auth(client, app):
    return AuthActions(client, app)


@pytest.fixture
def make_server(tmp_path):
    """Start `python wsgi.py` subprocesses on migrated SQLite databases; stopped at teardown."""
    servers: list[ServerProcess] = []

    def start(name: str = "server", **env_overrides) -> ServerProcess:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        env = server_env(folder, **env_overrides)
        flask_cli(["db", "upgrade"], env)
        server = ServerProcess(env, folder / "server.log").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server):
    """One embedded server with a quick heartbeat; a module overrides this for other settings."""
    return make_server(SSE_HEARTBEAT=1, SSE_MAX_LIFETIME=600)


@pytest.fixture
def make_seeder():
    """Seeders (users and session cookies written straight into a server's database), closed at teardown."""
    seeders: list[Seeder] = []

    def make(server) -> Seeder:
        seeder = Seeder(server)
        seeders.append(seeder)
        return seeder

    yield make
    for seeder in seeders:
        seeder.close()


@pytest.fixture
def seeder(server, make_seeder):
    """A seeder for the `server` fixture's database."""
    return make_seeder(server)


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright; skipped (or failed in CI) when it is missing."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def smtp_server(tmp_path):
    """A real SMTP server (aiosmtpd in a subprocess) on a free port; stopped at teardown."""
    from webapp.testing import SmtpServer

    folder = tmp_path / "smtp"
    folder.mkdir()
    server = SmtpServer(folder).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database for one test (weighin_t_<random>, not migrated), as the
    app's URL; dropped afterwards."""
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as error:
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {error}")
    name = f"weighin_t_{secrets.token_hex(5)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_database_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
