"""Polling vs long polling vs WebSocket vs SSE: K users each waiting for one rare reminder.

    python -m bench.transports --users 1000 --seconds 60
    python -m bench.transports --users 10000 --seconds 120 --processes 4

For each transport a fresh embedded server holds K logged-in clients. Once all are connected
(or have polled once), the harness measures a window of --seconds: server CPU seconds (from
/proc/<pid>/stat), requests, bytes on the wire (HTTP and WebSocket framing as the clients saw
them; TCP/IP headers not counted), open connections; meanwhile --reminders reminders go to random
users at random moments, and their lateness is publish-to-receive. Per-hour figures are the window
scaled by 3600 / seconds: a scaled-down run, extrapolated (waiting is steady, so it scales linearly).
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
    ControlPublisher,
    Server,
    bulk_users,
    drop_scratch,
    make_app,
    raise_nofile,
    scratch_database,
    session_cookie,
    write_rows,
)
from bench.streams import check_delivery, collect_until

PUSH_TRANSPORTS = {"long poll": ("longpoll", 0.0), "WebSocket": ("ws", 0.0), "SSE": ("sse", 0.0)}


def transports(poll_intervals=(5.0, 30.0)) -> dict[str, tuple[str, float]]:
    """Transport name -> (client mode, poll interval), in the order the table shows them."""
    polls = {f"poll {interval:g} s": ("poll", float(interval)) for interval in poll_intervals}
    return {**polls, **PUSH_TRANSPORTS}


TRANSPORTS = transports()


def measure(name: str, database: str, users, args) -> dict:
    mode, interval = transports(args.poll_intervals)[name]
    user_ids = [uid for uid, _ in users]
    with Server("embedded", database, env={"SSE_HEARTBEAT": str(args.heartbeat)}) as server:
        publisher = ControlPublisher(server.control_port)
        publisher.reset()
        rss0 = server.rss()
        pool = ClientPool(
            server.url,
            users,
            mode=mode,
            interval=interval,
            processes=args.processes,
            ramp_concurrency=args.ramp,
        )
        try:
            ready = pool.wait_connected(timeout=max(120.0, interval * 2 + 60))
            time.sleep(1.0)
            start_report = pool.report()
            rss1 = server.rss()
            cpu0, t_start = server.cpu(), time.monotonic()
            moments = sorted(random.uniform(0, args.seconds) for _ in range(args.reminders))
            targets = random.sample(user_ids, len(moments))
            sent, open_samples, events = {}, [], []
            for moment, user_id in zip(moments, targets, strict=True):
                time.sleep(max(0.0, moment - (time.monotonic() - t_start)))
                t0, pairs = publisher.remind([user_id])
                sent.update({rid: (uid, t0) for rid, uid in pairs})
                events += pool.report()["events"]
            while (left := args.seconds - (time.monotonic() - t_start)) > 0:
                sample = pool.report()
                open_samples.append(sample["open"])
                events += sample["events"]
                time.sleep(min(1.0, left))
            window = time.monotonic() - t_start
            cpu = server.cpu() - cpu0
            end_report = pool.report()
            events += end_report["events"]
            # Lateness needs the slowest poller to come round once more.
            if {rid for _, rid, _ in events} < set(sent):
                events += collect_until(pool, sent, timeout=interval + 10)
        finally:
            final = pool.stop()
            publisher.close()
    delivery = check_delivery(sent, events)
    scale = 3600.0 / window
    requests = end_report["requests"] - start_report["requests"]
    bytes_wire = (end_report["bytes_in"] + end_report["bytes_out"]) - (
        start_report["bytes_in"] + start_report["bytes_out"]
    )
    return {
        "transport": name,
        "users": len(users),
        "window_s": round(window, 1),
        "connected": ready["connected"],
        "client_failures": final["failures"],
        "last_error": final["last_error"],
        "cpu_s": round(cpu, 2),
        "requests": requests,
        "bytes": bytes_wire,
        "open_connections": round(sum(open_samples) / max(1, len(open_samples))),
        "rss_per_connection_kib": round((rss1 - rss0) / max(1, ready["connected"]) / 1024, 1),
        "cpu_s_per_hour": round(cpu * scale, 1),
        "requests_per_hour": round(requests * scale),
        "mib_per_hour": round(bytes_wire * scale / 2**20, 1),
        "lateness_p50_s": round(delivery["p50_ms"] / 1000, 3),
        "lateness_max_s": round(delivery["max_ms"] / 1000, 3),
        "reminders": delivery["published"],
        "missing": delivery["missing"],
        "duplicates": delivery["duplicates"],
        "wrong_user": delivery["wrong_user"],
    }


def table(rows: list[dict]) -> str:
    """A Markdown table of the per-hour figures."""
    head = (
        "| transport | users | server CPU s/hour | requests/hour | MiB/hour on the wire | open connections "
        "| server KiB per connection | lateness p50 / max | missing / dup |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    return head + "".join(
        f"| {r['transport']} | {r['users']:,} | {r['cpu_s_per_hour']:,} | {r['requests_per_hour']:,} | "
        f"{r['mib_per_hour']:,} | {r['open_connections']:,} | {r.get('rss_per_connection_kib', '–')} | {r['lateness_p50_s']} s / {r['lateness_max_s']} s | "
        f"{r['missing']} / {r['duplicates']} |\n"
        for r in rows
    )


def plot(rows: list[dict], path: Path) -> None:
    """Server CPU and bytes per hour for each transport and user count, side by side (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["users"] for r in rows})
    names = [n for n in dict.fromkeys(r["transport"] for r in rows) if any(r["transport"] == n for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(sizes))
    for axis, key, label in (
        (axes[0], "cpu_s_per_hour", "server CPU seconds per hour"),
        (axes[1], "mib_per_hour", "MiB on the wire per hour"),
    ):
        for index, size in enumerate(sizes):
            found = [
                next((r for r in rows if r["transport"] == n and r["users"] == size), None) for n in names
            ]
            xs = [i + index * width for i in range(len(names))]
            bars = axis.bar(
                [x for x, r in zip(xs, found, strict=True) if r],
                [r[key] for r in found if r],
                width,
                label=f"{size:,} waiting users",
                color=f"C{index}",
            )
            for bar, row in zip(bars, [r for r in found if r], strict=True):
                if row["connected"] < row["users"]:
                    # Not every client got through (server saturated, or out of file descriptors): a floor, not the cost.
                    bar.set_hatch("//")
                    axis.annotate(
                        "not all connected",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
            for x, found_row in zip(xs, found, strict=True):
                if found_row is None:
                    axis.annotate(
                        "not run", (x, axis.get_ylim()[0]), ha="center", va="bottom", fontsize=7, rotation=90
                    )
        axis.set_xticks([i + width * (len(sizes) - 1) / 2 for i in range(len(names))], names)
        axis.set_yscale("log")
        axis.set_title(label)
        axis.legend(loc="upper right", fontsize=8)
    fig.suptitle(
        "Waiting for a rare reminder: cost per hour by transport (extrapolated from a scaled-down run)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=lambda s: [int(x) for x in s.split(",")], default=[1000])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per transport")
    parser.add_argument("--reminders", type=int, default=20, help="rare reminders sent during the window")
    parser.add_argument(
        "--poll-intervals", type=lambda s: [float(x) for x in s.split(",")], default=[5.0, 30.0]
    )
    parser.add_argument(
        "--transports",
        type=lambda s: [x.strip() for x in s.split(",")],
        default=None,
        help="which to run, by name (default: every poll interval, long poll, WebSocket, SSE)",
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--ramp", type=int, default=200)
    parser.add_argument(
        "--heartbeat", type=int, default=15, help="SSE_HEARTBEAT (and WebSocket ping) seconds"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    known = transports(args.poll_intervals)
    args.transports = args.transports or list(known)
    unknown = set(args.transports) - set(known)
    if unknown:
        parser.error(f"unknown transports {sorted(unknown)}; choose from {list(known)}")
    raise_nofile()
    folder = Path(tempfile.mkdtemp(prefix="bench6-transports-"))
    rows = []
    for size in args.users:
        database = scratch_database("sqlite", f"transports_{size}", folder)
        app = make_app(database)
        bulk_users(app, size, inactive_fraction=0.0, entries_per_user=1)
        users = [(uid, session_cookie(app, uid)) for uid in range(1, size + 1)]
        for name in args.transports:
            row = measure(name, database, users, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
        drop_scratch(database)
    print(table(rows))
    write_rows(args.out, args, rows)
    if args.plot:
        plot(rows, args.plot)
    return rows


if __name__ == "__main__":
    main()
