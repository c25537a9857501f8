"""The background mail sender: a greenlet that sends due mail every MAIL_SEND_INTERVAL seconds.

It runs in the embedded process and in each gunicorn worker; the claim in queue.send_due is what
keeps several of them (and cron's `mail send`) from sending one message twice.
"""

from __future__ import annotations

import logging

import gevent
from flask import Flask, current_app
from gevent.event import Event

log = logging.getLogger(__name__)

_WAKE = "weighin_mail_wake"


def _send_forever(app: Flask, interval: int, wake: Event) -> None:
    from ..extensions import db
    from .queue import send_due

    while True:
        with app.app_context():
            try:
                report = send_due()
                if report.sent:
                    log.info("mail: sent %d message(s)", len(report.sent))
                for message_id, _, error in report.failed:
                    log.warning("mail: message %s not sent: %s", message_id, error)
            except Exception:
                log.exception("mail: the send pass failed; trying again in %s s", interval)
                db.session.rollback()
            finally:
                db.session.remove()
        wake.wait(timeout=interval)
        wake.clear()


def start_sender(app: Flask):
    """Start the sender greenlet unless MAIL_SEND_INTERVAL is 0; returns it (or None)."""
    interval = app.config["MAIL_SEND_INTERVAL"]
    if interval <= 0:
        return None
    wake = Event()
    app.extensions[_WAKE] = wake
    return gevent.spawn(_send_forever, app, interval, wake)


def wake_sender() -> None:
    """Ask this process's sender to run now (after queueing a message someone is waiting for)."""
    wake = current_app.extensions.get(_WAKE)
    if wake is not None:
        wake.set()
