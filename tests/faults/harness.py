"""What the fault tests drive: people using the site over HTTP, their live streams, and the database.

Everything here runs in plain threads of the pytest process (httpx, no gevent); the app runs in
real gunicorn subprocesses. A Person signs up and logs in through the real forms (with the CSRF
token scraped from the page); a StreamWatcher holds their /events stream like a browser tab,
reconnecting with Last-Event-ID, and records every snapshot it receives.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import psycopg

from webapp.timeutil import utcnow

from ..support import ROOT, flask_cli, free_port, unavailable, wait_for_port

CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CSRF_HEADER = re.compile(r'"X-CSRFToken": "([^"]+)"')
REMINDER_ID = re.compile(r'data-reminder-id="(\d+)"')
REMINDER_STATE = re.compile(r'data-reminder-state="(\w+)"')
PASSWORD = "correct horse battery staple"


def csrf_token(html: str) -> str:
    match = CSRF_INPUT.search(html) or CSRF_HEADER.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


class Person:
    """One user with their own cookie jar, talking to whichever server URL a test names."""

    def __init__(self, email: str):
        self.email = email
        self.http = httpx.Client(follow_redirects=False, timeout=15)
        self.id: int | None = None

    def _form_post(self, base: str, path: str, data: dict, page: str | None = None) -> httpx.Response:
        form_page = self.http.get(base + (page or path))
        assert form_page.status_code == 200, f"GET {page or path}: {form_page.status_code}"
        return self.http.post(base + path, data={**data, "csrf_token": csrf_token(form_page.text)})

    def signup(self, base: str) -> None:
        response = self._form_post(base, "/account/signup", {"email": self.email, "password": PASSWORD})
        assert response.status_code == 302, (
            f"signup of {self.email}: {response.status_code} {response.text[:500]}"
        )

    def login(self, base: str) -> None:
        response = self._form_post(base, "/account/login", {"email": self.email, "password": PASSWORD})
        assert response.status_code == 302, (
            f"login of {self.email}: {response.status_code} {response.text[:500]}"
        )

    def dismiss(self, base: str) -> httpx.Response:
        """Press Dismiss on the dashboard's banner, as a form post without htmx."""
        return self._form_post(base, "/reminders/dismiss", {}, page="/dashboard")

    def cookie_header(self) -> str:
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.http.cookies.jar)

    def close(self) -> None:
        self.http.close()


@dataclass
class Connection:
    """One /events response as the watcher saw it."""

    url: str
    client_port: int | None = None
    status: int | None = None
    event_ids: list[int] = field(default_factory=list)
    retry_hints: list[int] = field(default_factory=list)
    sent_last_event_id: str | None = None
    ended_at: float | None = None
    error: str | None = None


