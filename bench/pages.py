"""Pages under load: the dashboard and quick-add with 200 concurrent logged-in sessions.

    python -m bench.pages --server embedded --sessions 200 --seconds 20
    python -m bench.pages --server gunicorn --db postgresql --sessions 200 --think 0

Each session is a keep-alive connection in a client process (raw asyncio HTTP/1.1) that loads
the dashboard, then repeats its phase's request: GET the dashboard, or POST a weight through the
quick-add form as htmx does (CSRF token from the page, HX-Request header, fragment back).
--think is the pause between a session's requests: 0 measures the server saturated (closed
loop), 1-2 s is people clicking. Reports requests per second and latency p50/p99 per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from bench.common import (
    REDIS_URL,
    USER_AGENT,
    Server,
    bulk_users,
    drop_scratch,
    make_app,
    percentile,
    raise_nofile,
    scratch_database,
    session_cookie,
    write_rows,
)

CSRF = re.compile(rb'name="csrf_token"[^>]*value="([^"]+)"|"X-CSRFToken"\s*:\s*"([^"]+)"')
MEASURED_DEFAULT = re.compile(rb'<input[^>]*name="measured_at_default"[^>]*>')
SET_SESSION = re.compile(rb"Set-Cookie: session=([^;]+)", re.IGNORECASE)


def quick_add_form(html: bytes) -> tuple[str | None, str | None]:
    """The CSRF token and the untouched date field's value from a dashboard, or None for each missing."""
    token = CSRF.search(html)
    field = MEASURED_DEFAULT.search(html)
    value = re.search(rb'value="([^"]*)"', field.group(0)) if field else None
    return (
        (token.group(1) or token.group(2)).decode() if token else None,
        value.group(1).decode() if value else None,
    )


def quick_add_fields(posted: int, measured_default: str) -> dict[str, str]:
    """The quick-add form's fields (no CSRF token) for a session's `posted`-th weight."""
    return {
        # A new weight each time: the app refuses the same weight again within a minute (a
        # second tap), and 3,000 distinct values outlast any session's minute of posting.
        "weight": f"{60 + (posted % 3000) / 100:.2f}",
        "note": "",
        # untouched date field, as a person leaves it: "now"
        "measured_at": measured_default,
        "measured_at_default": measured_default,
    }


class Session:
    def __init__(self, host, port, cookie):
        self.host, self.port, self.cookie = host, port, cookie
        self.reader = self.writer = None
        self.csrf = ""
        self.measured_default = ""
        self.posted = 0

    async def request(
        self, method: str, path: str, body: bytes = b"", extra: str = ""
    ) -> tuple[int, bytes, float]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nCookie: session={self.cookie}\r\n"
            f"User-Agent: {USER_AGENT}\r\n{extra}"
        )
        if body:
            head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        start = time.perf_counter()
        self.writer.write(head.encode() + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", raw, re.IGNORECASE).group(1))
        data = await self.reader.readexactly(length)
        elapsed = time.perf_counter() - start
        status = int(raw.split(b" ", 2)[1])
        cookie = SET_SESSION.search(raw)
        if cookie:
            self.cookie = cookie.group(1).decode()
        if b"connection: close" in raw.lower():
            self.writer.close()
            self.writer = None
        return status, data, elapsed

    async def dashboard(self) -> tuple[int, float]:
        status, data, elapsed = await self.request("GET", "/dashboard")
        csrf, measured_default = quick_add_form(data)
        if csrf is not None:
            self.csrf = csrf
        if measured_default is not None:
            self.measured_default = measured_default
        return status, elapsed

    async def quick_add(self) -> tuple[int, float]:
        body = urlencode(
            {"csrf_token": self.csrf, **quick_add_fields(self.posted, self.measured_default)}
        ).encode()
        self.posted += 1
        status, _, elapsed = await self.request(
            "POST", "/entries", body, f"HX-Request: true\r\nX-CSRFToken: {self.csrf}\r\n"
        )
        return status, elapsed


async def _phase_worker(host, port, cookies, phase, seconds, think, conn):
    raise_nofile()
    sessions = [Session(host, port, cookie) for cookie in cookies]
    await asyncio.gather(*(s.dashboard() for s in sessions))  # a CSRF token and a warm connection each
    latencies, statuses = [], {}
    conn.send("ready")
    conn.recv()  # start together
    deadline = time.monotonic() + seconds

    async def loop(session):
        await asyncio.sleep(random.uniform(0, think))
        while time.monotonic() < deadline:
            status, elapsed = await (session.dashboard() if phase == "dashboard" else session.quick_add())
            latencies.append(elapsed)
            statuses[status] = statuses.get(status, 0) + 1
            if think:
                await asyncio.sleep(random.uniform(0.5, 1.5) * think)

    await asyncio.gather(*(loop(s) for s in sessions))
    conn.send({"latencies": latencies, "statuses": statuses})


def _process(*args):
    asyncio.run(_phase_worker(*args))


def load(
    url: str, cookies: list[str], phase: str, seconds: float, think: float, processes: int, server
) -> dict:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    context = multiprocessing.get_context("fork")
    pipes, procs = [], []
    for index in range(processes):
        parent, child = context.Pipe()
        proc = context.Process(
            target=_process,
            args=(host, int(port), cookies[index::processes], phase, seconds, think, child),
            daemon=True,
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for pipe in pipes:
        pipe.recv()
    cpu0, start = server.cpu(), time.monotonic()
    for pipe in pipes:
        pipe.send("go")
    parts = [pipe.recv() for pipe in pipes]
    wall = time.monotonic() - start
    for proc in procs:
        proc.join(timeout=10)
    latencies = [x for part in parts for x in part["latencies"]]
    statuses: dict = {}
    for part in parts:
        for status, count in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "phase": phase,
        "sessions": len(cookies),
        "think_s": think,
        "seconds": round(wall, 1),
        "requests": len(latencies),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
        "statuses": statuses,
        "server_cpu_s": round(server.cpu() - cpu0, 1),
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["embedded", "gunicorn"], default="embedded")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--think", type=float, default=1.0, help="seconds between a session's requests (0: saturate)"
    )
    parser.add_argument("--phases", type=lambda s: s.split(","), default=["dashboard", "quick-add"])
    parser.add_argument(
        "--entries", type=int, default=30, help="weight entries per user (the dashboard reads them)"
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    raise_nofile()
    folder = Path(tempfile.mkdtemp(prefix="bench6-pages-"))
    broker = REDIS_URL if args.server == "gunicorn" else "memory://"
    database = scratch_database(args.db, f"pages_{args.server}", folder)
    app = make_app(database, broker)
    bulk_users(app, args.sessions, inactive_fraction=0.1, entries_per_user=args.entries)
    cookies = [session_cookie(app, uid) for uid in range(1, args.sessions + 1)]
    rows = []
    with Server(args.server, database, broker_url=broker) as server:
        for phase in args.phases:
            row = load(server.url, cookies, phase, args.seconds, args.think, args.processes, server)
            row["server"] = args.server
            row["db"] = args.db
            print(json.dumps(row), flush=True)
            rows.append(row)
    with app.app_context():
        from webapp.extensions import db

        db.engine.dispose()
    drop_scratch(database)
    write_rows(args.out, args, rows)
    return rows


if __name__ == "__main__":
    main()
