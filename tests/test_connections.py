"""Connection limits on real servers over real sockets: clients that stop reading, idle and slow
clients, HEAD on streaming routes (webapp/connections.py).

The bounds asserted are generous ceilings (heartbeats plus a wide margin for a loaded machine),
never how fast anything happens.
"""

from __future__ import annotations

import socket
import sys
import time

import pytest

from .support import GunicornProcess, Seeder, csrf_token, flask_cli, server_env

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads TCP_INFO, which is Linux's")

MARGIN = 15.0  # seconds on top of every bound, for a busy two-core machine
TCP_ESTABLISHED = 1


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of our end (1 = established), read without touching the data."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def wait_until_closed(sock: socket.socket, within: float) -> float | None:
    """Seconds until the peer ended the connection (FIN or reset), or None if it did not in time."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if tcp_state(sock) != TCP_ESTABLISHED:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def raw_connection(port: int, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer is not None:
        # Before connecting, so the window the client offers stays this small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def request_bytes(method: str, path: str, cookie: str | None = None, extra: str = "") -> bytes:
    cookie_line = f"Cookie: session={cookie}\r\n" if cookie else ""
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie_line}{extra}\r\n".encode()


def read_head(reader) -> tuple[str, dict[str, str]]:
    """One response's status line and headers from a buffered socket reader."""
    status = reader.readline().decode("latin-1").strip()
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


@pytest.fixture(params=["embedded", "gunicorn"])
def any_server(request, make_server, tmp_path):
    """A server of each kind the app ships with, as a factory taking environment overrides."""
    started = []

    def start(**overrides):
        if request.param == "embedded":
            return make_server(**overrides)
        folder = tmp_path / "gunicorn"
        folder.mkdir(exist_ok=True)
        env = server_env(folder, **overrides)
        flask_cli(["db", "upgrade"], env)
        server = GunicornProcess(env, folder / "gunicorn.log", workers=1).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def stalled_stream(server, seeder: Seeder, user_id: int) -> socket.socket:
    """A logged-in /events stream on a socket with a 4 KB receive buffer that is never read."""
    sock = raw_connection(server.port, receive_buffer=4096)
    sock.sendall(request_bytes("GET", "/events", seeder.cookie(user_id), "Accept: text/event-stream\r\n"))
    return sock


def flood(seeder: Seeder, admin_id: int, user_id: int, sock: socket.socket, posts: int = 400) -> None:
    """Show the user's open banner again and again (about 1 KB per event) until the stream ends."""
    with seeder.client(admin_id) as admin:
        token = csrf_token(admin)
        for _ in range(posts):
            response = admin.post(
                f"/admin/users/{user_id}/remind", headers={"X-CSRFToken": token, "HX-Request": "true"}
            )
            assert response.status_code == 200, response.text
            if tcp_state(sock) != TCP_ESTABLISHED:
                return


def reminded_user(seeder: Seeder) -> tuple[int, int]:
    """(admin id, id of a user whose reminder is open)."""
    admin_id = seeder.user("admin@example.com", admin=True)
    user_id = seeder.user("ada@example.com", days_ago=8)
    seeder.scan()
    return admin_id, user_id


def test_a_client_that_stops_reading_is_dropped(any_server):
    heartbeat = 1
    server = any_server(SSE_HEARTBEAT=heartbeat, SSE_MAX_LIFETIME=600, RATELIMIT_ENABLED=0)
    seeder = Seeder(server)
    try:
        admin_id, user_id = reminded_user(seeder)
        sock = stalled_stream(server, seeder, user_id)
        try:
            flood(seeder, admin_id, user_id, sock)
            # Its writes stall once the small send buffer is full; two heartbeats later it is cut.
            closed_after = wait_until_closed(sock, within=3 * heartbeat + MARGIN)
            assert closed_after is not None, "a stream whose client stopped reading was never dropped"
        finally:
            sock.close()
        # The server is none the worse for it.
        with seeder.client(user_id) as client:
            assert client.get("/healthz").status_code == 200
    finally:
        seeder.close()


def test_a_client_that_stops_reading_does_not_outlive_the_stream_lifetime(make_server):
    # Heartbeats far apart (a write may wait 120 s), a short lifetime: the lifetime wins.
    lifetime = 10
    server = make_server(SSE_HEARTBEAT=60, SSE_MAX_LIFETIME=lifetime, RATELIMIT_ENABLED=0)
    seeder = Seeder(server)
    try:
        admin_id, user_id = reminded_user(seeder)
        connected = time.monotonic()
        sock = stalled_stream(server, seeder, user_id)
        try:
            flood(seeder, admin_id, user_id, sock, posts=200)
            left = lifetime + MARGIN - (time.monotonic() - connected)
            assert wait_until_closed(sock, within=max(left, 0.0)) is not None, (
                "a stream whose client stopped reading outlived SSE_MAX_LIFETIME"
            )
        finally:
            sock.close()
    finally:
        seeder.close()


