"""Tracking routes: the weight log, goal, dashboard and export, with good and bad input as tables."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from webapp.extensions import db
from webapp.models import GoalChange, OutboxEvent, Reminder, User, WeightEntry
from webapp.reminders import lifecycle
from webapp.timeutil import utcnow

from .support import executed_statements

OTHER = "bob@example.com"


def entries_of(email="ada@example.com") -> list[WeightEntry]:
    user = db.session.scalar(db.select(User).where(User.email == email))
    return list(db.session.scalars(db.select(WeightEntry).where(WeightEntry.user_id == user.id)))


def add_entry(app, email, grams, measured_at=None, note=""):
    """Insert an entry directly (for setting up history); returns its id."""
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == email))
        entry = WeightEntry(user_id=user.id, mass_g=grams, measured_at=measured_at or utcnow(), note=note)
        db.session.add(entry)
        db.session.commit()
        return entry.id


def set_user(app, email="ada@example.com", **fields):
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == email))
        for name, value in fields.items():
            setattr(user, name, value)
        db.session.commit()


def local_input(moment: datetime, zone: str = "UTC") -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def ada(client, auth):
    auth.register()
    return auth


# --- authorization of every route -------------------------------------------------------------

# Who may reach each route is the authorization table in tests/test_security.py; here, that
# another user's entry is not found and stays untouched.
ENTRY_ROUTES = [
    ("get", "/entries/{id}/edit", 200),
    ("post", "/entries/{id}/edit", 302),
    ("get", "/entries/{id}/delete", 200),
    ("post", "/entries/{id}/delete", 302),
]


@pytest.mark.parametrize("method, url, owner_status", ENTRY_ROUTES)
def test_entry_routes_owner_ok_other_user_404(app, client, auth, method, url, owner_status):
    auth.register()
    entry_id = add_entry(app, "ada@example.com", 72_000, note="mine")
    form = {"weight": "71", "measured_at": local_input(utcnow() - timedelta(hours=1)), "note": "changed"}
    auth.logout()
    auth.register(OTHER)
    response = getattr(client, method)(url.format(id=entry_id), data=form)
    assert response.status_code == 404
    with app.app_context():
        [entry] = entries_of()
        assert (entry.mass_g, entry.note) == (72_000, "mine")  # untouched
    auth.logout()
    auth.login()
    assert getattr(client, method)(url.format(id=entry_id), data=form).status_code == owner_status


@pytest.mark.parametrize(
    "url",
    [
        "/entries/abc/edit",
        "/entries/-1/edit",
        "/entries/0/edit",
        "/entries/999999/edit",
        "/entries/99999999999999999999/edit",
        "/entries/2147483648/delete",
        "/entries/1.5/delete",
    ],
)
def test_tampered_entry_ids_are_404(ada, client, url):
    assert client.get(url).status_code == 404
    assert client.post(url, data={"weight": "70"}).status_code == 404


@pytest.mark.parametrize("url", ["/dashboard", "/entries", "/goal", "/export.csv"])
def test_owner_pages_load(ada, client, url):
    assert client.get(url).status_code == 200


# --- adding entries ---------------------------------------------------------------------------


def test_quick_add_plain_post_stores_grams_and_records_activity(app, ada, client):
    response = client.post("/entries", data={"weight": "72,5", "measured_at": "", "note": " first "})
    assert response.status_code == 422  # the date was emptied on purpose
    response = client.post(
        "/entries",
        data={
            "weight": "72,5",
            "measured_at": local_input(utcnow() - timedelta(minutes=5)),
            "note": " first ",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"
    with app.app_context():
        [entry] = entries_of()
        assert (entry.mass_g, entry.note) == (72_500, "first")
        user = ada.user()
        assert user.last_weight_at is not None
        kinds = db.session.scalars(db.select(OutboxEvent.kind).where(OutboxEvent.channel == user.channel))
        assert "weight" in list(kinds)
    assert "Logged 72.5 kg." in client.get("/dashboard").get_data(as_text=True)


def test_a_quick_add_writes_the_users_clocks_once_and_reads_nothing_back_after_its_commit(app, ada, client):
    """Logging a weight updates the user's row once (the weight and activity clocks and the
    reminder clock together) and, after the commit, reads the user once for the fragment and the
    log: never the new entry again (issue 16: 11 statements became 9)."""
    with app.app_context():
        lifecycle.open_reminder(ada.user().id)
        db.session.commit()
        db.session.remove()
    with executed_statements(app) as seen:
        response = client.post(
            "/entries",
            headers={"HX-Request": "true"},
            data={"weight": "72.5", "measured_at": local_input(utcnow() - timedelta(minutes=1))},
        )
    statements = [run.sql for run in seen]
    assert response.status_code == 200 and "Logged 72.5 kg." in response.get_data(as_text=True)
    user_updates = [s for s in statements if s.startswith("UPDATE users")]
    assert len(user_updates) == 1, statements
    assert "reminder_clock" in user_updates[0] and "last_weight_at" in user_updates[0]
    assert not [s for s in statements if s.startswith("SELECT") and "WHERE weight_entries.id =" in s], (
        statements
    )
    with app.app_context():
        user = ada.user()
        assert user.reminder_clock == user.last_active_at == user.last_weight_at
        assert user.open_reminder() is None  # the weight resolved the open reminder
        assert [e.mass_g for e in entries_of()] == [72_500]


@pytest.mark.parametrize(
    "unit,locale,typed,shown,message",
    [
        ("kg", "en", "72.50", "72.5 kg", "Logged 72.5 kg."),
        ("kg", "en", "79,25", "79.25 kg", "Logged 79.25 kg."),
        ("lb", "en", "160.00", "160.0 lb", "Logged 160.0 lb."),
        ("lb", "en", "160.5", "160.5 lb", "Logged 160.5 lb."),
        ("kg", "ko", "72.50", "72.5 kg", "기록했습니다: 72.5 kg"),
        ("lb", "ko", "160.50", "160.5 lb", "기록했습니다: 160.5 lb"),
    ],
)
@pytest.mark.parametrize("htmx", [False, True])
def test_logged_message_formats_the_weight_as_the_table_does(
    app, ada, client, unit, locale, typed, shown, message, htmx
):
    set_user(app, unit=unit, locale=locale)
    headers = {"HX-Request": "true"} if htmx else {}
    when = local_input(utcnow() - timedelta(minutes=5))
    response = client.post("/entries", headers=headers, data={"weight": typed, "measured_at": when})
    body = response.get_data(as_text=True) if htmx else client.get("/dashboard").get_data(as_text=True)
    assert message in body
    table = client.get("/entries").get_data(as_text=True)
    assert f'<td class="num">{shown}</td>' in table


def test_quick_add_with_htmx_returns_the_fragment(app, ada, client):
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'id="quick-add"' in page and 'hx-post="/entries"' in page and 'action="/entries"' in page
    default = re.search(r'name="measured_at_default" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post(
        "/entries",
        headers={"HX-Request": "true"},
        data={"weight": "80", "measured_at": default, "measured_at_default": default},
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "HX-Request" in response.headers["Vary"]
    assert body.lstrip().startswith('<div id="dashboard-live">') and "<html" not in body
    assert "Logged 80.0 kg." in body
    assert "<svg" in body and "80.0 kg" in body
    # The field is empty again and not focused, so a second tap cannot save the weight twice.
    assert 'id="quick-add"' in body and "autofocus" not in body
    assert 'value="80"' not in re.search(r'<input[^>]*name="weight"[^>]*>', body).group(0)
    assert body.index('id="quick-add-message"') < body.index('id="stat-latest"')


def test_the_same_weight_again_within_a_minute_is_refused(ada, client):
    entry = {"weight": "71.3", "measured_at": "2026-11-30T07:00"}
    assert client.post("/entries", data=entry, headers={"HX-Request": "true"}).status_code == 200
    again = client.post("/entries", data=entry, headers={"HX-Request": "true"})
    assert again.status_code == 422
    assert "You logged this weight less than a minute ago; it is saved once." in again.get_data(as_text=True)
    assert client.get("/entries").get_data(as_text=True).count("71.3 kg") == 1
    # Another weight is a new weighing, not a second tap.
    assert client.post("/entries", data={**entry, "weight": "71.4"}).status_code == 302


def test_an_untouched_default_time_means_now_even_on_a_stale_page(app, ada, client):
    stale = "2020-01-01T08:00"
    client.post("/entries", data={"weight": "80", "measured_at": stale, "measured_at_default": stale})
    with app.app_context():
        [entry] = entries_of()
        assert utcnow() - entry.measured_at < timedelta(minutes=1)


def test_date_and_time_are_read_in_the_users_zone(app, ada, client):
    set_user(app, timezone="Pacific/Kiritimati")  # UTC+14
    moment = utcnow().replace(second=0, microsecond=0) - timedelta(hours=2)
    client.post("/entries", data={"weight": "80", "measured_at": local_input(moment, "Pacific/Kiritimati")})
    with app.app_context():
        [entry] = entries_of()
        assert entry.measured_at == moment


BAD_ENTRIES = [
    ({"weight": ""}, "Enter a weight."),
    ({"weight": "heavy"}, "Enter the weight as a plain number, such as 72.5."),
    ({"weight": "-72"}, "A weight cannot be negative."),
    ({"weight": "0"}, "A weight must be more than zero."),
    ({"weight": "NaN"}, "Enter the weight as a plain number, such as 72.5."),
    ({"weight": "infinity"}, "Enter the weight as a plain number, such as 72.5."),
    ({"weight": "1e308"}, "Enter the weight as a plain number, such as 72.5."),
    ({"weight": "72.555"}, "Use at most two decimal places."),
    ({"weight": "19.99"}, "Enter a weight between 20 and 700 kg."),
    ({"weight": "700.5"}, "Enter a weight between 20 and 700 kg."),
    ({"measured_at": ""}, "Enter the date and time."),
    ({"measured_at": "yesterday"}, "Enter a date and time such as 2025-03-01 07:30."),
    ({"measured_at": "2025-02-30T08:00"}, "Enter a date and time such as 2025-03-01 07:30."),
    ({"measured_at": "1899-12-31T23:59"}, "Enter a date from 1900 on."),
    ({"measured_at": "FUTURE"}, "That date and time is in the future."),
    ({"measured_at": "99999-01-01T00:00"}, "Enter a date and time such as 2025-03-01 07:30."),
    ({"note": "x" * 501}, "Keep the note to 500 characters or fewer."),
    ({"note": "nul\x00byte"}, "Remove the control characters from the note."),
    ({"note": "bell\x07"}, "Remove the control characters from the note."),
]


def _entry_form(overrides: dict, zone: str = "UTC") -> dict:
    form = {"weight": "72.5", "measured_at": local_input(utcnow() - timedelta(hours=1), zone), "note": ""}
    form.update(overrides)
    if form["measured_at"] == "FUTURE":
        form["measured_at"] = local_input(utcnow() + timedelta(minutes=2), zone)
    return form


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("overrides, message", BAD_ENTRIES)
def test_bad_entries_are_refused_and_nothing_is_stored(app, ada, client, overrides, message, htmx):
    headers = {"HX-Request": "true"} if htmx else {}
    response = client.post("/entries", data=_entry_form(overrides), headers=headers)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'class="field-error"' in body and message in body
    assert 'aria-invalid="true"' in body
    assert ("<html" in body) is not htmx
    with app.app_context():
        assert entries_of() == []
        assert ada.user().last_weight_at is None


@pytest.mark.parametrize("note", [b"%FF%FE", b"caf%C3", b"\xff\xfe"], ids=["escaped", "cut", "raw"])
def test_a_form_that_is_not_utf8_text_is_refused_and_nothing_is_stored(app, ada, client, note):
    fields = _entry_form({})
    body = f"weight={fields['weight']}&measured_at={fields['measured_at']}&note=".encode() + note
    response = client.post("/entries", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "characters that are not valid text, so nothing was saved" in response.get_data(as_text=True)
    with app.app_context():
        assert entries_of() == []


def test_future_is_judged_in_the_users_zone(app, ada, client):
    set_user(app, timezone="Pacific/Kiritimati")
    # Two minutes ahead in Kiritimati: in the future there, whatever UTC says.
    response = client.post("/entries", data=_entry_form({"measured_at": "FUTURE"}, "Pacific/Kiritimati"))
    assert response.status_code == 422
    assert "That date and time is in the future." in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "weight, message",
    [
        ("44", "Enter a weight between 44.1 and 1543.2 lb."),
        ("1600", "Enter a weight between 44.1 and 1543.2 lb."),
    ],
)
def test_pounds_range(app, ada, client, weight, message):
    set_user(app, unit="lb")
    response = client.post("/entries", data=_entry_form({"weight": weight}))
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    client.post("/entries", data=_entry_form({"weight": "160"}))
    with app.app_context():
        assert [e.mass_g for e in entries_of()] == [72_575]


def test_logging_a_weight_resolves_an_open_reminder(app, ada, client):
    with app.app_context():
        reminder = lifecycle.open_reminder(ada.user().id)
        db.session.commit()
        reminder_id = reminder.id
    client.post("/entries", data=_entry_form({}))
    with app.app_context():
        reminder = db.session.get(Reminder, reminder_id)
        assert reminder.status == "resolved"
        assert ada.user().open_reminder() is None


# --- editing and deleting ---------------------------------------------------------------------


def test_edit_changes_the_entry_but_not_the_activity_clock(app, ada, client):
    entry_id = add_entry(app, "ada@example.com", 72_000, datetime(2025, 3, 1, 7, 30, 15, tzinfo=UTC))
    page = client.get(f"/entries/{entry_id}/edit").get_data(as_text=True)
    assert 'value="72.0"' in page and 'value="2025-03-01T07:30"' in page
    response = client.post(
        f"/entries/{entry_id}/edit",
        data={
            "weight": "71.25",
            "measured_at": "2025-03-02T09:00",
            "measured_at_default": "2025-03-01T07:30",
            "note": "after run",
        },
    )
    assert response.status_code == 302
    with app.app_context():
        [entry] = entries_of()
        assert (entry.mass_g, entry.note) == (71_250, "after run")
        assert entry.measured_at == datetime(2025, 3, 2, 9, 0, tzinfo=UTC)
        assert ada.user().last_weight_at is None  # a correction is not a new weigh-in


def test_saving_an_untouched_entry_keeps_it_exactly(app, ada, client):
    """In lb, 72.5 kg shows as 159.84; saving it unchanged must not round it to other grams."""
    set_user(app, unit="lb")
    moment = datetime(2025, 3, 1, 7, 30, 15, tzinfo=UTC)
    entry_id = add_entry(app, "ada@example.com", 72_500, moment)
    page = client.get(f"/entries/{entry_id}/edit").get_data(as_text=True)
    assert 'value="159.84"' in page
    client.post(
        f"/entries/{entry_id}/edit",
        data={
            "weight": "159.84",
            "measured_at": "2025-03-01T07:30",
            "measured_at_default": "2025-03-01T07:30",
            "note": "only the note",
        },
    )
    with app.app_context():
        [entry] = entries_of()
        assert (entry.mass_g, entry.measured_at, entry.note) == (72_500, moment, "only the note")


@pytest.mark.parametrize("overrides, message", BAD_ENTRIES)
def test_bad_edits_are_refused(app, ada, client, overrides, message):
    entry_id = add_entry(app, "ada@example.com", 72_000, note="kept")
    response = client.post(f"/entries/{entry_id}/edit", data=_entry_form(overrides))
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    with app.app_context():
        [entry] = entries_of()
        assert (entry.mass_g, entry.note) == (72_000, "kept")


def test_delete_asks_first_then_deletes(app, ada, client):
    entry_id = add_entry(app, "ada@example.com", 72_000)
    page = client.get(f"/entries/{entry_id}/delete").get_data(as_text=True)
    assert "Delete this entry?" in page and 'method="post"' in page and "72.0 kg" in page
    with app.app_context():
        assert len(entries_of()) == 1
    response = client.post(f"/entries/{entry_id}/delete")
    assert response.status_code == 302
    with app.app_context():
        assert entries_of() == []
    assert client.post(f"/entries/{entry_id}/delete").status_code == 404


def outbox_kinds(app, channel) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(db.select(OutboxEvent.kind).where(OutboxEvent.channel == channel)))


def test_edits_and_deletes_tell_the_users_other_tabs_not_the_admins(app, ada, client):
    """Not activity, but the entries changed: the user's stream wakes their other dashboards."""
    entry_id = add_entry(app, "ada@example.com", 72_000, datetime(2025, 3, 1, 7, 30, tzinfo=UTC))
    with app.app_context():
        channel = ada.user().channel
    form = {"weight": "71.5", "measured_at": "2025-03-01T07:30", "measured_at_default": "2025-03-01T07:30"}
    assert client.post(f"/entries/{entry_id}/edit", data=form).status_code == 302
    assert client.post(f"/entries/{entry_id}/delete").status_code == 302
    assert outbox_kinds(app, channel).count("entries") == 2
    assert "entries" not in outbox_kinds(app, "admins")


