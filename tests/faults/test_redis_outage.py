"""A Redis outage, measured (issue 10, item 2): banners stay within the outbox catch-up interval
while Redis is down, and every broker listener is subscribed again within seconds of its return.

The bounds asserted here are the feature itself, so they have slack for a loaded two-core machine;
the figures are printed (`pytest -s`) and recorded in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time

import psycopg
import pytest
import redis

from .harness import Person, StreamWatcher, assert_delivery

pytestmark = pytest.mark.services

OUTAGE_SECONDS = 30.0
# The goal is 6 s at p99 with the defaults (a 5 s catch-up); 2 s more for a busy machine.
LATE_DURING_OUTAGE = 8.0
# The goal is 2 s; 2 s more for a busy machine.
BACK_WITHIN = 4.0
PEOPLE = 4


class Changer(threading.Thread):
    """One person's banner, switched on (an admin's Remind now) and off (Dismiss) again and again.

    Each change is timed from the moment the server answered the POST (so it has committed) until
    the person's stream shows it.
    """

    def __init__(self, base: str, admin: Person, admin_lock: threading.Lock, watcher: StreamWatcher):
        super().__init__(daemon=True)
        self.base, self.admin, self.admin_lock, self.watcher = base, admin, admin_lock, watcher
        self.until = 0.0
        self.lateness: list[float] = []
        self.error: BaseException | None = None

    def change_once(self) -> None:
        person = self.watcher.person
        if self.watcher.showing is None:
            with self.admin_lock:
                response = self.admin._form_post(
                    self.base, f"/admin/users/{person.id}/remind", {}, page="/admin/"
                )
            expect_banner = True
        else:
            response = person.dismiss(self.base)
            expect_banner = False
        assert response.status_code in (200, 302, 303), response.text[:300]
        committed = time.monotonic()
        self.watcher.wait_for(
            lambda: (self.watcher.showing is not None) == expect_banner,
            60,
            "the banner " + ("shown" if expect_banner else "gone"),
        )
        self.lateness.append(time.monotonic() - committed)

    def run(self) -> None:
        try:
            while time.monotonic() < self.until:
                self.change_once()
                time.sleep(random.uniform(0.0, 1.0))  # changes fall at every phase of the catch-up
        except BaseException as error:  # reported by the test
            self.error = error


def _run_changes(changers: list[Changer], seconds: float) -> list[float]:
    until = time.monotonic() + seconds
    started = []
    for changer in changers:
        fresh = Changer(changer.base, changer.admin, changer.admin_lock, changer.watcher)
        fresh.until = until
        fresh.start()
        started.append(fresh)
    for changer in started:
        changer.join(timeout=seconds + 120)
        assert not changer.is_alive(), "a change never arrived"
        if changer.error is not None:
            raise changer.error
    return [late for changer in started for late in changer.lateness]


def _summary(values: list[float]) -> str:
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return (
        f"n={len(ordered)} p50={at(0.5):.2f}s p95={at(0.95):.2f}s p99={at(0.99):.2f}s max={ordered[-1]:.2f}s"
    )


def _listeners(client: redis.Redis, channel: str) -> int:
    try:
        return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))
    except redis.RedisError:
        return 0


def test_redis_outage_keeps_banners_within_the_catch_up_and_listeners_come_back(
    gunicorn, people, db, redis_server
):
    prefix = f"weighin:t{secrets.token_hex(4)}:"
    channel = prefix + "events"
    web = gunicorn("web", workers=2, REDIS_PREFIX=prefix)
    admin, *group = people(web.url, PEOPLE + 1)
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("UPDATE users SET is_admin = true WHERE id = %s", (admin.id,))
    watchers = [people.watch(person, [web.url]) for person in group]
    probe = redis.Redis.from_url(redis_server.url, socket_timeout=2)

    deadline = time.monotonic() + 20
    while (subscribed := _listeners(probe, channel)) < 1:
        assert time.monotonic() < deadline, "no broker listener subscribed to Redis"
        time.sleep(0.1)
    time.sleep(1.0)  # the other worker's listener, if it has streams
    subscribed = _listeners(probe, channel)

    lock = threading.Lock()
    changers = [Changer(web.url, admin, lock, watcher) for watcher in watchers]
    live = _run_changes(changers, 5)

    redis_server.kill()
    outage = _run_changes(changers, OUTAGE_SECONDS)

    redis_server.start()
    back = time.monotonic()
    after: list[float] = []
    changes_after = threading.Thread(target=lambda: after.extend(_run_changes(changers, 5)), daemon=True)
    changes_after.start()  # changes made at once, while the listeners come back
    probe = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    while _listeners(probe, channel) < subscribed:
        assert time.monotonic() - back < 60, "the broker listeners never came back"
        time.sleep(0.05)
    recovered = time.monotonic() - back
    changes_after.join(timeout=180)
    assert after, "no change was measured after Redis came back"

    print(
        f"\nRedis outage of {OUTAGE_SECONDS:.0f} s, {PEOPLE} people, 2 workers, "
        f"load average {os.getloadavg()[0]:.2f}:\n"
        f"  Redis up:     {_summary(live)}\n"
        f"  Redis down:   {_summary(outage)}\n"
        f"  listeners subscribed again {recovered:.2f} s after Redis was back ({subscribed} of them)\n"
        f"  Redis back:   {_summary(after)}"
    )
    assert max(outage) <= LATE_DURING_OUTAGE, f"banners up to {max(outage):.1f} s late during the outage"
    assert recovered <= BACK_WITHIN, f"listeners took {recovered:.1f} s to subscribe again"
    # Live again means through Redis: a publish is not lost on a connection from before the restart.
    assert max(after) <= BACK_WITHIN, f"changes up to {max(after):.1f} s late after Redis came back"
    assert_delivery(watchers, db, require_all=False)
