"""The Redis broker's own rules: the wire format, publishing through an outage, outbox catch-up
and stream counts across processes. (Its listener runs in real processes: tests/faults.)"""

from __future__ import annotations

import shutil
import time

import pytest
import redis

from webapp import make_broker
from webapp.events.outbox import announce
from webapp.events.redis_broker import (
    PUBLISH_BATCH,
    RedisBroker,
    format_control,
    format_message,
    format_messages,
    parse_control,
    parse_message,
    parse_messages,
)
from webapp.extensions import db, install_broker

from .support import RedisServer, free_port, unavailable


class QuietRedisBroker(RedisBroker):
    """The broker without its listener greenlet: the pytest process never runs a gevent hub."""

    def start(self) -> None:
        pass


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (b"user:5:42", ("user:5", 42)),
        (b"admins:7", ("admins", 7)),
        ("user:1:0", ("user:1", 0)),
        (b"user:5:", None),
        (b"user:5:x1", None),
        (b":12", None),
        (b"12", None),
        (b"\xff\xfe:1", ("\ufffd\ufffd", 1)),
        (b"user:1:-3", None),
    ],
)
def test_parse_message(raw, parsed):
    assert parse_message(raw) == parsed


def test_format_round_trips():
    assert parse_message(format_message("user:12", 99).encode()) == ("user:12", 99)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (b"user:5:42", [("user:5", 42)]),
        (b"user:5:42 admins:43", [("user:5", 42), ("admins", 43)]),
        (b"user:5:42 user:5: admins:x :9 admins:43", [("user:5", 42), ("admins", 43)]),
        (b"", []),
        (b"  ", []),
    ],
)
def test_parse_messages_reads_each_well_formed_event(raw, parsed):
    assert parse_messages(raw) == parsed


def test_several_events_round_trip():
    events = [("user:12", 99), ("admins", 100), ("login:12", 101)]
    assert parse_messages(format_messages(events).encode()) == events


def test_a_commits_events_are_one_published_message(app, private_redis):
    """A "Remind now" announces on the user's channel and the admins': one publish, which every
    listener reads once, instead of one per channel; a scan's batch of thousands is a few."""
    broker = QuietRedisBroker(private_redis.url, app)
    install_broker(app, broker)
    other = redis.Redis.from_url(private_redis.url)
    listener = other.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(broker.events_channel)
    try:
        listener.get_message(timeout=1)
        with app.app_context():
            announce("user:1", "reminder")
            announce("admins", "reminder")
            db.session.commit()
        many = [(f"user:{n}", n) for n in range(1, 2 * PUBLISH_BATCH + 2)]
        broker.publish_many(many)
        heard = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(heard) < 4:
            message = listener.get_message(timeout=0.5)
            if message is not None:
                heard.append(parse_messages(message["data"]))
        assert [[channel for channel, _ in events] for events in heard[:1]] == [["user:1", "admins"]]
        assert [len(events) for events in heard[1:]] == [PUBLISH_BATCH, PUBLISH_BATCH, 1]
        assert [event for events in heard[1:] for event in events] == many
    finally:
        listener.close()
        other.close()


@pytest.mark.parametrize(
    "raw", [b"user:5:42", b"!close:replaced", b"!close::ab", b"!open:replaced:ab", b"!close:a:b:c"]
)
def test_only_well_formed_control_messages_are_control_messages(raw):
    assert parse_control(raw) is None


def test_control_messages_round_trip():
    assert parse_control(format_control("replaced", "ab12").encode()) == ("replaced", "ab12")


def test_publish_with_redis_down_neither_raises_nor_waits(app):
    broker = QuietRedisBroker(f"redis://127.0.0.1:{free_port()}/0", app)
    started = time.monotonic()
    for event_id in range(20):
        broker.publish("user:1", event_id)  # the first fails, the rest skip during the pause
    assert time.monotonic() - started < 5
    assert broker.stream_count() == 0  # and counting falls back to this process


def test_a_commit_with_redis_down_still_succeeds(app):
    install_broker(app, QuietRedisBroker(f"redis://127.0.0.1:{free_port()}/0", app))
    with app.app_context():
        announce("user:1", "test")
        db.session.commit()
        assert db.session.scalar(db.text("SELECT count(*) FROM outbox")) == 1


