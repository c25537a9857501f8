"""The fixed cost of one page in process: CPU instructions (or CPU time) per request.

    python -m bench.page_cost --db postgresql               # GET /dashboard, instructions
    python -m bench.page_cost --db postgresql --page quick-add
    python -m bench.page_cost --db sqlite --measure cpu     # process CPU time, no valgrind
    python -m bench.page_cost --db postgresql --page remind # the admin's "Remind now", htmx
    python -m bench.page_cost --db postgresql --page stream # an /events connect, as hx-sse opens it

The app runs in this process behind Flask's test client (no HTTP server, no load client), for a
logged-in user with 30 entries, as bench.pages gives each session; `--page quick-add` posts a
weight as htmx does (each post adds an entry, so the log grows by one a request). `--measure instructions`
(the default) runs the loop under valgrind's callgrind with counting switched on only around
the measured requests: the count is the same from run to run within about 0.3 % whatever else
the machine is doing, where CPU time on this shared machine moves by a quarter. Compare two
versions by running this in a checkout of each. `--measure cpu` reports the best of seven
rounds of `time.process_time()` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import USER_AGENT, bulk_users, drop_scratch, make_app, scratch_database, session_cookie
from bench.pages import CSRF, quick_add_fields, quick_add_form

WARM = 50  # requests before the measured ones: compiled templates, statement caches, the pool
ROUNDS = 7  # --measure cpu's rounds, the best one reported


def _client(kind: str, folder: Path, page: str, requests: int):
    url = scratch_database(kind, "page_cost", folder)
    app = make_app(url)
    if page == "remind":
        # A user to remind for every request of every round, none of them with a reminder open,
        # and an admin (the last id) to send them.
        users = WARM + ROUNDS * requests
        bulk_users(app, users + 1, inactive_fraction=0.0, entries_per_user=1)
        with app.app_context():
            from webapp.extensions import db
            from webapp.models import User

            db.session.get(User, users + 1).is_admin = True
            db.session.commit()
            db.session.remove()
        viewer = users + 1
    else:
        bulk_users(app, 20, entries_per_user=30)
        viewer = 3
    client = app.test_client()
    client.set_cookie("session", session_cookie(app, viewer))
    return url, client


_ENVIRON = {"REMOTE_ADDR": "127.0.0.1"}
_HEADERS = {"User-Agent": USER_AGENT}


def _requester(client, page: str) -> Callable[[int], None]:
    """A function that makes `count` requests of the page, each checked for its 200."""
    if page == "dashboard":

        def dashboards(count: int) -> None:
            for _ in range(count):
                response = client.get("/dashboard", headers=_HEADERS, environ_base=_ENVIRON)
                if response.status_code != 200:
                    raise SystemExit(f"GET /dashboard answered {response.status_code}")

        return dashboards
    if page == "stream":
        stream_headers = {**_HEADERS, "HX-Request": "true", "Accept": "text/event-stream"}

        def streams(count: int) -> None:
            for _ in range(count):
                response = client.get(
                    "/events", headers=stream_headers, environ_base=_ENVIRON, buffered=False
                )
                try:
                    chunks = iter(response.response)
                    first, snapshot = next(chunks), next(chunks)
                finally:
                    response.close()
                if response.status_code != 200 or not first.startswith(b"retry:") or b"data:" not in snapshot:
                    raise SystemExit(f"GET /events answered {response.status_code}: {first!r} {snapshot!r}")

        return streams
    if page == "remind":
        html = client.get("/admin/", headers=_HEADERS, environ_base=_ENVIRON).data
        token = CSRF.search(html)
        if token is None:
            raise SystemExit("the admin page has no CSRF token")
        remind_headers = {
            **_HEADERS,
            "HX-Request": "true",
            "X-CSRFToken": (token.group(1) or token.group(2)).decode(),
        }
        reminded = 0

        def reminds(count: int) -> None:
            nonlocal reminded
            for _ in range(count):
                reminded += 1
                path = f"/admin/users/{reminded}/remind"
                response = client.post(path, headers=remind_headers, environ_base=_ENVIRON)
                if response.status_code != 200 or b"Reminder sent" not in response.data:
                    raise SystemExit(f"POST {path} answered {response.status_code}")

        return reminds
    # The quick-add as htmx sends it, with bench.pages' fields (it does the same over HTTP): the
    # page's CSRF token in a header and its untouched date, a new weight each time.
    html = client.get("/dashboard", headers=_HEADERS, environ_base=_ENVIRON).data
    csrf, when = quick_add_form(html)
    if csrf is None or when is None:
        raise SystemExit("the dashboard has no quick-add form to post")
    headers = {**_HEADERS, "HX-Request": "true", "X-CSRFToken": csrf}
    posted = 0

    def quick_adds(count: int) -> None:
        nonlocal posted
        for _ in range(count):
            form = quick_add_fields(posted, when)
            posted += 1
            response = client.post("/entries", data=form, headers=headers, environ_base=_ENVIRON)
            if response.status_code != 200:
                raise SystemExit(f"POST /entries answered {response.status_code}")

    return quick_adds


def _serve(kind: str, page: str, requests: int) -> None:
    """The child under valgrind: set up, say READY, run the requests when told, say DONE."""
    url, client = _client(kind, Path(tempfile.mkdtemp(prefix="bench-page-cost-")), page, requests)
    try:
        run = _requester(client, page)
        run(WARM)
        os.write(1, b"READY\n")
        sys.stdin.readline()
        run(requests)
        os.write(1, b"DONE\n")
        sys.stdin.readline()
    finally:
        drop_scratch(url)


def _callgrind(args) -> dict:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind), or use --measure cpu")
    out = Path(tempfile.mkdtemp(prefix="bench-callgrind-"))
    with subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}/cg.%p",
            sys.executable,
            "-m",
            "bench.page_cost",
            "--db",
            args.db,
            "--page",
            args.page,
            "--requests",
            str(args.requests),
            "--child",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
    ) as child:
        assert child.stdin is not None and child.stdout is not None

        def control(*flags: str) -> None:
            subprocess.run(["callgrind_control", *flags, str(child.pid)], capture_output=True, check=True)

        def step(expected: bytes) -> None:
            line = child.stdout.readline()
            if line.strip() != expected:
                child.kill()
                raise SystemExit(f"the measured process said {line!r}, not {expected!r}")

        step(b"READY")
        control("-i", "on")
        child.stdin.write(b"go\n")
        child.stdin.flush()
        step(b"DONE")
        control("-i", "off")
        control("-d")
        child.stdin.write(b"go\n")
        child.stdin.flush()
        child.wait(timeout=300)
    total = 0
    for dump in out.glob("cg.*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    shutil.rmtree(out, ignore_errors=True)
    return {"instructions_per_request": total // args.requests}


def _cpu(args) -> dict:
    url, client = _client(
        args.db, Path(tempfile.mkdtemp(prefix="bench-page-cost-")), args.page, args.requests
    )
    try:
        run = _requester(client, args.page)
        run(WARM)
        best = float("inf")
        for _ in range(ROUNDS):
            start = time.process_time()
            run(args.requests)
            best = min(best, (time.process_time() - start) / args.requests)
        return {"cpu_ms_per_request": round(best * 1000, 3)}
    finally:
        drop_scratch(url)


PAGES = {
    "dashboard": "GET /dashboard",
    "quick-add": "POST /entries (quick-add, htmx)",
    "remind": "POST /admin/users/<id>/remind (Remind now, htmx)",
    "stream": "GET /events (connect, first snapshot, close)",
}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--page", choices=list(PAGES), default="dashboard")
    parser.add_argument("--measure", choices=["instructions", "cpu"], default="instructions")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    if args.child:
        _serve(args.db, args.page, args.requests)
        return None
    result = {
        "page": PAGES[args.page],
        "db": args.db,
        "requests": args.requests,
        **(_callgrind(args) if args.measure == "instructions" else _cpu(args)),
        "load": os.getloadavg()[0],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
