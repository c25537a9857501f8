"""The inactivity rule, the reminder lifecycle, the banner, the dismiss view and `flask reminders scan`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from webapp import create_app
from webapp.events.outbox import prune
from webapp.extensions import db
from webapp.models import ADMINS_CHANNEL, OutboxEvent, Reminder, User, user_channel
from webapp.reminders import lifecycle
from webapp.timeutil import utcnow

from .support import FAST_HASH, TEST_SECRET, add_user, build_app, log_in_client

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def make_user(email="ada@example.com", created_at=T0, **fields) -> User:
    return add_user(email, at=created_at, **fields)


def open_reminders(user_id: int) -> list[Reminder]:
    return list(db.session.scalars(db.select(Reminder).where(Reminder.open_for_user_id == user_id)))


# Each case: what happened (action, days after sign-up), then the final scan and whether it opens one.
RULE_CASES = [
    ("new user", [], 0.5, False),
    ("exactly 7 days after sign-up", [], 7, True),
    ("just under 7 days after sign-up", [], 7 - 1 / 86400, False),
    ("a goal change alone keeps it away", [("goal", 3)], 8, False),
    ("a weight alone keeps it away", [("weight", 3)], 8, False),
    ("a goal change alone, 7 days later", [("goal", 3)], 10, True),
    ("a weight alone, just under 7 days later", [("weight", 3)], 10 - 1 / 86400, False),
    ("the newer of weight and goal counts", [("weight", 1), ("goal", 4)], 10, False),
    ("both old", [("weight", 1), ("goal", 2)], 9, True),
    ("reminders off", [("off", 0)], 30, False),
    ("reminders off, then on again", [("off", 0), ("on", 20)], 30, True),
    ("dismissed, before another full period", [("scan", 7), ("dismiss", 8)], 15 - 1 / 86400, False),
    ("dismissed, then another full period", [("scan", 7), ("dismiss", 8)], 15, True),
    ("resolved by a weight, then quiet again", [("scan", 7), ("weight", 8)], 15, True),
    ("already open: no second one", [("scan", 7)], 20, False),
]


@pytest.mark.parametrize(
    ("history", "scan_day", "opens"), [case[1:] for case in RULE_CASES], ids=[case[0] for case in RULE_CASES]
)
def test_inactivity_rule(app, history, scan_day, opens):
    with app.app_context():
        user = make_user()
        for action, day in history:
            at = T0 + day * DAY
            if action == "weight":
                lifecycle.record_weight_logged(user, at)
            elif action == "goal":
                lifecycle.record_goal_changed(user, at)
            elif action in {"off", "on"}:
                lifecycle.set_reminders_enabled(user, action == "on", at)
            elif action == "dismiss":
                assert lifecycle.dismiss(user, at) is not None
            elif action == "scan":
                assert len(lifecycle.scan(at, after_days=7)) == 1
            db.session.commit()
        created = lifecycle.scan(T0 + scan_day * DAY, after_days=7)
        assert [r.user_id for r in created] == ([user.id] if opens else [])
        assert len(open_reminders(user.id)) <= 1


def test_scan_opens_in_batches_and_reports_every_reminder(app):
    with app.app_context():
        users = [make_user(f"user{i}@example.com") for i in range(7)]
        created = lifecycle.scan(T0 + 8 * DAY, after_days=7, batch=3)
        assert sorted(r.user_id for r in created) == sorted(u.id for u in users)
        assert all(r.inactive_since == T0 for r in created)
        assert len(db.session.scalars(db.select(Reminder)).all()) == 7
        # One wake-up row per user and one for the admins per batch (3 + 3 + 1 users).
        channels = db.session.scalars(db.select(OutboxEvent.channel)).all()
        assert channels.count(ADMINS_CHANNEL) == 3
        assert sorted(c for c in channels if c != ADMINS_CHANNEL) == sorted(user_channel(u.id) for u in users)
        assert lifecycle.scan(T0 + 9 * DAY, after_days=7) == []


def test_scan_survives_an_open_reminder_whose_clock_still_runs(app):
    """A batch that hits the unique constraint falls back to one user at a time: no double, no crash."""
    with app.app_context():
        odd = make_user("odd@example.com")
        normal = make_user("normal@example.com")
        # An inconsistent row (open reminder, clock still running), as a crash between two
        # statements of an older version could have left it.
        db.session.add(Reminder(user_id=odd.id, status="open", open_for_user_id=odd.id, inactive_since=T0))
        db.session.commit()
        created = lifecycle.scan(T0 + 8 * DAY, after_days=7)
        assert [r.user_id for r in created] == [normal.id]
        assert len(open_reminders(odd.id)) == 1 and len(open_reminders(normal.id)) == 1
        assert db.session.get(User, odd.id).reminder_clock is None


def _plan(statement, explain: str) -> str:
    """The database's plan for a statement, as one string."""
    sql = str(statement.compile(db.engine, compile_kwargs={"literal_binds": True}))
    return " ".join(str(row) for row in db.session.execute(sa.text(explain + sql)))


