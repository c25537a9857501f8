"""webapp.testing's wait_for_port, which every server the tests and benchmarks start goes through."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from webapp.testing import free_port, wait_for_port

_LISTEN = (
    "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)"
)


def test_a_strangers_listener_on_the_port_is_not_taken_for_the_servers():
    """The port was taken between free_port() and the server's bind: the server exits ("address
    already in use"), and waiting must say so instead of handing the caller the stranger."""
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-c", _LISTEN.format(port=port)], stderr=subprocess.DEVNULL
        )
        try:
            with pytest.raises(RuntimeError, match="exited with 1 before listening"):
                wait_for_port(port, timeout=30, proc=server)
        finally:
            server.kill()
            server.wait()


def test_waiting_ends_once_the_server_or_its_child_listens():
    port = free_port()
    # The listener in a child of the process waited on, as gunicorn's workers or nginx's master.
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {_LISTEN.format(port=port)!r}])"
    server = subprocess.Popen([sys.executable, "-c", parent])
    try:
        wait_for_port(port, timeout=30, proc=server)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        subprocess.run(["pkill", "-P", str(server.pid)], check=False)
        server.kill()
        server.wait()
