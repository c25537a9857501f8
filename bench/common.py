"""Shared pieces of the benchmark harnesses: databases, bulk users, signed sessions, servers, /proc.

Nothing here is imported by the app. The harnesses are run as `python -m bench.<name>` from the
project root with the virtualenv's Python; see bench/README.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Ports, process groups and logins, shared with the tests through webapp.testing (not the test package).
from webapp.testing import free_port, stop_process_group, wait_for_port  # noqa: E402,F401
from webapp.testing import session_cookie as _session_cookie  # noqa: E402

# What every bench client sends as its User-Agent (bench/clients.py, bench/pages.py).
USER_AGENT = "weighin-bench"


def session_cookie(app, user_id: int) -> str:
    """A logged-in session cookie as the bench's clients' browser would hold it: with the login's
    client identifier (127.0.0.1, USER_AGENT), so the app does not rewrite it on each request."""
    return _session_cookie(app, user_id, user_agent=USER_AGENT)


BENCH_SECRET = "bench-secret-key-0123456789abcdef"
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# One hash for every generated user: the harnesses sign sessions and never log in.
PASSWORD_HASH = "pbkdf2:sha256:1000$bench$" + "0" * 64
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def raise_nofile(wanted: int | None = None) -> int:
    """Raise this process's open-file limit as far as the hard limit allows; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None or hard == resource.RLIM_INFINITY else min(hard, max(soft, wanted))
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def machine() -> dict:
    """What a figure was measured on: cores, memory, kernel, Python, the date."""
    mem = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "free": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load": os.getloadavg(),
    }


def write_rows(path: Path | None, args, rows: list) -> None:
    """Write a harness's --out file: its settings, the machine and the rows (nothing without --out)."""
    if not path:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {k: str(v) for k, v in vars(args).items()}
    path.write_text(json.dumps({"config": config, "machine": machine(), "rows": rows}, indent=2, default=str))


def write_result(path: Path | None, result: dict) -> None:
    """Write a harness's --out file when its result is one JSON document (nothing without --out)."""
    if not path:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))