def test_scan_claims_only_due_users_through_the_index(app):
    """The UPDATE the scan really runs, not just the select inside it."""
    with app.app_context():
        plan = _plan(lifecycle.claim_due_users_statement(T0, 7, 1000), "EXPLAIN QUERY PLAN ")
        # One index range per "remind me after" value (the site's default and 3 to 60), no table scan;
        # the outer UPDATE finds its rows by primary key.
        assert plan.count("USING COVERING INDEX ix_users_remind_after_days_clock") == 59
        assert "SCAN users" not in plan


def test_scan_claims_only_due_users_through_the_index_on_postgresql(tmp_path, postgres_url):
    app = build_app(tmp_path, SQLALCHEMY_DATABASE_URI=postgres_url)
    try:
        with app.app_context():
            # With sequential scans priced out, a plan that still shows one could not use the index.
            db.session.execute(sa.text("SET enable_seqscan = off"))
            plan = _plan(lifecycle.claim_due_users_statement(T0, 7, 1000), "EXPLAIN ")
            assert "ix_users_remind_after_days_clock" in plan
            assert "Seq Scan" not in plan
            db.session.rollback()
    finally:
        with app.app_context():
            db.engine.dispose()


def test_activity_resolves_and_dismiss_ends_with_outbox_rows(app):
    with app.app_context():
        user = make_user()
        lifecycle.scan(T0 + 8 * DAY, after_days=7)
        reminder = open_reminders(user.id)[0]
        assert reminder.status == "open" and reminder.inactive_since == T0
        lifecycle.record_weight_logged(user, T0 + 9 * DAY)
        db.session.commit()
        assert reminder.status == "resolved" and reminder.open_for_user_id is None
        assert reminder.ended_at == T0 + 9 * DAY

        lifecycle.scan(T0 + 16 * DAY, after_days=7)
        second = open_reminders(user.id)[0]
        assert lifecycle.dismiss(user, T0 + 17 * DAY) is second
        db.session.commit()
        assert second.status == "dismissed"
        assert lifecycle.dismiss(user, T0 + 18 * DAY) is None  # nothing open: nothing to announce

        kinds = db.session.execute(
            db.select(OutboxEvent.channel, OutboxEvent.kind).order_by(OutboxEvent.id)
        ).all()
        mine = [kind for channel, kind in kinds if channel == user_channel(user.id)]
        assert mine == ["reminder", "weight", "reminder", "dismissed"]
        assert [kind for channel, kind in kinds if channel == ADMINS_CHANNEL] == mine


def test_the_database_refuses_a_second_open_reminder(app):
    with app.app_context():
        user = make_user()
        for _ in range(2):
            db.session.add(Reminder(user_id=user.id, open_for_user_id=user.id, inactive_since=T0))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
        # Ended reminders (open_for_user_id NULL) are as many as history makes.
        for status in ("resolved", "dismissed"):
            db.session.add(Reminder(user_id=user.id, status=status, open_for_user_id=None, inactive_since=T0))
        db.session.commit()


