"""Delete my account: the password, what goes, what the audit keeps, and the last admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from webapp.accounts.deletion import delete_account
from webapp.admin.actions import remind_now
from webapp.extensions import db
from webapp.mail.queue import enqueue
from webapp.models import (
    AdminAction,
    GoalChange,
    OutboxEvent,
    PendingImport,
    QueuedMail,
    Reminder,
    User,
    WeightEntry,
    login_channel,
    user_channel,
)
from webapp.timeutil import utcnow

PASSWORD = "correct horse"
ADA = "ada@example.com"
BOB = "bob@example.com"


def user(email=ADA) -> User | None:
    return db.session.scalar(db.select(User).where(User.email == email))


def count(model, **where) -> int:
    query = db.select(sa.func.count()).select_from(model)
    for name, value in where.items():
        query = query.where(getattr(model, name) == value)
    return db.session.scalar(query)


def seed(app, email=ADA):
    """A history of every kind for one user; returns the user's id."""
    with app.app_context():
        person = user(email)
        now = utcnow()
        db.session.add(
            WeightEntry(user_id=person.id, measured_at=now - timedelta(days=1), mass_g=80_000, note="x")
        )
        db.session.add(GoalChange(user_id=person.id, target_g=75_000, created_at=now))
        enqueue(kind="reminder", to=email, subject="s", text="t", html="h", user_id=person.id)
        db.session.add(OutboxEvent(channel=user_channel(person.id), kind="weight", created_at=now))
        db.session.add(
            PendingImport(token=f"t-{person.id}", user_id=person.id, file_format="plain", unit="kg")
        )
        db.session.commit()
        return person.id


@pytest.fixture
def ada_and_bob(app, client, auth):
    auth.register(BOB)
    auth.logout()
    auth.register(ADA)
    return auth


def test_the_page_says_what_will_go(app, client, ada_and_bob):
    seed(app)
    page = client.get("/account/delete").get_data(as_text=True)
    assert "1 weight entry with its note" in page and "1 goal change" in page
    assert "1 email sent or waiting to be sent" in page
    assert 'type="password"' in page and "New admin" not in page
    assert "/account/delete" in client.get("/account/settings").get_data(as_text=True)


def test_deleting_removes_every_row_of_mine_and_nothing_of_anyone_else(app, client, ada_and_bob):
    ada_id = seed(app)
    bob_id = seed(app, BOB)
    response = client.post("/account/delete", data={"password": PASSWORD})
    assert response.status_code == 302 and response.location == "/account/signup"
    with app.app_context():
        assert user() is None
        for model in (WeightEntry, GoalChange, QueuedMail, Reminder, PendingImport):
            assert count(model, user_id=ada_id) == 0, model
            assert count(model, user_id=bob_id) == (0 if model is Reminder else 1), model
        # What is left on the user's channels is the one wake-up that ends their open streams.
        left = db.session.execute(
            db.select(OutboxEvent.channel, OutboxEvent.kind).where(
                OutboxEvent.channel.in_((user_channel(ada_id), login_channel(ada_id)))
            )
        )
        assert list(left) == [(login_channel(ada_id), "login")]
        assert count(OutboxEvent, channel=user_channel(bob_id), kind="weight") == 1
    # Logged out, and the old session cannot come back.
    assert client.get("/dashboard").status_code == 302
    assert client.post("/account/login", data={"email": ADA, "password": PASSWORD}).status_code == 422


@pytest.mark.parametrize(
    "data, message",
    [
        ({"password": "wrong password"}, "That password is not right."),
        ({"password": ""}, "Enter your password to delete your account."),
        ({}, "Enter your password to delete your account."),
        ({"password": "x" * 500}, "That password is not right."),
    ],
)
def test_a_wrong_or_missing_password_deletes_nothing(app, client, ada_and_bob, data, message):
    seed(app)
    response = client.post("/account/delete", data=data)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    with app.app_context():
        assert user() is not None
        assert count(WeightEntry, user_id=user().id) == 1


def test_audit_rows_keep_what_was_done_but_not_who(app, client, ada_and_bob):
    with app.app_context():
        admin, ada = user(BOB), user()
        admin.is_admin = True
        remind_now(admin, ada, utcnow())
        db.session.commit()
    client.post("/account/delete", data={"password": PASSWORD})
    with app.app_context():
        [action] = db.session.scalars(db.select(AdminAction)).all()
        assert (action.action, action.user_id, action.admin_id) == ("remind", None, user(BOB).id)
        assert action.reminder_id is None and action.created_at is not None
    # The admins' page still renders the row.
    ada_and_bob.logout()
    ada_and_bob.login(BOB)
    assert "a deleted account" in client.get("/admin/").get_data(as_text=True)


