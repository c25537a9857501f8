"""The in-process reminder scanner: a greenlet that scans every REMINDER_SCAN_INTERVAL seconds."""

from __future__ import annotations

import logging

import gevent
from flask import Flask

log = logging.getLogger(__name__)


def _scan_forever(app: Flask, interval: int) -> None:
    from ..events.outbox import prune
    from ..extensions import db
    from .lifecycle import scan

    while True:
        with app.app_context():
            try:
                created = scan(after_days=app.config["REMINDER_AFTER_DAYS"])
                if created:
                    log.info("reminder scan opened %d reminder(s)", len(created))
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