def each_size(kinds, sizes, run) -> list:
    """run(kind, size) for every database kind and size, each row printed as a JSON line as it comes."""
    rows = []
    for kind in kinds:
        for size in sizes:
            row = run(kind, size)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def percentile(values, q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


# -- /proc ----------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds the process has used, apart."""
    fields = _stat_fields(pid)
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process has used."""
    return sum(cpu_split(pid))


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (gunicorn's arbiter and workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int(_stat_fields(int(entry.name))[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of pid and its descendants, apart."""
    user = system = 0.0
    for p in process_tree(pid):
        try:
            u, s = cpu_split(p)
        except OSError:
            continue
        user, system = user + u, system + s
    return user, system


def tree_cpu(pid: int) -> float:
    return sum(tree_cpu_split(pid))


def tree_rss(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            total += rss_bytes(p)
        except OSError:
            pass
    return total


# -- databases ------------------------------------------------------------------------------
def scratch_database(kind: str, name: str, folder: Path) -> str:
    """A fresh, empty database URL: a new SQLite file, or a dropped-and-created PostgreSQL database."""
    if kind == "sqlite":
        path = folder / f"{name}.db"
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return f"sqlite:///{path}"
    import psycopg

    dbname = f"bench6_{name}"
    admin = PG_ADMIN_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname


def drop_scratch(database_url: str) -> None:
    """Remove a scratch database made by scratch_database (the SQLite file, or the PostgreSQL database)."""
    if database_url.startswith("sqlite:///"):
        path = database_url[len("sqlite:///") :]
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(path + suffix).unlink(missing_ok=True)
        return
    import psycopg

    dbname = database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def make_app(database_url: str, broker_url: str = "memory://", **extra):
    """The real app factory, pointed at a bench database migrated to the newest schema."""
    from webapp import create_app

    instance = Path(tempfile.mkdtemp(prefix="bench6-instance-"))
    app = create_app(
        {
            "SECRET_KEY": BENCH_SECRET,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "BROKER_URL": broker_url,
            "INSTANCE_PATH": str(instance),
            "REMINDER_SCAN_INTERVAL": 0,
            "RATELIMIT_ENABLED": False,
            **extra,
        }
    )
    # The real migrations, so the indexes measured are the ones deployments get; in a subprocess,
    # as deployments run them (and so Alembic's env.py never runs inside a test process).
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BROKER_URL": "memory://",
        "SECRET_KEY": BENCH_SECRET,
        "INSTANCE_PATH": str(instance),
    }
    env.pop("FLASK_APP", None)
    migrated = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if migrated.returncode != 0:
        raise RuntimeError(f"flask db upgrade failed:\n{migrated.stdout}\n{migrated.stderr}")
    return app


def _user_rows(first_id: int, count: int, now: datetime, inactive_fraction: float, after_days: int, rng):
    """Users with realistic clocks: active ones logged within the last days, inactive ones weeks ago."""
    for user_id in range(first_id, first_id + count):
        inactive = rng.random() < inactive_fraction
        created = now - timedelta(days=rng.uniform(after_days * 2, 700))
        if inactive:
            last = now - timedelta(days=rng.uniform(after_days + 1, after_days * 8))
        else:
            last = now - timedelta(days=rng.uniform(0, after_days - 1))
        last = max(last, created)
        goal_at = created + (last - created) * rng.random() if rng.random() < 0.7 else None
        yield {
            "id": user_id,
            "email": f"user{user_id}@bench.example",
            "password_hash": PASSWORD_HASH,
            "display_name": "",
            "unit": "kg" if user_id % 3 else "lb",
            "timezone": "UTC",
            "reminders_enabled": True,
            "is_admin": False,
            "created_at": created,
            "last_weight_at": last,
            "last_goal_at": goal_at,
            "last_active_at": max(last, goal_at or last),
            "reminder_clock": max(last, goal_at or last),
        }


def _entry_rows(user: dict, entries: int, rng):
    # History spread between sign-up and the last weigh-in; the last one lands on last_weight_at.
    span = (user["last_weight_at"] - user["created_at"]).total_seconds()
    mass = rng.randint(55_000, 110_000)
    for index in range(entries):
        at = (
            user["last_weight_at"]
            if index == entries - 1
            else user["created_at"] + timedelta(seconds=span * (index + rng.random()) / entries)
        )
        mass += rng.randint(-400, 300)
        yield {
            "user_id": user["id"],
            "measured_at": at,
            "mass_g": mass,
            "note": "",
            "created_at": at,
            "updated_at": at,
        }


USER_COLUMNS = [
    "id",
    "email",
    "password_hash",
    "display_name",
    "unit",
    "timezone",
    "reminders_enabled",
    "is_admin",
    "created_at",
    "last_weight_at",
    "last_goal_at",
    "last_active_at",
    "reminder_clock",
]
ENTRY_COLUMNS = ["user_id", "measured_at", "mass_g", "note", "created_at", "updated_at"]


def bulk_users(
    app,
    count: int,
    *,
    first_id: int = 1,
    inactive_fraction: float = 0.1,
    entries_per_user: int = 3,
    now: datetime | None = None,
    after_days: int = 7,
    seed: int = 6,
    chunk: int = 20000,
) -> int:
    """Insert `count` users (ids first_id..) with weight histories: COPY on PostgreSQL, executemany on SQLite."""
    from webapp.extensions import db
    from webapp.models import User, WeightEntry

    now = now or datetime.now(UTC)
    rng = random.Random(seed + first_id)
    with app.app_context():
        engine = db.engine
        postgres = engine.dialect.name == "postgresql"
        users = _user_rows(first_id, count, now, inactive_fraction, after_days, rng)
        done = 0
        while done < count:
            batch = [next(users) for _ in range(min(chunk, count - done))]
            entries = (
                [e for u in batch for e in _entry_rows(u, entries_per_user, rng)] if entries_per_user else []
            )
            if postgres:
                _copy(engine, "users", USER_COLUMNS, batch)
                if entries:
                    _copy(engine, "weight_entries", ENTRY_COLUMNS, entries)
            else:
                with engine.begin() as conn:
                    conn.execute(sa.insert(User), batch)
                    if entries:
                        conn.execute(sa.insert(WeightEntry), entries)
            done += len(batch)
        if postgres:
            with engine.begin() as conn:
                conn.exec_driver_sql("SELECT setval('users_id_seq', (SELECT max(id) FROM users))")
                conn.exec_driver_sql("ANALYZE")
        else:
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
    return count


def _copy(engine, table: str, columns: list[str], rows: list[dict]) -> None:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
        raw.commit()
    finally:
        raw.close()


# -- servers --------------------------------------------------------------------------------
class Server:
    """The app under test as a subprocess: `embedded` (bench/serve_embedded.py) or `gunicorn` (2 gevent workers)."""

    def __init__(
        self,
        kind: str,
        database_url: str,
        *,
        broker_url: str = "memory://",
        workers: int = 2,
        env: dict | None = None,
        log_path: Path | None = None,
        wsgi_app: str = "wsgi:app",
        gunicorn_config: str = "gunicorn.conf.py",
    ):
        self.kind = kind
        # gunicorn only: what it serves and its settings (bench/peer_flask_sse.py for the peer)
        self.wsgi_app, self.gunicorn_config = wsgi_app, gunicorn_config
        self.port, self.url = 0, ""
        self.control_port: int | None = None
        self.log_path = log_path or Path(tempfile.mkstemp(prefix=f"bench6-{kind}-", suffix=".log")[1])
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "BROKER_URL", "FLASK_APP"}},
            "DATABASE_URL": database_url,
            "BROKER_URL": broker_url,
            "SECRET_KEY": BENCH_SECRET,
            # Whatever the server writes there (.eml mail) stays out of the repository's instance/.
            "INSTANCE_PATH": tempfile.mkdtemp(prefix=f"bench6-{kind}-instance-"),
            "HOST": "127.0.0.1",
            "REMINDER_SCAN_INTERVAL": "0",
            "SSE_MAX_LIFETIME": "86400",
            "SSE_HEARTBEAT": "15",
            "PYTHONUNBUFFERED": "1",
            "RATELIMIT_ENABLED": "0",
            "WEB_LOG_LEVEL": "warning",
            **(env or {}),
        }
        self._choose_ports()
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        # The port free_port() gave may be taken by the time the server binds it (another test's
        # or benchmark's server, started at the same moment): then the server exits at once, and
        # it starts again on other ports.
        for _ in range(2):
            try:
                return self._start()
            except RuntimeError:
                if self.proc is None or self.proc.poll() is None:
                    raise
                self._choose_ports()
        return self._start()

    def _choose_ports(self) -> None:
        self.port = free_port()
        self.control_port = free_port() if self.kind == "embedded" else None
        self.url = f"http://127.0.0.1:{self.port}"
        self.env["PORT"] = str(self.port)
        if self.control_port:
            self.env["BENCH_CONTROL_PORT"] = str(self.control_port)

    def _start(self) -> Server:
        if self.kind == "embedded":
            cmd = [sys.executable, "-m", "bench.serve_embedded"]
        else:
            cmd = [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                self.gunicorn_config,
                "-k",
                "gevent",
                "-w",
                str(self.workers),
                "--worker-connections",
                "12000",
                "--backlog",
                "4096",
                "-b",
                f"127.0.0.1:{self.port}",
                self.wsgi_app,
            ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: raise_nofile(),
            )
        wait_for_port(self.port, timeout=60, proc=self.proc)
        if self.control_port:
            wait_for_port(self.control_port, timeout=60, proc=self.proc)
        if self.kind == "gunicorn":
            # Every worker must be up before memory is sampled.
            deadline = time.monotonic() + 30
            while len(process_tree(self.proc.pid)) < self.workers + 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)
        return self

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def rss(self) -> int:
        return tree_rss(self.proc.pid)

    def stop(self) -> None:
        stop_process_group(self.proc, grace=20)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- publishing reminders -------------------------------------------------------------------
