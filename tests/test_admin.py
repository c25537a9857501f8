"""The admin side: who may reach it, the inactive-users query, filters, keyset pages, CSV, actions."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest

from webapp.admin.actions import REMIND, REMIND_AGAIN
from webapp.admin.queries import Cursor, InactiveFilter, inactive_users_page, inactive_users_query
from webapp.csvcells import spreadsheet_safe
from webapp.extensions import db
from webapp.models import ADMINS_CHANNEL, AdminAction, OutboxEvent, Reminder, User, user_channel
from webapp.timeutil import utcnow

from .support import add_user

ADMIN_EMAIL = "boss@example.com"
PASSWORD = "correct horse"


def make_user(email, created, weight=None, goal=None, *, reminders=True, admin=False, name=""):
    """A user row whose activity clocks follow the rule: last_active_at = latest of the three."""
    last_active = max(t for t in (created, weight, goal) if t is not None)
    return add_user(
        email,
        at=created,
        admin=admin,
        display_name=name,
        last_weight_at=weight,
        last_goal_at=goal,
        last_active_at=last_active,
        reminder_clock=last_active if reminders else None,
        reminders_enabled=reminders,
    )


@pytest.fixture
def admin_client(client, auth, app):
    """A client logged in as an admin (who signed up just now, so is active)."""
    auth.register(ADMIN_EMAIL, PASSWORD)
    auth.make_admin(ADMIN_EMAIL)
    return client


def ago(days=0, **more) -> datetime:
    return utcnow() - timedelta(days=days, **more)


def listed_emails(response) -> list[str]:
    return re.findall(r'data-user-email="([^"]+)"', response.get_data(as_text=True))


# -- routes (who may reach them: the authorization table in tests/test_security.py) --------------


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/admin/users/1/remind"),
        ("get", "/admin/admins/1/remove"),
        ("post", "/admin/"),
        ("post", "/admin/live"),
        ("post", "/admin/export.csv"),
        ("delete", "/admin/admins"),
    ],
)
def test_wrong_method_is_405_not_500(admin_client, method, path):
    assert getattr(admin_client, method)(path).status_code == 405


@pytest.mark.parametrize("path", ["/admin/users/1/remind", "/admin/admins", "/admin/admins/1/remove"])
def test_every_admin_post_needs_csrf(app, admin_client, path):
    with app.app_context():
        make_user("quiet@example.com", ago(30))
    app.config["WTF_CSRF_ENABLED"] = True
    response = admin_client.post(path, data={"email": "quiet@example.com"})
    assert response.status_code == 400
    assert b"form expired" in response.data
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(AdminAction)) == 0


def test_csrf_token_from_the_page_is_accepted(app, admin_client):
    with app.app_context():
        make_user("quiet@example.com", ago(30))
    app.config["WTF_CSRF_ENABLED"] = True
    page = admin_client.get("/admin/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    user_id = re.search(r'id="user-(\d+)"', page).group(1)
    response = admin_client.post(
        f"/admin/users/{user_id}/remind", headers={"X-CSRFToken": token, "HX-Request": "true"}
    )
    assert response.status_code == 200
    assert b"Reminder sent to quiet@example.com" in response.data


# -- the query, against the rule's edge cases ----------------------------------------------

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def test_query_follows_the_rule_at_its_edges(app):
    d = timedelta(days=1)
    with app.app_context():
        make_user("exactly7@x.com", NOW - 7 * d)  # at the threshold: inactive
        make_user("just-under@x.com", NOW - 7 * d + timedelta(microseconds=1))  # a microsecond short
        make_user("never@x.com", NOW - 30 * d)  # signed up, did nothing
        make_user("weighed-recently@x.com", NOW - 30 * d, weight=NOW - 2 * d)
        make_user("goal-recently@x.com", NOW - 30 * d, weight=NOW - 20 * d, goal=NOW - 1 * d)
        make_user("both-stale@x.com", NOW - 30 * d, weight=NOW - 10 * d, goal=NOW - 9 * d)
        make_user("off@x.com", NOW - 30 * d, reminders=False)  # still inactive, listed
        make_user("new@x.com", NOW - timedelta(hours=1))
        found = {u.email for u in db.session.scalars(inactive_users_query(InactiveFilter(days=7), NOW))}
    assert found == {"exactly7@x.com", "never@x.com", "both-stale@x.com", "off@x.com"}


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("any", {"never@x.com", "weigher@x.com", "goal-setter@x.com", "both@x.com"}),
        ("weight", {"weigher@x.com", "both@x.com"}),
        ("goal", {"goal-setter@x.com", "both@x.com"}),
        ("never", {"never@x.com"}),
    ],
)
def test_kind_filter(app, kind, expected):
    d = timedelta(days=1)
    with app.app_context():
        make_user("never@x.com", NOW - 40 * d)
        make_user("weigher@x.com", NOW - 40 * d, weight=NOW - 20 * d)
        make_user("goal-setter@x.com", NOW - 40 * d, goal=NOW - 20 * d)
        make_user("both@x.com", NOW - 40 * d, weight=NOW - 25 * d, goal=NOW - 20 * d)
        make_user("active@x.com", NOW - 40 * d, weight=NOW - d)
        found = {
            u.email for u in db.session.scalars(inactive_users_query(InactiveFilter(days=7, kind=kind), NOW))
        }
    assert found == expected


def test_threshold_and_email_search_through_the_page(app, admin_client):
    with app.app_context():
        make_user("ten@x.com", ago(10))
        make_user("twenty@x.com", ago(20))
        make_user("Under_Score@y.org", ago(20))
        make_user("underxscore@y.org", ago(20))
    assert set(listed_emails(admin_client.get("/admin/?days=15"))) == {
        "twenty@x.com",
        "Under_Score@y.org",
        "underxscore@y.org",
    }
    assert set(listed_emails(admin_client.get("/admin/"))) == {
        "ten@x.com",
        "twenty@x.com",
        "Under_Score@y.org",
        "underxscore@y.org",
    }
    # Case-insensitive substring; LIKE wildcards in the search are taken literally.
    assert listed_emails(admin_client.get("/admin/?q=WENT")) == ["twenty@x.com"]
    assert listed_emails(admin_client.get("/admin/?q=r_s")) == ["Under_Score@y.org"]
    assert listed_emails(admin_client.get("/admin/?q=%25")) == []


def test_default_list_uses_each_users_own_remind_after_days(app, admin_client):
    """Without a threshold, a user is inactive by their own Settings value (0 = the site's 7)."""
    with app.app_context():
        add_user("three@x.com", at=ago(4), remind_after_days=3)
        add_user("thirty@x.com", at=ago(10), remind_after_days=30)
        add_user("default@x.com", at=ago(8))
        add_user("recent@x.com", at=ago(5))
        add_user("off@x.com", at=ago(5), remind_after_days=3, reminders_enabled=False, reminder_clock=None)
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert set(re.findall(r'data-user-email="([^"]+)"', page)) == {
        "three@x.com",
        "default@x.com",
        "off@x.com",
    }
    # Reminders off: still inactive by their own number of days, and marked so.
    off_row = page[page.index('data-user-email="off@x.com"') :]
    assert 'data-reminder-state="reminders off"' in off_row[: off_row.index("</tr>")]
    assert 'id="count-inactive">3<' in page
    # A threshold the admin types applies to everyone alike.
    assert set(listed_emails(admin_client.get("/admin/?days=9"))) == {"thirty@x.com"}
    with app.app_context():
        found = {
            u.email for u in db.session.scalars(inactive_users_query(InactiveFilter(days=None), utcnow()))
        }
    assert found == {"three@x.com", "default@x.com", "off@x.com"}


def test_table_shows_clocks_days_and_reminder_state(app, admin_client):
    with app.app_context():
        make_user("dismissed@x.com", ago(20), weight=ago(12), name="Dee")
        dismissed = db.session.scalar(db.select(User).where(User.email == "dismissed@x.com"))
        db.session.add(
            Reminder(
                user_id=dismissed.id,
                status="dismissed",
                inactive_since=ago(12),
                created_at=ago(4),
                ended_at=ago(3),
            )
        )
        make_user("off@x.com", ago(9), reminders=False)
        db.session.commit()
    page = admin_client.get("/admin/").get_data(as_text=True)
    row = page[page.index('data-user-email="dismissed@x.com"') :]
    row = row[: row.index("</tr>")]
    assert "<td>Dee</td>" in row and "<td>12</td>" in row and "dismissed" in row and "never" in row
    off_row = page[page.index('data-user-email="off@x.com"') :]
    assert "reminders off" in off_row[: off_row.index("</tr>")]
    assert 'id="count-inactive">2<' in page and 'id="count-users">3<' in page
    assert 'id="count-dismissed">1<' in page and 'id="count-active">1<' in page


# -- bad input: a notice and a sane default, never a 500 ----------------------------------


@pytest.mark.parametrize(
    "query,notice",
    [
        ("days=abc", "is not a whole number of days"),
        ("days=1e3", "is not a whole number of days"),
        ("days=--5", "is not a whole number of days"),
        ("days=%E2%91%A0", "is not a whole number of days"),
        ("days=-3", "at least 1 day"),
        ("days=0", "at least 1 day"),
        ("days=99999999999999999999999", "is not a whole number of days"),
        ("days=5000", "at most 3650 days"),
        ("sort=email", "Unknown sort order"),
        ("kind=admins", "Unknown “Show” choice"),
        ("after=xyz", "page link was not valid"),
        ("after=999999999999999999_1", "page link was not valid"),
        ("before=1_99999999999", "page link was not valid"),
        ("after=-5_3", "page link was not valid"),
        ("after=1_1&before=1_1", "cannot go both ways"),
        ("q=" + "a" * 300, "cut to 254 characters"),
    ],
)
@pytest.mark.parametrize("path", ["/admin/", "/admin/live", "/admin/export.csv"])
def test_bad_filters_get_a_notice_and_a_default(app, admin_client, query, notice, path):
    with app.app_context():
        make_user("quiet@example.com", ago(30))
    response = admin_client.get(f"{path}?{query}")
    assert response.status_code == 200
    if path != "/admin/export.csv":
        assert notice in response.get_data(as_text=True)
        if "days" in query and "5000" not in query:  # 5000 is clamped to 3650, the rest fall back to 7
            assert "quiet@example.com" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/users/999/remind",
        "/admin/users/0/remind",
        "/admin/users/99999999999999999999/remind",
        "/admin/admins/999/remove",
        "/admin/admins/99999999999999999999/remove",
    ],
)
def test_tampered_user_id(admin_client, path):
    response = admin_client.post(path, headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert b"no such user" in response.data
    fallback = admin_client.post(path, follow_redirects=True)
    assert fallback.status_code == 200 and b"no such user" in fallback.data


@pytest.mark.parametrize(
    "path", ["/admin/users/abc/remind", "/admin/users/-1/remind", "/admin/admins/1.5/remove"]
)
def test_non_numeric_user_id_is_404(admin_client, path):
    assert admin_client.post(path).status_code == 404


# -- keyset pagination ---------------------------------------------------------------------


def _page_ids(response) -> list[int]:
    return [int(x) for x in re.findall(r'<tr id="user-(\d+)"', response.get_data(as_text=True))]


def _link(response, rel) -> str | None:
    found = re.search(rf'rel="{rel}" href="([^"]+)"', response.get_data(as_text=True))
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.mark.parametrize("sort", ["longest", "shortest"])
def test_pages_cover_the_list_without_duplicates_or_gaps(app, admin_client, sort):
    app.config["ADMIN_PAGE_SIZE"] = 4
    with app.app_context():
        base = ago(40)
        for i in range(17):
            # Groups of three share a timestamp, so the id tie-break matters.
            make_user(f"u{i:02}@x.com", base + timedelta(hours=i // 3))
        flt = InactiveFilter(days=7, sort=sort)
        query = inactive_users_query(flt, utcnow())
        if sort == "longest":
            query = query.order_by(User.last_active_at.asc(), User.id.asc())
        else:
            query = query.order_by(User.last_active_at.desc(), User.id.desc())
        expected = [u.id for u in db.session.scalars(query)]
    assert len(expected) == 17

    pages, response = [], admin_client.get(f"/admin/?sort={sort}")
    while True:
        pages.append(_page_ids(response))
        nxt = _link(response, "next")
        if nxt is None:
            break
        response = admin_client.get(nxt)
    assert [len(p) for p in pages] == [4, 4, 4, 4, 1]
    assert sum(pages, []) == expected

    # And back again with "Previous", page by page.
    back = []
    while (prev := _link(response, "prev")) is not None:
        response = admin_client.get(prev)
        back.append(_page_ids(response))
    assert back == pages[-2::-1]


def test_page_survives_rows_leaving_between_requests(app):
    with app.app_context():
        users = [make_user(f"u{i}@x.com", NOW - timedelta(days=30 - i)) for i in range(6)]
        first = inactive_users_page(InactiveFilter(days=7), NOW, 3)
        assert [u.email for u in first.users] == ["u0@x.com", "u1@x.com", "u2@x.com"]
        # The last row of page 1 logs a weight: page 2 still starts right after where page 1 ended.
        users[2].last_active_at = NOW
        db.session.commit()
        second = inactive_users_page(InactiveFilter(days=7, after=first.next_cursor), NOW, 3)
        assert [u.email for u in second.users] == ["u3@x.com", "u4@x.com", "u5@x.com"]
        assert second.next_cursor is None


def test_cursor_round_trip():
    cursor = Cursor(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), 42)
    assert Cursor.decode(cursor.encode()) == cursor
    for bad in ["", "1", "_", "a_b", "1_", "_1", "1_2_3", "１_2", "1 _2"]:
        with pytest.raises(ValueError):
            Cursor.decode(bad)


def _sqlite_plan(query) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN steps for a query (needs an app context on SQLite)."""
    from sqlalchemy.dialects import sqlite

    sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    return [row[-1] for row in db.session.execute(db.text("EXPLAIN QUERY PLAN " + sql))]


def _page_plans(days: int | None) -> dict[str, str]:
    """The plan of the admin list's second page, for each sort order, as one line each."""
    from webapp.admin.queries import _ordered, _seek

    after = Cursor(NOW - timedelta(days=300), 5)
    flt = InactiveFilter(days=days, after=after)
    plans = {}
    for sort in ("longest", "shortest"):
        flt.sort = sort
        forward = sort == "longest"
        query = _ordered(_seek(inactive_users_query(flt, NOW), after, forward), forward).limit(51)
        plans[sort] = " | ".join(_sqlite_plan(query))
    return plans


def test_page_query_walks_the_last_active_index_on_sqlite(app):
    """The keyset page is a range scan of ix_users_last_active_at with no sort step (see queries.py)."""
    with app.app_context():
        for plan in _page_plans(days=7).values():
            assert "ix_users_last_active_at" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


def test_own_days_page_query_is_one_walk_of_the_last_active_index_on_sqlite(app):
    """Each user's own number of days is a filter on the same range scan, not a second query or a sort."""
    with app.app_context():
        for plan in _page_plans(days=None).values():
            assert "SEARCH users USING INDEX ix_users_last_active_at" in plan, plan
            assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan


def test_still_active_count_reads_only_the_own_days_index_on_sqlite(app):
    """The count behind "Inactive": a covering-index range per value, never the table or a scan."""
    from webapp.admin.queries import still_active_count_query

    with app.app_context():
        add_user("three@x.com", at=NOW - timedelta(days=2), remind_after_days=3)
        add_user("old@x.com", at=NOW - timedelta(days=9))
        add_user("default@x.com", at=NOW - timedelta(days=6))
        assert db.session.scalar(still_active_count_query(NOW, 7)) == 2
        plan = _sqlite_plan(still_active_count_query(NOW, 7))
        searches = [step for step in plan if step.startswith("SEARCH users")]
        assert len(searches) == 59, plan  # the site's default and 3 to 60 days
        assert all("COVERING INDEX ix_users_remind_after_days_last_active" in step for step in searches), plan
        assert not any(step.startswith("SCAN users") for step in plan), plan


# -- CSV -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,safe",
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        (None, ""),
        (7, "7"),
    ],
)
def test_spreadsheet_safe(raw, safe):
    assert spreadsheet_safe(raw) == safe