def test_catch_up_dispatches_what_pubsub_missed_once(app):
    broker = QuietRedisBroker(f"redis://127.0.0.1:{free_port()}/0", app)
    sub = broker.subscribe(["user:1"], 50)
    with app.app_context():
        announce("user:1", "before the listener")
        db.session.commit()
    broker._catch_up()  # a fresh listener looks back, so a stream that just subscribed misses nothing
    assert sub.news.pop(0) == ("user:1", 1)

    with app.app_context():
        announce("user:2", "someone else")
        announce("user:1", "publish lost")
        db.session.commit()
    broker._dispatch_once("user:2", 2)  # heard through Redis
    broker._catch_up()
    assert sub.news.pop(0) == ("user:1", 3)
    broker._catch_up()
    broker._dispatch_once("user:1", 3)  # a late copy from Redis changes nothing
    assert not sub.news


def test_a_stray_message_with_another_channel_does_not_hide_an_outbox_row(app):
    """Only the row itself (channel and id) counts as seen: "user:99:2" is not row 2 of user:1."""
    broker = QuietRedisBroker(f"redis://127.0.0.1:{free_port()}/0", app)
    sub = broker.subscribe(["user:1"], 50)
    broker._catch_up()  # the listener's first read: the outbox is empty
    broker._dispatch_once("user:99", 1)  # another deployment's, or a forged, message
    with app.app_context():
        announce("user:1", "the row that id 1 really is")
        db.session.commit()
    broker._catch_up()
    broker._catch_up()  # the trailing read sees it even if the first pass raced its commit
    assert sub.news.pop(0) == ("user:1", 1)
    assert not sub.news


def test_names_carry_the_deployments_prefix(app):
    app.config["REDIS_PREFIX"] = "weighin:other:"
    broker = make_broker("redis://127.0.0.1:6379/0", app)
    assert broker.events_channel == "weighin:other:events"
    assert broker.streams_key == "weighin:other:streams:"


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def test_stream_count_adds_up_live_processes(app, private_redis):
    broker = QuietRedisBroker(private_redis.url, app)
    other = redis.Redis.from_url(private_redis.url)
    try:
        other.set(broker.streams_key + "host-b:123:abc", 5, ex=20)
        other.set(broker.streams_key + "host-c:456:def", 2, ex=20)
        subs = [broker.subscribe([f"user:{n}"], 5) for n in range(3)]
        broker._write_count(time.monotonic())
        assert int(other.get(broker.streams_key + broker.instance)) == 3
        assert broker.stream_count() == 3 + 5 + 2
        other.delete(broker.streams_key + "host-b:123:abc")  # a process that died: its key expired
        assert broker.stream_count() == 3 + 2
        broker.unsubscribe(subs[0])
        assert broker.stream_count() == 2 + 2
        broker.stop()
        assert other.get(broker.streams_key + broker.instance) is None
    finally:
        other.close()


def test_close_streams_wakes_every_subscription(app):
    broker = QuietRedisBroker(f"redis://127.0.0.1:{free_port()}/0", app)
    subs = [broker.subscribe(["user:1"], 1), broker.subscribe(["user:2", "admins"], 1)]
    subs[0].deliver("user:1", 9)  # a full queue still learns it must close
    broker.close_streams()
    assert all(sub.closing for sub in subs)
    assert subs[1].news
    late = broker.subscribe(["user:3"], 1)
    assert late.closing  # a stream that starts while the worker stops ends at once


def test_a_burst_of_connects_with_every_redis_connection_busy_does_not_take_redis_for_down(
    app, private_redis
):
    """A reconnect storm after a deploy asks Redis for the per-user cap from thousands of streams
    at once, each holding its connection until the busy worker gets to its answer. With every
    pooled connection in use, a connect is counted in this process only, and the broker goes on
    using Redis: it used to take "Too many connections" for an outage, pause its publishes and
    count every stream per process for a while."""
    broker = QuietRedisBroker(private_redis.url, app)
    pool = broker.client().connection_pool
    other = redis.Redis.from_url(private_redis.url)
    listener = other.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(broker.events_channel)
    try:
        busy = [pool.get_connection() for _ in range(pool.max_connections)]  # every one in use
        during = broker.subscribe(["user:1"], 5, user_id=1, per_user=10)
        broker.publish("user:1", 7)  # no connection for it either: the outbox catches it up
        assert broker._redis_usable(), "a busy pool was taken for a Redis outage"
        for connection in busy:
            pool.release(connection)
        after = broker.subscribe(["user:1"], 5, user_id=1, per_user=10)
        assert other.zcard(f"{broker.user_streams_key}1") == 1  # the next one is counted in Redis
        broker.publish("user:1", 8)  # and published through it at once
        deadline = time.monotonic() + 5
        heard = []
        while time.monotonic() < deadline and not heard:
            message = listener.get_message(timeout=0.5)
            if message is not None:
                heard.append(message["data"])
        assert heard == [format_message("user:1", 8).encode()]
        broker.unsubscribe(during)
        broker.unsubscribe(after)
    finally:
        listener.close()
        other.close()
        broker.stop()
