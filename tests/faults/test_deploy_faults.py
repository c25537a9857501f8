"""Fault tests for how Weigh-in is deployed: two deployments on one Redis server, PgBouncer in
transaction mode, and a rolling restart of one host (docs/DEPLOY.md)."""

from __future__ import annotations

import secrets
import time

import pytest
import redis

from webapp.config import default_redis_prefix

from ..support import TEST_SECRET
from .harness import Database, Person, StreamWatcher, assert_delivery, csrf_token, scan_later

pytestmark = pytest.mark.services


def test_two_deployments_on_one_redis_server_keep_their_events(gunicorn, people, db, scratch_database):
    """Two installs, each with its own database, share a Redis server: the same channel names and
    the same outbox ids on the other's traffic neither hide nor add an event on this one."""
    other_secret = "another-deployment-" + secrets.token_hex(8)
    site_a = gunicorn("deploy-a", workers=1, REDIS_PREFIX="weighin:a:")
    other_db = Database(scratch_database())
    site_b = gunicorn("deploy-b", workers=1, DATABASE_URL=other_db.url, SECRET_KEY=other_secret)
    prefixes = {"weighin:a:", default_redis_prefix(other_secret)}
    assert default_redis_prefix(TEST_SECRET) not in prefixes

    [ada] = people(site_a.url, 1)  # user 1 of deployment A
    watcher_a = people.watch(ada, [site_a.url])
    others = [Person(f"b{n}-{secrets.token_hex(3)}@example.com") for n in range(3)]
    watchers_b: list[StreamWatcher] = []
    try:
        for person in others:  # users 1, 2 and 3 of deployment B
            person.signup(site_b.url)
            person.id = other_db.user_id(person.email)
            watchers_b.append(StreamWatcher(person, [site_b.url]).start())
        assert ada.id == others[0].id

        # B's events come first, with the ids (and user 1's channel name) that A's will have.
        scan_later(site_b.env)
        for watcher in watchers_b:
            watcher.wait_showing(other_db.open_reminder(watcher.person.id))
        scan_later(site_a.env)
        watcher_a.wait_showing(db.open_reminder(ada.id), timeout=15)

        assert ada.dismiss(site_a.url).status_code == 302
        for watcher in watchers_b:
            assert watcher.person.dismiss(site_b.url).status_code == 302
        for watcher in [watcher_a, *watchers_b]:
            watcher.wait_showing(None, timeout=15)
        assert assert_delivery([watcher_a], db) == {"made": 1, "arrived": 1}
        assert assert_delivery(watchers_b, other_db) == {"made": 3, "arrived": 3}

        # Every name in Redis belongs to one of the two deployments (the count keys show up
        # within a listener tick of a stream opening).
        client = redis.Redis.from_url(site_a.env["BROKER_URL"])
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                keys = [key.decode() for key in client.keys("*")]
                if {prefix for prefix in prefixes if any(key.startswith(prefix) for key in keys)} == prefixes:
                    break
                time.sleep(0.2)
            assert keys and all(any(key.startswith(prefix) for prefix in prefixes) for key in keys), keys
            channels = {channel.decode() for channel in client.pubsub_channels()}
            assert channels == {prefix + "events" for prefix in prefixes}
        finally:
            client.close()
    finally:
        for watcher in watchers_b:
            watcher.stop()
        for person in others:
            person.close()


def _dismiss_concurrently(base: str, people: list[Person], rounds: int) -> tuple[int, list[str]]:
    """Everyone at once presses Dismiss `rounds` times (a form post without htmx); returns the
    number of redirects and every other answer."""
    import threading

    import httpx

    failures: list[str] = []
    counts = {"ok": 0}
    lock = threading.Lock()
    start = threading.Barrier(len(people))

    def press(person: Person) -> None:
        token = csrf_token(person.http.get(base + "/dashboard").text)
        start.wait(timeout=30)
        for _ in range(rounds):
            status: int | str
            try:
                status = person.http.post(base + "/reminders/dismiss", data={"csrf_token": token}).status_code
            except httpx.HTTPError as error:
                status = repr(error)
            with lock:
                if status == 302:
                    counts["ok"] += 1
                else:
                    failures.append(f"{person.email}: {status}")

    threads = [threading.Thread(target=press, args=(person,)) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    return counts["ok"], failures


def test_pgbouncer_transaction_mode_fails_no_transaction(pgbouncer, gunicorn):
    """Through PgBouncer in transaction mode, with prepared statements off in DATABASE_URL,
    many short transactions at once on several workers all succeed.

    The workload is what breaks psycopg's default: a request that ends in a COMMIT (Dismiss
    redirects without reading again) leaves the pooled connection's statement counts alone,
    where a ROLLBACK would clear them, so from the sixth such request on a connection the user
    lookup runs as prepared statement _pg3_N, which only exists on one of PgBouncer's server
    connections, under a name every other client connection also uses. Without
    prepare_threshold=none about one transaction in ten fails with "_pg3_N does not exist /
    already exists"."""
    web = gunicorn(
        "bounced",
        workers=3,
        DATABASE_URL=pgbouncer + "?prepare_threshold=none",
        RATELIMIT_ENABLED=0,  # twelve sign-ups from one address; the limit is not what is tested here
    )
    group = [Person(f"pgb{n}-{secrets.token_hex(3)}@example.com") for n in range(12)]
    for person in group:
        person.signup(web.url)
    ok, failures = _dismiss_concurrently(web.url, group, rounds=30)
    for person in group:
        person.close()
    assert failures == [], f"{len(failures)} of {ok + len(failures)} failed: {failures[:5]}"
    assert ok == 12 * 30
    assert "prepared statement" not in web.log()
