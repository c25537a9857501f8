"""Password reset: the same answer for every address, a signed one-hour single-use link that a
real SMTP server receives, the new password logging the user in, and every bad link refused."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from webapp.config import mail_settings
from webapp.extensions import db
from webapp.mail.queue import send_due
from webapp.mail.tokens import PASSWORD_RESET, UNSUBSCRIBE, make_token
from webapp.models import QueuedMail, User

from .support import TEST_SECRET, add_user, build_app

PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple 42"
SENT = "If an account uses that address, we have sent it a link to set a new password."


@pytest.fixture
def reset_app(tmp_path):
    app = build_app(tmp_path, "reset")
    with app.app_context():
        add_user("ada@example.com", password=PASSWORD, display_name="Ada")
        db.session.remove()
    return app


def _queued(app) -> list[QueuedMail]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(QueuedMail).order_by(QueuedMail.id)))
        db.session.expunge_all()
        return rows


def _link(text: str) -> str:
    url = re.search(r"http://127\.0\.0\.1:5000(/account/reset/\S+)", text).group(1)
    return url


def _ask(client, email: str):
    """Ask for a link, and close the answer as a server does once it is sent (the message is
    queued then)."""
    response = client.post("/account/forgot", data={"email": email})
    response.close()
    return response


def test_login_page_offers_the_reset(reset_app):
    page = reset_app.test_client().get("/account/login").text
    assert '<a href="/account/forgot">Forgot your password?</a>' in page
    form = reset_app.test_client().get("/account/forgot").text
    assert 'name="email"' in form and "Send me a link" in form


def test_same_answer_whether_or_not_the_address_has_an_account(reset_app):
    client = reset_app.test_client()
    known = _ask(client, "Ada@Example.com ")
    unknown = _ask(client, "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert SENT in known.text and known.text == unknown.text
    (row,) = _queued(reset_app)
    assert (row.kind, row.to_address, row.subject) == (
        "reset",
        "ada@example.com",
        "Set a new Weigh-in password",
    )


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "Enter your email address."),
        ("not-an-email", "Enter a valid email address, such as ada@example.com."),
        ("ada@", "Enter a valid email address, such as ada@example.com."),
        ("ada@@example.com", "Enter a valid email address, such as ada@example.com."),
        ("ada@exa\x00mple.com", "Remove the control characters from the email address."),
        ("a" * 250 + "@example.com", "An email address has at most 254 characters."),
    ],
)
def test_malformed_addresses_get_a_message_and_send_nothing(reset_app, email, message):
    response = _ask(reset_app.test_client(), email)
    assert response.status_code == 422
    assert message in re.sub(r"&#39;|&amp;", "", response.text) and SENT not in response.text
    assert _queued(reset_app) == []


def test_requests_are_limited_per_address_and_per_client(reset_app):
    client = reset_app.test_client()
    for _ in range(5):
        assert SENT in _ask(client, "ada@example.com").text
    assert len(_queued(reset_app)) == 3  # per account: three an hour, the rest answered alike
    for n in range(10):
        assert SENT in _ask(client, f"other{n}@example.com").text
    # The client has used its ten: even a fresh account's address queues nothing now.
    with reset_app.app_context():
        add_user("bob@example.com", password=PASSWORD)
    assert SENT in _ask(client, "bob@example.com").text
    assert {row.to_address for row in _queued(reset_app)} == {"ada@example.com"}


def test_the_link_sets_a_new_password_once_and_logs_in(reset_app):
    client = reset_app.test_client()
    _ask(client, "ada@example.com")
    (row,) = _queued(reset_app)
    link = _link(row.body_text)
    assert link in row.body_html
    page = client.get(link)
    assert page.status_code == 200 and "For ada@example.com." in page.text
    too_short = client.post(link, data={"password": "short"})
    assert too_short.status_code == 422 and "Use at least 8 characters." in too_short.text
    done = client.post(link, data={"password": NEW_PASSWORD})
    assert done.status_code == 302 and done.headers["Location"] == "/dashboard"
    assert "Your new password is set, and you are logged in." in client.get("/dashboard").text
    # Used: the link stops working, with a clear page.
    again = client.get(link)
    assert again.status_code == 400 and "not valid, or it has been used already" in again.text
    assert client.post(link, data={"password": "another one 123"}).status_code == 400
    other = reset_app.test_client()
    refused = other.post("/account/login", data={"email": "ada@example.com", "password": PASSWORD})
    assert refused.status_code == 422
    accepted = other.post("/account/login", data={"email": "ada@example.com", "password": NEW_PASSWORD})
    assert accepted.status_code == 302


def test_a_reset_ends_every_other_session_of_the_user(reset_app):
    elsewhere = reset_app.test_client()
    login = elsewhere.post(
        "/account/login", data={"email": "ada@example.com", "password": PASSWORD, "remember": "y"}
    )
    assert login.status_code == 302 and elsewhere.get("/dashboard").status_code == 200
    client = reset_app.test_client()
    _ask(client, "ada@example.com")
    assert (
        client.post(_link(_queued(reset_app)[0].body_text), data={"password": NEW_PASSWORD}).status_code
        == 302
    )
    assert client.get("/dashboard").status_code == 200  # the browser that reset it is logged in
    # The other browser's session and remember-me cookie stopped working at once.
    response = elsewhere.get("/dashboard")
    assert response.status_code == 302 and response.headers["Location"].startswith("/account/login")


def test_a_password_changed_another_way_retires_the_link(reset_app):
    client = reset_app.test_client()
    _ask(client, "ada@example.com")
    link = _link(_queued(reset_app)[0].body_text)
    with reset_app.app_context():
        user = db.session.scalar(sa.select(User))
        user.set_password(PASSWORD)  # the same password, freshly hashed
        db.session.commit()
    assert client.get(link).status_code == 400


class _TwoHoursAgo(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 7200


def _bad_links(app) -> dict[str, str]:
    from webapp.accounts.reset import _password_digest, make_reset_token

    with app.app_context():
        user = db.session.scalars(sa.select(User)).one()

        good = make_reset_token(user)
        payload = {"u": user.id, "p": _password_digest(user)}
        old = URLSafeTimedSerializer(TEST_SECRET, salt=PASSWORD_RESET, signer=_TwoHoursAgo).dumps(payload)
        other_user = make_token(PASSWORD_RESET, {"u": user.id + 1, "p": payload["p"]}, timed=True)
        return {
            "expired": old,
            "tampered": good[:-2] + ("xx" if not good.endswith("xx") else "yy"),
            "another user's payload under this signature": other_user.split(".")[0] + good[good.index(".") :],
            "wrong key": URLSafeTimedSerializer("another-secret-0123456789abc", salt=PASSWORD_RESET).dumps(
                payload
            ),
            "unsubscribe token": make_token(UNSUBSCRIBE, user.id),
            "untimed": make_token(PASSWORD_RESET, payload),
            "not a dict": make_token(PASSWORD_RESET, user.id, timed=True),
            "deleted user": make_token(PASSWORD_RESET, {"u": 999, "p": payload["p"]}, timed=True),
            "garbage": "garbage",
            "unicode": "비밀",
            "long": "x" * 3000,
        }


@pytest.mark.parametrize("method", ["get", "post"])
def test_bad_links_are_refused_clearly_and_change_nothing(reset_app, method):
    client = reset_app.test_client()
    for name, token in _bad_links(reset_app).items():
        response = getattr(client, method)(f"/account/reset/{token}", data={"password": NEW_PASSWORD})
        assert response.status_code == 400, name
        expected = "This link has expired" if name == "expired" else "This link is not valid"
        assert expected in response.text, name
    login = client.post("/account/login", data={"email": "ada@example.com", "password": PASSWORD})
    assert login.status_code == 302


def test_the_reset_message_arrives_through_a_real_smtp_server(tmp_path, smtp_server):
    app = build_app(tmp_path, "reset-smtp", **mail_settings({"MAIL_URL": smtp_server.url}, tmp_path))
    with app.app_context():
        add_user("ada@example.com", password=PASSWORD, display_name="Ada")
    client = app.test_client()
    _ask(client, "ada@example.com")
    with app.app_context():
        assert len(send_due().sent) == 1
        db.session.remove()
        db.engine.dispose()
    (message,) = smtp_server.wait_for_messages(1)
    assert message["Subject"] == "Set a new Weigh-in password" and message["Message-ID"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Hello Ada" in text and "60 minutes and only once" in text
    link = _link(text)
    assert link in html and "<img" not in html
    assert urlsplit(link).path.startswith("/account/reset/")
    assert client.post(link, data={"password": NEW_PASSWORD}).status_code == 302


# -- authorization: the mail-link routes need no login, and a login changes nothing -------------

LINK_ROUTES = [
    ("get", "/account/forgot", 200),
    ("post", "/account/forgot", 422),  # no address given
    ("get", "/account/reset/not-a-token", 400),
    ("post", "/account/reset/not-a-token", 400),
    ("get", "/reminders/unsubscribe/not-a-token", 400),
    ("post", "/reminders/unsubscribe/not-a-token", 400),
]


@pytest.mark.parametrize("role", ["anonymous", "user", "admin"])
@pytest.mark.parametrize(("method", "url", "status"), LINK_ROUTES)
def test_mail_link_routes_answer_everyone_alike(reset_app, role, method, url, status):
    client = reset_app.test_client()
    if role != "anonymous":
        with reset_app.app_context():
            user = db.session.scalars(sa.select(User)).one()
            user.is_admin = role == "admin"
            db.session.commit()
        client.post("/account/login", data={"email": "ada@example.com", "password": PASSWORD})
    response = getattr(client, method)(url)
    assert response.status_code == status
    assert "Traceback" not in response.text