def test_csv_export_of_the_filtered_list(app, admin_client):
    app.config["ADMIN_PAGE_SIZE"] = 2
    with app.app_context():
        make_user("=cmd@x.com", ago(20), name='=HYPERLINK("http://evil")')
        make_user("plain@x.com", ago(15), weight=ago(12), name='Plain, "Quoted"')
        make_user("other@y.org", ago(30))
        make_user("fresh@x.com", ago(1))
    response = admin_client.get("/admin/export.csv?q=x.com&after=1_1")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["email", "display_name", "last_weight_at"]
    # Every page (not just the one in the link), only matching rows, longest inactive first.
    assert [r[0] for r in rows[1:]] == ["'=cmd@x.com", "plain@x.com"]
    assert rows[1][1] == '\'=HYPERLINK("http://evil")'
    assert rows[2][1] == 'Plain, "Quoted"'
    assert (
        rows[2][5] == "12"
        and rows[2][6] == "7"
        and rows[2][7] == "none"
        and rows[2][2].startswith(str(ago(12).year))
    )


# -- remind now ----------------------------------------------------------------------------


def _outbox(channel):
    return db.session.scalar(
        db.select(db.func.count()).select_from(OutboxEvent).where(OutboxEvent.channel == channel)
    )


def test_remind_now_opens_one_reminder_and_records_it(app, admin_client):
    with app.app_context():
        user_id = make_user("quiet@example.com", ago(30)).id
    response = admin_client.post(f"/admin/users/{user_id}/remind", headers={"HX-Request": "true"})
    assert response.status_code == 200 and b"Reminder sent to quiet@example.com" in response.data
    again = admin_client.post(f"/admin/users/{user_id}/remind", headers={"HX-Request": "true"})
    assert again.status_code == 200 and b"already had an open reminder" in again.data
    with app.app_context():
        reminders = list(db.session.scalars(db.select(Reminder).where(Reminder.user_id == user_id)))
        assert len(reminders) == 1  # never doubled
        reminder = reminders[0]
        admin = db.session.scalar(db.select(User).where(User.email == ADMIN_EMAIL))
        assert (reminder.status, reminder.source, reminder.created_by_id) == ("open", "admin", admin.id)
        actions = list(db.session.scalars(db.select(AdminAction).order_by(AdminAction.id)))
        assert [(a.action, a.admin_id, a.user_id, a.reminder_id) for a in actions] == [
            (REMIND, admin.id, user_id, reminder.id),
            (REMIND_AGAIN, admin.id, user_id, reminder.id),
        ]
        # Each press woke the user's pages (their stream re-renders the banner) and the admins'.
        assert _outbox(user_channel(user_id)) == 2
        assert _outbox(ADMINS_CHANNEL) == 2
    page = " ".join(admin_client.get("/admin/").get_data(as_text=True).split())
    assert f"sent by {ADMIN_EMAIL}" in page
    assert f"{ADMIN_EMAIL} reminded quiet@example.com" in page
    assert "showed the open reminder again to quiet@example.com" in page


