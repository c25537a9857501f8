"""Hosts and forwarded headers (issue 11): TRUSTED_HOSTS, and PROXY_FIX believing only the
X-Forwarded-For and X-Forwarded-Proto of the trusted proxy."""

from __future__ import annotations

import re

from .support import build_app

PASSWORD = "correct horse"


def test_a_foreign_host_header_is_refused_when_trusted_hosts_is_set(tmp_path):
    app = build_app(tmp_path, TRUSTED_HOSTS=["weighin.example.com"])
    client = app.test_client()
    refused = client.get("/admin", headers={"Host": "evil.example"})
    assert refused.status_code == 400
    assert "evil.example" not in refused.headers.get("Location", "")
    answered = client.get("/account/login", headers={"Host": "weighin.example.com"})
    assert answered.status_code == 200


def test_x_forwarded_host_is_not_believed_so_a_foreign_referer_fails_the_csrf_check(tmp_path):
    app = build_app(tmp_path, WTF_CSRF_ENABLED=True, PROXY_FIX=1)
    client = app.test_client()
    https = {"X-Forwarded-Proto": "https"}
    page = client.get("/account/login", headers=https).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    forged = {**https, "X-Forwarded-Host": "evil.example", "Referer": "https://evil.example/"}
    response = client.post(
        "/account/login",
        data={"csrf_token": token, "email": "ada@example.com", "password": PASSWORD},
        headers=forged,
    )
    assert response.status_code == 400


def _failed_logins(client, peer: str, forwarded_for) -> list[int]:
    statuses = []
    for number in range(21):
        response = client.post(
            "/account/login",
            data={"email": f"nobody{number}@example.com", "password": "wrong horse!"},
            headers={"X-Forwarded-For": forwarded_for(number)},
            environ_base={"REMOTE_ADDR": peer},
        )
        statuses.append(response.status_code)
    return statuses


def test_x_forwarded_for_from_a_peer_that_is_not_the_proxy_does_not_pick_the_address(tmp_path):
    app = build_app(tmp_path, PROXY_FIX=1)
    # Someone who reaches gunicorn directly cannot spread their guesses over made-up addresses:
    # the 21st failure from their real address is refused by the per-address limit.
    statuses = _failed_logins(app.test_client(), "203.0.113.9", lambda n: f"198.51.100.{n}")
    assert statuses[:20] == [422] * 20 and statuses[20] == 429


def test_x_forwarded_for_from_the_proxy_is_the_clients_address(tmp_path):
    app = build_app(tmp_path, PROXY_FIX=1)
    statuses = _failed_logins(app.test_client(), "127.0.0.1", lambda n: f"198.51.100.{n}")
    assert statuses == [422] * 21