# --- history ----------------------------------------------------------------------------------


def test_history_is_paginated_newest_first(app, ada, client):
    start = datetime(2025, 1, 1, 8, tzinfo=UTC)
    for n in range(25):
        add_entry(app, "ada@example.com", 70_000 + n * 10, start + timedelta(days=n))
    page1 = client.get("/entries").get_data(as_text=True)
    assert page1.count('<tr id="entry-') == 20
    assert page1.index("70.24 kg") < page1.index("70.23 kg")  # newest first
    assert "Page 1 of 2" in page1 and 'rel="next"' in page1
    page2 = client.get("/entries?page=2").get_data(as_text=True)
    assert page2.count('<tr id="entry-') == 5 and "70.0 kg" in page2
    for weird in ["abc", "0", "-3"]:
        assert "Page 1 of 2" in client.get(f"/entries?page={weird}").get_data(as_text=True)
    far = client.get("/entries?page=99999999999999999999")
    assert far.status_code == 200 and "There is no page" in far.get_data(as_text=True)


def test_history_shows_only_own_entries(app, ada, client, auth):
    add_entry(app, "ada@example.com", 72_000, note="ada's")
    auth.logout()
    auth.register(OTHER)
    assert "ada&#39;s" not in client.get("/entries").get_data(as_text=True)
    assert "Nothing logged yet." in client.get("/entries").get_data(as_text=True)


