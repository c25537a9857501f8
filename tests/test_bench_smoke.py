"""Each benchmark harness still runs: a tiny configuration, sane output, no timing assertions."""

from __future__ import annotations

import json

import pytest

from .support import unavailable

pytestmark = pytest.mark.bench


def _postgres_available() -> bool:
    try:
        import psycopg

        from bench.common import PG_ADMIN_URL

        psycopg.connect(PG_ADMIN_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=2).close()
        return True
    except Exception:
        return False


def test_the_bench_clients_cookie_is_a_logged_in_browsers_which_the_app_does_not_rewrite(app):
    """A browser's cookie carries its login's client identifier; without it Flask-Login marks the
    session not fresh and the app sends a new cookie with every answer, which a benchmark's fixed
    cookie would pay on every request while a browser pays it once."""
    from bench.common import USER_AGENT, session_cookie
    from webapp.extensions import db

    from .support import add_user

    with app.app_context():
        user_id = add_user("ada@example.com").id
        db.session.remove()
    client = app.test_client()
    client.set_cookie("session", session_cookie(app, user_id))

    def cookie_sent(user_agent: str) -> bool:
        stream = client.get("/events", headers={"User-Agent": user_agent, "HX-Request": "true"})
        try:  # the headers only: the stream itself would go on
            assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
            return "Set-Cookie" in stream.headers
        finally:
            stream.close()

    assert not cookie_sent(USER_AGENT)
    assert cookie_sent("another browser")  # the same login seen from another browser is told once


def test_harness_coroutines_run_beside_a_running_event_loop():
    """The browser tests' Playwright keeps a loop running on the main thread for the whole session;
    a harness called in-process after them must still run its coroutines, and hand back their errors."""
    import asyncio

    from bench.common import run_async

    async def answer():
        await asyncio.sleep(0)
        return 42

    async def fails():
        raise LookupError("from the coroutine")

    async def inside_a_loop():
        assert run_async(answer) == 42
        with pytest.raises(LookupError, match="from the coroutine"):
            run_async(fails)
        return True

    # The loop this test runs the harness under is on a thread of the test's own: the main
    # thread may already have Playwright's (the very case), where asyncio.run() would refuse.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, inside_a_loop()).result(timeout=60)


def test_streams_harness_delivers_every_reminder_once(tmp_path):
    from bench import streams

    out = tmp_path / "streams.json"
    result = streams.main(
        ["--clients", "20", "--processes", "1", "--rates", "20", "--seconds", "1", "--out", str(out)]
    )
    assert result["connect"]["connected"] == 20
    assert result["connect"]["rss_per_stream_kib"] is not None
    for phase in [*result["steady"], result["burst"]]:
        assert phase["published"] > 0
        assert (phase["missing"], phase["duplicates"], phase["wrong_user"]) == (0, 0, 0)
    assert result["burst"]["received"] == 20
    assert json.loads(out.read_text())["machine"]["nproc"] >= 1


def test_transports_harness_compares_every_transport(tmp_path):
    from bench import transports

    plot = tmp_path / "transports.png"
    rows = transports.main(
        [
            "--users",
            "6",
            "--seconds",
            "2",
            "--reminders",
            "2",
            "--processes",
            "1",
            "--poll-intervals",
            "0.5",
            "--plot",
            str(plot),
        ]
    )
    assert [row["transport"] for row in rows] == ["poll 0.5 s", "long poll", "WebSocket", "SSE"]
    for row in rows:
        assert row["connected"] >= 6, row
        assert (row["missing"], row["duplicates"], row["wrong_user"]) == (0, 0, 0), row
        assert row["cpu_s_per_hour"] >= 0 and row["mib_per_hour"] >= 0
    assert plot.stat().st_size > 1000
    assert "| SSE |" in transports.table(rows)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def test_scan_harness_opens_a_reminder_per_inactive_user(kind, tmp_path):
    if kind == "postgresql" and not _postgres_available():
        unavailable("PostgreSQL is not reachable at 127.0.0.1:5432")
    from bench import scan

    [row] = scan.main(["--db", kind, "--users", "300", "--out", str(tmp_path / "scan.json")])
    assert 0 < row["due_users"] < 300
    assert row["first_scan_opened"] == row["due_users"]
    assert row["steady_scan_opened"] == 0
    assert row["admin_page_status"] == 200
    assert [c["due_now"] for c in row["due_query_by_cutoff"]] == sorted(
        c["due_now"] for c in row["due_query_by_cutoff"]
    )


