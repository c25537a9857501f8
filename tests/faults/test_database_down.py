"""While PostgreSQL is down or restarting, requests get 503 with Retry-After (a page, or the
error panel for htmx), not a 500; once it is back the same requests succeed with no app restart
(issue 10, item 7). Against a private PostgreSQL cluster this test starts and stops."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from ..support import PostgresServer, csrf_token

pytestmark = pytest.mark.services

MESSAGE = "The database is not answering right now"
# The quick-add form as the page sends it untouched: its date field still at its default ("now").
WEIGHT = {"weight": "70", "measured_at": "2026-01-01T08:00", "measured_at_default": "2026-01-01T08:00"}


@pytest.fixture
def private_postgres():
    # Not under pytest's tmp_path: that is private to root, and the cluster runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="weighin-pg-"))
    server = PostgresServer(folder)
    try:
        yield server.init().start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_requests_get_503_with_retry_after_while_postgresql_is_down(
    make_server, private_postgres, make_seeder
):
    server = make_server(DATABASE_URL=private_postgres.url)
    seeder = make_seeder(server)  # closed at teardown, after its last use (the client's login below)
    user_id = seeder.user("ada@example.com", days_ago=8)
    with seeder.client(user_id) as client:
        assert client.get("/dashboard").status_code == 200
        token = csrf_token(client)
        htmx = {"HX-Request": "true", "X-CSRFToken": token}

        private_postgres.stop()
        page = client.get("/dashboard")
        assert page.status_code == 503, page.text[:500]
        assert int(page.headers["Retry-After"]) > 0
        assert MESSAGE in page.text and "<html" in page.text

        # htmx gets the error panel to swap, not a whole page.
        fragment = client.post("/entries", data=WEIGHT, headers=htmx)
        assert fragment.status_code == 503
        assert int(fragment.headers["Retry-After"]) > 0
        assert MESSAGE in fragment.text and "<html" not in fragment.text
        stream = client.get("/events", headers={"HX-Request": "true", "Accept": "text/event-stream"})
        assert stream.status_code == 503 and "Retry-After" in stream.headers
        assert client.get("/healthz").status_code == 503

        private_postgres.start()
        deadline = time.monotonic() + 30
        while (status := client.get("/dashboard").status_code) == 503 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert status == 200
        saved = client.post("/entries", data=WEIGHT, headers=htmx)
        assert saved.status_code == 200, saved.text[:500]
    assert "Traceback" not in server.log()


def test_the_first_request_after_a_postgresql_restart_succeeds(make_server, private_postgres, make_seeder):
    """The workers' pooled connections died with the old server: each is found dead at checkout
    (its socket closed, webapp/pool.py) and replaced, so nobody sees the restart."""
    server = make_server(DATABASE_URL=private_postgres.url)
    seeder = make_seeder(server)
    user_id = seeder.user("ada@example.com", days_ago=8)
    with seeder.client(user_id) as client:
        for _ in range(3):  # a pooled connection or two, idle in the pool
            assert client.get("/dashboard").status_code == 200
        private_postgres.stop()
        private_postgres.start()
        page = client.get("/dashboard")
        assert page.status_code == 200, page.text[:500]
        token = csrf_token(client)
        saved = client.post("/entries", data=WEIGHT, headers={"HX-Request": "true", "X-CSRFToken": token})
        assert saved.status_code == 200, saved.text[:500]
    assert "Traceback" not in server.log()
