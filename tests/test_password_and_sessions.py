"""Change password and log out everywhere: this browser stays, every other one is logged out."""

from __future__ import annotations

import pytest

from webapp.extensions import db
from webapp.models import User

ADA = "ada@example.com"
PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple"


def logged_in(app, password=PASSWORD, remember=False):
    client = app.test_client()
    data = {"email": ADA, "password": password, **({"remember": "y"} if remember else {})}
    response = client.post("/account/login", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client


def is_logged_in(client) -> bool:
    return client.get("/dashboard").status_code == 200


def without_session_cookie(client):
    """The same browser after it was closed: only its remember-me cookie is left."""
    client.delete_cookie("session")
    return client


@pytest.fixture
def ada(client, auth):
    auth.register()
    return client


def test_changing_the_password_logs_out_every_other_browser(app, ada):
    other = logged_in(app, remember=True)
    response = ada.post(
        "/account/password",
        data={"current_password": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 302 and response.location == "/account/settings"
    assert is_logged_in(ada)  # this browser stays
    assert not is_logged_in(other)
    assert not is_logged_in(without_session_cookie(other))  # nor does its remember-me cookie work
    assert (
        app.test_client().post("/account/login", data={"email": ADA, "password": PASSWORD}).status_code == 422
    )
    assert is_logged_in(logged_in(app, NEW_PASSWORD))


@pytest.mark.parametrize(
    "data, field, message",
    [
        (
            {"current_password": "wrong one", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
            "current_password",
            "That password is not right.",
        ),
        (
            {"current_password": "", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
            "current_password",
            "Enter your current password.",
        ),
        (
            {"current_password": PASSWORD, "password": "short", "confirm": "short"},
            "password",
            "Use at least 8 characters.",
        ),
        ({"current_password": PASSWORD, "password": "", "confirm": ""}, "password", "Choose a new password."),
        (
            {"current_password": PASSWORD, "password": PASSWORD, "confirm": PASSWORD},
            "password",
            "Choose a password other than your current one.",
        ),
        (
            {"current_password": PASSWORD, "password": NEW_PASSWORD, "confirm": "battery stapel"},
            "confirm",
            "The two new passwords are not the same.",
        ),
        (
            {"current_password": PASSWORD, "password": "x" * 201, "confirm": "x" * 201},
            "password",
            "Use at most 200 characters.",
        ),
    ],
)
def test_bad_password_changes_get_a_message_and_change_nothing(app, ada, data, field, message):
    other = logged_in(app)
    response = ada.post("/account/password", data=data)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert f'id="{field}-error">{message}' in body.replace("&#39;", "'")
    with app.app_context():
        assert db.session.scalar(db.select(User)).check_password(PASSWORD)
    assert is_logged_in(other)


def test_log_out_everywhere_is_one_button(app, ada):
    page = ada.get("/account/settings").get_data(as_text=True)
    assert 'action="/account/logout-everywhere"' in page
    others = [logged_in(app), logged_in(app, remember=True)]
    response = ada.post("/account/logout-everywhere")
    assert response.status_code == 302
    assert is_logged_in(ada)
    assert not any(is_logged_in(client) for client in others)
    assert not is_logged_in(without_session_cookie(others[1]))
    assert is_logged_in(logged_in(app))  # logging in again works as before


@pytest.mark.parametrize(
    "method, path",
    [("get", "/account/password"), ("post", "/account/password"), ("post", "/account/logout-everywhere")],
)
def test_anonymous_is_sent_to_login(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 302 and "/account/login" in response.location