def test_pages_harness_drives_dashboard_and_quick_add(tmp_path):
    from bench import pages

    rows = pages.main(
        ["--sessions", "4", "--seconds", "1", "--think", "0.1", "--processes", "1", "--entries", "3"]
    )
    assert [row["phase"] for row in rows] == ["dashboard", "quick-add"]
    for row in rows:
        assert row["requests"] > 0
        assert set(row["statuses"]) == {200}, row


def test_page_cost_harness_counts_a_dashboards_cost_both_ways():
    import shutil

    from bench import page_cost

    cpu = page_cost.main(["--db", "sqlite", "--measure", "cpu", "--requests", "3"])
    assert cpu["cpu_ms_per_request"] > 0
    posts = page_cost.main(["--db", "sqlite", "--measure", "cpu", "--page", "quick-add", "--requests", "2"])
    assert posts["page"].startswith("POST /entries") and posts["cpu_ms_per_request"] > 0
    # The event path's halves: the admin's "Remind now" (each checked for "Reminder sent") and a
    # stream's connect (each checked for its retry hint and snapshot).
    reminds = page_cost.main(["--db", "sqlite", "--measure", "cpu", "--page", "remind", "--requests", "2"])
    assert reminds["page"].startswith("POST /admin/users") and reminds["cpu_ms_per_request"] > 0
    streams = page_cost.main(["--db", "sqlite", "--measure", "cpu", "--page", "stream", "--requests", "2"])
    assert streams["page"].startswith("GET /events") and streams["cpu_ms_per_request"] > 0
    if shutil.which("valgrind") is None:
        unavailable("valgrind is not installed (bench.page_cost counts instructions with callgrind)")
    counted = page_cost.main(["--db", "sqlite", "--requests", "2"])
    # A dashboard is millions of instructions; a count of zero would mean counting never started.
    assert counted["instructions_per_request"] > 1_000_000, counted


def test_scan_harness_can_skip_the_first_scan(tmp_path):
    from bench import scan

    [row] = scan.main(["--db", "sqlite", "--users", "200", "--no-first-scan"])
    assert "first_scan_s" not in row
    assert row["steady_scan_opened"] == 0


def test_mail_harness_queues_and_sends_each_escalation_once(tmp_path):
    from bench import mail

    dbs = "sqlite,postgresql" if _postgres_available() else "sqlite"
    rows = mail.main(
        ["--db", dbs, "--reminders", "25", "--repeat", "3", "--out", str(tmp_path / "mail.json")]
    )
    for row in rows:
        assert row["opened"] == row["queued"] == row["sent"] == row["received"] == 25, row
        assert (row["received_twice"], row["still_queued"]) == (0, 0)
        assert row["render_already_shown_ms"] > 0 and row["render_first_showing_ms"] > 0


def test_data_harness_imports_and_exports_every_row(tmp_path):
    from bench import data

    out = tmp_path / "data.json"
    [row] = data.main(["--db", "sqlite", "--rows", "300", "--out", str(out)])
    assert (row["added"], row["saved"]) == (300, 300)
    assert row["export_mib"] is not None and row["preview_peak_mib"] is not None
    assert json.loads(out.read_text())["rows"][0]["rows"] == 300


@pytest.mark.services
def test_versus_harness_checks_every_event_on_both_servers(tmp_path):
    """Weigh-in (real "Remind now" POSTs) and flask-sse (sse.publish), same clients, same private Redis."""
    if not _postgres_available():
        unavailable("PostgreSQL is not reachable at 127.0.0.1:5432")
    from bench import versus

    out = tmp_path / "versus.json"
    result = versus.main(
        [
            "--clients",
            "30",
            "--processes",
            "1",
            "--rate",
            "10",
            "--seconds",
            "1",
            "--idle",
            "1",
            "--storm",
            "--storm-timeout",
            "120",
            "--out",
            str(out),
        ]
    )
    for side in ("weighin", "flask_sse"):
        row = result[side]
        assert row["connect"]["connected"] == 30, row
        phase = row["steady"]
        assert phase["published"] == 10 and phase["received"] == 10, phase
        assert (phase["missing"], phase["duplicates"], phase["wrong_user"]) == (0, 0, 0), phase
        assert set(phase["statuses"]) == {200}, phase
        # A deploy (SIGHUP to gunicorn) ends every stream; every one comes back, no request fails.
        storm = row["storm"]
        assert storm["back"] == 30 and storm["all_back_s"] is not None, storm
        assert storm["ended_by_server"] >= 30 and storm["failed_requests"] == 0, storm
    assert "| server CPU per event, ms |" in result["table"]
    assert "| deploy (SIGHUP): all streams back, s |" in result["table"]
    assert json.loads(out.read_text())["machine"]["load"]
