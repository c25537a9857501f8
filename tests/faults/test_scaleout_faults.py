"""Fault tests for the scale-out run: real gunicorn workers on a real PostgreSQL and Redis.

Each test counts the reminders it made and the ones that arrived on each person's stream, and
asserts that none is missing and none reached the wrong person (harness.assert_delivery).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import pytest

from webapp.timeutil import utcnow

from ..support import ROOT
from .harness import Person, assert_delivery, post_on_other_worker, scan_later, socket_owner, stream_worker

pytestmark = pytest.mark.services


def _open_reminders(db, people) -> dict[int, int]:
    opened = {person.id: db.open_reminder(person.id) for person in people}
    assert all(opened.values()), f"the scan did not open a reminder for everyone: {opened}"
    return opened


def test_three_workers_deliver_across_workers(gunicorn, people, db):
    """A stream held by one worker shows changes made by requests that another worker served."""
    web = gunicorn("web", workers=3)
    group = people(web.url, 3)
    watchers = [people.watch(person, [web.url]) for person in group]
    pids = web.worker_pids()

    scan_later(web.env)  # another process altogether
    opened = _open_reminders(db, group)
    for watcher in watchers:
        watcher.wait_showing(opened[watcher.person.id])

    for watcher in watchers:
        holder = stream_worker(watcher, web.port, pids)
        status, served_by = post_on_other_worker(watcher.person, web.port, pids, holder, "/reminders/dismiss")
        assert status in (200, 302, 303) and served_by != holder
        watcher.wait_showing(None)
    totals = assert_delivery(watchers, db)
    assert totals == {"made": 3, "arrived": 3}


def _held_by(watcher, port: int, pids: list[int]) -> bool:
    connection = watcher.open_connection()
    return (
        connection is not None and socket_owner(port, connection.client_port, pids, timeout=0.2) is not None
    )


def _dismiss_all(watchers, base: str) -> None:
    for watcher in watchers:
        response = watcher.person.dismiss(base)
        assert response.status_code in (302, 303), response.text[:300]
    for watcher in watchers:
        watcher.wait_showing(None)


def test_two_instances_share_postgres_and_redis(gunicorn, people, db):
    """Two gunicorn instances ("hosts") on one PostgreSQL and Redis: changes on one reach streams on the other."""
    host_a = gunicorn("host-a", workers=2)
    host_b = gunicorn("host-b", workers=2)
    group = people(host_a.url, 4)
    hosts = [host_a, host_b]
    watchers = [people.watch(person, [hosts[i % 2].url]) for i, person in enumerate(group)]

    scan_later(host_b.env)
    opened = _open_reminders(db, group)
    for watcher in watchers:
        watcher.wait_showing(opened[watcher.person.id])
    for i, watcher in enumerate(watchers):
        other = hosts[(i + 1) % 2]  # the host that does not hold this person's stream
        assert watcher.person.dismiss(other.url).status_code == 302
        watcher.wait_showing(None)
    assert assert_delivery(watchers, db) == {"made": 4, "arrived": 4}


def test_sigkill_of_the_stream_worker(gunicorn, people, db):
    """Kill -9 the worker holding a stream: the client resumes with Last-Event-ID and converges."""
    web = gunicorn("web", workers=2)
    group = people(web.url, 2)
    watchers = [people.watch(person, [web.url]) for person in group]
    victim = watchers[0]
    holder = stream_worker(victim, web.port, web.worker_pids())

    os.kill(holder, signal.SIGKILL)
    scan_later(web.env)  # made while that stream is down
    opened = _open_reminders(db, group)
    for watcher in watchers:
        watcher.wait_showing(opened[watcher.person.id])
    assert len(victim.connections) >= 2
    assert victim.connections[1].sent_last_event_id is not None  # it resumed, not started over

    web.wait_for_workers(exclude=(holder,))  # the arbiter replaced the dead worker
    _dismiss_all(watchers, web.url)
    assert assert_delivery(watchers, db) == {"made": 2, "arrived": 2}
    assert {db.open_reminder(person.id) for person in group} == {None}


def test_redis_restart_while_reminders_are_made(gunicorn, people, db, redis_server):
    """Redis stops or restarts around scans: every reminder still reaches its stream."""
    web = gunicorn("web", workers=2)
    group = people(web.url, 3)
    watchers = [people.watch(person, [web.url]) for person in group]

    for round_ in ("redis up", "redis down during the scan", "redis restarting during the scan"):
        if round_ == "redis down during the scan":
            redis_server.stop()
            scan_later(web.env)  # publishes fail; the scan must not
            redis_server.start()
        elif round_ == "redis restarting during the scan":
            scan = threading.Thread(target=scan_later, args=(web.env,))
            scan.start()
            redis_server.restart()
            scan.join(timeout=60)
        else:
            scan_later(web.env)
        opened = _open_reminders(db, group)
        for watcher in watchers:
            watcher.wait_showing(opened[watcher.person.id], timeout=30)
        _dismiss_all(watchers, web.url)
    assert assert_delivery(watchers, db) == {"made": 9, "arrived": 9}


def test_redis_down_pages_forms_and_scan_keep_working(gunicorn, people, db, redis_server):
    """With Redis gone the site works (pages, log in, forms, scan); live delivery resumes after."""
    web = gunicorn("web", workers=2)
    group = people(web.url, 2)
    watchers = [people.watch(person, [web.url]) for person in group]

    redis_server.stop()
    reader, dismisser = group
    for path in ("/dashboard", "/account/settings", "/healthz"):
        assert reader.http.get(web.url + path).status_code == 200, path
    newcomer = people(web.url, 1)[0]  # the sign-up form, with Redis down
    again = Person(reader.email)
    again.login(web.url)  # the log-in form (its throttle lives in Redis)
    assert again.http.get(web.url + "/dashboard").status_code == 200
    again.close()

    scan_later(web.env)
    opened = _open_reminders(db, [*group, newcomer])
    assert dismisser.dismiss(web.url).status_code == 302  # a form that ends a reminder

    redis_server.start()
    watchers[0].wait_showing(opened[reader.id], timeout=30)
    watchers[1].wait_showing(None, timeout=30)
    # Live delivery through Redis again: a change now shows up at once.
    assert reader.dismiss(web.url).status_code == 302
    watchers[0].wait_showing(None)
    assert_delivery(watchers, db, require_all=False)
    assert opened[reader.id] in watchers[0].reminder_ids_seen()


def test_postgres_connections_killed(gunicorn, people, db):
    """Every app connection to PostgreSQL is terminated (as in a restart): the app heals by itself."""
    web = gunicorn("web", workers=2)
    group = people(web.url, 2)
    watchers = [people.watch(person, [web.url]) for person in group]

    # Each backend gone before the requests (a timeout makes the function wait for it): a request
    # that lands in the very moment its connection is being ended fails with 503 and Retry-After,
    # as during a restart; the pool must replace every dead one after that.
    killed = db.query(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    assert killed, "the app held no connections to kill"
    for _ in range(6):  # enough requests to meet every worker's dead pooled connections
        assert group[0].http.get(web.url + "/dashboard").status_code == 200

    scan_later(web.env)
    opened = _open_reminders(db, group)
    for watcher in watchers:
        watcher.wait_showing(opened[watcher.person.id], timeout=30)
    _dismiss_all(watchers, web.url)
    assert assert_delivery(watchers, db) == {"made": 2, "arrived": 2}


def test_concurrent_scans_make_no_doubles(gunicorn, people, db):
    """Three scans started at once on PostgreSQL open exactly one reminder per due user."""
    web = gunicorn("web", workers=1)
    group = people(web.url, 8)
    now = (utcnow() + timedelta(days=30)).isoformat()
    scans = [
        subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "reminders", "scan", "--now", now],
            cwd=ROOT,
            env=web.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [scan.communicate(timeout=120) for scan in scans]
    assert all(scan.returncode == 0 for scan in scans), outputs
    reminders = db.reminders([person.id for person in group])
    per_user = {person.id: [rid for rid, uid, _ in reminders if uid == person.id] for person in group}
    assert all(len(ids) == 1 for ids in per_user.values()), per_user
    opened_lines = sum(out.count("opened reminder") for out, _ in outputs)
    assert opened_lines == len(group)  # each reminder reported by exactly one scanner


def test_graceful_restart_keeps_pages_right(gunicorn, people, db):
    """kill -HUP the arbiter: old workers end their streams with a retry hint, pages resume on new ones."""
    web = gunicorn("web", workers=2)
    group = people(web.url, 3)
    watchers = [people.watch(person, [web.url]) for person in group]
    scan_later(web.env)
    opened = _open_reminders(db, group)
    for watcher in watchers:
        watcher.wait_showing(opened[watcher.person.id])
    before = {watcher: len(watcher.connections) for watcher in watchers}
    old_workers = tuple(web.worker_pids())

    web.signal(signal.SIGHUP)
    new_workers = web.wait_for_workers(exclude=old_workers)
    for watcher in watchers:
        # A reconnect may land on an old worker that has not closed its socket yet; that one
        # ends the stream at once too, so wait for the stream to settle on a new worker.
        watcher.wait_for(lambda w=watcher: _held_by(w, web.port, new_workers), 30, "a stream on a new worker")
        ended = watcher.connections[before[watcher] - 1]
        assert ended.retry_hints[-1] < 2000, "the old worker should end the stream with a short retry hint"
        assert watcher.showing == opened[watcher.person.id]  # still the right banner

    _dismiss_all(watchers, web.url)
    assert assert_delivery(watchers, db) == {"made": 3, "arrived": 3}
