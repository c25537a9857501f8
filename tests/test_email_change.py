"""Change email: a link to the new address (signed, one hour, once), a notice to the old one."""

from __future__ import annotations

import re
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.support import TEST_SECRET
from webapp.extensions import db
from webapp.mail.tokens import EMAIL_CHANGE
from webapp.models import QueuedMail, User

PASSWORD = "correct horse"
ADA = "ada@example.com"
NEW = "ada.new@example.com"
BOB = "bob@example.com"


def mails(app) -> list[QueuedMail]:
    with app.app_context():
        rows = list(db.session.scalars(db.select(QueuedMail).order_by(QueuedMail.id)))
        db.session.expunge_all()
        return rows


def email_of(app, user_id: int) -> str:
    with app.app_context():
        return db.session.get(User, user_id).email


def confirm_path(app) -> str:
    [confirm] = [m for m in mails(app) if m.kind == "email_change"]
    return re.search(r"https?://[^/\s]+(/account/email/confirm/\S+)", confirm.body_text).group(1)


@pytest.fixture
def ada(app, client, auth):
    auth.register(BOB)
    auth.logout()
    auth.register(ADA)
    with app.app_context():
        return db.session.scalar(db.select(User.id).where(User.email == ADA))


def test_the_link_goes_to_the_new_address_and_a_notice_to_the_old(app, client, ada):
    assert "/account/email" in client.get("/account/settings").get_data(as_text=True)
    response = client.post("/account/email", data={"email": " Ada.New@Example.com ", "password": PASSWORD})
    assert response.status_code == 302
    confirm, notice = mails(app)
    assert (confirm.kind, confirm.to_address) == ("email_change", NEW)
    assert (notice.kind, notice.to_address) == ("email_notice", ADA)
    assert NEW in notice.body_text and "/account/email/confirm/" not in notice.body_text
    assert email_of(app, ada) == ADA  # nothing changes until the link is opened


def test_opening_the_link_asks_then_changes_once(app, client, ada):
    client.post("/account/email", data={"email": NEW, "password": PASSWORD})
    path = confirm_path(app)
    page = client.get(path)
    assert page.status_code == 200 and NEW in page.get_data(as_text=True)
    assert email_of(app, ada) == ADA  # a mail scanner's GET changes nothing
    assert client.post(path).status_code == 302
    assert email_of(app, ada) == NEW
    again = client.get(path)
    assert again.status_code == 400 and "used already" in again.get_data(as_text=True)
    assert client.post(path).status_code == 400
    # The new address logs in; the old one no longer does.
    client.post("/account/logout")
    assert client.post("/account/login", data={"email": NEW, "password": PASSWORD}).status_code == 302


def test_the_link_works_without_being_logged_in(app, client, ada):
    client.post("/account/email", data={"email": NEW, "password": PASSWORD})
    path = confirm_path(app)
    client.post("/account/logout")
    response = client.post(path)
    assert response.status_code == 302 and response.location == "/account/login"
    assert email_of(app, ada) == NEW


@pytest.mark.parametrize(
    "data, message",
    [
        ({"email": NEW, "password": "wrong password"}, "That password is not right."),
        ({"email": NEW, "password": ""}, "Enter your password to change your email address."),
        ({"email": "", "password": PASSWORD}, "Enter your new email address."),
        ({"email": "not-an-address", "password": PASSWORD}, "Enter a valid email address"),
        ({"email": " ADA@example.com", "password": PASSWORD}, "That is already your email address."),
        ({"email": BOB, "password": PASSWORD}, "Another account already uses this email address."),
        ({"email": "a" * 250 + "@example.com", "password": PASSWORD}, "at most 254 characters"),
    ],
)
def test_bad_requests_get_a_message_and_send_nothing(app, client, ada, data, message):
    response = client.post("/account/email", data=data)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert mails(app) == []


def _token(payload, age_seconds: int = 0) -> str:
    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    return URLSafeTimedSerializer(TEST_SECRET, salt=EMAIL_CHANGE, signer=Signer).dumps(payload)


def test_an_expired_link_says_so(app, client, ada):
    token = _token({"u": ada, "from": ADA, "to": NEW}, age_seconds=3601)
    response = client.get(f"/account/email/confirm/{token}")
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)
    assert email_of(app, ada) == ADA


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        _token({"u": 1, "from": ADA, "to": NEW})[:-3] + "xyz",  # tampered signature
        URLSafeTimedSerializer(TEST_SECRET, salt="weighin.password-reset").dumps(
            {"u": 1, "from": ADA, "to": NEW}
        ),
        URLSafeTimedSerializer("another-secret-key-0123456789", salt=EMAIL_CHANGE).dumps(
            {"u": 1, "from": ADA, "to": NEW}
        ),
        _token({"u": "1", "from": ADA, "to": NEW}),
        _token(["not", "a", "dict"]),
    ],
)
def test_forged_or_foreign_links_are_refused(app, client, ada, token):
    for method in ("get", "post"):
        response = getattr(client, method)(f"/account/email/confirm/{token}")
        assert response.status_code == 400 and "not valid" in response.get_data(as_text=True)
    assert email_of(app, ada) == ADA


def test_an_address_taken_meanwhile_is_refused_at_confirmation(app, client, auth, ada):
    client.post("/account/email", data={"email": NEW, "password": PASSWORD})
    path = confirm_path(app)
    client.post("/account/logout")
    auth.register(NEW)
    response = client.post(path)
    assert response.status_code == 422
    assert "Another account already uses this email address." in response.get_data(as_text=True)
    assert email_of(app, ada) == ADA


def test_anonymous_cannot_ask_for_a_change(client):
    for method in ("get", "post"):
        response = getattr(client, method)("/account/email", data={"email": NEW, "password": PASSWORD})
        assert response.status_code == 302 and "/account/login" in response.location
