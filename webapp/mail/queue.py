"""The durable mail queue: messages are rows, written in the transaction that decides them.

A sender (the background loop in every process, or `flask mail send` from cron) claims due rows
with one conditional UPDATE that also sets a lease (SKIP LOCKED on PostgreSQL, SQLite's single
writer elsewhere), commits, sends, and records each result in its own commit. A refused or
unreachable server puts the row back with a growing delay and keeps the error. See
docs/DECISIONS.md ("Mail") for how close this comes to exactly once.
"""

from __future__ import annotations

import json
import logging
import secrets
import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import formatdate, make_msgid, parseaddr
from typing import cast

import sqlalchemy as sa
from flask import current_app, render_template
from flask_mailman import EmailMultiAlternatives

from ..events.outbox import announce
from ..extensions import db, mail
from ..models import ADMINS_CHANNEL, QueuedMail
from ..timeutil import utcnow

log = logging.getLogger(__name__)

BATCH = 20
# Longer than a whole batch can take at MAIL_TIMEOUT per message: a lease that runs out while
# its sender is still sending is the one way a message could go out twice.
LEASE = timedelta(minutes=15)
FIRST_RETRY = 30  # seconds; doubles with each failed attempt
MAX_RETRY = 3600
# About two days of hourly tries after the first few quick ones: an outage of a day loses nothing.
MAX_ATTEMPTS = 60
MAX_ERROR_LENGTH = 500


def render_message(template: str, **context) -> tuple[str, str]:
    """The plain-text and HTML parts of a message, from templates/mail/<template>.txt and .html."""
    text = render_template(f"mail/{template}.txt", **context)
    html = render_template(f"mail/{template}.html", **context)
    return text, html


def _message_domain() -> str:
    _, address = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])
    return address.rsplit("@", 1)[-1] or "localhost"


def enqueue(
    *,
    kind: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    user_id: int | None = None,
    reminder_id: int | None = None,
    headers: dict[str, str] | None = None,
    now: datetime | None = None,
) -> QueuedMail:
    """Add a message to the current transaction, due at once; the caller commits."""
    now = now or utcnow()
    row = QueuedMail(
        kind=kind,
        user_id=user_id,
        reminder_id=reminder_id,
        to_address=to,
        subject=subject,
        body_text=text,
        body_html=html,
        headers=json.dumps(headers or {}),
        message_id=make_msgid(domain=_message_domain()),
        status="queued",
        attempts=0,
        due_at=now,
        created_at=now,
    )
    db.session.add(row)
    return row


@dataclass
class SendReport:
    """What one pass did: (id, address, kind) sent, and (id, address, error) failed."""

    sent: list[tuple[int, str, str]] = field(default_factory=list)
    failed: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Claimed:
    id: int
    kind: str
    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str]
    message_id: str
    attempts: int


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the n-th failed attempt: 30 s, 1 min, 2 min... at most an hour."""
    return timedelta(seconds=min(MAX_RETRY, FIRST_RETRY * 2 ** min(attempts - 1, 20)))


def _claim(now: datetime, limit: int) -> tuple[str, list[_Claimed]]:
    """Take up to `limit` due rows for this sender (a fresh lease) and commit; returns them."""
    lease = secrets.token_hex(16)
    due = (
        sa.select(QueuedMail.id)
        .where(QueuedMail.due_at <= now)
        .order_by(QueuedMail.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    # The outer condition re-checks due_at: on SQLite (no row locks) two senders may pick the
    # same ids, but only the first UPDATE still finds them due.
    ids = db.session.scalars(
        sa.update(QueuedMail)
        .where(QueuedMail.id.in_(due.scalar_subquery()), QueuedMail.due_at <= now)
        .values(status="sending", lease=lease, due_at=now + LEASE)
        .returning(QueuedMail.id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    if not ids:
        return lease, []
    rows = db.session.scalars(
        sa.select(QueuedMail).where(QueuedMail.id.in_(ids), QueuedMail.lease == lease).order_by(QueuedMail.id)
    ).all()
    claimed = [
        _Claimed(
            row.id,
            row.kind,
            row.to_address,
            row.subject,
            row.body_text,
            row.body_html,
            json.loads(row.headers or "{}"),
            row.message_id,
            row.attempts,
        )
        for row in rows
    ]
    db.session.rollback()  # nothing written; end the read transaction before talking SMTP
    return lease, claimed


def _email_message(item: _Claimed, connection) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        item.subject,
        item.text,
        to=[item.to],
        connection=connection,
        headers={"Message-ID": item.message_id, "Date": formatdate(localtime=False), **item.headers},
    )
    message.attach_alternative(item.html, "text/html")
    return message


def _describe(error: BaseException) -> str:
    """The error as admins read it: the server's code and words, or the exception's."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        parts = [f"{code} {reply.decode(errors='replace')}" for code, reply in error.recipients.values()]
        text = "recipient refused: " + "; ".join(parts)
    elif isinstance(error, smtplib.SMTPResponseException):
        reply = (
            error.smtp_error.decode(errors="replace")
            if isinstance(error.smtp_error, bytes)
            else error.smtp_error
        )
        text = f"{type(error).__name__}: {error.smtp_code} {reply}"
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return " ".join(text.split())[:MAX_ERROR_LENGTH]


