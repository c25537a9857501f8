"""The SSE wire format, the outbox and the /events view, in process (the real server: test_events_protocol.py)."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from datetime import UTC, datetime

import gevent
import psycopg
import pytest
import sqlalchemy
from gevent.queue import Queue

from webapp.events import sse
from webapp.events.broker import MemoryBroker, Subscription
from webapp.events.outbox import (
    COMMIT_ORDER_LOCK_KEY,
    announce,
    announce_to_user_and_admins,
    latest_event_id,
)
from webapp.extensions import current_broker, db
from webapp.models import ADMINS_CHANNEL, User, user_channel
from webapp.reminders import lifecycle

from .support import add_user, build_app, log_in_client

MALFORMED_IDS = ["abc", "-1", "9" * 50, "", "   ", "1.5", "0x10", "١٢", "12abc", "x" * 4000, "1 2"]


def test_event_format_splits_lines_and_numbers_it():
    assert sse.event("a\nb\r\nc", event_id=7) == "id: 7\ndata: a\ndata: b\ndata: c\n\n"
    assert sse.event("", name="weighin:signed-out") == "event: weighin:signed-out\ndata: \n\n"
    assert sse.comment() == ":\n\n" and sse.comment("hi") == ": hi\n\n"
    assert sse.retry(2000) == "retry: 2000\n\n"


@pytest.mark.parametrize("raw", [None, *MALFORMED_IDS, "5\n6"])
def test_parse_last_event_id_refuses_anything_but_a_plain_number(raw):
    assert sse.parse_last_event_id(raw) is None


@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("42", 42), (" 42 ", 42), ("007", 7)])
def test_parse_last_event_id_reads_plain_numbers(raw, value):
    assert sse.parse_last_event_id(raw) == value


def test_a_full_queue_marks_a_slow_subscriber():
    sub = Subscription(["user:1"], maxsize=2)
    for event_id in (1, 2, 3, 4):
        sub.deliver("user:1", event_id)
    assert sub.overflowed and len(sub.news) == 2


def test_a_subscription_hands_over_its_news_in_order_and_waits_when_there_is_none():
    sub = Subscription(["user:1"], maxsize=3)
    started = time.monotonic()
    assert sub.next_batch(timeout=0.2) == []  # nothing came: the long poll's wait just ends
    assert time.monotonic() - started >= 0.2
    gevent.spawn_later(0.05, sub.deliver, "user:1", 5)
    assert sub.next_batch(timeout=5) == [("user:1", 5)]  # woken by news, long before the timeout
    for event_id in (6, 7):
        sub.deliver("user:1", event_id)
    assert sub.next_batch(timeout=5) == [("user:1", 6), ("user:1", 7)]  # all that waited, at once
    assert not sub.news and not sub.overflowed
    for event_id in (8, 9, 10, 11):
        sub.deliver("user:1", event_id)
    sub.close()  # a full queue still learns it must close
    assert sub.overflowed and sub.closing
    assert sub.next_batch(timeout=5) == [("user:1", 8), ("user:1", 9), ("user:1", 10)]


def test_one_commit_wakes_each_channel_once(app):
    with app.app_context():
        broker = current_broker(app)
        assert isinstance(broker, MemoryBroker)
        sub = broker.subscribe([user_channel(1), ADMINS_CHANNEL], maxsize=100)
        try:
            for _ in range(5):
                announce(user_channel(1), "test")
                announce(ADMINS_CHANNEL, "test")
            db.session.commit()
            woken, sub.news = sub.news, []
            assert sorted(channel for channel, _ in woken) == [ADMINS_CHANNEL, user_channel(1)]
            assert max(event_id for _, event_id in woken) == 10
            # A rolled-back transaction announces nothing.
            announce(user_channel(1), "test")
            db.session.flush()
            db.session.rollback()
            db.session.commit()
            assert not sub.news
        finally:
            broker.unsubscribe(sub)


# -- the view, through the test client -------------------------------------------------------


@pytest.fixture
def stream_app(app):
    app.config.update(SSE_HEARTBEAT=1, SSE_QUEUE_SIZE=4, OUTBOX_POLL_INTERVAL=0.2)
    return app


def _user(app, email="ada@example.com", *, admin=False) -> int:
    with app.app_context():
        return add_user(email, admin=admin).id


class Stream:
    """An /events response read chunk by chunk, as the server writes it.

    Each stream is iterated in a greenlet of its own, as the gevent server does, so several
    streams can be read in turn and each read's app context lives in its own greenlet's
    context variables. (gevent without monkey-patching: nothing is patched.)
    """

    def __init__(self, client, **headers):
        self._asks: Queue = Queue()
        self._answers: Queue = Queue()
        self._reader = gevent.spawn(self._read, client, headers)
        self.response = self._answers.get(timeout=10)

    def _read(self, client, headers) -> None:
        # The request itself runs here too, as the server runs it in the connection's greenlet.
        self.response = client.get("/events", headers=headers, buffered=False)
        self._answers.put(self.response)
        chunks = iter(self.response.response)
        try:
            while self._asks.get():
                try:
                    chunk = next(chunks)
                except StopIteration as end:
                    self._answers.put(end)
                    return
                self._answers.put(chunk.decode() if isinstance(chunk, bytes) else chunk)
        finally:
            self.response.close()

    def next(self) -> str:
        self._asks.put(True)
        answer = self._answers.get(timeout=10)
        if isinstance(answer, StopIteration):
            raise StopIteration
        return answer

    def close(self) -> None:
        if not self._reader.dead:
            self._asks.put(False)
            self._reader.join(timeout=10)


def _stream_for(app, user_id: int, **headers) -> Stream:
    """A logged-in client's /events stream, as a browser tab of that user opens it."""
    client = app.test_client()
    log_in_client(client, client.application, user_id)
    return Stream(client, **headers)