# --- goal -------------------------------------------------------------------------------------


def test_goal_starts_at_the_trend_and_keeps_history(app, ada, client):
    page = client.get("/goal").get_data(as_text=True)
    assert '<label for="target">Goal weight</label>' in page
    base = datetime(2025, 3, 1, 8, tzinfo=UTC)
    add_entry(app, "ada@example.com", 100_000, base)
    add_entry(app, "ada@example.com", 90_000, base + timedelta(days=1))
    assert client.post("/goal", data={"target": "85"}).status_code == 302
    assert client.post("/goal", data={"target": "110"}).status_code == 302
    with app.app_context():
        goals = list(db.session.scalars(db.select(GoalChange).order_by(GoalChange.id)))
        assert [(g.target_g, g.start_g) for g in goals] == [(85_000, 99_000), (110_000, 99_000)]
        assert [g.direction for g in goals] == ["lose", "gain"]
        assert ada.user().last_goal_at is not None
        assert ada.user().current_goal().target_g == 110_000
    page = client.get("/goal").get_data(as_text=True)
    assert 'value="110.0"' in page and "Goal history" in page
    assert "to gain" in client.get("/dashboard").get_data(as_text=True)


def test_goal_before_any_weight(app, ada, client):
    assert client.post("/goal", data={"target": "70"}).status_code == 302
    with app.app_context():
        assert ada.user().current_goal().start_g is None


