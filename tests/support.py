"""Helpers for tests that need real processes: free ports, a server subprocess, required services."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.pool import NullPool

from webapp import create_app
from webapp.extensions import db
from webapp.models import User, WeightEntry
from webapp.testing import (
    free_port,
    login_session_id,
    process_table,
    session_cookie,
    stop_process_group,
    wait_for_port,
)
from webapp.timeutil import utcnow

ROOT = Path(__file__).resolve().parent.parent
STRICT = os.environ.get("WEIGHIN_REQUIRE_SERVICES", "").strip() in {"1", "true", "yes"}
TEST_SECRET = "test-secret-key-0123456789abcdef"
FAST_HASH = "pbkdf2:sha256:1000"


def unavailable(reason: str):
    """Skip with a clear reason, or fail when CI requires every service (WEIGHIN_REQUIRE_SERVICES=1)."""
    if STRICT:
        pytest.fail(f"required for CI but unavailable: {reason}")
    pytest.skip(reason)


def build_app(tmp_path, name: str = "test", **overrides):
    """A fresh app on its own SQLite file with the schema created; test settings, then overrides."""
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SECRET_KEY": TEST_SECRET,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / f'{name}.db'}",
            "BROKER_URL": "memory://",
            "WTF_CSRF_ENABLED": False,
            "PASSWORD_HASH_METHOD": FAST_HASH,
            "RATELIMIT_STORAGE_URI": "memory://",
            **overrides,
        }
    )
    with app.app_context():
        db.create_all()
    return app


def add_user(
    email: str = "ada@example.com",
    *,
    at: datetime | None = None,
    days_ago: float = 0,
    admin: bool = False,
    password: str = "correct horse",
    **fields,
) -> User:
    """The one user factory: a user row written and committed in the current app context.

    Signed up at `at` (default: `days_ago` days before now) with both activity clocks there, as a
    sign-up leaves them; `fields` set any other column, or override those.
    """
    at = at or utcnow() - timedelta(days=days_ago)
    values = {"created_at": at, "last_active_at": at, "reminder_clock": at, "is_admin": admin, **fields}
    user = User(email=email, **values)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def translations_script(*args: str) -> None:
    """Run scripts/translations with this interpreter's pybabel (compile, extract FILE...)."""
    env = {**os.environ, "PYBABEL": str(Path(sys.executable).parent / "pybabel")}
    subprocess.run([str(ROOT / "scripts" / "translations"), *args], env=env, check=True, timeout=60)