def _open_reminder(app, user_id):
    with app.app_context():
        lifecycle.open_reminder(user_id)
        db.session.commit()


def test_anonymous_gets_no_stream(stream_app):
    client = stream_app.test_client()
    plain = client.get("/events")
    assert plain.status_code == 204 and plain.data == b""
    htmx = client.get("/events", headers={"HX-Request": "true"})
    assert htmx.status_code == 200 and htmx.mimetype == "text/event-stream"
    body = htmx.get_data(as_text=True)
    assert "You have been logged out" in body
    assert body.endswith("event: weighin:signed-out\ndata: \n\n")


def test_the_signed_out_notice_speaks_each_requests_language(stream_app):
    """Rendered once per language and kept: the next request in another language gets its own."""
    client = stream_app.test_client()
    bodies = {}
    for language in ("ko", "en", "ko", "en"):
        answer = client.get("/events", headers={"HX-Request": "true", "Accept-Language": language})
        bodies.setdefault(language, set()).add(answer.get_data(as_text=True))
    assert [len(texts) for texts in bodies.values()] == [1, 1]  # the same text each time
    (korean,), (english,) = bodies["ko"], bodies["en"]
    assert "로그아웃되었습니다" in korean and "You have been logged out" not in korean
    assert "You have been logged out" in english and "로그아웃" not in english
    assert korean.endswith("event: weighin:signed-out\ndata: \n\n")


def test_stream_starts_with_retry_then_the_snapshot(stream_app):
    user_id = _user(stream_app)
    _open_reminder(stream_app, user_id)
    stream = _stream_for(stream_app, user_id)
    try:
        assert stream.response.mimetype == "text/event-stream"
        assert stream.response.headers["Cache-Control"] == "no-cache"
        assert stream.response.headers["X-Accel-Buffering"] == "no"
        assert stream.next() == "retry: 2000\n\n: connected\n\n"
        snapshot = stream.next()
        assert snapshot.startswith("id: 1\ndata: ")  # the reminder's row on the user's channel
        assert "You have not logged your weight since" in snapshot and "Dismiss" in snapshot
        assert stream.next() == ":\n\n"  # heartbeat after SSE_HEARTBEAT idle seconds
    finally:
        stream.close()


@pytest.mark.parametrize("last_event_id", MALFORMED_IDS + ["0", "999999"])
def test_any_other_last_event_id_gets_the_snapshot_at_once(stream_app, last_event_id):
    user_id = _user(stream_app)
    _open_reminder(stream_app, user_id)
    stream = _stream_for(stream_app, user_id, **{"Last-Event-ID": last_event_id})
    try:
        assert stream.response.status_code == 200
        stream.next()
        assert stream.next().startswith("id: 1\ndata: ")
    finally:
        stream.close()


