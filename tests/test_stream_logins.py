"""No stream outlives its login (issue 10, item 5), on a real server: an admin whose flag is
removed loses the admins' channel at once, and the change that does it wakes the user's streams
wherever they are (events/logins.py). Across workers and hosts: tests/faults/test_stream_logins.py."""

from __future__ import annotations

from datetime import timedelta

from webapp.events.logins import announce_login_change
from webapp.extensions import db
from webapp.models import LoginSession, OutboxEvent, login_channel
from webapp.timeutil import utcnow

from .support import RawStream, Seeder, add_user, csrf_token

WAIT = 20.0


def remove_admin(seeder: Seeder, actor_id: int, user_id: int) -> None:
    with seeder.client(actor_id) as client:
        token = csrf_token(client)
        response = client.post(f"/admin/admins/{user_id}/remove", headers={"X-CSRFToken": token})
        assert response.status_code in (200, 303), response.text[:500]


def remind(seeder: Seeder, actor_id: int, user_id: int) -> None:
    with seeder.client(actor_id) as client:
        token = csrf_token(client)
        response = client.post(
            f"/admin/users/{user_id}/remind", headers={"X-CSRFToken": token, "HX-Request": "true"}
        )
        assert response.status_code == 200, response.text[:500]


def test_losing_admin_rights_ends_the_admins_channel_at_once(make_server):
    server = make_server(SSE_HEARTBEAT=60, SSE_MAX_LIFETIME=600)
    seeder = Seeder(server)
    streams: list[RawStream] = []
    try:
        boss = seeder.user("boss@example.com", admin=True)
        ada = seeder.user("ada@example.com", admin=True, days_ago=8)
        cookie = seeder.cookie(ada)
        stream = RawStream(server.port, cookie).connected()
        streams.append(stream)
        stream.wait_for(lambda s: "event: weighin:admins" in s.text, "the admins' event")

        remove_admin(seeder, boss, ada)
        # Long before any heartbeat or lifetime: it ends, asking to come back soon.
        stream.ended()
        assert "weighin:signed-out" not in stream.text  # still logged in, only not an admin

        # The reconnect follows Ada's own channel only: a change on both channels brings her
        # banner, and no admins' event.
        again = RawStream(server.port, cookie, last_event_id=stream.last_id()).connected()
        streams.append(again)
        remind(seeder, boss, ada)
        again.wait_for(lambda s: 'data-reminder-state="open"' in s.text, "her banner")
        assert "weighin:admins" not in again.text
        assert not again.closed
    finally:
        for stream in streams:
            stream.close()
        seeder.close()


def test_an_admin_flag_change_announces_on_the_users_login_channel(app):
    with app.app_context():
        user = add_user("ada@example.com", admin=True)
        before = db.session.scalar(db.select(db.func.count()).select_from(OutboxEvent))
        user.display_name = "Ada"  # not a login change
        db.session.commit()
        assert db.session.scalar(db.select(db.func.count()).select_from(OutboxEvent)) == before
        user.is_admin = False
        db.session.commit()
        rows = db.session.execute(db.select(OutboxEvent.channel, OutboxEvent.kind)).all()
        assert rows[before:] == [(login_channel(user.id), "login")]
        announce_login_change(user.id)
        db.session.commit()
        assert db.session.scalar(db.select(db.func.count()).select_from(OutboxEvent)) == before + 2


def test_logging_out_ends_that_logins_streams_and_no_other(make_server):
    import httpx

    server = make_server(SSE_HEARTBEAT=60, SSE_MAX_LIFETIME=600)
    seeder = Seeder(server)
    streams: list[RawStream] = []
    try:
        ada = seeder.user("ada@example.com", days_ago=8)
        here, elsewhere = seeder.cookie(ada), seeder.cookie(ada)  # two browsers, two logins
        tabs = [RawStream(server.port, here).connected() for _ in range(2)]
        other_browser = RawStream(server.port, elsewhere).connected()
        streams = [*tabs, other_browser]

        with httpx.Client(base_url=server.url, timeout=30) as browser:
            browser.cookies.set("session", here, domain="127.0.0.1")
            token = csrf_token(browser)
            response = browser.post("/account/logout", headers={"X-CSRFToken": token})
            assert response.status_code == 302, response.text[:500]

        # Both tabs of that browser show the signed-out notice and stop for good...
        for tab in tabs:
            tab.ended()
            assert "event: weighin:signed-out" in tab.text
            assert "You have been logged out" in tab.text
        # ...while the other browser's login goes on and still gets news.
        seeder.scan()
        other_browser.wait_for(lambda s: 'data-reminder-state="open"' in s.text, "the banner")
        assert not other_browser.closed
        # The logout elsewhere sent it nothing: only the banner came after its first snapshot
        # (a screen reader announces each area it is sent again).
        assert other_browser.text.count("event: weighin:changed") == 1, other_browser.text
    finally:
        for stream in streams:
            stream.close()
        seeder.close()