def flask_cli(
    args: list[str], env: dict, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run `flask --app wsgi ARGS` in a subprocess with the given environment."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


# How long a server subprocess may take to listen: a few seconds usually, far more on a loaded
# machine; only a server that never comes up should fail a test.
START_WITHIN = 60.0


def _wait_until_listening(proc: subprocess.Popen, port: int) -> None:
    """Wait for a server subprocess to listen; one that never does is stopped, not left running."""
    try:
        wait_for_port(port, timeout=START_WITHIN, proc=proc)
    except BaseException:
        stop_process_group(proc, grace=5)
        raise


class ServerProcess:
    """`python wsgi.py` (the embedded gevent server) on a free port, as a subprocess."""

    def __init__(self, env: dict, log_path: Path):
        self.env = env
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        # The child keeps its own copy of the log descriptor; ours is closed at once.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "wsgi.py"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_until_listening(self.proc, self.port)
        return self

    def stop(self) -> None:
        stop_process_group(self.proc, grace=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def server_env(tmp_path: Path, **overrides) -> dict:
    """An environment for a server subprocess on its own SQLite file, instance folder and free port.

    Its own instance folder, so what the app writes there (.eml mail without MAIL_URL) stays in
    tmp_path instead of the repository's instance/.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "BROKER_URL", "SECRET_KEY", "FLASK_APP"}
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "BROKER_URL": "memory://",
            "SECRET_KEY": TEST_SECRET,
            "PORT": str(free_port()),
            "HOST": "127.0.0.1",
            "REMINDER_SCAN_INTERVAL": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def run_in_app_process(code: str, tmp_path: Path) -> str:
    """Run Python code in a fresh process with a server's environment (server_env); its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- scale-out: gunicorn, a private Redis, scratch PostgreSQL databases ----------------------

PG_ADMIN_URL = os.environ.get("WEIGHIN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_database_url(name: str) -> str:
    """The app's (SQLAlchemy) URL of the database `name` on the tests' PostgreSQL server."""
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


def process_children(pid: int) -> list[int]:
    """Ids of the live (not zombie) child processes of pid, read from /proc."""
    return sorted(
        child for child, (parent, state) in process_table().items() if parent == pid and state != "Z"
    )


class GunicornProcess:
    """`gunicorn -c gunicorn.conf.py wsgi:app` with N gevent workers on a free port, as a subprocess."""

    def __init__(self, env: dict, log_path: Path, workers: int = 2):
        self.env = dict(env)
        self.port = int(self.env.get("PORT") or free_port())
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def start(self) -> GunicornProcess:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [
                    str(gunicorn),
                    "-c",
                    "gunicorn.conf.py",
                    "--workers",
                    str(self.workers),
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "wsgi:app",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_until_listening(self.proc, self.port)
        self.wait_for_workers()
        return self

    def worker_pids(self) -> list[int]:
        return process_children(self.proc.pid) if self.proc is not None else []

    def wait_for_workers(self, timeout: float = 30.0, exclude: tuple[int, ...] = ()) -> list[int]:
        """Wait until the arbiter has its full set of workers (none of `exclude`), each serving."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [pid for pid in self.worker_pids() if pid not in exclude]
            booted = self.log().count("Booting worker with pid")
            if len(pids) == self.workers and booted >= self.workers:
                return pids
            time.sleep(0.1)
        raise RuntimeError(
            f"gunicorn did not get {self.workers} workers within {timeout} s:\n{self.log()[-3000:]}"
        )

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def stop(self) -> None:
        stop_process_group(self.proc, grace=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisServer:
    """A private `redis-server` on a free port (no persistence), so tests may stop and restart it."""

    def __init__(self, folder: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = folder
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        with open(self.folder / f"redis-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    str(self.folder),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """Kill the server outright (SIGKILL), as a crash or an OOM kill would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


PG_BIN = Path(os.environ.get("WEIGHIN_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresServer:
    """A private PostgreSQL cluster (initdb into a temporary folder, trust auth, a free port) that
    a test may stop and start; never the shared server. Run as `postgres` when the tests run as
    root, which PostgreSQL refuses, so the folder must be one that user can reach (not tmp_path)."""

    def __init__(self, folder: Path, port: int | None = None):
        self.port = port or free_port()
        self.folder = folder
        self.data = folder / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=120, cwd=self.folder
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def init(self) -> PostgresServer:
        if not (PG_BIN / "initdb").exists():
            unavailable(f"PostgreSQL's server binaries are not in {PG_BIN} (apt-get install postgresql-15)")
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.folder.chmod(0o777)
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        return self

    def start(self) -> PostgresServer:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "postgres.log"),
            "-o", options, "-w", "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)


# -- the statements a block runs -----------------------------------------------------------------


class Executed(NamedTuple):
    """One statement the engine ran: its text on one line, and whether its connection was in
    autocommit (PostgreSQL's psycopg; None where the driver does not say, as SQLite's)."""

    autocommit: bool | None
    sql: str

    @property
    def verb(self) -> str:
        return self.sql.split(" ", 1)[0].upper()


@contextmanager
def executed_statements(app: Flask) -> Iterator[list[Executed]]:
    """Every statement the app's engine runs inside the block, in order (the listener is removed
    on the way out, whatever happens)."""
    seen: list[Executed] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        autocommit = getattr(conn.connection.dbapi_connection, "autocommit", None)
        seen.append(
            Executed(autocommit if isinstance(autocommit, bool) else None, " ".join(statement.split()))
        )

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)


# -- logging in without the login page ---------------------------------------------------------


def log_in_client(client: FlaskClient, app: Flask, user_id: int) -> None:
    """Give a Flask test client the session of a new login of this user."""
    session_id = login_session_id(app, user_id)
    with client.session_transaction() as session:
        session["_user_id"] = session_id
        session["_fresh"] = True


# -- seeding a server's database directly ----------------------------------------------------


class Seeder:
    """Users written straight into a server's database, and session cookies signed with its key.

    Logging in this way needs no CSRF scraping and does not depend on the accounts pages. Its
    engine keeps no connection between calls (NullPool): a seeder used after close(), or never
    closed, leaves no psycopg connection behind for the garbage collector to warn about during
    some later test.
    """

    def __init__(self, server):
        self.server = server
        self.app = create_app(
            {
                "TESTING": True,
                "INSTANCE_PATH": str(Path(server.log_path).parent / "seed-instance"),
                "SECRET_KEY": server.env["SECRET_KEY"],
                "SQLALCHEMY_DATABASE_URI": server.env["DATABASE_URL"],
                "SQLALCHEMY_ENGINE_OPTIONS": {"poolclass": NullPool},
                "PASSWORD_HASH_METHOD": FAST_HASH,
            }
        )

    def user(
        self, email: str, *, days_ago: float = 0, admin: bool = False, password: str = "correct horse"
    ) -> int:
        with self.app.app_context():
            user_id = add_user(email, days_ago=days_ago, admin=admin, password=password).id
            db.session.remove()
            return user_id

    def cookie(self, user_id: int) -> str:
        return session_cookie(self.app, user_id)

    def client(self, user_id: int | None = None, **kwargs) -> httpx.Client:
        client = httpx.Client(base_url=self.server.url, timeout=httpx.Timeout(30.0), **kwargs)
        if user_id is not None:
            # With the host as domain, the cookie the server sends back replaces it instead of joining it.
            client.cookies.set("session", self.cookie(user_id), domain="127.0.0.1")
        return client

    def scan(self, days_ahead: float = 0) -> str:
        now = (utcnow() + timedelta(days=days_ahead)).isoformat()
        return flask_cli(["reminders", "scan", "--now", now], self.server.env).stdout

    def close(self) -> None:
        with self.app.app_context():
            db.engine.dispose()


class RawStream:
    """One GET /events on its own socket, read by a thread, as a browser tab holds it (with
    hx-sse's HX-Request header unless htmx=False); `text` is everything it received so far."""

    def __init__(self, port: int, cookie: str, *, last_event_id: str | None = None, htmx: bool = True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        extra = "Accept: text/event-stream\r\n"
        if htmx:
            extra += "HX-Request: true\r\n"
        if last_event_id is not None:
            extra += f"Last-Event-ID: {last_event_id}\r\n"
        self.sock.sendall(
            f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: session={cookie}\r\n{extra}\r\n".encode()
        )
        self.text = ""
        self.closed = False
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                with self.changed:
                    self.text += chunk.decode("utf-8", "replace")
                    self.changed.notify_all()
        except OSError:
            pass
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    def wait_for(self, predicate, what: str, timeout: float = 20.0) -> RawStream:
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(f"no {what} within {timeout} s; the stream read:\n{self.text[-2000:]}")
        return self

    def connected(self) -> RawStream:
        return self.wait_for(lambda s: ": connected" in s.text, "connected stream")

    def ended(self) -> RawStream:
        return self.wait_for(lambda s: s.closed, "end of the stream")

    def last_id(self) -> str:
        return re.findall(r"^id: (\d+)$", self.text, re.M)[-1]

    def close(self) -> None:
        self.sock.close()


def csrf_token(client: httpx.Client) -> str:
    """The CSRF token a page of the app carries (and the session cookie now holds)."""
    page = client.get("/account/settings").text
    return re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)


def seed_pages(server):
    """An admin with a month of weights, a new user, and an idle user with a reminder waiting."""
    seeder = Seeder(server)
    try:
        admin = seeder.user("admin@example.com", admin=True, days_ago=40)
        new = seeder.user("new@example.com")
        idle = seeder.user("idle@example.com", days_ago=30)
        with seeder.app.app_context():
            now = utcnow()
            db.session.add_all(
                WeightEntry(
                    user_id=admin,
                    measured_at=now - timedelta(days=day, hours=2),
                    mass_g=80_000 - 150 * (30 - day),
                    note="after a run" if day % 7 == 0 else "",
                    created_at=now - timedelta(days=day),
                    updated_at=now - timedelta(days=day),
                )
                for day in range(30)
            )
            db.session.commit()
            entry_id = db.session.scalar(db.select(WeightEntry.id).limit(1))
            db.session.remove()
        seeder.scan()  # the idle user gets the banner
        return {
            "admin": seeder.cookie(admin),
            "new": seeder.cookie(new),
            "idle": seeder.cookie(idle),
        }, entry_id
    finally:
        seeder.close()
