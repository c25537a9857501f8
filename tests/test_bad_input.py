"""Bad input that slipped through (issue 11): each gets one clear answer, never a traceback."""

from __future__ import annotations

import html

import pytest

from webapp.extensions import db
from webapp.models import User

from .support import flask_cli, server_env

PASSWORD = "correct horse"


def _signup(client, email):
    return client.post("/account/signup", data={"email": email, "password": PASSWORD})


def _users(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count(User.id)))


@pytest.mark.parametrize(
    "email, message",
    [
        ("a" * 65 + "@example.com", "The part before the @ has at most 64 characters."),
        ("\u0430dmin@example.com", "Use the letters of one alphabet in each part of the address."),
        ("admin@ex\u0430mple.com", "Use the letters of one alphabet in each part of the address."),
    ],
)
def test_sign_up_refuses_long_local_parts_and_mixed_script_look_alikes(client, app, email, message):
    response = _signup(client, email)
    assert response.status_code == 422
    assert message in html.unescape(response.get_data(as_text=True))
    assert _users(app) == 0


def test_sign_up_keeps_a_64_character_local_part_and_one_alphabet(client, app):
    assert _signup(client, "a" * 64 + "@example.com").status_code == 302
    client.post("/account/logout")
    assert _signup(client, "\u0430\u0434\u043c\u0438\u043d@example.com").status_code == 302  # all Cyrillic


def test_ids_in_paths_are_ascii_digits_only(client, auth):
    auth.register()
    auth.make_admin()
    assert client.post("/admin/users/\u0663/remind").status_code == 404
    assert client.get("/entries/\u0661/edit").status_code == 404


def test_localtime_is_not_a_time_zone(client, auth):
    auth.register()
    for name in ("localtime", "Factory"):
        response = client.post("/account/settings", data={"display_name": "", "unit": "kg", "timezone": name})
        assert response.status_code == 422, name


@pytest.mark.parametrize("now", ["0001-01-01", "9999-12-31T23:59:59-05:00", "9999-12-31"])
def test_reminders_scan_with_an_absurd_now_is_one_clear_line(tmp_path, now):
    env = server_env(tmp_path)
    result = flask_cli(["reminders", "scan", "--now", now], env, check=False)
    assert result.returncode != 0
    assert "Invalid value for '--now'" in result.stderr and "Traceback" not in result.stderr


def test_create_admin_with_invalid_utf8_on_stdin_is_one_clear_line(tmp_path):
    import subprocess
    import sys

    from .support import ROOT

    env = server_env(tmp_path)
    flask_cli(["db", "upgrade"], env)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "wsgi",
            "create-admin",
            "ada@example.com",
            "--password-stdin",
        ],
        input=b"\xff\xfe not utf-8 at all\n",
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert b"not valid UTF-8" in result.stderr and b"Traceback" not in result.stderr
