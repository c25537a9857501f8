"""The transports' wake-ups share their reads (events/area.py AreaReader, issue 16): streams
woken together are read with one query, and each still gets its own user's area only."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import gevent
import pytest
import sqlalchemy as sa
from flask_babel import force_locale

from webapp.events.area import read_area, read_state, transport_links
from webapp.extensions import db
from webapp.models import Reminder, stream_channels, user_channel
from webapp.reminders import lifecycle
from webapp.testing import session_cookie
from webapp.web import format_local_date

from .support import add_user, build_app, executed_statements


def _banner_reads(app) -> list[str]:
    """Every statement that reads open reminders for the banner, as the engine runs them."""
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "open_for_user_id" in statement:
            seen.append(statement)

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", note)
    return seen


def test_streams_woken_together_share_one_read_and_each_gets_its_own_banner(tmp_path):
    app = build_app(tmp_path)
    with app.app_context():
        users = [add_user(f"user{i}@example.com", days_ago=9).id for i in range(12)]
        quiet = add_user("quiet@example.com").id  # no reminder: the empty area
        reminder_of = {uid: lifecycle.open_reminder(uid).id for uid in users}
        db.session.commit()
    with app.test_request_context():
        links = transport_links()
    reads = _banner_reads(app)
    got: dict[int, str] = {}

    def woken(user_id: int) -> None:
        with app.app_context():
            got[user_id] = read_area(user_id, links)

    # A burst: every stream wakes at once (as many greenlets as the broker's dispatch wakes).
    gevent.joinall([gevent.spawn(woken, uid) for uid in [*users, quiet, users[0]]], raise_error=True)

    assert len(reads) == 1, reads
    for uid in users:
        assert re.findall(r'data-reminder-id="(\d+)"', got[uid]) == [str(reminder_of[uid])]
    assert 'data-reminder-state="none"' in got[quiet] and "data-reminder-id" not in got[quiet]
    with app.app_context():
        # Each first showing was committed before the banner went back (no email for them).
        shown = db.session.scalars(sa.select(Reminder.shown_at).where(Reminder.id.in_(reminder_of.values())))
        assert all(value is not None for value in shown)

    # Woken one after another, each is read on its own, at once.
    reads.clear()
    for uid in users[:3]:
        woken(uid)
    assert len(reads) == 3


def test_a_burst_renders_each_kind_of_banner_once_and_each_user_gets_their_own(tmp_path):
    """A transport's banner is kept per language, date and links, with the id put in afterwards:
    the same markup as a render of its own, each user's own id, date and language."""
    app = build_app(tmp_path)
    with app.app_context():
        people = [
            add_user(f"{language}{days}{n}@example.com", days_ago=days, locale=language, timezone=zone)
            for language, zone in (("en", "Europe/London"), ("ko", "Asia/Seoul"))
            for days in (9, 12)
            for n in range(2)
        ]
        users = [(user.id, user.locale, user.created_at, user.timezone) for user in people]
        reminder_of = {uid: lifecycle.open_reminder(uid).id for uid, *_ in users}
        db.session.commit()
    with app.test_request_context():
        links = transport_links()
    got: dict[int, str] = {}

    def woken(user_id: int) -> None:
        with app.app_context():
            got[user_id] = read_area(user_id, links)

    gevent.joinall([gevent.spawn(woken, uid) for uid, *_ in users], raise_error=True)

    template = app.jinja_env.get_template("reminders/_area.html")
    for uid, language, created_at, zone in users:
        with app.test_request_context(), force_locale(language):
            since = format_local_date(created_at, ZoneInfo(zone))
            alone = template.render(
                banner={"id": reminder_of[uid], "since": since, "csrf_token": None, **links_of(links)}
            )
        assert got[uid] == alone
        assert re.findall(r'data-reminder-id="(\d+)"', got[uid]) == [str(reminder_of[uid])]
        assert ("지금 기록하기" in got[uid]) == (language == "ko")
    # Two languages by two dates: four renders of the template for eight banners.
    assert len(app.extensions["weighin_banner_parts"]) == 4


def links_of(links) -> dict[str, str]:
    return {"log_url": links.log_url, "dismiss_url": links.dismiss_url}