def test_remind_now_writes_the_reminder_the_lifecycle_would_on_each_database(either_db_app):
    """PostgreSQL opens it with one statement of its own (issue 16): the same row, audit row,
    cleared clock and outbox rows as SQLite's path through the lifecycle."""
    from webapp.reminders.escalation import first_email_at

    from .conftest import AuthActions

    app = either_db_app
    client = app.test_client()
    auth = AuthActions(client, app)
    auth.register(ADMIN_EMAIL, PASSWORD)
    auth.make_admin(ADMIN_EMAIL)
    with app.app_context():
        quiet = make_user("quiet@example.com", ago(30))
        quiet.timezone = "Asia/Seoul"
        db.session.commit()
        user_id, last_active = quiet.id, quiet.last_active_at
    before = utcnow()
    response = client.post(f"/admin/users/{user_id}/remind", headers={"HX-Request": "true"})
    assert response.status_code == 200 and b"Reminder sent to quiet@example.com" in response.data
    again = client.post(f"/admin/users/{user_id}/remind", headers={"HX-Request": "true"})
    assert again.status_code == 200 and b"already had an open reminder" in again.data
    with app.app_context():
        admin = auth.user(ADMIN_EMAIL)
        (reminder,) = db.session.scalars(db.select(Reminder).where(Reminder.user_id == user_id))
        assert (reminder.status, reminder.open_for_user_id, reminder.source, reminder.created_by_id) == (
            "open",
            user_id,
            "admin",
            admin.id,
        )
        assert reminder.inactive_since == last_active
        assert before <= reminder.created_at <= utcnow()
        # The first email's time in the user's own zone and hours, as the lifecycle sets it.
        assert reminder.email_at == first_email_at(reminder.created_at, "Asia/Seoul", True)
        assert (reminder.shown_at, reminder.emailed_at, reminder.ended_at) == (None, None, None)
        assert db.session.get(User, user_id).reminder_clock is None
        actions = list(db.session.scalars(db.select(AdminAction).order_by(AdminAction.id)))
        assert [(a.action, a.admin_id, a.user_id, a.reminder_id) for a in actions] == [
            (REMIND, admin.id, user_id, reminder.id),
            (REMIND_AGAIN, admin.id, user_id, reminder.id),
        ]
        assert actions[0].created_at == reminder.created_at
        assert _outbox(user_channel(user_id)) == 2
        assert _outbox(ADMINS_CHANNEL) == 2