def test_a_client_at_the_newest_id_keeps_its_area(stream_app):
    user_id = _user(stream_app)
    _open_reminder(stream_app, user_id)
    stream = _stream_for(stream_app, user_id, **{"Last-Event-ID": "1"})
    try:
        stream.next()
        assert stream.next() == ":\n\n"  # nothing new: only a heartbeat
    finally:
        stream.close()


def test_no_database_connection_is_held_while_streams_idle(stream_app):
    user_ids = [_user(stream_app, f"user{n}@example.com") for n in range(3)]
    with stream_app.app_context():
        pool = db.engine.pool
    streams = []
    try:
        for user_id in user_ids:
            stream = _stream_for(stream_app, user_id)
            stream.next()
            stream.next()  # the snapshot: the stream read the database, and is now idle
            streams.append(stream)
        assert pool.checkedout() == 0
        _open_reminder(stream_app, user_ids[0])
        assert "Dismiss" in streams[0].next()  # woken, rendered, and idle again
        assert pool.checkedout() == 0
    finally:
        for stream in streams:
            stream.close()


def test_news_reaches_only_its_own_user(stream_app):
    ada, bob = _user(stream_app), _user(stream_app, "bob@example.com")
    streams = {}
    try:
        for user_id in (ada, bob):
            streams[user_id] = _stream_for(stream_app, user_id)
            streams[user_id].next()
            streams[user_id].next()
        _open_reminder(stream_app, ada)
        assert "Dismiss" in streams[ada].next()
        assert streams[bob].next() == ":\n\n"
    finally:
        for stream in streams.values():
            stream.close()


def test_admins_also_get_the_admins_channel_as_a_named_event(stream_app):
    admin, ada = _user(stream_app, "admin@example.com", admin=True), _user(stream_app)
    stream = _stream_for(stream_app, admin)
    try:
        stream.next()
        first = stream.next()
        assert "event: weighin:admins" in first
        _open_reminder(stream_app, ada)
        news = stream.next()
        assert news.startswith("event: weighin:admins\nid: 2\n")  # no area: it was not the admin's own
    finally:
        stream.close()


def _log_weight(app, user_id):
    with app.app_context():
        lifecycle.record_weight_logged(db.session.get(User, user_id))
        db.session.commit()


def test_own_news_also_says_changed_so_the_dashboard_summary_refreshes(stream_app):
    ada, bob = _user(stream_app), _user(stream_app, "bob@example.com")
    streams = {}
    try:
        for user_id in (ada, bob):
            streams[user_id] = _stream_for(stream_app, user_id)
            streams[user_id].next()
        # A first connect comes with a page just rendered: no refresh asked for.
        assert "weighin:changed" not in streams[ada].next()
        streams[bob].next()
        _log_weight(stream_app, ada)  # outbox ids 1 (ada's channel) and 2 (the admins')
        news = streams[ada].next()
        assert news.startswith("id: 1\ndata: ") and news.endswith(
            "event: weighin:changed\nid: 1\ndata: 1\n\n"
        )
        assert streams[bob].next() == ":\n\n"  # only the user's own changes, and only to them
    finally:
        for stream in streams.values():
            stream.close()
    # A tab that comes back (hx-sse paused it while hidden) and missed news refreshes too ...
    _log_weight(stream_app, ada)
    stream = _stream_for(stream_app, ada, **{"Last-Event-ID": "1"})
    try:
        stream.next()
        assert stream.next().endswith("event: weighin:changed\nid: 3\ndata: 3\n\n")
    finally:
        stream.close()
    # ... and one that missed nothing gets nothing.
    stream = _stream_for(stream_app, ada, **{"Last-Event-ID": "3"})
    try:
        stream.next()
        assert stream.next() == ":\n\n"
    finally:
        stream.close()


def test_a_slow_client_is_dropped_when_its_queue_overflows(stream_app):
    user_id = _user(stream_app)
    stream = _stream_for(stream_app, user_id)
    try:
        stream.next()
        stream.next()
        broker = current_broker(stream_app)
        for event_id in range(100, 110):  # more than SSE_QUEUE_SIZE wake-ups, none read
            broker.dispatch(user_channel(user_id), event_id)
        with pytest.raises(StopIteration):
            stream.next()
        assert broker.local_stream_count() == 0
    finally:
        stream.close()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_stream_closed_before_its_first_chunk_leaves_no_subscription(stream_app, method):
    # The body goes to the server as it is (no werkzeug wrapper to run call_on_close): its own
    # close() must still let the subscription go when the generator never started.
    user_id = _user(stream_app)
    client = stream_app.test_client()
    log_in_client(client, stream_app, user_id)
    response = client.open("/events", method=method, buffered=False)
    broker = current_broker(stream_app)
    assert response.status_code == 200
    assert broker.local_stream_count() == 1
    response.close()
    assert broker.local_stream_count() == 0