def test_a_failed_read_reaches_every_stream_of_its_batch_and_the_next_batch_works(tmp_path):
    app = build_app(tmp_path)
    with app.app_context():
        ada = add_user("ada@example.com", days_ago=9).id
        lifecycle.open_reminder(ada)
        db.session.commit()
    with app.test_request_context():
        links = transport_links()
    outcomes: list[object] = []

    def woken() -> None:
        with app.app_context():
            try:
                outcomes.append(read_area(ada, links))
            except Exception as error:
                outcomes.append(error)

    with app.app_context():
        db.session.execute(sa.text("ALTER TABLE reminders RENAME TO reminders_away"))
        db.session.commit()
    gevent.joinall([gevent.spawn(woken) for _ in range(3)])
    assert len(outcomes) == 3 and all(isinstance(o, sa.exc.OperationalError) for o in outcomes), outcomes

    with app.app_context():
        db.session.execute(sa.text("ALTER TABLE reminders_away RENAME TO reminders"))
        db.session.commit()
    outcomes.clear()
    woken()
    assert len(outcomes) == 1 and 'data-reminder-state="open"' in str(outcomes[0])


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_connect_reads_its_newest_id_and_its_banner_in_one_statement(tmp_path, request, database):
    """A connect's (or a poll's) two reads are one round trip, on both databases, and each user
    gets their own banner and their channels' own newest id."""
    overrides = {}
    if database == "postgresql":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("postgres_url")
    app = build_app(tmp_path, **overrides)
    try:
        with app.app_context():
            ada, bob = add_user("ada@example.com").id, add_user("bob@example.com").id
            lifecycle.open_reminder(ada)
            db.session.commit()
            lifecycle.open_reminder(bob)
            db.session.commit()
            bobs_newest = db.session.scalar(
                sa.text("SELECT max(id) FROM outbox WHERE channel = :c"), {"c": user_channel(bob)}
            )
            bobs_reminder = db.session.scalar(sa.select(Reminder.id).where(Reminder.user_id == bob))
            db.session.remove()
        statements: list[str] = []

        def note(conn, cursor, statement, parameters, context, executemany):
            # The reads only: the first showing's write (the shown recorder's) comes after them.
            if statement.lstrip().upper().startswith("SELECT"):
                statements.append(statement)

        with app.test_request_context():
            sa.event.listen(db.engine, "before_cursor_execute", note)
            newest, html = read_state(bob, stream_channels(bob), area=True, links=transport_links())
            assert len(statements) == 1, statements
            assert newest == bobs_newest
            assert html is not None and re.findall(r'data-reminder-id="(\d+)"', html) == [str(bobs_reminder)]
            # Nobody with a reminder, nor a channel with news: the empty area and id 0.
            carl = add_user("carl@example.com").id
            db.session.commit()
            db.session.remove()
            statements.clear()
            newest, html = read_state(carl, stream_channels(carl), area=True, links=transport_links())
            assert len(statements) == 1 and newest == 0
            assert html is not None and 'data-reminder-state="none"' in html
            assert html == read_state(carl, (), area=True, links=transport_links())[1]
            sa.event.remove(db.engine, "before_cursor_execute", note)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_transports_requests_read_without_a_transaction_on_postgresql(tmp_path, postgres_url):
    """A connect's statements, the user's load first, run in autocommit: no BEGIN before them and
    no ROLLBACK after, two round trips of five (issue 16). Polling and the long poll too."""
    app = build_app(tmp_path, SQLALCHEMY_DATABASE_URI=postgres_url, LONGPOLL_TIMEOUT=0.2)
    try:
        with app.app_context():
            ada = add_user("ada@example.com").id
            lifecycle.open_reminder(ada)
            db.session.commit()
            # Shown already, so no transport records its first showing (a write of the recorder's own).
            db.session.execute(sa.update(Reminder).values(shown_at=sa.func.now()))
            db.session.commit()
            db.session.remove()
        seen: list[tuple[bool, str]] = []

        def note(conn, cursor, statement, parameters, context, executemany):
            seen.append((conn.connection.dbapi_connection.autocommit, statement.split()[0]))

        client = app.test_client()
        client.set_cookie("session", session_cookie(app, ada))
        with app.app_context():
            sa.event.listen(db.engine, "before_cursor_execute", note)
        stream = client.get("/events", headers={"HX-Request": "true"})
        try:
            assert stream.status_code == 200
            first = next(stream.response) + next(stream.response)
            assert b"data-reminder-id=" in first  # the banner came, read on that connection
        finally:
            stream.close()
        assert client.get("/events/area").status_code == 200
        assert client.get("/events/wait").status_code == 200
        assert len(seen) >= 6, seen  # the user's load and the read, for each of the three
        assert all(autocommit and verb.upper() == "SELECT" for autocommit, verb in seen), seen
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_the_dashboard_reads_without_a_transaction_and_commits_its_first_showing_on_postgresql(
    tmp_path, postgres_url
):
    """The dashboard (and its summary) read in autocommit: no BEGIN or ROLLBACK around the user's
    load, the goal and log, and the banner (issue 16). The one write such a page causes, its
    banner's first showing, still commits as one transaction, on the shown recorder's connection."""
    app = build_app(tmp_path, SQLALCHEMY_DATABASE_URI=postgres_url)
    try:
        with app.app_context():
            ada = add_user("ada@example.com").id
            lifecycle.open_reminder(ada)
            db.session.commit()
            db.session.remove()
        client = app.test_client()
        client.set_cookie("session", session_cookie(app, ada))
        with executed_statements(app) as seen:
            page = client.get("/dashboard")
        assert page.status_code == 200 and "You have not logged your weight since" in page.text
        reads = [run.autocommit for run in seen if run.verb == "SELECT"]
        writes = [run for run in seen if run.verb != "SELECT"]
        assert len(reads) >= 3 and all(reads), seen  # the login, the goal and log, the banner
        # The showing: an UPDATE of the reminder and the admins' outbox row, in a transaction.
        assert writes and not any(run.autocommit for run in writes), seen
        with app.app_context():
            shown_at = db.session.scalar(sa.select(Reminder.shown_at).where(Reminder.user_id == ada))
            db.session.remove()
        assert shown_at is not None
        with executed_statements(app) as seen:
            summary = client.get("/dashboard/summary", headers={"HX-Request": "true"})
        assert summary.status_code == 200
        assert seen and all(run.autocommit and run.verb == "SELECT" for run in seen), seen
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
