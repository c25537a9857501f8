"""Mail and escalation: queueing N reminder emails in one pass, sending them through a real SMTP
server (aiosmtpd), and what recording "shown" costs the banner's render.

    python -m bench.mail --db sqlite,postgresql --reminders 1000,10000

For each database and size: N idle users with open, unseen reminders whose email is due; time one
`escalate` (claim, render each message from its templates, queue, one commit per batch), then
`send_due` until the queue is empty against aiosmtpd in a subprocess (messages per second, and
the server received each exactly once). Then `render_area` for a user whose banner was already
shown (every later snapshot: the hot path) and for one shown for the first time (the one UPDATE
and commit each reminder pays once).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.common import bulk_users, drop_scratch, each_size, make_app, scratch_database, write_rows
from webapp.testing import SmtpServer


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)


def _render_costs(app, repeat: int) -> dict:
    """render_area with the banner already shown, and the first showing (fresh reminders)."""
    from webapp.events.area import AreaLinks, render_area
    from webapp.extensions import db
    from webapp.models import Reminder

    links = AreaLinks("/dashboard#quick-add", "/reminders/dismiss", "token")
    with app.app_context():
        ids = db.session.execute(
            sa.select(Reminder.id, Reminder.user_id)
            .where(Reminder.open_for_user_id.is_not(None))
            .limit(repeat + 1)
        ).all()
        # Fresh reminders, never shown: each first render records it.
        db.session.execute(
            sa.update(Reminder).where(Reminder.id.in_([r for r, _ in ids])).values(shown_at=None)
        )
        db.session.commit()
        users = iter(user_id for _, user_id in ids[1:])
        first = _median_ms(lambda: render_area(next(users), links), repeat)
        seen = ids[1][1]
        steady = _median_ms(lambda: render_area(seen, links), repeat * 5)
        db.session.remove()
    return {"render_already_shown_ms": steady, "render_first_showing_ms": first}


def run_one(kind: str, size: int, args, folder: Path) -> dict:
    from webapp.config import mail_settings
    from webapp.extensions import db
    from webapp.mail.queue import send_due
    from webapp.models import QueuedMail, Reminder
    from webapp.reminders.escalation import escalate
    from webapp.reminders.lifecycle import scan

    smtp_folder = folder / f"smtp-{kind}-{size}"
    smtp_folder.mkdir()
    smtp = SmtpServer(smtp_folder).start()
    database = scratch_database(kind, f"mail_{size}", folder)
    try:
        app = make_app(
            database,
            REMINDER_EMAIL_HOURS=(0, 24),
            **mail_settings({"MAIL_URL": smtp.url}, folder),
        )
        now = datetime.now(UTC)
        bulk_users(app, size, inactive_fraction=1.0, entries_per_user=1, now=now)
        row: dict = {"db": kind, "reminders": size}
        with app.app_context():
            opened = len(scan(now - timedelta(days=2), 7))
            db.session.remove()
            start = time.perf_counter()
            queued = escalate(now)
            seconds = time.perf_counter() - start
            row.update(
                opened=opened,
                queued=len(queued),
                escalate_s=round(seconds, 2),
                escalate_per_message_ms=round(seconds / max(1, len(queued)) * 1000, 3),
            )
            db.session.remove()
            start = time.perf_counter()
            sent = 0
            while True:
                report = send_due()
                sent += len(report.sent)
                if not report.sent:
                    break
            seconds = time.perf_counter() - start
            received = smtp.messages()
            ids = [message["Message-ID"] for message in received]
            row.update(
                sent=sent,
                send_s=round(seconds, 2),
                messages_per_s=round(sent / seconds, 1) if seconds else None,
                received=len(received),
                received_twice=len(ids) - len(set(ids)),
                still_queued=db.session.scalar(
                    sa.select(sa.func.count()).select_from(QueuedMail).where(QueuedMail.sent_at.is_(None))
                ),
                unseen_open=db.session.scalar(
                    sa.select(sa.func.count()).select_from(Reminder).where(Reminder.shown_at.is_(None))
                ),
            )
            db.session.remove()
        row.update(_render_costs(app, args.repeat))
        with app.app_context():
            db.engine.dispose()
    finally:
        smtp.stop()
        if not args.keep:
            drop_scratch(database)
    return row


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=lambda s: s.split(","), default=["sqlite"])
    parser.add_argument("--reminders", type=lambda s: [int(x) for x in s.split(",")], default=[1000])
    parser.add_argument("--repeat", type=int, default=50, help="renders timed for each render figure")
    parser.add_argument("--keep", action="store_true", help="keep the generated databases to look at")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-mail-"))
    rows = each_size(args.db, args.reminders, lambda kind, size: run_one(kind, size, args, folder))
    write_rows(args.out, args, rows)
    return rows


if __name__ == "__main__":
    main()