@pytest.mark.parametrize(
    "target, message",
    [
        ("", "Enter a weight."),
        ("seventy", "Enter the weight as a plain number, such as 72.5."),
        ("-70", "A weight cannot be negative."),
        ("0", "A weight must be more than zero."),
        ("nan", "Enter the weight as a plain number, such as 72.5."),
        ("-inf", "Enter the weight as a plain number, such as 72.5."),
        ("1e308", "Enter the weight as a plain number, such as 72.5."),
        ("70.123", "Use at most two decimal places."),
        ("15", "Enter a weight between 20 and 700 kg."),
        ("800", "Enter a weight between 20 and 700 kg."),
    ],
)
def test_bad_goals_are_refused(app, ada, client, target, message):
    response = client.post("/goal", data={"target": target})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert ada.user().current_goal() is None
        assert ada.user().last_goal_at is None


# --- dashboard --------------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_dashboards_one_read_is_the_goal_and_the_log_of_that_user_only(tmp_path, request, database):
    """goal_and_log() reads the current goal and the whole log in one statement: the same as
    current_goal() and weight_log() with no goal, no entries, both, and a changed goal, and never
    another user's rows."""
    from webapp.tracking.queries import goal_and_log, weight_log

    from .support import add_user, build_app

    overrides = {}
    if database == "postgresql":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("postgres_url")
    app = build_app(tmp_path, **overrides)
    base = datetime(2026, 3, 1, 8, tzinfo=UTC)
    with app.app_context():
        ada, bob = add_user("ada@example.com"), add_user("bob@example.com")
        ada_id = ada.id
        # Bob's goal and entries are there throughout, and must never show in Ada's read.
        db.session.add(GoalChange(user_id=bob.id, target_g=60_000, start_g=65_000, created_at=base))
        db.session.add(WeightEntry(user_id=bob.id, measured_at=base, mass_g=65_000, note="bob"))
        db.session.commit()

        def check(expected_goal, expected_entries):
            with executed_statements(app) as statements:
                goal, log = goal_and_log(ada_id)
            assert len(statements) == 1, statements
            current = ada.current_goal()
            assert (goal is None) == (current is None) == (expected_goal is None)
            if expected_goal is not None:
                assert (goal.target_g, goal.start_g, goal.created_at) == expected_goal
                assert (current.target_g, current.start_g, current.created_at) == expected_goal
            assert [(row.mass_g, row.note) for row in log] == expected_entries
            assert [tuple(row) for row in weight_log(ada_id)] == [tuple(row)[:4] for row in log]

        check(None, [])
        db.session.add(GoalChange(user_id=ada.id, target_g=70_000, start_g=None, created_at=base))
        db.session.commit()
        check((70_000, None, base), [])
        for day, grams in enumerate((80_000, 79_500, 79_000)):
            db.session.add(
                WeightEntry(
                    user_id=ada.id, measured_at=base + timedelta(days=day), mass_g=grams, note=f"d{day}"
                )
            )
        later = base + timedelta(days=3)
        db.session.add(GoalChange(user_id=ada.id, target_g=75_000, start_g=79_000, created_at=later))
        db.session.commit()
        check((75_000, 79_000, later), [(79_000, "d2"), (79_500, "d1"), (80_000, "d0")])
        db.session.execute(db.delete(GoalChange).where(GoalChange.user_id == ada.id))
        db.session.commit()
        check(None, [(79_000, "d2"), (79_500, "d1"), (80_000, "d0")])
        db.session.remove()
        db.engine.dispose()


