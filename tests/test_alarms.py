"""The process's alarm clock for waiting streams (events/alarms.py, issue 16): an idle stream is
woken for its heartbeat or its end by one greenlet's alarm, never early and at most RESOLUTION
late, and a stream woken by news keeps no alarm that could wake it again later."""

from __future__ import annotations

import time

import gevent

from webapp.events.alarms import ALARM, RESOLUTION
from webapp.events.broker import MemoryBroker


def _subscribe(broker: MemoryBroker, channel: str = "user:1"):
    return broker.subscribe([channel], maxsize=4)


def test_an_idle_wait_ends_at_its_time_never_before_and_within_the_resolution():
    broker = MemoryBroker()
    sub = _subscribe(broker)
    started = time.monotonic()
    assert sub.next_batch_by(started + 0.6) == []  # the alarm itself is never handed out
    waited = time.monotonic() - started
    assert 0.6 <= waited < 0.6 + RESOLUTION + 0.5, waited
    assert not sub.news and sub.alarm_at is None


def test_news_wakes_the_stream_at_once_and_its_alarm_never_rings_afterwards():
    broker = MemoryBroker()
    sub = _subscribe(broker)
    gevent.spawn_later(0.05, broker.dispatch, "user:1", 7)
    started = time.monotonic()
    assert sub.next_batch_by(started + 0.5) == [("user:1", 7)]
    assert time.monotonic() - started < 0.5
    gevent.sleep(0.5 + RESOLUTION * 2)  # past the cancelled alarm's slot
    assert not sub.news, "a cancelled alarm rang"


def test_many_streams_each_wake_at_their_own_time_in_order():
    broker = MemoryBroker()
    subs = [_subscribe(broker, f"user:{i}") for i in range(6)]
    started = time.monotonic()
    woke: dict[int, float] = {}

    def wait(i: int) -> None:
        # Asked out of order: the last asks for the soonest wake-up.
        assert subs[i].next_batch_by(started + 0.2 + 0.3 * (5 - i)) == []
        woke[i] = time.monotonic() - started

    gevent.joinall([gevent.spawn(wait, i) for i in range(6)], raise_error=True)
    for i in range(6):
        due = 0.2 + 0.3 * (5 - i)
        assert due <= woke[i] < due + RESOLUTION + 0.5, (i, woke[i])
    assert sorted(woke, key=woke.__getitem__) == [5, 4, 3, 2, 1, 0]


def test_an_alarm_sooner_than_the_one_the_clock_sleeps_for_still_rings_on_time():
    broker = MemoryBroker()
    late, soon = _subscribe(broker, "user:1"), _subscribe(broker, "user:2")
    started = time.monotonic()
    waiter = gevent.spawn(late.next_batch_by, started + 3.0)
    gevent.sleep(0.1)  # the clock now sleeps until the late one's slot
    assert soon.next_batch_by(time.monotonic() + 0.3) == []
    assert time.monotonic() - started < 1.5
    waiter.kill()


def test_an_alarm_does_not_fill_a_queue_or_count_as_overflow():
    broker = MemoryBroker()
    sub = broker.subscribe(["user:1"], maxsize=1)
    sub.ring()
    sub.ring()  # already awake: nothing more is queued
    assert len(sub.news) == 1 and not sub.overflowed
    assert sub.next_batch_by(time.monotonic() + 5) == []  # the queued alarm wakes it at once
    broker.dispatch("user:1", 3)
    assert sub.next_batch_by(time.monotonic() + 5) == [("user:1", 3)]
    assert ALARM not in broker._subscribers


def test_an_unsubscribed_stream_is_never_rung():
    broker = MemoryBroker()
    sub = _subscribe(broker)
    broker.alarms.set(sub, time.monotonic() + 0.1)
    broker.unsubscribe(sub)
    gevent.sleep(0.1 + RESOLUTION * 2)
    assert not sub.news


def test_a_busy_stream_waiting_again_and_again_keeps_one_place_on_the_clock():
    broker = MemoryBroker()
    sub = _subscribe(broker)
    wake_at = time.monotonic() + 30
    for event_id in range(1, 1001):  # a thousand waits, each ended by news
        gevent.spawn(broker.dispatch, "user:1", event_id)  # runs once the stream waits
        assert sub.next_batch_by(wake_at) == [("user:1", event_id)]
    waiting = sum(len(due) for due in broker.alarms._slots.values())
    assert waiting == 1, waiting