def open_reminders(user_ids, before_commit=None) -> tuple[float, list[tuple[int, int]]]:
    """Open a reminder for each user through the real lifecycle (outbox and broker included).

    before_commit, if given, runs just before the commit (a profiler attaching for what follows)."""
    from webapp.extensions import db
    from webapp.reminders.lifecycle import open_reminder

    pairs = []
    for user_id in user_ids:
        reminder = open_reminder(int(user_id), source="admin")
        if reminder is not None:
            db.session.flush()
            pairs.append((reminder.id, int(user_id)))
    if before_commit is not None:
        before_commit()
    t0 = time.time()
    db.session.commit()
    db.session.remove()
    return t0, pairs


def end_open_reminders() -> None:
    """Close every open reminder quietly (no outbox rows): the streams keep their last snapshot."""
    import sqlalchemy as sa

    from webapp.extensions import db
    from webapp.models import Reminder, User

    db.session.execute(
        sa.update(Reminder)
        .where(Reminder.open_for_user_id.is_not(None))
        .values(status="dismissed", open_for_user_id=None)
    )
    db.session.execute(sa.update(User).values(reminder_clock=User.last_active_at))
    db.session.commit()
    db.session.remove()


class ControlPublisher:
    """Opens reminders inside the embedded server (its in-memory broker lives there) over the control port."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rwb")

    def _ask(self, line: str) -> list[str]:
        self.file.write(line.encode() + b"\n")
        self.file.flush()
        return self.file.readline().decode().split()

    def remind(self, user_ids) -> tuple[float, list[tuple[int, int]]]:
        """Open a reminder for each user in one transaction; (time just before commit, [(reminder, user)])."""
        reply = self._ask("remind " + " ".join(map(str, user_ids)))
        t0 = float(reply[1])
        pairs = [(int(reminder), int(user)) for reminder, user in (item.split(":") for item in reply[2:])]
        return t0, pairs

    def reset(self) -> None:
        """End every open reminder without announcing it, so the next phase can open fresh ones."""
        self._ask("reset")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class LocalPublisher:
    """Opens reminders from this process: with a Redis broker the workers hear of it like any change."""

    def __init__(self, app):
        self.app = app

    def remind(self, user_ids, before_commit=None):
        with self.app.app_context():
            return open_reminders(user_ids, before_commit)

    def reset(self) -> None:
        with self.app.app_context():
            end_open_reminders()

    def close(self) -> None:
        pass


def run_async(make_coroutine):
    """asyncio.run(make_coroutine()) on a thread of its own, and its result (or its exception).

    The harnesses are also called in-process by the smoke tests, where the session's Playwright
    keeps an event loop running on the main thread and asyncio.run() refuses to start another.
    A new thread has no running loop; the coroutine is created there, so none is left unawaited.
    """
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = asyncio.run(make_coroutine())
        except BaseException as error:  # handed back to the caller below
            outcome["error"] = error

    thread = threading.Thread(target=run, name="bench-asyncio")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@contextmanager
def timer():
    """with timer() as t: ...; t() is the seconds elapsed (so far, or at exit)."""
    start = time.perf_counter()
    end = None

    def elapsed():
        return (end or time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end = time.perf_counter()


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
