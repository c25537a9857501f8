"""Scan at scale: 100,000 and 1,000,000 users with histories, 10% inactive, on SQLite and PostgreSQL.

    python -m bench.scan --db sqlite,postgresql --users 100000,1000000

For each database and size: bulk-load users (COPY on PostgreSQL, executemany on SQLite) with a few
weight entries each; time the scan's query (who is due), the first scan (opens a reminder for every
inactive user), the steady-state scan that follows (what the 60-second scanner does all day), and
the admin page's first page. Then the due query at several cut-offs: its cost follows the number of
due users, not the number of users.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    bulk_users,
    drop_scratch,
    each_size,
    make_app,
    scratch_database,
    session_cookie,
    write_rows,
)


def timed(fn, repeat: int = 1):
    """(median seconds, last result) of calling fn `repeat` times."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def run_one(kind: str, size: int, args, folder: Path) -> dict:
    from webapp.extensions import db
    from webapp.models import User
    from webapp.reminders.lifecycle import due_users_query, scan

    database = scratch_database(kind, f"scan_{size}", folder)
    app = make_app(database)
    now = datetime.now(UTC)
    load_s, _ = timed(
        lambda: bulk_users(app, size, inactive_fraction=args.inactive, entries_per_user=args.entries, now=now)
    )
    row = {"db": kind, "users": size, "entries": size * args.entries, "load_s": round(load_s, 1)}
    with app.app_context():
        if args.chosen_days:
            # Some users chose their own "remind me after" (3 to 60 days), spread over every value.
            every = max(1, round(1 / args.chosen_days))
            db.session.execute(
                db.update(User).where(User.id % every == 0).values(remind_after_days=3 + User.id % 58)
            )
            db.session.commit()
            row["chosen_days_users"] = size // every
        admin = User(email="admin@bench.example", password_hash="x", is_admin=True)
        db.session.add(admin)
        db.session.commit()
        admin_id = admin.id
        query_s, due = timed(lambda: list(db.session.scalars(due_users_query(now, 7))), repeat=3)
        row.update(due_users=len(due), due_query_ms=round(query_s * 1000, 1))
        # The cost follows the due users: the same query with cut-offs that leave fewer due.
        row["due_query_by_cutoff"] = []
        for days in (60, 30, 14, 8):
            with_reset = db.select(User.id).where(User.last_active_at <= now - _days(days))
            count = len(db.session.scalars(with_reset).all())
            seconds, due_ids = timed(
                lambda days=days: list(
                    db.session.scalars(
                        db.select(User.id)
                        .where(User.reminder_clock <= now - _days(days))
                        .order_by(User.reminder_clock)
                    )
                ),
                3,
            )
            row["due_query_by_cutoff"].append(
                {
                    "after_days": days,
                    "inactive": count,
                    "due_now": len(due_ids),
                    "ms": round(seconds * 1000, 2),
                }
            )
        if args.first_scan:
            first_s, created = timed(lambda: scan(now, 7))
            row.update(
                first_scan_s=round(first_s, 2),
                first_scan_opened=len(created),
                per_reminder_ms=round(first_s / max(1, len(created)) * 1000, 3),
            )
        else:
            # What the first scan leaves behind, without writing 10% of the users' reminders one by
            # one: their clocks cleared, as open reminders clear them. The steady scan reads only that.
            db.session.execute(
                db.update(User).where(User.reminder_clock <= now - _days(7)).values(reminder_clock=None)
            )
            db.session.commit()
        db.session.remove()
        steady_s, created = timed(lambda: scan(now, 7), repeat=3)
        row.update(steady_scan_ms=round(steady_s * 1000, 1), steady_scan_opened=len(created))
        db.session.remove()
    client = app.test_client()
    client.set_cookie("session", session_cookie(app, admin_id))
    with app.app_context():
        from flask import url_for

        with app.test_request_context():
            admin_url = url_for("admin.inactive_users")
    page_s, response = timed(lambda: client.get(admin_url), repeat=3)
    row.update(
        admin_page_ms=round(page_s * 1000, 1),
        admin_page_status=response.status_code,
        admin_page_kib=round(len(response.data) / 1024, 1),
    )
    # The default page lists by each user's own days; ?days=7 is one threshold for everyone, which
    # is what the default page did before it followed the users' settings.
    site_s, site_response = timed(lambda: client.get(admin_url + "?days=7"), repeat=3)
    row.update(
        admin_page_site_days_ms=round(site_s * 1000, 1), admin_page_site_days_status=site_response.status_code
    )
    with app.app_context():
        # The page's "inactive" count: total minus the users still active by their own days (one
        # covering-index range per value), beside the one range count that a single threshold
        # needs (what the page counted before it followed the users' settings).
        from webapp.admin.queries import still_active_count_query

        own_s, own = timed(lambda: db.session.scalar(still_active_count_query(now, 7)), repeat=3)
        one_s, one = timed(
            lambda: db.session.scalar(
                db.select(db.func.count()).select_from(User).where(User.last_active_at > now - _days(7))
            ),
            repeat=3,
        )
        row.update(
            still_active_own_days=own,
            still_active_own_days_ms=round(own_s * 1000, 1),
            still_active_site_days=one,
            still_active_site_days_ms=round(one_s * 1000, 1),
        )
    if args.explain:
        # The scan's own due query (one index range per "remind me after" value), as it runs.
        with app.app_context():
            sql = str(due_users_query(now, 7).compile(db.engine, compile_kwargs={"literal_binds": True}))
            explain = "EXPLAIN ANALYZE " if kind == "postgresql" else "EXPLAIN QUERY PLAN "
            lines = db.session.execute(db.text(explain + sql)).all()
            row["due_query_plan"] = [line[0] if kind == "postgresql" else line[-1] for line in lines]
            # The admin page's first page, by each user's own days and by one threshold.
            from webapp.admin.queries import InactiveFilter, _ordered, inactive_users_query

            plans: list[tuple[str, int | None]] = [
                ("admin_page_plan", None),
                ("admin_page_site_days_plan", 7),
            ]
            for name, threshold in plans:
                query = _ordered(inactive_users_query(InactiveFilter(days=threshold), now), True).limit(51)
                row[name] = _plan(db, query, explain, kind)
            row["still_active_plan"] = _plan(db, still_active_count_query(now, 7), explain, kind)
    with app.app_context():
        db.engine.dispose()
    if not args.keep:
        drop_scratch(database)
    return row


