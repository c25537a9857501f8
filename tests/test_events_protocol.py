"""GET /events on the real gevent server (a subprocess), read with a third-party SSE client (httpx-sse)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
from httpx_sse import connect_sse
from simple_websocket import Client as WebSocket

from webapp.events.outbox import announce_to_user_and_admins
from webapp.extensions import db
from webapp.models import User
from webapp.reminders import lifecycle

from .support import Seeder, ServerProcess, csrf_token, flask_cli, server_env

GENEROUS = 5.0  # seconds: a bound for "at once" that a busy two-core machine still meets


class Reader(threading.Thread):
    """Reads one stream's events in the background, until told to stop."""

    def __init__(self, client: httpx.Client, **headers):
        super().__init__(daemon=True)
        self.client, self.headers = client, headers
        self.events: list = []
        self.connected = threading.Event()
        self.stopping = False

    def run(self) -> None:
        try:
            with connect_sse(self.client, "GET", "/events", headers=self.headers) as source:
                self.connected.set()
                for event in source.iter_sse():
                    self.events.append(event)
                    if self.stopping:
                        return
        except httpx.HTTPError:
            pass  # the client closed under us at the end of a test

    def wait_for(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events if predicate(e)]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no matching event within {timeout} s; got {self.events!r}")

    def wait_for_count(self, predicate, count: int, timeout: float = 10.0) -> list:
        """Wait until `count` events match; returns them all."""
        deadline = time.monotonic() + timeout
        while len(found := [e for e in self.events if predicate(e)]) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(found)} of {count} events within {timeout} s; got {self.events!r}"
                )
            time.sleep(0.05)
        return found

    def stop(self) -> None:
        self.stopping = True
        self.client.close()