def test_idle_and_slow_clients_are_dropped_and_others_still_served(any_server):
    # gunicorn bounds a request head by its keepalive (gunicorn.conf.py: 5 s), the app the body.
    timeout = 5
    server = any_server(REQUEST_TIMEOUT=timeout)
    idle = [raw_connection(server.port) for _ in range(200)]
    # Half a request head, and a whole head whose body never comes.
    partial_head = raw_connection(server.port)
    partial_head.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    slow_body = raw_connection(server.port)
    slow_body.sendall(
        request_bytes(
            "POST",
            "/account/login",
            extra="Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n",
        )
        + b"email=a"
    )
    try:
        seeder = Seeder(server)
        try:
            with seeder.client() as client:
                assert client.get("/healthz").status_code == 200
        finally:
            seeder.close()
        for sock in [*idle, partial_head, slow_body]:
            assert wait_until_closed(sock, within=timeout + MARGIN) is not None, (
                "an idle client kept its socket"
            )
        # The embedded server answers a head that never ended with 408; gunicorn just closes.
        answered = [slow_body] if isinstance(server, GunicornProcess) else [partial_head, slow_body]
        for sock in answered:
            status, headers = read_head(sock.makefile("rb"))
            assert status.startswith("HTTP/1.1 408"), status
            if not isinstance(server, GunicornProcess):
                # gunicorn writes its own Connection header (keep-alive), yet closed it above.
                assert headers.get("connection") == "close"
    finally:
        for sock in [*idle, partial_head, slow_body]:
            sock.close()


def send_body_slowly(sock: socket.socket, path: str, chunks: int, chunk: bytes, pause: float) -> None:
    """A form POST whose body comes in `chunks` pieces, `pause` seconds apart (a slow upload)."""
    length = chunks * len(chunk)
    sock.sendall(
        request_bytes(
            "POST",
            path,
            extra=f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n",
        )
    )
    for _ in range(chunks):
        time.sleep(pause)
        sock.sendall(chunk)


def test_a_slow_but_steady_body_is_not_cut_by_the_request_timeout(any_server):
    """REQUEST_TIMEOUT bounds the silence between a body's bytes, not the whole body (DECISIONS)."""
    timeout = 2
    server = any_server(REQUEST_TIMEOUT=timeout)
    # About 40 KiB/s, never silent for long, and in all twice the timeout and more.
    chunk = b"note=" + b"x" * (16 * 1024 - 6) + b"&"
    with raw_connection(server.port) as sock:
        try:
            send_body_slowly(sock, "/account/login", chunks=12, chunk=chunk, pause=0.4)
        except OSError as error:  # the server stopped reading and reset the connection
            pytest.fail(f"the upload was cut: {error!r}")
        status, _ = read_head(sock.makefile("rb"))
    assert status.startswith("HTTP/1.1 ") and " 408" not in status, status


def test_a_trickled_body_still_gets_408(any_server):
    """A body that never stalls for the timeout but crawls (a byte at a time) is still cut."""
    timeout = 2
    server = any_server(REQUEST_TIMEOUT=timeout)
    with raw_connection(server.port) as sock:
        try:
            send_body_slowly(sock, "/account/login", chunks=40, chunk=b"x", pause=0.25)
        except OSError:
            pass  # cut while sending: what the test wants
        assert wait_until_closed(sock, within=timeout + MARGIN) is not None
        reader = sock.makefile("rb")
        status, headers = read_head(reader)
        assert status.startswith("HTTP/1.1 408"), status
        body = reader.read(int(headers["content-length"])).decode()
    assert "stopped arriving" in body and "nothing was saved" in body


def test_a_kept_alive_connection_still_serves_requests_within_the_timeout(make_server):
    server = make_server(REQUEST_TIMEOUT=5)
    with raw_connection(server.port) as sock:
        reader = sock.makefile("rb")
        for _ in range(3):
            sock.sendall(request_bytes("GET", "/healthz"))
            status, headers = read_head(reader)
            assert status.startswith("HTTP/1.1 200")
            reader.read(int(headers["content-length"]))
            time.sleep(0.5)


def test_pipelined_requests_with_heads_longer_than_the_read_buffer_are_each_answered(make_server):
    # The embedded server reads through a small buffer (connections.READ_BUFFER_BYTES): a head
    # spans several fills of it, and the next request's bytes wait in it behind the first.
    server = make_server()
    padding = "x" * 6000
    requests = [request_bytes("GET", f"/healthz?n={n}", extra=f"X-Padding: {padding}\r\n") for n in range(3)]
    with raw_connection(server.port) as sock:
        reader = sock.makefile("rb")
        sock.sendall(b"".join(requests))
        for _ in requests:
            status, headers = read_head(reader)
            assert status.startswith("HTTP/1.1 200"), status
            assert b'"ok"' in reader.read(int(headers["content-length"]))


@pytest.mark.parametrize("path", ["/events", "/admin/export.csv"])
def test_head_on_a_streaming_route_gets_headers_only_and_keeps_the_connection_in_step(make_server, path):
    server = make_server(SSE_HEARTBEAT=1)
    seeder = Seeder(server)
    try:
        admin_id = seeder.user("admin@example.com", admin=True)
        cookie = seeder.cookie(admin_id)
    finally:
        seeder.close()
    with raw_connection(server.port) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request_bytes("HEAD", path, cookie) + request_bytes("GET", "/healthz"))
        status, _ = read_head(reader)
        assert status.startswith("HTTP/1.1 200"), status
        # The very next bytes are the GET's response: no body, no chunk terminator in between.
        status, headers = read_head(reader)
        assert status.startswith("HTTP/1.1 200"), status
        assert b'"ok"' in reader.read(int(headers["content-length"]))
