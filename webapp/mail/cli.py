"""`flask mail send`: one pass over queued and due mail, the same function the background loop runs."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from ..cli import database_ready
from ..reminders.cli import Instant
from .queue import send_due

mail_cli = AppGroup("mail", help="Mail commands.")


@mail_cli.command("send")
@click.option("--now", type=Instant(), default=None, help="Send as if the clock read this ISO 8601 time.")
def send_command(now):
    """Send the queued mail that is due, printing what was sent and what failed."""
    with database_ready():
        report = send_due(now)
    for message_id, address, kind in report.sent:
        click.echo(f"sent message {message_id} ({kind}) to {address}")
    for message_id, address, error in report.failed:
        click.echo(f"not sent: message {message_id} to {address}: {error}")
    click.echo(
        f"mail: {len(report.sent)} sent, {len(report.failed)} failed (will be retried unless given up)"
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(mail_cli)