def test_on_postgresql_two_remind_nows_at_once_open_one_reminder(tmp_path, postgres_url):
    """Two admins press "Remind now" for one user at the same moment: both wait on the user's row
    (held here), then one opens the reminder and the other shows it again; never two."""
    import threading
    import time

    import psycopg

    from .conftest import AuthActions
    from .support import build_app

    app = build_app(tmp_path, SQLALCHEMY_DATABASE_URI=postgres_url)
    admins = [app.test_client(), app.test_client()]
    for number, client in enumerate(admins):
        auth = AuthActions(client, app)
        auth.register(f"admin{number}@example.com", PASSWORD)
        auth.make_admin(f"admin{number}@example.com")
    with app.app_context():
        user_id = make_user("quiet@example.com", ago(30)).id
    answers: list[bytes] = []
    holder = psycopg.connect(postgres_url.replace("+psycopg", ""))
    # Its own connection, outside a transaction: pg_stat_activity is read once per transaction.
    watcher = psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True)
    try:
        holder.execute("SELECT id FROM users WHERE id = %s FOR UPDATE", [user_id])
        presses = [
            threading.Thread(
                target=lambda c=client: answers.append(
                    c.post(f"/admin/users/{user_id}/remind", headers={"HX-Request": "true"}).data
                )
            )
            for client in admins
        ]
        for press in presses:
            press.start()
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        deadline = time.monotonic() + 30
        while watcher.execute(waiting).fetchone() != (2,) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.execute(waiting).fetchone() == (2,)
        holder.rollback()
        for press in presses:
            press.join(30)
    finally:
        holder.close()
        watcher.close()
    try:
        assert sorted(b"already had an open reminder" in answer for answer in answers) == [False, True]
        with app.app_context():
            (reminder,) = db.session.scalars(db.select(Reminder).where(Reminder.user_id == user_id))
            actions = sorted((a.action, a.reminder_id) for a in db.session.scalars(db.select(AdminAction)))
            assert actions == [(REMIND, reminder.id), (REMIND_AGAIN, reminder.id)]
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_remind_now_form_fallback_redirects_back(app, admin_client):
    with app.app_context():
        user_id = make_user("quiet@example.com", ago(30)).id
    response = admin_client.post(f"/admin/users/{user_id}/remind", data={"next": "/admin/?days=9"})
    assert response.status_code == 303 and response.location.endswith("/admin/?days=9")
    assert b"Reminder sent to quiet@example.com" in admin_client.get("/admin/?days=9").data
    outside = admin_client.post(f"/admin/users/{user_id}/remind", data={"next": "https://evil.example/"})
    assert outside.location.endswith("/admin/")


