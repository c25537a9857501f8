"""Download all my data: one JSON file with everything of the user's and nobody else's, streamed."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from webapp.accounts.export import FORMAT_VERSION, export_document
from webapp.extensions import db
from webapp.mail.queue import enqueue
from webapp.models import GoalChange, Reminder, User, WeightEntry
from webapp.timeutil import utcnow

OTHER = "bob@example.com"


def user_id(email="ada@example.com") -> int:
    return db.session.scalar(db.select(User.id).where(User.email == email))


def seed(app, email="ada@example.com", note="mine"):
    with app.app_context():
        uid = user_id(email)
        now = utcnow()
        db.session.add(
            WeightEntry(user_id=uid, measured_at=now - timedelta(days=2), mass_g=80_250, note=note)
        )
        db.session.add(WeightEntry(user_id=uid, measured_at=now - timedelta(days=1), mass_g=79_900, note=""))
        db.session.add(GoalChange(user_id=uid, target_g=75_000, start_g=80_000, created_at=now))
        db.session.add(
            Reminder(user_id=uid, status="dismissed", inactive_since=now - timedelta(days=9), ended_at=now)
        )
        enqueue(
            kind="reminder",
            to=email,
            subject="Time to weigh in",
            text="It has been 9 days.",
            html="<p>",
            user_id=uid,
        )
        enqueue(
            kind="reset", to=email, subject="Reset", text="https://x/reset/SECRET", html="<p>", user_id=uid
        )
        db.session.commit()


def test_download_holds_everything_of_mine(app, client, auth):
    auth.register()
    auth.logout()
    auth.register(OTHER)
    seed(app)
    seed(app, OTHER, note="bob's")
    auth.logout()
    auth.login()
    response = client.get("/account/export.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    data = json.loads(response.data)
    assert data["format"] == "weighin-export" and data["version"] == FORMAT_VERSION
    assert data["profile"]["email"] == "ada@example.com"
    assert data["settings"]["unit"] == "kg" and data["settings"]["timezone"] == "UTC"
    assert [(w["weight_kg"], w["note"]) for w in data["weights"]] == [("80.250", "mine"), ("79.900", "")]
    assert data["goals"] == [
        {"set_at": data["goals"][0]["set_at"], "goal_kg": "75.000", "weight_then_kg": "80.000"}
    ]
    assert [r["status"] for r in data["reminders"]] == ["dismissed"]
    by_kind = {m["kind"]: m for m in data["mail"]}
    assert by_kind["reminder"]["text"] == "It has been 9 days."
    assert by_kind["reset"]["text"] is None  # a live link is not written to a file
    assert "bob" not in response.get_data(as_text=True)
    assert "SECRET" not in response.get_data(as_text=True)


def test_an_empty_account_exports_empty_lists(client, auth):
    auth.register()
    data = json.loads(client.get("/account/export.json").data)
    assert (data["weights"], data["goals"], data["reminders"], data["mail"]) == ([], [], [], [])


def test_download_is_linked_from_settings(client, auth):
    auth.register()
    assert "/account/export.json" in client.get("/account/settings").get_data(as_text=True)


def test_anonymous_is_sent_to_login(client):
    response = client.get("/account/export.json")
    assert response.status_code == 302 and "/account/login" in response.location


def _bulk_weights(uid: int, count: int, start: int = 0) -> None:
    base = datetime(2000, 1, 1, tzinfo=UTC)
    db.session.execute(
        sa.insert(WeightEntry),
        [
            {
                "user_id": uid,
                "measured_at": base + timedelta(hours=6 * i),
                "mass_g": 70_000 + i % 5000,
                "note": "",
                "created_at": base,
                "updated_at": base,
            }
            for i in range(start, start + count)
        ],
    )
    db.session.commit()


def _export_peak(user: User) -> tuple[int, int]:
    """Bytes written and the peak of memory allocated while the export is read piece by piece."""
    written = 0
    tracemalloc.start()
    try:
        for piece in export_document(user):
            written += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return written, peak


def test_a_long_history_is_streamed_in_bounded_memory(app, client, auth):
    auth.register()
    with app.app_context():
        uid = user_id()
        _bulk_weights(uid, 5_000)
        user = db.session.get(User, uid)
        small_size, small_peak = _export_peak(user)
        _bulk_weights(uid, 45_000, start=5_000)
        db.session.expire_all()
        large_size, large_peak = _export_peak(db.session.get(User, uid))
    assert large_size > 9 * small_size  # ten times the rows, ten times the text
    # A list of rows or the whole text would grow with the rows; the stream's peak does not.
    assert large_peak < 2 * small_peak, (small_peak, large_peak)
    assert large_peak < large_size / 4