def test_headers_first_chunk_and_retry(server, seeder):
    user_id = seeder.user("ada@example.com")
    with seeder.client(user_id) as client:
        started = time.monotonic()
        with client.stream("GET", "/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            lines = response.iter_lines()
            assert next(lines) == "retry: 2000"
            assert time.monotonic() - started < GENEROUS
            assert next(lines) == ""
            assert next(lines) == ": connected"


def test_heartbeats_at_the_configured_interval(server, seeder):
    user_id = seeder.user("ada@example.com")
    with seeder.client(user_id) as client, client.stream("GET", "/events") as response:
        heartbeats, started = [], time.monotonic()
        for line in response.iter_lines():
            if line == ":":
                heartbeats.append(time.monotonic() - started)
                if len(heartbeats) == 3:
                    break
    # SSE_HEARTBEAT=1: three comments well inside a generous bound, and not all at once.
    assert heartbeats[-1] < 3 * GENEROUS
    assert heartbeats[-1] - heartbeats[0] >= 1.0


def is_area(event) -> bool:
    """An unnamed event: the reminder area (named ones carry only an id, as weighin:changed)."""
    return event.event == "message" and bool(event.data)


def test_events_carry_increasing_ids_and_the_whole_area(server, seeder):
    user_id = seeder.user("ada@example.com")
    with seeder.client(user_id) as client:
        token = csrf_token(client)
        reader = Reader(seeder.client(user_id))
        reader.start()
        try:
            first = reader.wait_for(is_area)
            assert 'data-reminder-state="none"' in first.data and first.id == "0"
            seeder.scan(days_ahead=8)
            opened = reader.wait_for(lambda e: "Dismiss" in e.data)
            response = client.post("/reminders/dismiss", headers={"HX-Request": "true", "X-CSRFToken": token})
            assert response.status_code == 200
            dismissed = reader.wait_for(
                lambda e: is_area(e) and int(e.id) > int(opened.id) and "Dismiss" not in e.data
            )
            seeder.scan(days_ahead=16)
            reopened = reader.wait_for(lambda e: int(e.id or 0) > int(dismissed.id) and "Dismiss" in e.data)
        finally:
            reader.stop()
    ids = [int(e.id) for e in reader.events if is_area(e)]
    assert ids == sorted(set(ids)) and ids[-1] == int(reopened.id)
    assert all(e.id for e in reader.events if e.data)  # every event has an id


MALFORMED = ["abc", "-1", "9" * 50, "", "x" * 4000, "١٢".encode(), "0x1f", "1e3"]


@pytest.fixture(scope="module")
def reminded(tmp_path_factory):
    """One server for the Last-Event-ID tables, with one user whose reminder is open: (server, cookie)."""
    folder = tmp_path_factory.mktemp("last-event-id")
    env = server_env(folder, SSE_HEARTBEAT=1)
    flask_cli(["db", "upgrade"], env)
    server = ServerProcess(env, folder / "server.log").start()
    seeder = Seeder(server)
    try:
        user_id = seeder.user("ada@example.com", days_ago=8)
        seeder.scan()
        yield server, seeder.cookie(user_id)
    finally:
        seeder.close()
        server.stop()


@pytest.mark.parametrize("last_event_id", [*MALFORMED, "0", "123456789"])
def test_any_last_event_id_gets_the_current_snapshot_at_once(reminded, last_event_id):
    server, cookie = reminded
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        client.cookies.set("session", cookie, domain="127.0.0.1")
        started = time.monotonic()
        with connect_sse(client, "GET", "/events", headers={"Last-Event-ID": last_event_id}) as source:
            assert source.response.status_code == 200
            for event in source.iter_sse():
                if event.data:
                    break
    assert "Dismiss" in event.data and int(event.id) > 0
    assert time.monotonic() - started < GENEROUS


@pytest.mark.parametrize("raw_value", [b"5\n6", b"5\r\n 6", b"\x00\xff", b"9" * 20000])
def test_a_last_event_id_that_no_client_library_would_send(reminded, raw_value):
    server, cookie = reminded
    request = (
        b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: session="
        + cookie.encode()
        + b"\r\nLast-Event-ID: "
        + raw_value
        + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=GENEROUS) as sock:
        sock.sendall(request)
        received = b""
        while b"Dismiss" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 ")


def test_an_anonymous_request_gets_no_stream(server):
    plain = httpx.get(server.url + "/events", timeout=GENEROUS)
    assert plain.status_code == 204 and plain.content == b""
    # htmx's reconnects send HX-Request: they get a short stream that closes itself.
    htmx = httpx.get(server.url + "/events", headers={"HX-Request": "true"}, timeout=GENEROUS)
    assert htmx.status_code == 200 and htmx.headers["content-type"].startswith("text/event-stream")
    assert htmx.text.endswith("event: weighin:signed-out\ndata: \n\n")
    assert "You have been logged out" in htmx.text


def test_user_b_never_receives_user_a_events(server, seeder):
    ada = seeder.user("ada@example.com", days_ago=8)
    bob = seeder.user("bob@example.com")
    readers = {user_id: Reader(seeder.client(user_id)) for user_id in (ada, bob)}
    for reader in readers.values():
        reader.start()
    try:
        for reader in readers.values():
            reader.wait_for(lambda e: e.data)
        assert "opened reminder" in seeder.scan()
        readers[ada].wait_for(lambda e: "Dismiss" in e.data)
        time.sleep(1.5)  # the outbox listener reads every second: give a stray event time to arrive
    finally:
        for reader in readers.values():
            reader.stop()
    bob_events = [e for e in readers[bob].events if e.data]
    assert len(bob_events) == 1 and "Dismiss" not in bob_events[0].data


# -- commits in the opposite order of their outbox ids (issue 10, item 1) -----------------------


@pytest.fixture
def pg_server(make_server, postgres_url):
    """The embedded server on a PostgreSQL database, where two transactions can race."""
    return make_server("pg-server", DATABASE_URL=postgres_url, SSE_HEARTBEAT=1, SSE_MAX_LIFETIME=600)


@pytest.fixture
def pg_seeder(pg_server, make_seeder):
    return make_seeder(pg_server)


@contextmanager
def dismiss_held_open(app, user_id: int):
    """A Dismiss that flushes its rows (and, before the fix, takes its outbox ids) and commits only
    when the block ends, as when it waited on a lock held by a Remind now that committed first."""
    with app.app_context():
        lifecycle.dismiss(db.session.get_one(User, user_id))
        db.session.flush()
        yield
        db.session.commit()


def remind_again_on_another_connection(app, user_id: int) -> None:
    """Remind now on an open reminder, in a second session and connection: news on both channels."""
    with app.app_context():
        announce_to_user_and_admins(user_id, "reminder")
        db.session.commit()


def _area_state(html: str) -> str:
    return re.search(r'data-reminder-state="(\w+)"', html).group(1)


def _is_admins(event) -> bool:
    return event.event == "weighin:admins"


def test_every_transport_converges_whatever_order_two_changes_commit_in(pg_server, pg_seeder):
    seeder = pg_seeder
    ada = seeder.user("ada@example.com")
    admin = seeder.user("admin@example.com", admin=True)
    with seeder.app.app_context():
        lifecycle.open_reminder(ada)
        db.session.commit()
    stream, admin_stream = Reader(seeder.client(ada)), Reader(seeder.client(admin))
    stream.start()
    admin_stream.start()
    poller = seeder.client(ada)
    ws = WebSocket.connect(
        f"ws://127.0.0.1:{pg_server.port}/events/ws", headers={"Cookie": f"session={seeder.cookie(ada)}"}
    )
    try:
        first = stream.wait_for(is_area)
        assert _area_state(first.data) == "open"
        assert json.loads(ws.receive(timeout=GENEROUS))["html"].count('data-reminder-state="open"') == 1
        admin_stream.wait_for(_is_admins)

        with dismiss_held_open(seeder.app, ada):
            remind_again_on_another_connection(seeder.app, ada)
            # Everyone sees the Remind now, while the Dismiss is not committed yet.
            stale = stream.wait_for(lambda e: is_area(e) and e.id != first.id)
            assert _area_state(stale.data) == "open"
            stale_admin_id = admin_stream.wait_for_count(_is_admins, 2)[-1].id
            assert _area_state(json.loads(ws.receive(timeout=GENEROUS))["html"]) == "open"
            polled = poller.get("/events/area")
            assert _area_state(polled.text) == "open"
            stale_poll_id = polled.headers["X-Event-Id"]

        # The Dismiss committed last: every client ends up showing no banner.
        assert (
            _area_state(stream.wait_for(lambda e: is_area(e) and _area_state(e.data) == "none").data)
            == "none"
        )
        admin_stream.wait_for_count(_is_admins, 3)
        frame = ws.receive(timeout=GENEROUS)
        assert frame is not None and _area_state(json.loads(frame)["html"]) == "none"
        polled = poller.get("/events/area", params={"after": stale_poll_id})
        assert polled.status_code == 200 and _area_state(polled.text) == "none"
        started = time.monotonic()
        waited = poller.get("/events/wait", params={"after": stale_poll_id})
        assert waited.status_code == 200 and _area_state(waited.text) == "none"
        assert time.monotonic() - started < GENEROUS

        # A tab that lost its stream right after the stale banner resumes from its id, and an
        # admin's tab likewise: both are brought up to date at once.
        resumed = Reader(seeder.client(ada), **{"Last-Event-ID": stale.id})
        resumed_admin = Reader(seeder.client(admin), **{"Last-Event-ID": stale_admin_id})
        resumed.start()
        resumed_admin.start()
        try:
            assert _area_state(resumed.wait_for(is_area, timeout=GENEROUS).data) == "none"
            resumed_admin.wait_for(_is_admins, timeout=GENEROUS)
        finally:
            resumed.stop()
            resumed_admin.stop()
    finally:
        ws.close()
        poller.close()
        stream.stop()
        admin_stream.stop()