def test_logging_out_ends_that_logins_long_poll_and_websocket(make_server):
    import threading

    import httpx
    from simple_websocket import Client, ConnectionClosed

    server = make_server(SSE_HEARTBEAT=60)
    seeder = Seeder(server)
    try:
        ada = seeder.user("ada@example.com", days_ago=8)
        cookie = seeder.cookie(ada)
        headers = {"Cookie": f"session={cookie}"}
        area = f"{server.url}/events/area"
        # With ?after= the socket waits for news; the scan's news shows it is subscribed. (Not the
        # first frame: simple-websocket's client can lose one that comes with the handshake.)
        after = httpx.get(area, headers=headers).headers["X-Event-Id"]
        ws = Client.connect(f"ws://127.0.0.1:{server.port}/events/ws?after={after}", headers=headers)
        seeder.scan()
        assert ws.receive(timeout=WAIT) is not None, server.log()
        newest = httpx.get(area, headers=headers).headers["X-Event-Id"]
        long_poll: dict = {}

        def wait() -> None:
            long_poll["response"] = httpx.get(
                f"{server.url}/events/wait", params={"after": newest}, headers=headers, timeout=90
            )

        poller = threading.Thread(target=wait, daemon=True)
        poller.start()
        # A poll waiting on the server (a stream is subscribed once it says connected; the long
        # poll subscribes as quickly, so one connected stream after it means it waits too).
        RawStream(server.port, seeder.cookie(ada)).connected().close()

        with httpx.Client(base_url=server.url, timeout=30) as browser:
            browser.cookies.set("session", cookie, domain="127.0.0.1")
            token = csrf_token(browser)
            assert browser.post("/account/logout", headers={"X-CSRFToken": token}).status_code == 302

        poller.join(timeout=WAIT)
        assert long_poll["response"].status_code == 401
        closed = None
        try:
            while ws.receive(timeout=WAIT) is not None:
                pass
        except ConnectionClosed as error:
            closed = error
        assert closed is not None and ws.close_reason == 1008, ws.close_reason
    finally:
        seeder.close()


def test_a_stream_ends_when_its_login_grows_too_old(make_server):
    """Nothing announces a login's age (REMEMBER_COOKIE_DAYS): its stream ends by then anyway,
    and the reconnect is told it is signed out, long before the stream's own lifetime."""
    server = make_server(SSE_HEARTBEAT=60, SSE_MAX_LIFETIME=600, REMEMBER_COOKIE_DAYS=1)
    seeder = Seeder(server)
    streams: list[RawStream] = []
    try:
        ada = seeder.user("ada@example.com", days_ago=8)
        cookie = seeder.cookie(ada)
        with seeder.app.app_context():
            # Logged in a day ago, less three seconds.
            db.session.execute(
                db.update(LoginSession)
                .where(LoginSession.user_id == ada)
                .values(created_at=utcnow() - timedelta(days=1, seconds=-3))
            )
            db.session.commit()
        stream = RawStream(server.port, cookie).connected()
        streams.append(stream)
        stream.wait_for(lambda s: "data:" in s.text, "the first snapshot")
        stream.ended()
        assert "weighin:signed-out" not in stream.text  # it only ended; the reconnect says why
        again = RawStream(server.port, cookie)
        streams.append(again)
        again.ended()
        assert "event: weighin:signed-out" in again.text
    finally:
        for stream in streams:
            stream.close()
        seeder.close()
