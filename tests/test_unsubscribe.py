"""The reminder email as it arrives (a real SMTP server, parsed with the standard email package),
and its one-click unsubscribe: RFC 8058's POST without a session or CSRF token, the GET's
confirmation button, and every bad token answered with a clear page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeSerializer

from webapp.config import mail_settings
from webapp.extensions import db
from webapp.mail.queue import send_due
from webapp.mail.tokens import PASSWORD_RESET, UNSUBSCRIBE, make_token
from webapp.models import User
from webapp.reminders import lifecycle
from webapp.reminders.escalation import escalate

from .support import add_user, build_app

OPENED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PUBLIC = "https://weighin.example.com"


@pytest.fixture
def mail_app(tmp_path, smtp_server):
    """The app as it runs for real (CSRF on), sending to a real SMTP server."""
    app = build_app(
        tmp_path,
        "unsub",
        WTF_CSRF_ENABLED=True,
        PUBLIC_URL=PUBLIC,
        **mail_settings({"MAIL_URL": smtp_server.url}, tmp_path),
    )
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def _user(email="ada@example.com", **fields) -> int:
    return add_user(
        email, at=OPENED - timedelta(days=7), **{"display_name": "Ada", "unit": "lb", **fields}
    ).id


def _emailed(smtp_server, user_id: int):
    lifecycle.scan(OPENED)
    assert len(escalate(OPENED + timedelta(days=1))) == 1
    assert len(send_due(OPENED + timedelta(days=1)).sent) == 1
    (message,) = smtp_server.wait_for_messages(1)
    return message


def _path(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    return parts.path


def _email_reminders(user_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(User, user_id).email_reminders


def test_the_reminder_email_as_it_arrives(mail_app, smtp_server):
    user_id = _user()
    message = _emailed(smtp_server, user_id)
    assert message["To"] == "ada@example.com" and message["Subject"] == "Time to log your weight"
    assert message["Message-ID"].startswith("<") and message["Date"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.fullmatch(r"<(.+)>", message["List-Unsubscribe"].strip()).group(1)
    assert _path(unsubscribe).startswith("/reminders/unsubscribe/")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Hello Ada" in part and "8 days since you signed up" in part
        assert f"{PUBLIC}/dashboard#weight" in part and unsubscribe in part
        assert f"{PUBLIC}/account/settings" in part
    assert "Log my weight in lb" in html
    # No tracking pixels, no remote images, nothing but links back to the site.
    assert "<img" not in html.lower() and "src=" not in html.lower()
    assert {urlsplit(url).netloc for url in re.findall(r'href="([^"]+)"', html)} == {"weighin.example.com"}


def test_one_click_post_unsubscribes_without_a_session_or_csrf_token(mail_app, smtp_server):
    user_id = _user()
    unsubscribe = re.fullmatch(r"<(.+)>", _emailed(smtp_server, user_id)["List-Unsubscribe"].strip()).group(1)
    # As a mail program sends it (RFC 8058 section 3.1): no cookie, no token, this body.
    response = mail_app.test_client().post(
        _path(unsubscribe),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "ada@example.com gets no more reminder emails" in response.text
    assert _email_reminders(user_id) is False
    # Used again (the link never expires), it still answers, and changes nothing.
    assert mail_app.test_client().post(_path(unsubscribe)).status_code == 200


def test_the_link_opened_in_a_browser_asks_first(mail_app):
    user_id = _user()
    path = f"/reminders/unsubscribe/{make_token(UNSUBSCRIBE, user_id)}"
    client = mail_app.test_client()
    page = client.get(path)
    assert page.status_code == 200 and "Stop sending reminder emails to ada@example.com?" in page.text
    assert re.search(rf'<form method="post" action="{re.escape(path)}">', page.text)
    assert _email_reminders(user_id) is True  # a link scanner's GET changes nothing
    assert "gets no more reminder emails" in client.post(path).text
    assert _email_reminders(user_id) is False
    assert "gets no more reminder emails" in client.get(path).text


def test_unsubscribing_drops_a_queued_reminder_email(mail_app, smtp_server):
    user_id = _user()
    lifecycle.scan(OPENED)
    assert len(escalate(OPENED + timedelta(days=1))) == 1
    mail_app.test_client().post(f"/reminders/unsubscribe/{make_token(UNSUBSCRIBE, user_id)}")
    assert send_due(OPENED + timedelta(days=1)).sent == []
    assert smtp_server.messages() == []


def _bad_tokens(app, user_id: int) -> dict[str, str]:
    good = make_token(UNSUBSCRIBE, user_id)
    return {
        "tampered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "another user's id under this signature": make_token(UNSUBSCRIBE, user_id + 1).split(".")[0]
        + "."
        + good.split(".")[1],
        "wrong key": URLSafeSerializer("another-secret-key-0123456789", salt=UNSUBSCRIBE).dumps(user_id),
        "another purpose": make_token(PASSWORD_RESET, user_id),
        "not a user id": make_token(UNSUBSCRIBE, "ada@example.com"),
        "a deleted user": make_token(UNSUBSCRIBE, user_id + 1000),
        "garbage": "not-a-token",
        "empty payload": ".",
        "very long": "x" * 3000,
        "unicode": "토큰",
    }


@pytest.mark.parametrize("method", ["get", "post"])
def test_bad_unsubscribe_links_get_a_clear_page_and_change_nothing(mail_app, method):
    user_id = _user()
    client = mail_app.test_client()
    for name, token in _bad_tokens(mail_app, user_id).items():
        response = getattr(client, method)(f"/reminders/unsubscribe/{token}")
        assert response.status_code == 400, name
        assert "This unsubscribe link is not valid" in response.text, name
        assert "Traceback" not in response.text
    assert _email_reminders(user_id) is True
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1
