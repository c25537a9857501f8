"""Weigh-in against flask-sse, side by side in one run: same gunicorn, same Redis, same clients, same ramp.

    python -m bench.versus --clients 2000 --rate 50 --seconds 10 --idle 30

Both servers run in turn under `gunicorn -c gunicorn.conf.py -k gevent -w 2` against one private
redis-server (started here on a free port, so its connection count and memory are only ours):
Weigh-in (PostgreSQL, BROKER_URL on that Redis) with N logged-in users, then flask-sse
(bench/peer_flask_sse.py) with N channels. For each: connect N streams with the same ramp
(time to all connected), memory per stream (server RSS delta / N, and Redis's RSS delta / N),
Redis connections, server CPU per idle minute, then `--rate` events per second to distinct
random users, each sent over HTTP from this process: Weigh-in through the admin's real
"Remind now" POST (CSRF token, htmx headers; reminder ids read back from the database),
flask-sse through its publish endpoint (`sse.publish`). Every banner is checked: arrived once, at
its own user, naming the reminder that was sent. The load average is recorded at each server's
start; compare the two columns, not the absolute figures, on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.clients import ClientPool
from bench.common import (
    Server,
    bulk_users,
    drop_scratch,
    end_open_reminders,
    free_port,
    machine,
    make_app,
    percentile,
    process_tree,
    raise_nofile,
    run_async,
    scratch_database,
    session_cookie,
    stop_process_group,
    tree_cpu,
    tree_cpu_split,
    tree_rss,
    wait_for_port,
    write_result,
)
from bench.pages import CSRF, Session
from bench.streams import check_delivery, collect_until


class PrivateRedis:
    """A redis-server of our own on a free port: no persistence, room for one client per flask-sse stream."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = folder
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--maxclients", "30000", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: raise_nofile(),
        )
        wait_for_port(self.port, timeout=20, proc=self.proc)
        import redis

        self.client = redis.Redis.from_url(self.url)
        return self

    def clients(self) -> int:
        """Connections Redis holds, not counting the harness's own."""
        return int(self.client.info("clients")["connected_clients"]) - 1

    def rss(self) -> int:
        return tree_rss(self.proc.pid)

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def __exit__(self, *exc):
        self.client.close()
        stop_process_group(self.proc, grace=5)


class Poster:
    """Sends one POST per event from this process over a few keep-alive connections, at a steady rate."""

    def __init__(self, url: str, cookie: str, connections: int = 8):
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        self.sessions = [Session(host, int(port), cookie) for _ in range(connections)]

    async def prepare(self, csrf_page: str | None) -> None:
        for session in self.sessions:
            if csrf_page:
                status, page, _ = await session.request("GET", csrf_page)
                assert status == 200, f"GET {csrf_page} answered {status}"
                match = CSRF.search(page)
                session.csrf = (match.group(1) or match.group(2)).decode()

    async def run(self, jobs: list[tuple[str, bytes]], rate: float) -> tuple[list[float], dict[int, int]]:
        """POST each (path, body) at `rate` per second; returns each job's send time and the statuses."""
        queue: asyncio.Queue = asyncio.Queue()
        sent_at = [0.0] * len(jobs)
        statuses: dict[int, int] = {}
        start = time.monotonic()

        async def feed():
            for index in range(len(jobs)):
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                queue.put_nowait(index)
            for _ in self.sessions:
                queue.put_nowait(None)

        async def worker(session):
            while (index := await queue.get()) is not None:
                path, body = jobs[index]
                extra = f"HX-Request: true\r\nX-CSRFToken: {session.csrf}\r\n" if session.csrf else ""
                sent_at[index] = time.time()
                status, _, _ = await session.request("POST", path, body, extra)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(feed(), *(worker(s) for s in self.sessions))
        return sent_at, statuses

    def close(self) -> None:
        for session in self.sessions:
            if session.writer is not None:
                session.writer.close()