def test_open_reminder_loses_to_activity_between_query_and_insert(app):
    with app.app_context():
        user = make_user()
        due = list(db.session.scalars(lifecycle.due_users_query(T0 + 8 * DAY, 7)))
        assert due == [user.id]
        lifecycle.record_weight_logged(user, T0 + 8 * DAY - SECOND)  # logged while the scan ran
        db.session.commit()
        assert lifecycle.open_reminder(user.id, T0 + 8 * DAY, due_before=T0 + DAY) is None


def test_prune_keeps_each_channels_newest_row(app):
    with app.app_context():
        old, recent = T0, T0 + 20 * DAY
        for channel, at in [
            ("user:1", old),
            ("user:1", old),
            ("user:2", old),
            ("user:1", recent),
            (ADMINS_CHANNEL, old),
        ]:
            db.session.add(OutboxEvent(channel=channel, kind="test", created_at=at))
        db.session.commit()
        assert (
            prune(7, now=T0 + 21 * DAY) == 2
        )  # user:1's two old rows; user:2 and admins keep their only row
        left = db.session.execute(
            db.select(OutboxEvent.channel, OutboxEvent.created_at).order_by(OutboxEvent.id)
        ).all()
        assert left == [("user:2", old), ("user:1", recent), (ADMINS_CHANNEL, old)]


# -- the banner and the dismiss view -----------------------------------------------------


def _login(client, app, **fields):
    with app.app_context():
        user = make_user(**fields)
        user_id = user.id
    log_in_client(client, app, user_id)
    return user_id


def _open_now(app, user_id):
    with app.app_context():
        user = db.session.get(User, user_id)
        lifecycle.open_reminder(user.id)
        db.session.commit()


@pytest.mark.parametrize(
    ("last_weight", "expected"),
    [
        (datetime(datetime.now(UTC).year, 11, 12, 12, tzinfo=UTC), "since 12 Nov."),
        (None, "since 3 Mar 2025."),  # never weighed: the sign-up date
    ],
)
def test_banner_on_page_load_says_what_to_do(app, client, last_weight, expected):
    user_id = _login(client, app, created_at=datetime(2025, 3, 3, 8, tzinfo=UTC), last_weight_at=last_weight)
    assert b'data-reminder-state="none"' in client.get("/dashboard").data
    _open_now(app, user_id)
    page = client.get("/dashboard").get_data(as_text=True)
    assert f"You have not logged your weight {expected}" in page
    assert 'href="/dashboard#weight">Log it now</a>' in page
    assert 'hx-post="/reminders/dismiss"' in page and 'action="/reminders/dismiss"' in page
    assert 'name="csrf_token"' in page
    assert 'id="reminder-area"' in page and 'hx-sse:close="weighin:signed-out"' in page


def test_dismiss_with_htmx_returns_the_empty_area(app, client):
    user_id = _login(client, app)
    _open_now(app, user_id)
    response = client.post("/reminders/dismiss", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert 'data-reminder-state="none"' in body and "Dismiss" not in body
    with app.app_context():
        assert open_reminders(user_id) == []


def test_dismiss_without_javascript_goes_back_to_the_page(app, client):
    user_id = _login(client, app)
    _open_now(app, user_id)
    response = client.post("/reminders/dismiss", headers={"Referer": "http://localhost/account/settings"})
    assert response.status_code == 302 and response.location == "/account/settings"
    # A foreign or missing referrer goes to the dashboard.
    assert (
        client.post("/reminders/dismiss", headers={"Referer": "https://evil.example/x"}).location
        == "/dashboard"
    )
    assert client.post("/reminders/dismiss").location == "/dashboard"


def test_dismiss_needs_login(client):
    response = client.post("/reminders/dismiss")
    assert response.status_code == 302 and "/account/login" in response.location


def test_dismiss_needs_a_csrf_token(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SECRET_KEY": TEST_SECRET,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'csrf.db'}",
            "PASSWORD_HASH_METHOD": FAST_HASH,
        }
    )
    with app.app_context():
        db.create_all()
    client = app.test_client()
    user_id = _login(client, app)
    _open_now(app, user_id)
    assert client.post("/reminders/dismiss", headers={"HX-Request": "true"}).status_code == 400
    with app.app_context():
        assert len(open_reminders(user_id)) == 1
        db.engine.dispose()


# -- the command line --------------------------------------------------------------------


