"""The in-process reminder scanner: a greenlet that scans every REMINDER_SCAN_INTERVAL seconds."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import gevent
import sqlalchemy as sa
from flask import Flask

log = logging.getLogger(__name__)

# The PostgreSQL advisory lock that lets one scan run at a time across workers and hosts.
SCAN_LOCK_KEY = int.from_bytes(b"weighin", "big")


@contextmanager
def scan_lock(engine: sa.Engine):
    """Yield True while this process holds the scan lock, False when another scanner has it.

    On PostgreSQL a transaction-level advisory lock on a dedicated connection: it ends with the
    transaction (or the connection, if the process dies), so it can never outlive its scan.
    SQLite means one process, so there is nothing to coordinate.
    """
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as connection, connection.begin():
        yield bool(connection.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(SCAN_LOCK_KEY))))


def _scan_forever(app: Flask, interval: int) -> None:
    from ..events.outbox import prune
    from ..extensions import db
    from ..mail.sender import wake_sender
    from .escalation import escalate
    from .lifecycle import scan

    while True:
        with app.app_context():
            try:
                with scan_lock(db.engine) as mine:
                    # Not mine: another worker or host is scanning now (the unique constraint
                    # on open reminders would stop doubles anyway; the lock saves the work).
                    if mine:
                        created = scan(after_days=app.config["REMINDER_AFTER_DAYS"])
                        if created:
                            log.info("reminder scan opened %d reminder(s)", len(created))
                        emailed = escalate()
                        if emailed:
                            log.info("reminder scan queued %d email(s)", len(emailed))
                            wake_sender()
                        prune(app.config["OUTBOX_RETENTION_DAYS"])
            except Exception:
                log.exception("reminder scan failed; trying again in %s s", interval)
                db.session.rollback()
            finally:
                db.session.remove()
        gevent.sleep(interval)


def start_scanner(app: Flask):
    """Start the scanner greenlet unless the interval is 0; returns it (or None)."""
    interval = app.config["REMINDER_SCAN_INTERVAL"]
    if interval <= 0:
        return None
    return gevent.spawn(_scan_forever, app, interval)