def test_dashboard_with_weeks_of_history(app, ada, client):
    today = utcnow().replace(hour=8, minute=0, second=0, microsecond=0)
    if today > utcnow():
        today -= timedelta(days=1)
    for n in range(35, -1, -1):  # losing 100 g a day for five weeks
        add_entry(app, "ada@example.com", 90_000 - (35 - n) * 100, today - timedelta(days=n))
    client.post("/goal", data={"target": "80"})
    body = client.get("/dashboard").get_data(as_text=True)
    assert "86.5 kg" in body  # latest
    assert re.search("7 days:</span>\\s*<strong>\u2212", body)
    assert re.search("30 days:</span>\\s*<strong>\u2212", body)
    assert "from the last 4 weeks" in body  # a projected date
    assert "<progress" in body
    assert body.count('class="weight-dot"') == 36
    assert '<title id="chart-title">' in body and '<desc id="chart-desc">' in body
    assert "Chart data as a table" in body


def test_dashboard_without_data(ada, client):
    body = client.get("/dashboard").get_data(as_text=True)
    assert "Nothing logged yet" in body and "Set a goal" in body
    # A new user gets the form first and a welcome, not a row of empty cards and an empty chart.
    assert body.index('id="quick-add"') < body.index('id="welcome-heading"')
    assert 'id="stat-latest"' not in body and 'id="weight-chart"' not in body