class StreamWatcher:
    """A browser tab's /events stream in a thread: reconnects with Last-Event-ID, records snapshots."""

    def __init__(self, person: Person, urls: list[str], reconnect_delay: float = 0.3):
        self.person = person
        self.urls = urls
        self.reconnect_delay = reconnect_delay
        self.changed = threading.Condition()
        self.connections: list[Connection] = []
        # (connection index, event id, reminder id or None) for every snapshot received
        self.snapshots: list[tuple[int, int, int | None]] = []
        self.last_event_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{person.email}", daemon=True)

    # -- control ------------------------------------------------------------------------------
    def start(self) -> StreamWatcher:
        self._thread.start()
        self.wait_for(lambda: self.snapshots, 20, "the first snapshot")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.person.email}: no {what} within {timeout} s; "
                        f"snapshots {self.snapshots[-5:]}, connections {self.connections[-3:]}"
                    )
                self.changed.wait(min(remaining, 0.5))

    # -- what it saw --------------------------------------------------------------------------
    @property
    def showing(self) -> int | None:
        """The reminder id the tab shows now (None for no banner)."""
        with self.changed:
            return self.snapshots[-1][2] if self.snapshots else None

    def wait_showing(self, reminder_id: int | None, timeout: float = 20) -> None:
        self.wait_for(
            lambda: self.snapshots and self.snapshots[-1][2] == reminder_id,
            timeout,
            f"area showing reminder {reminder_id}",
        )

    def reminder_ids_seen(self) -> set[int]:
        with self.changed:
            return {reminder for _, _, reminder in self.snapshots if reminder is not None}

    def open_connection(self) -> Connection | None:
        with self.changed:
            if (
                self.connections
                and self.connections[-1].ended_at is None
                and self.connections[-1].client_port
            ):
                return self.connections[-1]
            return None

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        with httpx.Client(cookies=self.person.http.cookies, timeout=httpx.Timeout(10, read=6)) as http:
            while not self._stop.is_set():
                url = self.urls[attempt % len(self.urls)]
                attempt += 1
                connection = Connection(url=url, sent_last_event_id=self.last_event_id)
                headers = {"Accept": "text/event-stream"}
                if self.last_event_id is not None:
                    headers["Last-Event-ID"] = self.last_event_id
                try:
                    with http.stream("GET", url + "/events", headers=headers) as response:
                        stream = response.extensions.get("network_stream")
                        connection.client_port = stream.get_extra_info("client_addr")[1] if stream else None
                        connection.status = response.status_code
                        with self.changed:
                            self.connections.append(connection)
                            self.changed.notify_all()
                        if response.status_code == 200:
                            self._read(response, len(self.connections) - 1, connection)
                except httpx.HTTPError as error:
                    connection.error = repr(error)
                    with self.changed:
                        if connection not in self.connections:
                            self.connections.append(connection)
                with self.changed:
                    connection.ended_at = time.monotonic()
                    self.changed.notify_all()
                self._stop.wait(self.reconnect_delay)

    def _read(self, response: httpx.Response, index: int, connection: Connection) -> None:
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in response.iter_lines():
            if self._stop.is_set():
                return
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                elif name == "retry" and value.isdigit():
                    connection.retry_hints.append(int(value))
                else:
                    fields[name] = value
                continue
            if "id" in fields or data:
                self._record(index, connection, fields, "\n".join(data))
            fields, data = {}, []

    def _record(self, index: int, connection: Connection, fields: dict, data: str) -> None:
        with self.changed:
            if "id" in fields:
                self.last_event_id = fields["id"]
                # A snapshot's own id; the named events that follow it (weighin:changed,
                # weighin:admins) carry the same one.
                if fields.get("event", "") == "":
                    connection.event_ids.append(int(fields["id"]))
            if fields.get("event", "") == "" and REMINDER_STATE.search(data):
                match = REMINDER_ID.search(data)
                self.snapshots.append(
                    (index, int(fields.get("id", -1)), int(match.group(1)) if match else None)
                )
            self.changed.notify_all()


# -- which worker holds a connection ----------------------------------------------------------


