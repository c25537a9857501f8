"""Control characters in any text that would reach the database (issue 11), on PostgreSQL,
which refuses NUL in text: each gets a clear message and stores nothing, never a 500."""

from __future__ import annotations

import html

import pytest

from webapp.extensions import db
from webapp.models import User, WeightEntry

from .support import FAST_HASH, add_user, build_app, log_in_client

PASSWORD = "correct horse"
EMAIL_MESSAGE = "Remove the control characters from the email address."


@pytest.fixture
def pg_app(tmp_path, postgres_url):
    app = build_app(
        tmp_path,
        SQLALCHEMY_DATABASE_URI=postgres_url,
        PASSWORD_HASH_METHOD=FAST_HASH,
    )
    with app.app_context():
        admin_id = add_user("ada@example.com", admin=True, password=PASSWORD).id
    app.config["ADMIN_ID"] = admin_id
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def admin(pg_app):
    client = pg_app.test_client()
    log_in_client(client, pg_app, pg_app.config["ADMIN_ID"])
    return client


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _users(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count(User.id)))


@pytest.mark.parametrize("bad", ["ada\x00@example.com", "ada@exa\x01mple.com", "ada@example.com\x7f"])
@pytest.mark.parametrize("path", ["/account/login", "/account/signup", "/account/forgot"])
def test_an_email_with_control_characters_gets_a_message(pg_app, path, bad):
    response = pg_app.test_client().post(path, data={"email": bad, "password": PASSWORD})
    assert response.status_code == 422, response.status_code
    assert EMAIL_MESSAGE in _text(response)
    assert _users(pg_app) == 1


def test_a_display_name_with_nul_gets_a_message(pg_app, admin):
    response = admin.post(
        "/account/settings", data={"display_name": "Ada\x00", "unit": "kg", "timezone": "UTC", "locale": ""}
    )
    assert response.status_code == 422
    assert "Use letters, digits, spaces and punctuation only." in _text(response)


def test_a_time_zone_with_nul_gets_a_message(pg_app, admin):
    response = admin.post("/account/settings", data={"display_name": "", "unit": "kg", "timezone": "UTC\x00"})
    assert response.status_code == 422
    assert "Choose a time zone from the list" in _text(response)


def test_a_new_email_with_nul_gets_a_message(pg_app, admin):
    response = admin.post("/account/email", data={"email": "new\x00@example.com", "password": PASSWORD})
    assert response.status_code == 422
    assert EMAIL_MESSAGE in _text(response)


def test_a_note_with_nul_gets_a_message_and_stores_nothing(pg_app, admin):
    response = admin.post(
        "/entries", data={"weight": "70", "measured_at": "2024-01-02T08:00", "note": "after\x00run"}
    )
    assert response.status_code == 422
    assert "Remove the control characters from the note." in _text(response)
    with pg_app.app_context():
        assert db.session.scalar(db.select(db.func.count(WeightEntry.id))) == 0


def test_a_note_keeps_its_line_breaks(pg_app, admin):
    response = admin.post(
        "/entries", data={"weight": "70", "measured_at": "2024-01-02T08:00", "note": "after\r\na run\tuphill"}
    )
    assert response.status_code in (200, 302, 303)
    with pg_app.app_context():
        assert db.session.scalar(db.select(WeightEntry.note)) == "after\r\na run\tuphill"


def test_grant_admin_with_a_control_character_gets_a_message(pg_app, admin):
    response = admin.post("/admin/admins", data={"email": "bob\x00@example.com"}, follow_redirects=True)
    assert response.status_code == 200
    assert EMAIL_MESSAGE in _text(response)
    response = admin.post(
        "/admin/admins", data={"email": "bob\x00@example.com"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize("path", ["/admin/", "/admin/export.csv"])
def test_the_admin_search_with_a_control_character_is_left_out_with_a_notice(pg_app, admin, path):
    response = admin.get(path, query_string={"q": "ada\x00"})
    assert response.status_code == 200
    if path == "/admin/":
        assert "The email search had control characters, so it was left out." in _text(response)