def test_dashboard_fragment_for_htmx(ada, client):
    response = client.get("/dashboard", headers={"HX-Request": "true"})
    assert response.get_data(as_text=True).lstrip().startswith('<div id="dashboard-live">')


# --- export -----------------------------------------------------------------------------------


def test_csv_export(app, ada, client, auth):
    set_user(app, unit="lb", timezone="America/New_York")
    add_entry(app, "ada@example.com", 72_500, datetime(2025, 1, 15, 13, 0, tzinfo=UTC), "=SUM(A1)")
    add_entry(app, "ada@example.com", 72_000, datetime(2025, 7, 15, 13, 0, tzinfo=UTC), "+1")
    add_entry(app, "ada@example.com", 71_000, datetime(2025, 7, 16, 13, 0, tzinfo=UTC), "@x\t")
    add_entry(app, "ada@example.com", 70_000, datetime(2025, 7, 17, 13, 0, tzinfo=UTC), "-2")
    add_entry(app, "ada@example.com", 69_000, datetime(2025, 7, 18, 13, 0, tzinfo=UTC), "\tx")
    add_entry(app, "ada@example.com", 68_000, datetime(2025, 7, 19, 13, 0, tzinfo=UTC), 'fine, "quoted"')
    auth.logout()
    auth.register(OTHER)
    add_entry(app, OTHER, 99_000, note="bob's")
    auth.logout()
    auth.login()
    response = client.get("/export.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="weighin-')
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["measured_at", "weight_kg", "weight", "unit", "note"]
    assert rows[1] == ["2025-01-15T08:00:00-05:00", "72.500", "159.84", "lb", "'=SUM(A1)"]
    assert rows[2] == ["2025-07-15T09:00:00-04:00", "72.000", "158.73", "lb", "'+1"]
    assert [row[4] for row in rows[3:]] == ["'@x\t", "'-2", "'\tx", 'fine, "quoted"']
    assert len(rows) == 7  # bob's entry is not in it


def test_csv_export_empty(ada, client):
    rows = list(csv.reader(io.StringIO(client.get("/export.csv").get_data(as_text=True))))
    assert rows == [["measured_at", "weight_kg", "weight", "unit", "note"]]


# --- CSRF -------------------------------------------------------------------------------------


def _token(page: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


@pytest.mark.parametrize(
    "url, data",
    [
        ("/entries", {"weight": "72", "measured_at": "2025-03-01T08:00"}),
        ("/goal", {"target": "70"}),
        ("/entries/{id}/edit", {"weight": "60", "measured_at": "2025-03-01T08:00"}),
        ("/entries/{id}/delete", {}),
    ],
)
def test_posts_without_a_csrf_token_are_refused(csrf_app, url, data):
    client = csrf_app.test_client()
    token = _token(client.get("/account/signup").get_data(as_text=True))
    client.post(
        "/account/signup", data={"email": "ada@example.com", "password": "correct horse", "csrf_token": token}
    )
    entry_id = add_entry(csrf_app, "ada@example.com", 80_000)
    url = url.format(id=entry_id)
    response = client.post(url, data=data)
    assert response.status_code == 400
    assert "Your form expired" in response.get_data(as_text=True)
    with csrf_app.app_context():
        assert [(e.mass_g) for e in entries_of()] == [80_000]
        assert db.session.scalar(db.select(GoalChange)) is None
    # The same request with the page's token (as a form field, or the header htmx sends) works.
    token = _token(client.get("/dashboard").get_data(as_text=True))
    assert client.post(url, data={**data, "csrf_token": token}).status_code in (302, 422)
    assert (
        client.post(
            "/entries",
            data={"weight": "71", "measured_at": "2025-03-01T08:00"},
            headers={"X-CSRFToken": token},
        ).status_code
        == 302
    )


def test_the_edit_page_says_when_the_entry_is_from_as_the_app_writes_dates(app, client, auth):
    """The browser draws the date field in its own format; the page says it the app's way too."""
    auth.register()
    set_user(app, timezone="Asia/Seoul", locale="ko")
    entry_id = add_entry(app, "ada@example.com", 72_500, datetime(2025, 12, 1, 20, 20, tzinfo=UTC))
    html = client.get(f"/entries/{entry_id}/edit").get_data(as_text=True)
    assert '<p class="muted" id="entry-when">2025년 12월 2일 05:20(Asia/Seoul) 기록입니다.</p>' in html
    set_user(app, locale="en")
    html = client.get(f"/entries/{entry_id}/edit").get_data(as_text=True)
    assert "Logged for 2 Dec 2025, 05:20 (Asia/Seoul)." in html
