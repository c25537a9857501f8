"""Sessions the server can revoke (issue 11): a login row per browser, a version per user.

Each test replays cookies the way someone who copied them would: a second client that was
handed the first one's cookie values.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from webapp.accounts.sessions import revoke_all
from webapp.extensions import db
from webapp.models import LoginSession, User
from webapp.timeutil import utcnow

from .support import build_app

PASSWORD = "correct horse"


def copy_of(app, client, *names: str):
    """A new client holding the values of these cookies, as a thief with a copy would."""
    thief = app.test_client()
    for name in names:
        cookie = client.get_cookie(name)
        assert cookie is not None, f"no {name} cookie to copy"
        thief.set_cookie(name, cookie.value)
    return thief


def log_in(client, remember: bool = False):
    data = {"email": "ada@example.com", "password": PASSWORD}
    if remember:
        data["remember"] = "y"
    response = client.post("/account/login", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


@pytest.fixture
def ada(app):
    app.test_client().post("/account/signup", data={"email": "ada@example.com", "password": PASSWORD})
    with app.app_context():
        return db.session.scalar(db.select(User.id).where(User.email == "ada@example.com"))


def logged_in(client) -> bool:
    return client.get("/dashboard").status_code == 200


def test_a_copied_session_cookie_stops_working_after_logout(app, ada):
    client = app.test_client()
    log_in(client)
    thief = copy_of(app, client, "session")
    assert logged_in(thief)
    client.post("/account/logout")
    assert not logged_in(thief)


def test_a_copied_remember_cookie_stops_working_after_logout(app, ada):
    client = app.test_client()
    log_in(client, remember=True)
    thief = copy_of(app, client, "remember_token")
    client.post("/account/logout")
    assert not logged_in(thief)


def test_logging_out_one_browser_keeps_the_others(app, ada):
    laptop, phone = app.test_client(), app.test_client()
    log_in(laptop)
    log_in(phone, remember=True)
    laptop.post("/account/logout")
    assert not logged_in(laptop)
    assert logged_in(phone)


def test_every_login_gets_its_own_remember_token(app, ada):
    first, second = app.test_client(), app.test_client()
    log_in(first, remember=True)
    log_in(second, remember=True)
    assert first.get_cookie("remember_token").value != second.get_cookie("remember_token").value


def test_revoke_all_ends_every_session_and_remember_cookie_at_once(app, ada):
    laptop, phone = app.test_client(), app.test_client()
    log_in(laptop)
    log_in(phone, remember=True)
    remembered = copy_of(app, phone, "remember_token")
    with app.app_context():
        revoke_all(db.session.get(User, ada))
        db.session.commit()
    assert not logged_in(laptop)
    assert not logged_in(phone)
    assert not logged_in(remembered)
    # A fresh login works again, at the new version.
    log_in(laptop)
    assert logged_in(laptop)


def test_a_session_from_before_the_version_changed_is_refused_even_with_its_row(app, ada):
    """The version alone is enough: an old cookie whose login row somehow survives still fails."""
    client = app.test_client()
    log_in(client)
    with app.app_context():
        db.session.execute(db.update(User).values(session_version=User.session_version + 1))
        db.session.commit()
        assert db.session.scalar(db.select(db.func.count()).select_from(LoginSession)) >= 1
    assert not logged_in(client)


def test_the_server_refuses_a_remember_cookie_older_than_its_duration(app, ada):
    client = app.test_client()
    log_in(client, remember=True)
    remembered = copy_of(app, client, "remember_token")
    assert logged_in(remembered)
    remembered = copy_of(app, client, "remember_token")  # no session cookie, only the remember one
    lifetime = app.config["REMEMBER_COOKIE_DURATION"]
    with app.app_context():
        long_ago = utcnow() - lifetime - timedelta(minutes=1)
        db.session.execute(db.update(LoginSession).values(created_at=long_ago))
        db.session.commit()
    assert not logged_in(remembered)
    assert not logged_in(client)


def test_the_remember_cookie_expires_after_the_configured_days(tmp_path):

    app = build_app(tmp_path, "remember", REMEMBER_COOKIE_DURATION=timedelta(days=3))
    client = app.test_client()
    client.post("/account/signup", data={"email": "ada@example.com", "password": PASSWORD})
    client.post("/account/logout")
    response = log_in(client, remember=True)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("remember_token="))
    assert "Max-Age=259200" in cookie or re.search(r"Expires=", cookie)
    with app.app_context():
        db.engine.dispose()


def test_a_cookie_naming_only_a_user_id_is_refused(app, ada):
    """The format of the cookies before session versions: it must not log anyone in."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(ada)
        session["_fresh"] = True
    assert not logged_in(client)


@pytest.mark.parametrize(
    "value", ["", "1", "1:1", "1:1:", "x:1:abc", "1:x:abc", "٣:1:abc", "1:1:" + "a" * 500, "99999999999:1:a"]
)
def test_a_malformed_session_id_is_simply_logged_out(app, ada, value):
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = value
    assert client.get("/dashboard").status_code == 302


def test_the_csrf_token_from_before_login_is_refused_after_it(csrf_app):
    client = csrf_app.test_client()

    def token(page: str) -> str:
        return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)

    signup_token = token(client.get("/account/signup").get_data(as_text=True))
    client.post(
        "/account/signup", data={"csrf_token": signup_token, "email": "ada@example.com", "password": PASSWORD}
    )
    assert logged_in(client)
    # The token an attacker could have planted or read before the login is no good now.
    response = client.post("/account/logout", data={"csrf_token": signup_token})
    assert response.status_code == 400
    fresh = token(client.get("/account/settings").get_data(as_text=True))
    assert fresh != signup_token
    assert client.post("/account/logout", data={"csrf_token": fresh}).status_code == 302
    # And the one from the logged-in pages is no good after logging out.
    login_page = client.get("/account/login").get_data(as_text=True)
    assert token(login_page) != fresh
    response = client.post(
        "/account/login", data={"csrf_token": fresh, "email": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 400


def test_a_deleted_accounts_cookie_does_not_log_in_the_next_account_given_its_id(app, ada):
    from webapp.accounts.deletion import delete_account

    client = app.test_client()
    log_in(client, remember=True)
    thief = copy_of(app, client, "session", "remember_token")
    with app.app_context():
        delete_account(db.session.get_one(User, ada))
    app.test_client().post("/account/signup", data={"email": "bob@example.com", "password": PASSWORD})
    with app.app_context():
        bob = db.session.scalar(db.select(User.id).where(User.email == "bob@example.com"))
    assert bob == ada  # SQLite hands the freed id out again
    assert not logged_in(thief)