def _permanent(error: BaseException) -> bool:
    """A 5xx refusal of the recipient: trying again would only annoy the server."""
    return isinstance(error, smtplib.SMTPRecipientsRefused) and all(
        code >= 500 for code, _ in error.recipients.values()
    )


def _record_sent(item: _Claimed, lease: str, now: datetime) -> None:
    # An UPDATE's result is a CursorResult (it has rowcount); Session.execute is annotated for SELECTs.
    result = cast(
        sa.CursorResult,
        db.session.execute(
            sa.update(QueuedMail)
            .where(QueuedMail.id == item.id, QueuedMail.lease == lease)
            .values(
                status="sent",
                sent_at=now,
                due_at=None,
                lease=None,
                attempts=QueuedMail.attempts + 1,
                last_attempt_at=now,
                last_error=None,
            )
            .execution_options(synchronize_session=False)
        ),
    )
    db.session.commit()
    if result.rowcount == 0:
        log.warning("message %s was sent after its lease ran out; another sender may send it too", item.id)


def _record_failure(item: _Claimed, lease: str, now: datetime, error: BaseException) -> str:
    attempts = item.attempts + 1
    give_up = _permanent(error) or attempts >= MAX_ATTEMPTS
    description = _describe(error)
    db.session.execute(
        sa.update(QueuedMail)
        .where(QueuedMail.id == item.id, QueuedMail.lease == lease)
        .values(
            status="failed" if give_up else "queued",
            due_at=None if give_up else now + retry_delay(attempts),
            lease=None,
            attempts=attempts,
            last_attempt_at=now,
            last_error=description,
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return description


def _release(items: list[_Claimed], lease: str, due_at: datetime) -> None:
    """Give back rows this pass claimed but did not try (the server had just failed)."""
    if not items:
        return
    db.session.execute(
        sa.update(QueuedMail)
        .where(QueuedMail.id.in_([item.id for item in items]), QueuedMail.lease == lease)
        .values(status="queued", due_at=due_at, lease=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _send_batch(lease: str, items: list[_Claimed], now: datetime, report: SendReport) -> bool:
    """Send the claimed messages on one connection; False once the server fails (stop the pass)."""
    connection = mail.get_connection(fail_silently=False)
    try:
        connection.open()
    except Exception as error:
        _close(connection)  # a refused login leaves the socket open
        first, rest = items[0], items[1:]
        report.failed.append((first.id, first.to, _record_failure(first, lease, now, error)))
        _release(rest, lease, now + retry_delay(first.attempts + 1))
        return False
    try:
        for index, item in enumerate(items):
            try:
                if connection.send_messages([_email_message(item, connection)]) != 1:
                    raise RuntimeError("the mail backend did not accept the message")
            except Exception as error:
                report.failed.append((item.id, item.to, _record_failure(item, lease, now, error)))
                if _permanent(error):
                    continue  # this address is refused; the server itself is fine
                _release(items[index + 1 :], lease, now + retry_delay(item.attempts + 1))
                return False
            _record_sent(item, lease, now)
            report.sent.append((item.id, item.to, item.kind))
    finally:
        _close(connection)
    return True


def _close(connection) -> None:
    try:
        connection.close()
    except Exception:  # a server that died mid-batch cannot be said goodbye to
        log.debug("closing the mail connection failed", exc_info=True)
        inner = getattr(connection, "connection", None)
        if inner is not None:
            inner.close()
            connection.connection = None


def send_due(now: datetime | None = None, batch: int = BATCH) -> SendReport:
    """Send every message that is due (one pass, as cron or the background loop runs it)."""
    report = SendReport()
    try:
        while True:
            moment = now or utcnow()
            lease, items = _claim(moment, batch)
            if not items or not _send_batch(lease, items, moment, report):
                return report
    finally:
        if report.sent or report.failed:
            # The admin page's mail counts follow (one outbox row per pass that did something).
            announce(ADMINS_CHANNEL, "mail")
            db.session.commit()