def test_scan_command_prints_what_it_opened(app, runner):
    with app.app_context():
        user_id = make_user().id
    result = runner.invoke(args=["reminders", "scan", "--now", "2026-01-12T09:00:00Z"])
    assert result.exit_code == 0, result.output
    assert f"opened reminder 1 for user {user_id} (inactive since 2026-01-05T09:00:00+00:00)" in result.output
    assert "1 reminder(s) opened" in result.output
    again = runner.invoke(args=["reminders", "scan", "--now", "2026-01-12T09:00:00Z"])
    assert "0 reminder(s) opened" in again.output


def test_scan_command_prunes_the_outbox_on_the_real_clock(app, runner):
    """A scan "as if" next month opens next month's reminders but keeps this week's outbox rows."""
    real_now = utcnow()
    with app.app_context():
        for at in [real_now - 9 * DAY, real_now - 3 * DAY, real_now - DAY, real_now]:
            db.session.add(OutboxEvent(channel="user:1", kind="test", created_at=at))
        db.session.commit()
    later = (real_now + 30 * DAY).isoformat()
    result = runner.invoke(args=["reminders", "scan", "--now", later])
    assert result.exit_code == 0, result.output
    assert "1 old outbox row(s) pruned" in result.output
    with app.app_context():
        kept = db.session.scalars(db.select(OutboxEvent.created_at).order_by(OutboxEvent.id)).all()
    assert [at.replace(tzinfo=None) for at in kept] == [
        at.replace(tzinfo=None) for at in (real_now - 3 * DAY, real_now - DAY, real_now)
    ]


@pytest.mark.parametrize("bad", ["tomorrow", "2026-13-01", "", "12/11/2026"])
def test_scan_command_rejects_a_bad_now(runner, bad):
    result = runner.invoke(args=["reminders", "scan", "--now", bad])
    assert result.exit_code == 2
    assert "is not an ISO 8601 date or date-time" in result.output


def test_the_scan_uses_each_users_own_number_of_days(app):
    with app.app_context():
        three = make_user("three@example.com", remind_after_days=3).id
        default = make_user("default@example.com").id
        fourteen = make_user("fourteen@example.com", remind_after_days=14).id
        sixty = make_user("sixty@example.com", remind_after_days=60).id
        opened = {}
        for days in (2.9, 3, 6.9, 7, 13.9, 14, 59.9, 60):
            for reminder in lifecycle.scan(T0 + days * DAY, after_days=7):
                opened[reminder.user_id] = days
        assert opened == {three: 3, default: 7, fourteen: 14, sixty: 60}
        # Dismissed, it comes back after the user's own number of days again.
        lifecycle.dismiss(db.session.get(User, three), T0 + 61 * DAY)
        db.session.commit()
        assert lifecycle.scan(T0 + 63.9 * DAY, after_days=7) == []
        assert [r.user_id for r in lifecycle.scan(T0 + 64 * DAY, after_days=7)] == [three]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_opening_a_second_reminder_leaves_the_open_one_and_the_transaction_alone(tmp_path, backend, request):
    """Two openers at once (a scan and "Remind now"): the loser gets None, the winner's reminder
    stays the only open one, and what else the loser's transaction holds still commits."""
    overrides = {}
    if backend == "postgresql":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("postgres_url")
    app = build_app(tmp_path, **overrides)
    try:
        with app.app_context():
            ada = make_user().id
            first = lifecycle.open_reminder(ada, T0 + 8 * DAY, source="scan")
            assert first is not None and first.id is not None and first.status == "open"
            db.session.commit()
            user = db.session.get(User, ada)
            user.display_name = "Ada L."
            # Without the clock condition, as "Remind now" asks: the insert meets the open one.
            assert lifecycle.open_reminder(ada, T0 + 8 * DAY + SECOND, source="admin") is None
            db.session.commit()
            assert [r.id for r in open_reminders(ada)] == [first.id]
            assert db.session.get(User, ada).display_name == "Ada L."
            assert db.session.scalar(db.select(sa.func.count()).select_from(Reminder)) == 1
    finally:
        with app.app_context():
            db.engine.dispose()
