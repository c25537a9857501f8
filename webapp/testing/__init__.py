"""Helpers the tests and the benchmarks share: free ports, process groups, logins without the
login page, and a real SMTP server. The app never imports this package; tests/support.py and
bench/common.py do, so neither depends on the other.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from ..accounts.sessions import start_session
from ..extensions import db
from ..models import User


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Return once something listens on the port (with `proc`, once `proc` or one of its children
    does); raise if `proc` exits first or time runs out.

    A free port can be taken between free_port() and the server's bind (say, by another test's
    server): that server's listener must not pass for this one's, whose process then exits with
    "address already in use" while the caller talks to a stranger."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if proc is None or _listens_in_tree(port, proc.pid):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


def _listens_in_tree(port: int, pid: int) -> bool:
    """Whether the process `pid` or a descendant holds a listening TCP socket on the port (Linux's
    /proc; True where there is no /proc to ask)."""
    listeners = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            return True
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                listeners.add(f"socket:[{fields[9]}]")
    tree = {pid}
    parents = {child: parent for child, (parent, _) in process_table().items()}
    while True:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        if not more:
            break
        tree |= more
    for member in tree:
        try:
            fds = list(Path(f"/proc/{member}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in listeners:
                    return True
            except OSError:
                continue
    return False


def process_table() -> dict[int, tuple[int, str]]:
    """Each process's (parent id, state letter: "Z" for a zombie), from /proc/<pid>/stat."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; the fields after it are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def stop_process_group(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM a subprocess started with start_new_session=True and its children; SIGKILL after grace."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def login_session_id(app: Flask, user_id: int) -> str:
    """What Flask-Login keeps in the cookies for a new login of this user (its row is committed)."""
    with app.app_context():
        session_id = start_session(db.session.get_one(User, user_id))
        db.session.commit()
        db.session.remove()
        return session_id


def session_cookie(
    app: Flask, user_id: int, *, user_agent: str | None = None, remote_addr: str = "127.0.0.1"
) -> str:
    """A session cookie value for a new login of this user (its row committed), signed with the app's key.

    With user_agent, it also carries the client's identifier, as a browser's does once it logged in
    from that address with that User-Agent: without it Flask-Login's session protection marks the
    session not fresh on every request, which rewrites the cookie (a benchmark's fixed cookie
    would pay that on every request; a browser only once).
    """
    interface = app.session_interface
    assert isinstance(interface, SecureCookieSessionInterface), "the app keeps Flask's signed-cookie sessions"
    serializer = interface.get_signing_serializer(app)
    assert serializer is not None, "the app has a SECRET_KEY"
    session = {"_user_id": login_session_id(app, user_id), "_fresh": True}
    if user_agent is not None:
        from ..extensions import login_manager

        headers = {"User-Agent": user_agent}
        with app.test_request_context(headers=headers, environ_base={"REMOTE_ADDR": remote_addr}):
            session["_id"] = login_manager._session_identifier_generator()
    return serializer.dumps(session)


class SmtpServer:
    """A real SMTP server (aiosmtpd, smtp_sink.py beside this file) on a free port; read what it received."""

    def __init__(self, folder: Path, port: int | None = None, auth: str = "", die_after: int = 0):
        self.port = port or free_port()
        self.folder = folder
        self.auth = auth
        self.die_after = die_after
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        credentials = f"{self.auth}@" if self.auth else ""
        return f"smtp://{credentials}127.0.0.1:{self.port}"

    def start(self) -> SmtpServer:
        command = [sys.executable, str(Path(__file__).with_name("smtp_sink.py")), "--port", str(self.port)]
        command += ["--folder", str(self.folder)] + (["--auth", self.auth] if self.auth else [])
        command += ["--die-after", str(self.die_after)] if self.die_after else []
        with open(self.folder.parent / f"smtp-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for_port(self.port, proc=self.proc)
        return self

    def kill(self) -> None:
        """Stop at once, as a crashed server does."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_process_group(self.proc, grace=5)

    def messages(self) -> list:
        """Every message received so far, oldest first, parsed by the standard email package."""
        from email import policy
        from email.parser import BytesParser

        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(path.read_bytes()) for path in sorted(self.folder.glob("*.eml"))]

    def wait_for_messages(self, count: int, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages()
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(
            f"the SMTP server got {len(self.messages())} message(s), not {count}, in {timeout} s"
        )
