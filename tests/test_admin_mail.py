"""Mail health on the admin page: queued, sent today, failing with the last error, given up, and
each listed user's reminder on its way to an email (shown on a page, emailed, waiting)."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from webapp.config import mail_settings
from webapp.extensions import db
from webapp.mail.queue import enqueue, send_due
from webapp.models import QueuedMail, Reminder, User
from webapp.reminders import lifecycle
from webapp.reminders.escalation import escalate, record_shown
from webapp.timeutil import utcnow

from .support import add_user, build_app, free_port, log_in_client

ADMIN = "boss@example.com"


@pytest.fixture
def down_app(tmp_path):
    """An app whose mail server refuses connections (nothing listens on its port)."""
    app = build_app(
        tmp_path, "down", **mail_settings({"MAIL_URL": f"smtp://127.0.0.1:{free_port()}"}, tmp_path)
    )
    with app.app_context():
        add_user(ADMIN, admin=True)
        db.session.remove()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def admin_client(down_app):
    client = down_app.test_client()
    with down_app.app_context():
        admin_id = db.session.scalar(sa.select(User.id).where(User.email == ADMIN))
    log_in_client(client, down_app, admin_id)
    return client


def _idle_user(email: str, days: int = 10) -> int:
    return add_user(email, days_ago=days).id


def _text(page: str, element_id: str) -> str:
    return re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S).group(1).strip()


def test_mail_counts_and_the_last_error(down_app, admin_client):
    with down_app.app_context():
        now = utcnow()
        for n in range(3):
            enqueue(kind="test", to=f"user{n}@example.com", subject="s", text="t", html="<p>t</p>", now=now)
        db.session.commit()
        report = send_due(now)  # refused: the first is tried, the others put back
        assert len(report.failed) == 1
        # One given up for good, one sent earlier today.
        db.session.execute(
            sa.update(QueuedMail)
            .where(QueuedMail.id == 2)
            .values(
                status="failed",
                due_at=None,
                last_error="recipient refused: 550 no such user",
                last_attempt_at=now + timedelta(seconds=1),
            )
        )
        db.session.execute(
            sa.update(QueuedMail).where(QueuedMail.id == 3).values(status="sent", due_at=None, sent_at=now)
        )
        db.session.commit()
        db.session.remove()
    page = admin_client.get("/admin/").text
    assert _text(page, "mail-queued") == "1"
    assert _text(page, "mail-sent-today") == "1"
    assert _text(page, "mail-failing") == "1"
    assert _text(page, "mail-given-up") == "1"
    assert "<code>recipient refused: 550 no such user</code>" in page
    # The live fragment carries the same section.
    assert 'id="mail-health"' in admin_client.get("/admin/live").text


def test_each_users_reminder_on_its_way_to_an_email(down_app, admin_client):
    with down_app.app_context():
        shown = _idle_user("shown@example.com")
        emailed = _idle_user("emailed@example.com")
        waiting = _idle_user("waiting@example.com")
        failing = _idle_user("failing@example.com")
        off = _idle_user("off@example.com")
        db.session.execute(sa.update(User).where(User.id == off).values(email_reminders=False))
        db.session.commit()
        opened = utcnow() - timedelta(days=3)
        lifecycle.scan(opened)
        reminders = {r.user_id: r for r in db.session.scalars(sa.select(Reminder))}
        record_shown(reminders[shown].id, now=opened + timedelta(hours=1))
        # Two are due: queue both, then mark one sent (as a working server would have).
        db.session.execute(
            sa.update(Reminder)
            .where(Reminder.user_id == waiting)
            .values(email_at=utcnow() + timedelta(days=2))
        )
        db.session.commit()
        # Yesterday at noon, inside every user's hours: the messages it queues are due now, whatever
        # the hour of the run (today's noon would lie ahead of a morning run, and send nothing).
        noon = (utcnow() - timedelta(days=1)).replace(hour=12)
        assert {item.user_id for item in escalate(noon)} == {emailed, failing}
        db.session.execute(
            sa.update(QueuedMail)
            .where(QueuedMail.user_id == emailed)
            .values(status="sent", due_at=None, sent_at=utcnow())
        )
        db.session.commit()
        assert len(send_due().failed) == 1  # the other one: the server refuses
        db.session.remove()
    page = admin_client.get("/admin/").text
    states = dict(re.findall(r'data-user-email="([^"]+)".*?data-email-state="([^"]+)"', page, re.S))
    assert states == {
        "shown@example.com": "shown",
        "emailed@example.com": "emailed",
        "waiting@example.com": "waiting",
        "failing@example.com": "sending",
        "off@example.com": "none",
    }
    assert "ConnectionRefusedError" in page
    # The CSV export says the same.
    rows = list(csv.DictReader(io.StringIO(admin_client.get("/admin/export.csv").text)))
    assert {row["email"]: row["reminder_email"] for row in rows} == states
    assert all(row["reminder_email_at"] for row in rows if row["reminder_email"] != "none")