def test_an_admin_who_deletes_themselves_leaves_their_actions_anonymous(app, client, ada_and_bob):
    with app.app_context():
        ada, bob = user(), user(BOB)
        ada.is_admin = bob.is_admin = True
        remind_now(ada, bob, utcnow())
        db.session.commit()
    assert client.post("/account/delete", data={"password": PASSWORD}).status_code == 302
    with app.app_context():
        [action] = db.session.scalars(db.select(AdminAction)).all()
        assert action.admin_id is None and action.user_id == user(BOB).id
        assert db.session.scalar(db.select(Reminder.created_by_id)) is None


def test_the_last_admin_must_name_another(app, client, ada_and_bob):
    with app.app_context():
        user().is_admin = True
        db.session.commit()
    page = client.get("/account/delete").get_data(as_text=True)
    assert "New admin" in page
    for successor, message in (
        ("", "You are the last admin."),
        ("nobody@example.com", "There is no account with the email nobody@example.com."),
        (ADA, "Name someone other than yourself"),
    ):
        response = client.post("/account/delete", data={"password": PASSWORD, "successor": successor})
        assert response.status_code == 422 and message in response.get_data(as_text=True)
        with app.app_context():
            assert user() is not None and not user(BOB).is_admin
    response = client.post("/account/delete", data={"password": PASSWORD, "successor": " Bob@Example.com "})
    assert response.status_code == 302
    with app.app_context():
        assert user() is None and user(BOB).is_admin
        [grant] = db.session.scalars(db.select(AdminAction)).all()
        assert (grant.action, grant.admin_id, grant.user_id) == ("grant_admin", None, user(BOB).id)


def test_deleting_directly_refuses_the_last_admin_without_a_successor(app, ada_and_bob):
    from webapp.accounts.deletion import DeletionRefused

    with app.app_context():
        ada = user()
        ada.is_admin = True
        db.session.commit()
        with pytest.raises(DeletionRefused):
            delete_account(ada)
        db.session.rollback()
        assert user() is not None


def test_anonymous_is_sent_to_login(client):
    for method in ("get", "post"):
        response = getattr(client, method)("/account/delete", data={"password": PASSWORD})
        assert response.status_code == 302 and "/account/login" in response.location


@pytest.mark.services
def test_on_postgresql_deletion_and_import_respect_every_foreign_key(tmp_path, postgres_url):
    """PostgreSQL enforces the foreign keys that SQLite here does not: the same paths must pass."""
    import io
    from zoneinfo import ZoneInfo

    from tests.support import add_user, build_app
    from webapp.reminders.lifecycle import open_reminder
    from webapp.tracking import imports
    from webapp.tracking.csv_formats import ImportOptions

    app = build_app(tmp_path, SQLALCHEMY_DATABASE_URI=postgres_url)
    try:
        with app.test_request_context():
            ada, bob = add_user(ADA, days_ago=30), add_user(BOB, admin=True)
            pending = imports.stage_import(
                ada,
                io.BytesIO(b"date,weight\n2024-01-01,80\n2024-01-02,0\n"),
                "w.csv",
                ImportOptions(zone=ZoneInfo("UTC")),
            )
            assert imports.confirm_import(ada, pending).added == 1
            imports.stage_import(
                ada, io.BytesIO(b"date,weight\n2024-01-03,80\n"), "w.csv", ImportOptions(zone=ZoneInfo("UTC"))
            )
            reminder = open_reminder(ada.id, utcnow())
            db.session.flush()
            enqueue(
                kind="reminder",
                to=ADA,
                subject="s",
                text="t",
                html="h",
                user_id=ada.id,
                reminder_id=reminder.id,
            )
            remind_now(bob, ada, utcnow())
            db.session.commit()
            ada_id = ada.id
            delete_account(ada)
            assert db.session.get(User, ada_id) is None
            assert count(WeightEntry) == 0 and count(PendingImport) == 0 and count(QueuedMail) == 0
            [action] = db.session.scalars(db.select(AdminAction)).all()
            assert (action.user_id, action.admin_id, action.reminder_id) == (None, bob.id, None)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
