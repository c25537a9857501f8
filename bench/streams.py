"""Stream capacity and latency: N logged-in SSE clients, reminders at a steady rate, then a burst to all.

    python -m bench.streams --server embedded --clients 2000
    python -m bench.streams --server gunicorn --db postgresql --clients 20000 --processes 4

Reports server memory per stream (RSS delta / N), the time to connect all N, publish-to-receive
latency p50/p99/max at each --rates value (reminders per second to distinct random users), and a
burst (one reminder to every connected user in one transaction): time until the last arrives.
Every reminder must arrive exactly once, at its own user; anything else is counted and shown.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from bench.clients import ClientPool
from bench.common import (
    REDIS_URL,
    ControlPublisher,
    LocalPublisher,
    Server,
    bulk_users,
    drop_scratch,
    machine,
    make_app,
    percentile,
    raise_nofile,
    scratch_database,
    session_cookie,
    write_result,
)


def check_delivery(sent: dict[int, tuple[int, float]], events: list) -> dict:
    """Match received banners to published reminders: latencies, missing, duplicated, misdelivered."""
    counts: dict[int, int] = {}
    latencies, wrong = [], 0
    for user_id, reminder_id, received_at in events:
        if reminder_id not in sent:
            continue  # a banner from an earlier phase, re-sent in a later snapshot
        owner, t0 = sent[reminder_id]
        if owner != user_id:
            wrong += 1
            continue
        counts[reminder_id] = counts.get(reminder_id, 0) + 1
        if counts[reminder_id] == 1:
            latencies.append(received_at - t0)
    return {
        "published": len(sent),
        "received": len(counts),
        "missing": len(sent) - len(counts),
        "duplicates": sum(c - 1 for c in counts.values()),
        "wrong_user": wrong,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
    }


def collect_until(pool: ClientPool, sent: dict, timeout: float) -> list:
    """Gather client reports until every published reminder has arrived somewhere, or timeout."""
    events, deadline = [], time.monotonic() + timeout
    while True:
        events += pool.report()["events"]
        arrived = {rid for _, rid, _ in events if rid in sent}
        if len(arrived) >= len(sent) or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def steady(
    publisher, pool: ClientPool, user_ids: list[int], rate: int, seconds: float, server: Server
) -> dict:
    """Open `rate` reminders per second to distinct random users for `seconds`; latency of each."""
    chosen = random.sample(user_ids, min(len(user_ids), int(rate * seconds)))
    sent: dict[int, tuple[int, float]] = {}
    tick, owed, start = 0.01, 0.0, time.monotonic()
    cpu0 = server.cpu()
    while chosen:
        owed = rate * (time.monotonic() - start) - len(sent)
        take = [chosen.pop() for _ in range(min(len(chosen), int(owed)))]
        if take:
            t0, pairs = publisher.remind(take)
            for reminder_id, user_id in pairs:
                sent[reminder_id] = (user_id, t0)
        time.sleep(tick)
    elapsed = time.monotonic() - start
    events = collect_until(pool, sent, timeout=30)
    result = check_delivery(sent, events)
    result.update(
        {
            "rate": rate,
            "achieved_rate": round(len(sent) / elapsed, 1),
            "server_cpu_s": round(server.cpu() - cpu0, 2),
            "seconds": round(elapsed, 1),
        }
    )
    return result


def burst(
    publisher, pool: ClientPool, user_ids: list[int], server: Server, profile: Path | None = None
) -> dict:
    """One reminder to every user in one transaction; time from its commit until the last arrives."""
    spy = []

    def attach() -> None:  # just before the commit: the profile is of the delivery, not the writes
        from bench.versus import profile_worker

        assert profile is not None
        spy.append(profile_worker(server, profile, seconds=10))
        time.sleep(1.0)  # py-spy attaches

    cpu0 = server.cpu()
    before = time.time()
    if profile is not None and isinstance(publisher, LocalPublisher):
        t0, pairs = publisher.remind(user_ids, before_commit=attach)
    else:
        t0, pairs = publisher.remind(user_ids)
    sent = {rid: (uid, t0) for rid, uid in pairs}
    events = collect_until(pool, sent, timeout=120)
    for process in spy:
        process.wait()
    result = check_delivery(sent, events)
    arrivals = [t for _, rid, t in events if rid in sent]
    result.update(
        {
            "users": len(user_ids),
            "open_reminders_s": round(t0 - before, 2),  # writing N reminders before the commit
            "last_arrival_s": round(max(arrivals) - t0, 3) if arrivals else None,
            "server_cpu_s": round(server.cpu() - cpu0, 2),
        }
    )
    return result


def run(args) -> dict:
    raise_nofile()
    folder = Path(tempfile.mkdtemp(prefix="bench6-streams-"))
    broker = REDIS_URL if args.server == "gunicorn" else "memory://"
    database = scratch_database(args.db, f"streams_{args.server}", folder)
    app = make_app(database, broker)
    bulk_users(app, args.clients, inactive_fraction=0.0, entries_per_user=1)
    users = [(uid, session_cookie(app, uid)) for uid in range(1, args.clients + 1)]
    user_ids = [uid for uid, _ in users]
    result = {"config": vars(args), "machine": machine()}

    # Room for every stream in each process, as a deployment sized for N streams sets it
    # (docs/DEPLOY.md; the default of 5,000 a process refused half of a 20,000 run with 503).
    room = {"SSE_MAX_STREAMS_PER_PROCESS": str(max(5000, args.clients))}
    with Server(args.server, database, broker_url=broker, workers=args.workers, env=room) as server:
        time.sleep(1.0)
        rss0 = server.rss()
        pool = ClientPool(server.url, users, mode="sse", processes=args.processes, ramp_concurrency=args.ramp)
        started = time.time()
        report = pool.wait_connected(
            timeout=args.connect_timeout,
            progress=args.progress
            and (
                lambda r: print(
                    f"  connected {r['connected']}/{args.clients} failures {r['failures']}", flush=True
                )
            ),
        )
        time.sleep(2.0)  # let the server settle before measuring memory
        rss1 = server.rss()
        connected = report["connected"]
        result["connect"] = {
            "clients": args.clients,
            "connected": connected,
            "failures": report["failures"],
            "last_error": report["last_error"],
            "all_connected_s": round(report["all_connected_at"] - started, 2)
            if report["all_connected_at"]
            else None,
            "connect_p50_ms": percentile(report["connect_times"], 50) * 1000,
            "connect_p99_ms": percentile(report["connect_times"], 99) * 1000,
            "rss_before_mib": round(rss0 / 2**20, 1),
            "rss_after_mib": round(rss1 / 2**20, 1),
            "rss_per_stream_kib": round((rss1 - rss0) / max(connected, 1) / 1024, 2),
        }
        print(json.dumps(result["connect"]), flush=True)
        publisher = ControlPublisher(server.control_port) if server.control_port else LocalPublisher(app)
        try:
            result["steady"] = []
            for rate in args.rates:
                publisher.reset()
                pool.report()  # drop what arrived so far
                phase = steady(publisher, pool, user_ids, rate, args.seconds, server)
                print(json.dumps(phase), flush=True)
                result["steady"].append(phase)
            if args.burst:
                publisher.reset()
                pool.report()
                result["burst"] = burst(publisher, pool, user_ids, server, args.profile)
                print(json.dumps(result["burst"]), flush=True)
        finally:
            publisher.close()
            final = pool.stop()
            result["client_failures_total"] = final["failures"]
        result["server_log_tail"] = server.log_tail(10)
    with app.app_context():
        from webapp.extensions import db

        db.engine.dispose()
    drop_scratch(database)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["embedded", "gunicorn"], default="embedded")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--ramp", type=int, default=200, help="connects in flight at once")
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",") if x], default=[100, 500])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each steady phase")
    parser.add_argument("--no-burst", dest="burst", action="store_false")
    parser.add_argument("--connect-timeout", type=float, default=300)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    parser.add_argument(
        "--profile", type=Path, help="py-spy one gunicorn worker during the burst (collapsed stacks here)"
    )
    args = parser.parse_args(argv)
    result = run(args)
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