def _socket_inode(server_port: int, client_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local_port = int(parts[1].rsplit(":", 1)[1], 16)
            remote_port = int(parts[2].rsplit(":", 1)[1], 16)
            if local_port == server_port and remote_port == client_port and parts[9] != "0":
                return parts[9]
    return None


def socket_owner(server_port: int, client_port: int, pids: list[int], timeout: float = 5.0) -> int | None:
    """The worker (among pids) that accepted the connection from client_port, read from /proc."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inode = _socket_inode(server_port, client_port)
        if inode is not None:
            target = f"socket:[{inode}]"
            for pid in pids:
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return pid
                    except OSError:
                        continue
        time.sleep(0.02)
    return None


def stream_worker(watcher: StreamWatcher, server_port: int, pids: list[int]) -> int:
    connection = watcher.wait_for(watcher.open_connection, 20, "open stream")
    owner = socket_owner(server_port, connection.client_port, pids)
    assert owner is not None, "cannot tell which worker holds the stream"
    return owner


def post_on_other_worker(
    person: Person, server_port: int, pids: list[int], avoid: int, path: str, page: str = "/dashboard"
) -> tuple[int, int]:
    """POST a form on a connection that a worker other than `avoid` accepted: (status, that worker)."""
    base = f"http://127.0.0.1:{server_port}"
    token = csrf_token(person.http.get(base + page).text)
    body = urlencode({"csrf_token": token}).encode()
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", server_port), timeout=10)
        owner = socket_owner(server_port, sock.getsockname()[1], pids, timeout=3)
        if owner is None or owner == avoid:
            sock.close()
            continue
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server_port}\r\nCookie: {person.cookie_header()}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
            f"Referer: {base}{page}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        with sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        return int(reply.split(b" ", 2)[1]), owner
    raise AssertionError("every connection landed on the stream's own worker")


# -- the database, seen from the test ---------------------------------------------------------


class Database:
    """Direct reads of the test's PostgreSQL database, to compare what was made with what arrived."""

    def __init__(self, url: str):
        self.url = url.replace("postgresql+psycopg://", "postgresql://")

    def query(self, sql: str, params=()) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def user_id(self, email: str) -> int:
        return self.query("SELECT id FROM users WHERE email = %s", (email,))[0][0]

    def reminders(self, user_ids) -> list[tuple[int, int, str]]:
        """(id, user_id, status) of every reminder of these users, oldest first."""
        return self.query(
            "SELECT id, user_id, status FROM reminders WHERE user_id = ANY(%s) ORDER BY id", (list(user_ids),)
        )

    def open_reminder(self, user_id: int) -> int | None:
        rows = self.query("SELECT id FROM reminders WHERE user_id = %s AND status = 'open'", (user_id,))
        assert len(rows) <= 1, f"user {user_id} has {len(rows)} open reminders"
        return rows[0][0] if rows else None


def scan_later(env: dict, days: int = 30, check: bool = True):
    """`flask reminders scan --now` far enough ahead that every user is due."""
    now = (utcnow() + timedelta(days=days)).isoformat()
    return flask_cli(["reminders", "scan", "--now", now], env, check=check)


def assert_delivery(watchers: list[StreamWatcher], db: Database, require_all: bool = True) -> dict:
    """Every reminder each user got reached their stream, and no stream saw anyone else's.

    require_all=False only checks the second half, for a reminder ended before it could show.
    """
    totals = {"made": 0, "arrived": 0}
    for watcher in watchers:
        user_id = watcher.person.id
        made = {rid for rid, _, _ in db.reminders([user_id])}
        seen = watcher.reminder_ids_seen()
        if seen:
            owners = dict(db.query("SELECT id, user_id FROM reminders WHERE id = ANY(%s)", (list(seen),)))
            strangers = {rid: owner for rid, owner in owners.items() if owner != user_id}
            assert not strangers, (
                f"{watcher.person.email} (user {user_id}) was shown others' reminders {strangers}"
            )
        missing = made - seen if require_all else set()
        assert not missing, f"{watcher.person.email}: reminders {sorted(missing)} never reached the stream"
        assert seen <= made, f"{watcher.person.email}: saw unknown reminders {sorted(seen - made)}"
        totals["made"] += len(made)
        totals["arrived"] += len(seen)
        for connection in watcher.connections:
            ids = connection.event_ids
            assert ids == sorted(set(ids)), f"event ids repeated or out of order on one connection: {ids}"
    return totals


# -- the guide's own configuration blocks ------------------------------------------------------


def guide_block(language: str, first_line: str) -> str:
    """The fenced `language` block of docs/DEPLOY.md whose first line is `first_line` (a file's path),
    so the deploy tests run the guide's text rather than a copy that could drift from it."""
    guide = (ROOT / "docs" / "DEPLOY.md").read_text()
    blocks = re.findall(rf"^```{language}\n(.*?)^```", guide, flags=re.M | re.S)
    [block] = [block for block in blocks if block.startswith(first_line + "\n")]
    return block


def start_pgbouncer(folder: Path, database_url: str) -> tuple[subprocess.Popen, str]:
    """Debian's pgbouncer with the guide's pgbouncer.ini, in front of the test's database.

    Only the line the guide marks for change (the database) is replaced, and what a private
    instance needs: a free port, its own socket folder, user list, log and pid file.
    """
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        unavailable("pgbouncer is not installed (apt-get install pgbouncer)")
    parts = urlsplit(database_url.replace("postgresql+psycopg://", "postgresql://"))
    port = free_port()
    ini = guide_block("ini", "; /etc/pgbouncer/pgbouncer.ini")
    database = f"weighin = host={parts.hostname} port={parts.port or 5432} dbname={parts.path.lstrip('/')}"
    ini, changed = re.subn(r"^(; CHANGE the next line[^\n]*\n)[^\n]*$", rf"\g<1>{database}", ini, flags=re.M)
    assert changed == 1, "the guide's pgbouncer.ini marks one line to change"
    for key, value in {
        "listen_port": port,
        "unix_socket_dir": folder,
        "auth_file": folder / "userlist.txt",
    }.items():
        ini, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", ini, flags=re.M)
        assert count == 1, f"the guide's pgbouncer.ini sets {key} once"
    ini += f"logfile = {folder / 'pgbouncer.log'}\npidfile = {folder / 'pgbouncer.pid'}\n"
    (folder / "pgbouncer.ini").write_text(ini)
    password = secrets.token_hex(8)
    (folder / "userlist.txt").write_text(f'"{parts.username}" "{password}"\n')
    command = [binary, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root; -u drops to an ordinary user
        folder.chmod(0o777)
        (folder / "userlist.txt").chmod(0o644)
        command[1:1] = ["-u", "postgres"]
    proc = subprocess.Popen(command, start_new_session=True)
    wait_for_port(port, proc=proc)
    return proc, f"postgresql+psycopg://{parts.username}:{password}@127.0.0.1:{port}/weighin"
