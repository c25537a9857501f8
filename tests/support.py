"""Helpers for tests that need real processes: free ports, a server subprocess, required services."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STRICT = os.environ.get("WEIGHIN_REQUIRE_SERVICES", "").strip() in {"1", "true", "yes"}
TEST_SECRET = "test-secret-key-0123456789abcdef"
FAST_HASH = "pbkdf2:sha256:1000"


def unavailable(reason: str):
    """Skip with a clear reason, or fail when CI requires every service (WEIGHIN_REQUIRE_SERVICES=1)."""
    if STRICT:
        pytest.fail(f"required for CI but unavailable: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


def flask_cli(args: list[str], env: dict, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `flask --app wsgi ARGS` in a subprocess with the given environment."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT, env=env, input=input, capture_output=True, text=True, timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


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
                [sys.executable, "wsgi.py"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def server_env(tmp_path: Path, **overrides) -> dict:
    """An environment for a server subprocess on its own SQLite file and free port."""
    env = {
        k: v for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "BROKER_URL", "SECRET_KEY", "FLASK_APP"}
    }
    env.update({
        "DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
        "BROKER_URL": "memory://",
        "SECRET_KEY": TEST_SECRET,
        "PORT": str(free_port()),
        "HOST": "127.0.0.1",
        "REMINDER_SCAN_INTERVAL": "0",
        "PYTHONUNBUFFERED": "1",
    })
    env.update({k: str(v) for k, v in overrides.items()})
    return env