def test_the_stream_ends_after_its_lifetime(stream_app):
    stream_app.config.update(SSE_MAX_LIFETIME=1)
    user_id = _user(stream_app)
    stream = _stream_for(stream_app, user_id)
    try:
        chunks = []
        with pytest.raises(StopIteration):
            for _ in range(5):
                chunks.append(stream.next())
        assert len(chunks) <= 3
    finally:
        stream.close()


def test_connecting_checks_out_one_database_connection(stream_app):
    # Loading the user, the newest id and the first snapshot share one short session: a
    # reconnect storm queues on the pool once per stream, not twice.
    user_id = _user(stream_app)
    _open_reminder(stream_app, user_id)
    with stream_app.app_context():
        engine = db.engine
    checkouts = []

    def count(*args):
        checkouts.append(gevent.getcurrent())

    sqlalchemy.event.listen(engine, "checkout", count)
    stream = _stream_for(stream_app, user_id)
    try:
        stream.next()
        assert "Dismiss" in stream.next()
        # Only the stream's own greenlet counts, not the broker's outbox poller starting up.
        assert checkouts.count(stream._reader) == 1
    finally:
        stream.close()
        sqlalchemy.event.remove(engine, "checkout", count)


def _area_of_page(html: str) -> str:
    start = html.index('<div class="reminder-state"')
    return html[start : html.index("</div>\n</div>", start) + len("</div>\n</div>")]


@pytest.mark.parametrize(
    ("zone", "last_weight_at"),
    [
        # 23:30 UTC is already the next day in Kiritimati (UTC+14): the date follows the user's zone.
        ("Pacific/Kiritimati", datetime(2024, 3, 9, 23, 30, tzinfo=UTC)),
        ("America/New_York", None),  # never logged: the banner counts from the account's creation
    ],
)
def test_the_streamed_banner_matches_the_one_on_the_page(stream_app, zone, last_weight_at):
    user_id = _user(stream_app)
    with stream_app.app_context():
        user = db.session.get(User, user_id)
        user.timezone, user.last_weight_at = zone, last_weight_at
        db.session.commit()
    _open_reminder(stream_app, user_id)
    client = stream_app.test_client()
    log_in_client(client, client.application, user_id)
    page = _area_of_page(client.get("/dashboard").get_data(as_text=True))
    stream = Stream(client)
    try:
        stream.next()
        snapshot = stream.next()
    finally:
        stream.close()
    streamed = "\n".join(line[len("data: ") :] for line in snapshot.splitlines() if line.startswith("data: "))
    # The page's banner carries a CSRF token for Dismiss without htmx; a streamed one none at all
    # (htmx sends the token of <body hx-headers>), so nothing a transport sends holds one.
    assert "csrf_token" not in streamed
    assert re.sub(r'\n\s*<input type="hidden" name="csrf_token" value="[^"]+">', "", page) == streamed
    if last_weight_at is not None:
        assert "since 10 Mar 2024." in streamed


def test_a_snapshot_rendered_after_connect_carries_working_links(csrf_app):
    # Snapshots after the first are rendered with only an app context (the stream keeps no
    # request context): the links captured at connect must still work, and Dismiss with the
    # token htmx sends from the page's <body hx-headers>.
    csrf_app.config.update(SSE_HEARTBEAT=1, SSE_QUEUE_SIZE=4, OUTBOX_POLL_INTERVAL=0.2)
    user_id = _user(csrf_app)
    client = csrf_app.test_client()
    log_in_client(client, client.application, user_id)
    stream = Stream(client)
    try:
        stream.next()
        assert 'data-reminder-state="none"' in stream.next()
        _open_reminder(csrf_app, user_id)
        snapshot = stream.next()
    finally:
        stream.close()
    assert 'href="/dashboard#weight"' in snapshot and 'hx-post="/reminders/dismiss"' in snapshot
    assert "csrf_token" not in snapshot
    page = client.get("/dashboard").get_data(as_text=True)
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    dismissed = client.post("/reminders/dismiss", headers={"HX-Request": "true", "X-CSRFToken": token})
    assert dismissed.status_code == 200 and 'data-reminder-state="none"' in dismissed.get_data(as_text=True)