def _plan(db, query, explain: str, kind: str) -> list[str]:
    """The plan of a query with its values bound as the app binds them.

    Not as literals: PostgreSQL reads a literal string in the admin page's CASE as text, where the
    driver's bound value is a timestamp.
    """
    if kind != "postgresql":
        sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
        return [line[-1] for line in db.session.execute(db.text(explain + sql)).all()]
    compiled = query.compile(db.engine)
    processors = compiled._bind_processors
    params = {
        key: processors[key](value) if key in processors else value
        for key, value in compiled.construct_params().items()
    }
    lines = db.session.connection().exec_driver_sql(explain + compiled.string, params).all()
    return [line[0] for line in lines]


def _days(days: int):
    from datetime import timedelta

    return timedelta(days=days)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=lambda s: s.split(","), default=["sqlite"])
    parser.add_argument("--users", type=lambda s: [int(x) for x in s.split(",")], default=[100000])
    parser.add_argument("--entries", type=int, default=3, help="weight entries per user")
    parser.add_argument("--inactive", type=float, default=0.1)
    parser.add_argument(
        "--no-first-scan",
        dest="first_scan",
        action="store_false",
        help="skip the scan that opens a reminder for every inactive user",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="include the due query's plan (EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY PLAN on SQLite)",
    )
    parser.add_argument(
        "--chosen-days",
        type=float,
        default=0.0,
        help="fraction of users with their own 'remind me after' (3 to 60 days) instead of the site's",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated databases to look at")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench6-scan-"))
    rows = each_size(args.db, args.users, lambda kind, size: run_one(kind, size, args, folder))
    write_rows(args.out, args, rows)
    return rows


if __name__ == "__main__":
    main()
