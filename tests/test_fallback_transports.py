"""The fallback transports: polling (/events/area), long polling (/events/wait), WebSocket (/events/ws)."""

from __future__ import annotations

import json

import gevent
import httpx
import pytest

from webapp import create_app
from webapp.events.outbox import latest_event_id
from webapp.extensions import db
from webapp.models import user_channel
from webapp.reminders.lifecycle import open_reminder

from .support import FAST_HASH, TEST_SECRET, add_user, free_port, session_cookie

ANONYMOUS_ROUTES = ["/events/area", "/events/wait?after=0", "/events/area?after=abc"]
BAD_AFTER = ["abc", "-1", "1.5", "", " ", "0x10", "\uff19", "1e3", "99999999999999999999999", "\x00", "5;6"]


def _user_id(auth, email="ada@example.com") -> int:
    with auth._app.app_context():
        return auth.user(email).id


def _remind(app, user_id: int) -> int:
    """Open a reminder for the user the way the scan does; returns the newest id on their channel."""
    with app.app_context():
        assert open_reminder(user_id, source="admin") is not None
        db.session.commit()
        return latest_event_id((user_channel(user_id),))


def _newest(app, user_id: int) -> int:
    with app.app_context():
        return latest_event_id((user_channel(user_id),))


@pytest.mark.parametrize("path", ANONYMOUS_ROUTES)
def test_anonymous_requests_are_refused(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["Cache-Control"] == "no-store"
    assert b"Log in" in response.data


def test_anonymous_websocket_handshake_is_refused_before_upgrading(client):
    response = client.get(
        "/events/ws",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert response.status_code == 401


def test_wait_answers_at_once_when_the_channel_has_news(app, client, auth):
    auth.register()
    user_id = _user_id(auth)
    newest = _remind(app, user_id)

    response = client.get("/events/wait?after=0")
    assert response.status_code == 200
    assert response.headers["X-Event-Id"] == str(newest)
    assert b'id="reminder-banner"' in response.data


def test_wait_times_out_with_204_when_nothing_happens(app, client, auth):
    app.config["LONGPOLL_TIMEOUT"] = 0.2
    auth.register()
    newest = _newest(app, _user_id(auth))

    response = client.get(f"/events/wait?after={newest}")
    assert response.status_code == 204
    assert response.headers["X-Event-Id"] == str(newest)
    assert response.data == b""


def test_wait_delivers_news_that_arrives_while_it_waits(app, client, auth):
    app.config["LONGPOLL_TIMEOUT"] = 10
    auth.register()
    user_id = _user_id(auth)
    before = _newest(app, user_id)
    # The request blocks in gevent's hub; this greenlet commits the reminder meanwhile.
    later = gevent.spawn_later(0.1, _remind, app, user_id)

    response = client.get(f"/events/wait?after={before}")
    later.join()
    assert response.status_code == 200
    assert int(response.headers["X-Event-Id"]) == later.value > before
    assert b'id="reminder-banner"' in response.data


def test_wait_follows_only_the_users_own_channel(app, client, auth):
    app.config["LONGPOLL_TIMEOUT"] = 0.5
    auth.register("bob@example.com")
    bob_id = _user_id(auth, "bob@example.com")
    auth.logout()
    auth.register()
    ada_newest = _newest(app, _user_id(auth))
    later = gevent.spawn_later(0.1, _remind, app, bob_id)

    response = client.get(f"/events/wait?after={ada_newest}")
    later.join()
    assert response.status_code == 204  # Bob's reminder did not wake Ada's request
    assert client.get("/events/wait?after=0").data.strip() == b""  # nor shows in her area


@pytest.mark.parametrize("raw", BAD_AFTER)
@pytest.mark.parametrize("path", ["/events/wait", "/events/area"])
def test_bad_after_values_get_the_current_snapshot(app, client, auth, path, raw):
    auth.register()
    newest = _remind(app, _user_id(auth))

    response = client.get(path, query_string={"after": raw})
    assert response.status_code == 200
    assert response.headers["X-Event-Id"] == str(newest)
    assert b'id="reminder-banner"' in response.data


@pytest.mark.parametrize("path", ["/events/wait", "/events/area"])
def test_an_id_from_the_future_gets_the_current_snapshot(app, client, auth, path):
    auth.register()
    newest = _remind(app, _user_id(auth))

    response = client.get(path, query_string={"after": newest + 1000})
    assert response.status_code == 200
    assert response.headers["X-Event-Id"] == str(newest)


def test_polling_answers_204_until_there_is_news(app, client, auth):
    auth.register()
    user_id = _user_id(auth)
    first = client.get("/events/area")
    assert first.status_code == 200
    current = first.headers["X-Event-Id"]
    assert client.get(f"/events/area?after={current}").status_code == 204

    newest = _remind(app, user_id)
    news = client.get(f"/events/area?after={current}")
    assert news.status_code == 200
    assert news.headers["X-Event-Id"] == str(newest)
    assert b'id="reminder-banner"' in news.data


def test_plain_get_on_the_websocket_route_is_a_clear_client_error(client, auth):
    auth.register()
    assert client.get("/events/ws").status_code == 400


def _signed_in_cookie(database_url: str, tmp_path, email: str, backdate_days: int) -> tuple[str, int]:
    """Add a user to a server's database and sign a session cookie for it with the server's key."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": TEST_SECRET,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "INSTANCE_PATH": str(tmp_path / "client-instance"),
            "PASSWORD_HASH_METHOD": FAST_HASH,
        }
    )
    with app.app_context():
        user_id = add_user(email, days_ago=backdate_days).id
    cookie = session_cookie(app, user_id)
    with app.app_context():
        db.engine.dispose()
    return cookie, user_id


def test_websocket_pushes_the_snapshot_then_news(make_server, tmp_path):
    from simple_websocket import Client

    # The server's own scanner opens the reminder a second after the socket is up.
    server = make_server(REMINDER_SCAN_INTERVAL=1, REMINDER_AFTER_DAYS=1)
    cookie, user_id = _signed_in_cookie(server.env["DATABASE_URL"], tmp_path, "ws@example.com", 3)

    ws = Client.connect(f"ws://127.0.0.1:{server.port}/events/ws", headers={"Cookie": f"session={cookie}"})
    try:
        frames = []
        while not any('id="reminder-banner"' in frame["html"] for frame in frames):
            raw = ws.receive(timeout=15)
            assert raw is not None, f"no banner over the WebSocket; got {frames}\n{server.log()}"
            frames.append(json.loads(raw))
        ids = [frame["id"] for frame in frames]
        assert ids == sorted(ids)
        assert 'data-reminder-id="' in frames[-1]["html"]
    finally:
        ws.close()


def test_a_websocket_handshake_from_another_origin_is_refused(make_server, tmp_path):
    """A page on another port of the same host (same site, another origin) must not open the
    user's socket with their cookies, and what the socket carries holds no CSRF token."""
    from simple_websocket import Client

    # simple-websocket sends Host without the port, so the site's own origin is PUBLIC_URL here.
    port = free_port()
    server = make_server(PORT=port, PUBLIC_URL=f"http://127.0.0.1:{port}")
    cookie, user_id = _signed_in_cookie(server.env["DATABASE_URL"], tmp_path, "ws@example.com", 3)
    seeder_app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": TEST_SECRET,
            "SQLALCHEMY_DATABASE_URI": server.env["DATABASE_URL"],
            "INSTANCE_PATH": str(tmp_path / "remind-instance"),
        }
    )
    _remind(seeder_app, user_id)
    with seeder_app.app_context():
        db.engine.dispose()
    url = f"ws://127.0.0.1:{server.port}/events/ws"
    handshake = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Cookie": f"session={cookie}",
    }
    for origin in (f"http://127.0.0.1:{server.port + 1}", "http://evil.example", "null"):
        refused = httpx.get(f"{server.url}/events/ws", headers={**handshake, "Origin": origin}, timeout=30)
        assert refused.status_code == 403, origin
    ws = Client.connect(url, headers={"Cookie": f"session={cookie}", "Origin": server.url})
    try:
        frame = json.loads(ws.receive(timeout=15))
        assert 'id="reminder-banner"' in frame["html"]
        assert "csrf_token" not in frame["html"]
    finally:
        ws.close()


def test_no_transport_sends_a_csrf_token_but_the_page_and_dismiss_keep_theirs(client, auth, app):
    auth.register()
    _remind(app, _user_id(auth))
    for path in ("/events/area", "/events/wait?after=0"):
        page = client.get(path).get_data(as_text=True)
        assert 'id="reminder-banner"' in page and "csrf_token" not in page, path
    assert 'name="csrf_token"' in client.get("/dashboard").get_data(as_text=True)
