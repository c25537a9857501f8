"""Import and export at scale: twenty years of weigh-ins through the CSV import and the JSON download.

    python -m bench.data --db sqlite,postgresql --rows 7305,100000

For each database and size: write a plain CSV file of N weigh-ins with times over twenty years
(7,305 is one a day), read it into a preview (parse, stage, classify), save it (one INSERT ... SELECT),
then download all the user's data as JSON. Each step is timed, with the peak of Python memory it
allocated (tracemalloc) and the process's peak RSS; the export also with its size.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import PASSWORD_HASH, drop_scratch, machine, make_app, scratch_database

YEARS = 20


def write_csv(path: Path, rows: int, end: datetime) -> int:
    """N rows of date,weight,note spread evenly over the 20 years before `end`; returns bytes.

    7,305 rows is one a day; 100,000 is about fourteen a day, as a smart scale that logs every
    step on it would write.
    """
    span = timedelta(days=YEARS * 365.25)
    start = end - span - timedelta(days=1)
    step = span / rows
    with open(path, "w", encoding="utf-8") as out:
        out.write("date,weight,note\n")
        for i in range(rows):
            moment = (start + step * i).replace(microsecond=0)
            out.write(
                f"{moment.isoformat(timespec='seconds')},{70 + (i % 200) / 20:.2f},{'run' if i % 7 == 0 else ''}\n"
            )
    return path.stat().st_size


def measured(fn):
    """(seconds, peak traced bytes, result) of one call."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = fn()
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seconds, peak, result


def _mib(value: float) -> float:
    return round(value / (1024 * 1024), 1)


def run_one(kind: str, rows: int, folder: Path, trace: bool) -> dict:
    from zoneinfo import ZoneInfo

    from webapp.accounts.export import export_document
    from webapp.extensions import db
    from webapp.models import User, WeightEntry
    from webapp.tracking import imports
    from webapp.tracking.csv_formats import ImportOptions

    database = scratch_database(kind, f"data_{rows}", folder)
    app = make_app(database)
    now = datetime.now(UTC)
    csv_path = folder / f"weights-{rows}.csv"
    size = write_csv(csv_path, rows, now)
    timer = measured if trace else unmeasured
    row: dict = {"db": kind, "rows": rows, "csv_mib": _mib(size)}
    try:
        with app.test_request_context():
            user = User(
                email="bench@example.com", password_hash=PASSWORD_HASH, created_at=now - timedelta(days=1)
            )
            db.session.add(user)
            db.session.commit()
            options = ImportOptions(zone=ZoneInfo("Europe/Berlin"), unit="kg")
            with open(csv_path, "rb") as stream:
                seconds, peak, pending = timer(
                    lambda: imports.stage_import(user, stream, csv_path.name, options)
                )
            row.update(preview_s=round(seconds, 2), preview_peak_mib=_peak(peak), added=pending.added_count)
            seconds, peak, result = timer(lambda: imports.confirm_import(user, pending))
            row.update(
                save_s=round(seconds, 2), save_peak_mib=_peak(peak), saved=result.added if result else 0
            )
            row["import_rows_per_s"] = round(rows / (row["preview_s"] + row["save_s"]))
            stored = db.session.scalar(db.select(db.func.count()).select_from(WeightEntry))
            assert stored == rows, (stored, rows)

            def export() -> int:
                return sum(len(piece.encode()) for piece in export_document(user))

            seconds, peak, written = timer(export)
            row.update(
                export_s=round(seconds, 2),
                export_peak_mib=_peak(peak),
                export_mib=_mib(written),
                export_rows_per_s=round(rows / seconds),
            )
        row["max_rss_mib"] = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        drop_scratch(database)
    return row


def unmeasured(fn):
    """(seconds, None, result) of one call, without tracemalloc's overhead."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, None, result


def _peak(peak: int | None) -> float | None:
    return _mib(peak) if peak is not None else None


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite", help="sqlite, postgresql or both, comma-separated")
    parser.add_argument("--rows", default="7305,100000", help="weigh-ins per run, comma-separated")
    parser.add_argument(
        "--no-trace",
        action="store_true",
        help="time without tracemalloc (which slows Python code down), and report no Python peaks",
    )
    parser.add_argument("--out", help="write the rows and the machine as JSON here")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-data-") as folder:
        for kind in args.db.split(","):
            for rows in (int(n) for n in args.rows.split(",")):
                result = run_one(kind.strip(), rows, Path(folder), trace=not args.no_trace)
                print(json.dumps(result))
                results.append(result)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine(), "rows": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
