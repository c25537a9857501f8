"""One account cannot exhaust the server (issue 10, item 6), on real servers over real sockets:
SSE_MAX_STREAMS_PER_USER ends the account's oldest stream, long poll or WebSocket; a process
holding SSE_MAX_STREAMS_PER_PROCESS answers 503 with Retry-After. (Across hosts on Redis:
tests/faults/test_stream_caps.py.)

Every wait is a generous ceiling for a loaded machine, never a timing claim.
"""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from .support import RawStream, Seeder

WAIT = 20.0


def replaced_retry(stream: RawStream) -> int | None:
    """The retry (ms) of the stream's weighin:replaced event, None if it got none."""
    match = re.search(r"event: weighin:replaced\n(?:id: \d+\n)?retry: (\d+)\n", stream.text)
    return int(match.group(1)) if match else None


@pytest.fixture
def site(make_server):
    """An embedded server with a user whose reminder is due; yields (server, seeder, user id)."""
    servers = {}

    def start(**env):
        server = make_server(**env)
        seeder = Seeder(server)
        servers["seeder"] = seeder
        return server, seeder, seeder.user("ada@example.com", days_ago=8)

    yield start
    if "seeder" in servers:
        servers["seeder"].close()


def test_the_eleventh_stream_of_an_account_ends_its_first_and_a_reconnect_still_works(site):
    server, seeder, user_id = site()  # SSE_MAX_STREAMS_PER_USER: the default, 10
    cookie = seeder.cookie(user_id)
    streams = [RawStream(server.port, cookie).connected() for _ in range(10)]
    try:
        streams.append(RawStream(server.port, cookie).connected())
        first = streams[0].ended()
        # It is told to come back later (hx-sse and EventSource both honour this retry), so it
        # does not at once end another tab's stream.
        retry = replaced_retry(first)
        assert retry is not None and retry >= 20000, first.text
        # The other ten are live: a reminder opened now reaches each of them.
        seeder.scan()
        for stream in streams[1:]:
            stream.wait_for(lambda s: 'data-reminder-state="open"' in s.text, "banner")
        assert not any(stream.closed for stream in streams[1:])

        # The first tab reconnects as hx-sse does (Last-Event-ID, HX-Request): it gets its stream
        # (already current, so no snapshot), and the account's oldest is now the second.
        again = RawStream(server.port, cookie, last_event_id=first.last_id()).connected()
        streams.append(again)
        assert replaced_retry(streams[1].ended()) is not None
        assert not again.closed and not streams[2].closed
    finally:
        for stream in streams:
            stream.close()


def test_the_cap_counts_long_polls_and_websockets_too(site):
    from simple_websocket import Client, ConnectionClosed

    server, seeder, user_id = site(SSE_MAX_STREAMS_PER_USER=3)
    cookie = seeder.cookie(user_id)
    headers = {"Cookie": f"session={cookie}"}
    area = f"{server.url}/events/area"
    # With ?after= the socket sends nothing until there is news; the news a scan makes then shows
    # it holds its subscription. (Not the first frame: simple-websocket's client can lose a frame
    # that arrives with the handshake's answer.)
    ws = Client.connect(
        f"ws://127.0.0.1:{server.port}/events/ws?after={httpx.get(area, headers=headers).headers['X-Event-Id']}",
        headers=headers,
    )
    long_poll: dict = {}
    streams: list[RawStream] = []
    try:
        seeder.scan()
        assert ws.receive(timeout=WAIT) is not None
        newest = httpx.get(area, headers=headers).headers["X-Event-Id"]

        def wait() -> None:
            long_poll["response"] = httpx.get(
                f"{server.url}/events/wait", params={"after": newest}, headers=headers, timeout=90
            )

        poller = threading.Thread(target=wait, daemon=True)
        poller.start()
        # New streams end the account's oldest: first the WebSocket, closed as "policy: too many"...
        closed = False
        while not closed:
            assert len(streams) < 6, "the WebSocket was never ended"
            streams.append(RawStream(server.port, cookie).connected())
            try:
                ws.receive(timeout=2)
            except ConnectionClosed:
                closed = True
        assert ws.close_reason == 1008, ws.close_reason
        # ...then the long poll, which answers at once with when to ask again.
        while poller.is_alive():
            assert len(streams) < 10, "the long poll was never ended"
            streams.append(RawStream(server.port, cookie).connected())
            poller.join(timeout=2)
        response = long_poll["response"]
        assert response.status_code == 204
        assert int(response.headers["Retry-After"]) >= 20
        # Whatever the mix, the account keeps three: every older stream was ended.
        for stream in streams[:-3]:
            stream.ended()
        assert not any(stream.closed for stream in streams[-3:])
    finally:
        if ws.connected:
            ws.close()
        for stream in streams:
            stream.close()


def test_a_process_at_its_ceiling_answers_503_with_retry_after(site):
    server, seeder, user_id = site(SSE_MAX_STREAMS_PER_PROCESS=2, SSE_HEARTBEAT=1)
    other_id = seeder.user("bob@example.com")
    streams = [RawStream(server.port, seeder.cookie(uid)).connected() for uid in (user_id, other_id)]
    try:
        for path in ("/events", "/events/wait?after=0"):
            with seeder.client(user_id) as client:
                refused = client.get(path, headers={"Accept": "text/event-stream"})
            assert refused.status_code == 503, (path, refused.status_code)
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Everything else is served as usual.
        with seeder.client(user_id) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/dashboard").status_code == 200
        # Once a stream ends (noticed at its next heartbeat), there is room again.
        streams.pop(0).close()
        deadline = time.monotonic() + WAIT
        while True:
            attempt = RawStream(server.port, seeder.cookie(user_id))
            attempt.wait_for(lambda s: ": connected" in s.text or " 503 " in s.text, "an answer")
            streams.append(attempt)
            if ": connected" in attempt.text:
                break
            assert time.monotonic() < deadline, "no room after a stream ended"
            time.sleep(0.3)
    finally:
        for stream in streams:
            stream.close()