def profile_worker(server: Server, out: Path, seconds: float) -> subprocess.Popen:
    """py-spy (from requirements-dev) sampling one gunicorn worker for the steady phase, collapsed stacks."""
    from bench.common import process_tree

    worker = process_tree(server.proc.pid)[1]
    out.parent.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [str(py_spy), "record", "--nonblocking", "-r", "200", "-d", str(int(seconds)), "-p", str(worker)]
        + ["--format", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(name, server, redis, pool_kwargs, users, args, fire) -> dict:
    """One server's figures: connect, memory, Redis connections, idle CPU, one steady phase."""
    result: dict = {"server": name, "load_at_start": os.getloadavg()}
    # Warm both the same way (imports, templates, pools): a few streams, connected and dropped.
    warm = ClientPool(server.url, users[:20], mode="sse", processes=1, **pool_kwargs)
    warm.wait_connected(timeout=args.connect_timeout)
    warm.stop()
    time.sleep(1.0)
    rss0, redis_rss0, redis0 = server.rss(), redis.rss(), redis.clients()
    connect_cpu0 = server.cpu()
    pool = ClientPool(
        server.url, users, mode="sse", processes=args.processes, ramp_concurrency=args.ramp, **pool_kwargs
    )
    started = time.time()
    report = pool.wait_connected(timeout=args.connect_timeout)
    connect_cpu = server.cpu() - connect_cpu0
    try:
        time.sleep(2.0)
        # The clients note the moment the last one connected a little after it happens.
        report["all_connected_at"] = report["all_connected_at"] or pool.report()["all_connected_at"]
        connected = report["connected"]
        rss1, redis_rss1 = server.rss(), redis.rss()
        result["connect"] = {
            "clients": len(users),
            "connected": connected,
            "failures": report["failures"],
            "all_connected_s": round(report["all_connected_at"] - started, 2)
            if report["all_connected_at"]
            else None,
            "connect_p50_ms": round(percentile(report["connect_times"], 50) * 1000, 1),
            "connect_p99_ms": round(percentile(report["connect_times"], 99) * 1000, 1),
            # The server's CPU from the first connect to the last, over the streams connected
            # (retried attempts included: they are part of what a connect costs under the ramp).
            "server_cpu_ms_per_connect": round(connect_cpu * 1000 / max(connected, 1), 2),
            "server_kib_per_stream": round((rss1 - rss0) / max(connected, 1) / 1024, 1),
            "redis_kib_per_stream": round((redis_rss1 - redis_rss0) / max(connected, 1) / 1024, 1),
            # Those the streams added (flask-sse's warm-up streams keep theirs until a message comes).
            "redis_connections": redis.clients() - redis0,
        }
        before_idle = pool.report()
        user0, system0 = tree_cpu_split(server.proc.pid)
        idle_profiler = None
        if args.idle_profile and name == "Weigh-in":
            idle_profiler = profile_worker(server, args.idle_profile, args.idle)
        time.sleep(args.idle)
        user1, system1 = tree_cpu_split(server.proc.pid)
        per_minute = 60 / args.idle
        result["idle_cpu_s_per_min"] = round((user1 - user0 + system1 - system0) * per_minute, 2)
        # The kernel's share (the heartbeats' sends on loopback) apart from the Python side's.
        result["idle_cpu_user_s_per_min"] = round((user1 - user0) * per_minute, 2)
        result["idle_cpu_system_s_per_min"] = round((system1 - system0) * per_minute, 2)
        # Streams the server ended at their lifetime (SSE_MAX_LIFETIME) and the clients' reconnects:
        # part of what an idle stream costs once the window is as long as a lifetime.
        after_idle = pool.report()
        result["idle_reconnects"] = after_idle["connected"] - before_idle["connected"]
        result["idle_ended_by_server"] = after_idle["ended"] - before_idle["ended"]
        result["idle_failures"] = after_idle["failures"] - before_idle["failures"]
        if idle_profiler:
            idle_profiler.wait(timeout=60)
        pool.report()  # drop what arrived so far
        chosen = random.sample([uid for uid, _ in users], min(len(users), int(args.rate * args.seconds)))
        cpu0, redis_cpu0, t = server.cpu(), redis.cpu(), time.monotonic()
        sent, statuses = fire(chosen)
        elapsed = time.monotonic() - t
        events = collect_until(pool, sent, timeout=60)
        cpu, redis_cpu = server.cpu() - cpu0, redis.cpu() - redis_cpu0
        phase = check_delivery(sent, events)
        phase.update(
            {
                "rate": args.rate,
                "achieved_rate": round(len(chosen) / elapsed, 1),
                "statuses": statuses,
                "server_cpu_ms_per_event": round(cpu * 1000 / max(len(chosen), 1), 2),
                "redis_cpu_ms_per_event": round(redis_cpu * 1000 / max(len(chosen), 1), 2),
            }
        )
        result["steady"] = phase
        if args.storm:
            result["storm"] = storm(server, pool, len(users), args.storm_timeout)
    finally:
        result["client_failures_total"] = pool.stop()["failures"]
    result["server_log_tail"] = server.log_tail(5)
    print(json.dumps({k: v for k, v in result.items() if k != "server_log_tail"}), flush=True)
    return result


def _redis_failures_logged(server) -> int:
    try:
        text = Path(server.log_path).read_text(errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if "Redis " in line and " failed (" in line)


def storm(server, pool: ClientPool, clients: int, timeout: float) -> dict:
    """A deploy: SIGHUP to gunicorn's master (new workers; the old ones end their streams and
    exit), then the time until every client has connected again, and how many requests failed
    (refused, reset or answered with an error) on the way. A client is back when the stream it
    has open answered after the signal. Streams the server ended are not failures; each client
    comes back after 1-2 s, as a browser's EventSource would."""
    old_generation = set(process_tree(server.proc.pid))
    before = pool.report("mark")
    started = time.time()
    os.kill(server.proc.pid, signal.SIGHUP)
    report = before
    back_at = None
    while time.time() - started < timeout:
        time.sleep(0.25)
        report = pool.report()
        if report["back_since_mark"] >= clients:
            back_at = time.time()
            break
    new_workers = [p for p in process_tree(server.proc.pid) if p not in old_generation]
    return {
        "clients": clients,
        "back": report["back_since_mark"],
        "reconnects": report["connected"] - before["connected"],
        "all_back_s": round(back_at - started, 2) if back_at else None,
        "ended_by_server": report["ended"] - before["ended"],
        "failed_requests": report["failures"] - before["failures"],
        "last_error": report["last_error"],
        # The broker's "Redis ... failed" warnings in the server's log: a Redis taken for down.
        "redis_failures_logged": _redis_failures_logged(server),
        # The new workers' CPU (their start included): what taking every stream back cost.
        "new_workers_cpu_s": round(sum(tree_cpu(p) for p in new_workers), 2),
    }


def run_weighin(args, redis: PrivateRedis, folder: Path) -> dict:
    database = scratch_database("postgresql", f"versus_{os.getpid()}", folder)
    prefix = f"bench16-{os.getpid()}-{random.randrange(1 << 30)}"
    app = make_app(database, redis.url, REDIS_PREFIX=prefix)
    try:
        bulk_users(app, args.clients + 1, inactive_fraction=0.0, entries_per_user=1)
        admin_id = args.clients + 1
        with app.app_context():
            from webapp.extensions import db

            with db.engine.begin() as conn:
                conn.execute(sa.text("UPDATE users SET is_admin = true WHERE id = :id"), {"id": admin_id})
        users = [(uid, session_cookie(app, uid)) for uid in range(1, args.clients + 1)]
        # Room for every stream in each worker, as a deployment sized for N streams sets it
        # (docs/DEPLOY.md; the default is 5,000 a process).
        env = {"REDIS_PREFIX": prefix, "SSE_MAX_STREAMS_PER_PROCESS": str(max(5000, args.clients))}
        if args.heartbeat:
            env["SSE_HEARTBEAT"] = str(args.heartbeat)
        if args.lifetime:
            env["SSE_MAX_LIFETIME"] = str(args.lifetime)
        with Server("gunicorn", database, broker_url=redis.url, workers=args.workers, env=env) as server:

            def fire(chosen):
                with app.app_context():
                    from webapp.extensions import db

                    end_open_reminders()
                    before = db.session.execute(
                        sa.text("SELECT coalesce(max(id), 0) FROM reminders")
                    ).scalar()
                    db.session.remove()
                poster = Poster(server.url, session_cookie(app, admin_id))
                jobs = [(f"/admin/users/{uid}/remind", b"") for uid in chosen]

                async def go():
                    await poster.prepare("/admin/")
                    try:
                        return await poster.run(jobs, args.rate)
                    finally:
                        poster.close()

                profiler = profile_worker(server, args.profile, args.seconds) if args.profile else None
                sent_at, statuses = run_async(go)
                if profiler:
                    profiler.wait(timeout=args.seconds + 60)
                when = dict(zip(chosen, sent_at, strict=True))
                with app.app_context():
                    rows = db.session.execute(
                        sa.text("SELECT id, user_id FROM reminders WHERE id > :before"), {"before": before}
                    ).all()
                    db.session.remove()
                return {rid: (uid, when[uid]) for rid, uid in rows}, statuses

            return measure("Weigh-in", server, redis, {"path": "/events"}, users, args, fire)
    finally:
        with app.app_context():
            from webapp.extensions import db

            db.engine.dispose()
        drop_scratch(database)


def run_peer(args, redis: PrivateRedis) -> dict:
    prefix = f"bench16.{os.getpid()}."
    users = [(uid, "none") for uid in range(1, args.clients + 1)]
    env = {"PEER_REDIS_URL": redis.url, "PEER_PREFIX": prefix}
    with Server(
        "gunicorn",
        "sqlite://",
        workers=args.workers,
        env=env,
        wsgi_app="bench.peer_flask_sse:app",
        gunicorn_config="bench/peer_gunicorn.conf.py",
    ) as server:

        def fire(chosen):
            poster = Poster(server.url, "none")
            ids = list(range(1, len(chosen) + 1))
            jobs = [
                ("/publish", f"user={uid}&id={rid}".encode()) for uid, rid in zip(chosen, ids, strict=True)
            ]

            async def go():
                try:
                    return await poster.run(jobs, args.rate)
                finally:
                    poster.close()

            sent_at, statuses = run_async(go)
            return {rid: (uid, t) for rid, uid, t in zip(ids, chosen, sent_at, strict=True)}, statuses

        return measure(
            "flask-sse",
            server,
            redis,
            {"path": f"/stream/open?channel={prefix}user.{{user}}"},
            users,
            args,
            fire,
        )


RATIO_ROWS = [
    ("server memory per stream, KiB", lambda r: r["connect"]["server_kib_per_stream"]),
    ("Redis memory per stream, KiB", lambda r: r["connect"]["redis_kib_per_stream"]),
    ("Redis connections", lambda r: r["connect"]["redis_connections"]),
    ("connect all streams, s", lambda r: r["connect"]["all_connected_s"]),
    ("connect p99, ms", lambda r: r["connect"]["connect_p99_ms"]),
    ("server CPU per connect, ms", lambda r: r["connect"]["server_cpu_ms_per_connect"]),
    ("idle server CPU per minute, s", lambda r: r["idle_cpu_s_per_min"]),
    ("server CPU per event, ms", lambda r: r["steady"]["server_cpu_ms_per_event"]),
    ("events/s reached", lambda r: r["steady"]["achieved_rate"]),
    ("latency p50, ms", lambda r: r["steady"]["p50_ms"]),
    ("latency p99, ms", lambda r: r["steady"]["p99_ms"]),
    ("deploy (SIGHUP): all streams back, s", lambda r: r.get("storm", {}).get("all_back_s")),
    ("deploy: failed requests", lambda r: r.get("storm", {}).get("failed_requests")),
]


def table(ours: dict, peer: dict) -> str:
    lines = ["| figure | Weigh-in | flask-sse | Weigh-in / flask-sse |", "|---|---|---|---|"]
    for label, get in RATIO_ROWS:
        a, b = get(ours), get(peer)
        ratio = f"{a / b:.2f}×" if isinstance(a, int | float) and isinstance(b, int | float) and b else "—"
        a, b = (round(v, 1) if isinstance(v, float) else v for v in (a, b))
        lines.append(f"| {label} | {a} | {b} | {ratio} |")
    for r in (ours, peer):
        s = r["steady"]
        lines.append(
            f"| {r['server']}: published / received / missing / duplicates / wrong user | "
            f"{s['published']} / {s['received']} / {s['missing']} / {s['duplicates']} / {s['wrong_user']} | | |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, both servers")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--ramp", type=int, default=200, help="connects in flight at once")
    parser.add_argument("--rate", type=float, default=50, help="events per second in the steady phase")
    parser.add_argument("--seconds", type=float, default=10, help="length of the steady phase")
    parser.add_argument("--idle", type=float, default=30, help="seconds of idle CPU measured")
    parser.add_argument("--connect-timeout", type=float, default=300)
    parser.add_argument(
        "--storm", action="store_true", help="then a deploy (SIGHUP): time until every stream is back"
    )
    parser.add_argument("--storm-timeout", type=float, default=300)
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    parser.add_argument("--weighin-only", action="store_true", help="skip flask-sse (for profiling)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy one Weigh-in worker during the steady phase (collapsed stacks here)",
    )
    parser.add_argument(
        "--idle-profile",
        type=Path,
        help="py-spy one Weigh-in worker during the idle phase (collapsed stacks here)",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        help="Weigh-in's SSE_HEARTBEAT (default: 15 s, as the app's); shorter ones make an idle profile denser",
    )
    parser.add_argument(
        "--lifetime",
        type=int,
        help="Weigh-in's SSE_MAX_LIFETIME (default: the harness's 86,400 s, so no stream ends in the run); "
        "an --idle as long as it counts the reconnects",
    )
    args = parser.parse_args(argv)
    raise_nofile()
    folder = Path(tempfile.mkdtemp(prefix="bench16-versus-"))
    result: dict = {"config": vars(args), "machine": machine()}
    with PrivateRedis(folder) as redis:
        result["weighin"] = run_weighin(args, redis, folder)
        if not args.weighin_only:
            result["flask_sse"] = run_peer(args, redis)
    if not args.weighin_only:
        result["table"] = table(result["weighin"], result["flask_sse"])
        print(result["table"], flush=True)
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
