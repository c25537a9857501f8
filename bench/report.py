"""Print the Markdown tables of docs/BENCHMARKS.md from bench/results/*.json, and draw its plot.

python -m bench.report [bench/results] [--plot docs/transports.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(folder: Path, name: str):
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def streams(folder: Path) -> str:
    out = []
    for name in ("streams-gunicorn-20000", "streams-embedded-10000"):
        result = _load(folder, name)
        if not result:
            continue
        c, m = result["connect"], result["machine"]
        out.append(f"**{name}** ({m['date']}, load {m['load'][0]:.1f})\n")
        out.append(
            f"- connected {c['connected']:,}/{c['clients']:,} (failures {c['failures']}), all in "
            f"{c['all_connected_s']} s; connect p50 {c['connect_p50_ms']:.0f} ms, p99 {c['connect_p99_ms']:.0f} ms"
        )
        out.append(
            f"- server RSS {c['rss_before_mib']} MiB -> {c['rss_after_mib']} MiB: "
            f"**{c['rss_per_stream_kib']} KiB per stream**"
        )
        for p in result.get("steady", []):
            out.append(
                f"- {p['rate']}/s asked, {p['achieved_rate']}/s achieved: p50 {p['p50_ms']:.1f} ms, "
                f"p99 **{p['p99_ms']:.1f} ms**, max {p['max_ms']:.1f} ms; {p['received']}/{p['published']} "
                f"received, {p['duplicates']} duplicates, {p['wrong_user']} misdelivered; server CPU {p['server_cpu_s']} s"
            )
        b = result.get("burst")
        if b:
            out.append(
                f"- burst to {b['users']:,}: writing the reminders {b['open_reminders_s']} s, then last arrival "
                f"**{b['last_arrival_s']} s** after commit (p50 {b['p50_ms']:.0f} ms); {b['received']}/{b['published']} "
                f"received, {b['duplicates']} duplicates, {b['wrong_user']} misdelivered"
            )
        out.append("")
    return "\n".join(out)


def scan(folder: Path) -> str:
    rows = []
    for name in ("scan-100000", "scan-1000000"):
        result = _load(folder, name)
        if result:
            rows += result["rows"]
    if not rows:
        return ""
    head = (
        "| db | users | due | due query | first scan (opens all) | per reminder | steady scan | admin page |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    return (
        head
        + "".join(
            f"| {r['db']} | {r['users']:,} | {r['due_users']:,} | {r['due_query_ms']} ms | "
            f"{str(r.get('first_scan_s', '–')) + ' s' if 'first_scan_s' in r else '–'} | "
            f"{str(r.get('per_reminder_ms', '–')) + ' ms' if 'per_reminder_ms' in r else '–'} | {r['steady_scan_ms']} ms | "
            f"{r['admin_page_ms']} ms ({r['admin_page_status']}) |\n"
            for r in rows
        )
        + "\n"
        + "".join(
            f"- {r['db']} {r['users']:,}: "
            + ", ".join(f"{c['due_now']:,} due → {c['ms']} ms" for c in r["due_query_by_cutoff"])
            + "\n"
            for r in rows
        )
    )


def pages(folder: Path) -> str:
    rows = []
    for name in ("pages-embedded", "pages-embedded-saturated", "pages-gunicorn", "pages-gunicorn-saturated"):
        result = _load(folder, name)
        if result:
            rows += result["rows"]
    if not rows:
        return ""
    head = "| server | db | phase | think | rps | p50 | p99 | max | statuses |\n|---|---|---|---|---|---|---|---|---|\n"
    return head + "".join(
        f"| {r['server']} | {r['db']} | {r['phase']} | {r['think_s']} s | {r['rps']} | {r['p50_ms']} ms | "
        f"**{r['p99_ms']} ms** | {r['max_ms']} ms | {r['statuses']} |\n"
        for r in rows
    )


def transport_rows(folder: Path) -> list[dict]:
    rows = []
    for name in ("transports-1000", "transports-10000"):
        result = _load(folder, name)
        if result:
            rows += result["rows"]
    return rows


def transports(folder: Path) -> str:
    from bench.transports import table

    rows = transport_rows(folder)
    return table(rows) if rows else ""


def main() -> None:
    args = sys.argv[1:]
    if "--plot" in args:
        at = args.index("--plot")
        target = Path(args[at + 1])
        del args[at : at + 2]
        from bench.transports import plot

        plot(transport_rows(Path(args[0] if args else "bench/results")), target)
    folder = Path(args[0] if args else "bench/results")
    for title, part in (("Streams", streams), ("Transports", transports), ("Scan", scan), ("Pages", pages)):
        print(f"## {title}\n\n{part(folder)}\n")


if __name__ == "__main__":
    main()