def test_remind_now_respects_reminders_off(app, admin_client):
    with app.app_context():
        user_id = make_user("off@example.com", ago(30), reminders=False).id
    response = admin_client.post(f"/admin/users/{user_id}/remind", headers={"HX-Request": "true"})
    assert response.status_code == 409 and b"turned reminders off" in response.data
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Reminder)) == 0


# -- the admin flag ------------------------------------------------------------------------


def test_grant_and_remove_admin(app, admin_client):
    with app.app_context():
        helper_id = make_user("helper@example.com", ago(1)).id
    response = admin_client.post(
        "/admin/admins", data={"email": "  Helper@Example.com "}, follow_redirects=True
    )
    assert b"helper@example.com is now an admin" in response.data
    again = admin_client.post("/admin/admins", data={"email": "helper@example.com"}, follow_redirects=True)
    assert b"already an admin" in again.data
    missing = admin_client.post("/admin/admins", data={"email": "nobody@example.com"}, follow_redirects=True)
    assert "no account with the email “nobody@example.com”" in missing.get_data(as_text=True)
    empty = admin_client.post("/admin/admins", data={}, follow_redirects=True)
    assert b"Enter the email address" in empty.data
    removed = admin_client.post(f"/admin/admins/{helper_id}/remove", follow_redirects=True)
    assert b"helper@example.com is no longer an admin" in removed.data
    not_admin = admin_client.post(f"/admin/admins/{helper_id}/remove", follow_redirects=True)
    assert b"is not an admin" in not_admin.data
    with app.app_context():
        assert not db.session.get(User, helper_id).is_admin
        assert [a.action for a in db.session.scalars(db.select(AdminAction).order_by(AdminAction.id))] == [
            "grant_admin",
            "remove_admin",
        ]
    history = " ".join(admin_client.get("/admin/admins").get_data(as_text=True).split())
    assert f"{ADMIN_EMAIL} removed the admin flag from helper@example.com" in history


def test_last_admin_cannot_remove_their_own_flag(app, admin_client, auth):
    with app.app_context():
        me = auth.user(ADMIN_EMAIL).id
    response = admin_client.post(f"/admin/admins/{me}/remove", headers={"HX-Request": "true"})
    assert response.status_code == 409
    assert b"you are the last admin" in response.data
    page = admin_client.post(f"/admin/admins/{me}/remove", follow_redirects=True)
    assert b"you are the last admin" in page.data
    with app.app_context():
        assert auth.user(ADMIN_EMAIL).is_admin


def test_an_admin_who_is_not_the_last_may_step_down(app, admin_client, auth):
    with app.app_context():
        make_user("second@example.com", ago(1), admin=True)
        me = auth.user(ADMIN_EMAIL).id
    response = admin_client.post(f"/admin/admins/{me}/remove")
    assert response.status_code == 303 and response.location.endswith("/dashboard")
    assert admin_client.get("/admin/").status_code == 403
