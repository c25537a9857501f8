"""Log out everywhere, a password change and deleting the account end the user's other open
streams with the signed-out notice, on a real server (through events/logins.py)."""

from __future__ import annotations

import pytest

from .support import RawStream, Seeder, csrf_token

PASSWORD = "correct horse"  # add_user's default

ACTIONS = {
    "log out everywhere": ("/account/logout-everywhere", {}),
    "change password": (
        "/account/password",
        {"current_password": PASSWORD, "password": "battery staple", "confirm": "battery staple"},
    ),
    "delete the account": ("/account/delete", {"password": PASSWORD}),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_the_other_browsers_streams_end_signed_out(make_server, action):
    import httpx

    server = make_server(SSE_HEARTBEAT=60, SSE_MAX_LIFETIME=600)
    seeder = Seeder(server)
    streams: list[RawStream] = []
    try:
        ada = seeder.user("ada@example.com", days_ago=8)
        here, elsewhere = seeder.cookie(ada), seeder.cookie(ada)  # two browsers, two logins
        other_browser = RawStream(server.port, elsewhere).connected()
        streams = [other_browser]
        path, data = ACTIONS[action]
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            browser.cookies.set("session", here, domain="127.0.0.1")
            token = csrf_token(browser)
            response = browser.post(path, data=data, headers={"X-CSRFToken": token})
            assert response.status_code == 302, response.text[:500]
        other_browser.ended()
        assert "event: weighin:signed-out" in other_browser.text
        assert "You have been logged out" in other_browser.text
    finally:
        for stream in streams:
            stream.close()
        seeder.close()