def test_on_sqlite_a_second_writer_cannot_take_an_outbox_id_before_the_first_commits(app):
    """Why the commit-order race of PostgreSQL cannot happen on SQLite (docs/DECISIONS.md).

    SQLite has one writer: a transaction's first write takes the database's write lock and keeps
    it to the commit, so a second transaction gets its outbox id only after the first committed.
    """
    user_id = _user(app)
    _open_reminder(app, user_id)
    insert = "INSERT INTO outbox (channel, kind, created_at) VALUES ('admins', 'reminder', '2026-01-01')"
    with app.app_context():
        lifecycle.dismiss(db.session.get(User, user_id))
        db.session.flush()  # the Dismiss's first write, as it waits for nothing else
        other = sqlite3.connect(db.engine.url.database, timeout=0.1)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute(insert)  # a Remind now on another connection has to wait
            db.session.commit()
            dismissed = latest_event_id([user_channel(user_id), ADMINS_CHANNEL])
            other.execute(insert)
            other.commit()
            assert other.execute("SELECT max(id) FROM outbox").fetchone()[0] > dismissed
        finally:
            other.close()


def test_on_postgresql_an_outbox_id_is_drawn_only_under_the_commit_order_lock(tmp_path, postgres_url):
    """Outbox ids follow commit order on PostgreSQL (docs/DECISIONS.md, live path): while another
    writer holds the commit-order lock (between its outbox rows and the end of its commit), a
    commit waits for it before drawing any outbox id; then it writes and publishes its rows."""
    app = build_app(tmp_path, "pg", SQLALCHEMY_DATABASE_URI=postgres_url)
    with app.app_context():
        user_id = add_user().id
        sub = current_broker(app).subscribe([user_channel(user_id), ADMINS_CHANNEL], maxsize=10)
    errors: list[BaseException] = []

    def remind_now():
        try:
            with app.app_context():
                announce_to_user_and_admins(user_id, "reminder")
                announce(user_channel(user_id), "login")
                db.session.commit()
        except BaseException as error:  # reported by the test's own thread
            errors.append(error)

    sequence = "SELECT last_value, is_called FROM outbox_id_seq"
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
    )
    other = psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s)", (COMMIT_ORDER_LOCK_KEY,))
        drawn_before = other.execute(sequence).fetchone()
        writer = threading.Thread(target=remind_now)
        writer.start()
        deadline = time.monotonic() + 30
        while other.execute(waiting).fetchone()[0] == 0 and writer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert other.execute(waiting).fetchone()[0] == 1, errors
        assert other.execute(sequence).fetchone() == drawn_before
        other.execute("SELECT pg_advisory_unlock(%s)", (COMMIT_ORDER_LOCK_KEY,))
        writer.join(30)
        assert not writer.is_alive() and not errors
        rows = other.execute("SELECT channel, kind, id FROM outbox ORDER BY id").fetchall()
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (COMMIT_ORDER_LOCK_KEY,)).fetchone()[0]
    finally:
        other.close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    assert [(channel, kind) for channel, kind, _ in rows] == [
        (user_channel(user_id), "reminder"),
        (ADMINS_CHANNEL, "reminder"),
        (user_channel(user_id), "login"),
    ]
    woken = sorted(sub.news)
    assert woken == sorted([(ADMINS_CHANNEL, rows[1][2]), (user_channel(user_id), rows[2][2])])


def test_the_streamed_banner_speaks_the_stored_language(stream_app):
    """The stream renders outside its request: the banner follows the user's setting, not the header."""
    with stream_app.app_context():
        user_id = add_user(
            locale="ko", timezone="Asia/Seoul", last_weight_at=datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
        ).id
    _open_reminder(stream_app, user_id)
    stream = _stream_for(stream_app, user_id, **{"Accept-Language": "en-US"})
    try:
        stream.next()
        snapshot = stream.next()
    finally:
        stream.close()
    assert "11월 21일 이후로 체중을 기록하지 않았습니다." in snapshot  # 07:00 in Seoul
    assert "지금 기록하기" in snapshot and ">닫기<" in snapshot
    assert "Log it now" not in snapshot
