"""`flask reminders ...` commands: how cron runs the scan, and how tests and demos move time forward."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy.exc import OperationalError, ProgrammingError

from ..events.outbox import prune
from ..extensions import db
from ..timeutil import parse_iso_instant, utcnow
from .escalation import escalate
from .lifecycle import scan

reminders_cli = AppGroup("reminders", help="Reminder commands.")


EARLIEST_NOW = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_NOW = datetime(9000, 12, 31, tzinfo=UTC)


class Instant(click.ParamType):
    name = "ISO-8601"

    def convert(self, value, param, ctx):
        try:
            instant = parse_iso_instant(value)
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO 8601 date or date-time, such as 2026-11-26T09:00:00+00:00",
                param,
                ctx,
            )
        # The scan and the sender count days back and forward from it: keep well inside datetime.
        if not EARLIEST_NOW <= instant <= LATEST_NOW:
            self.fail(f"{value!r} is out of range: give a time from the year 2000 to 9000", param, ctx)
        return instant


@reminders_cli.command("scan")
@click.option("--now", type=Instant(), default=None, help="Scan as if the clock read this ISO 8601 time.")
def scan_command(now):
    """Run one reminder scan: open reminders, queue the emails of those no page showed, prune.

    Prints the reminders it opened and the emails it queued (`mail send` sends them). --now moves
    the scan's clock only; outbox pruning always uses the real time.
    """
    now = now or utcnow()
    config = current_app.config
    try:
        created = scan(now, config["REMINDER_AFTER_DAYS"])
        # Read what to print before the next commit expires the rows.
        lines = [
            f"opened reminder {reminder.id} for user {reminder.user_id} "
            f"(inactive since {reminder.inactive_since.isoformat()})"
            for reminder in created
        ]
        emailed = escalate(now)
        lines += [
            f"queued email for reminder {item.reminder_id} of user {item.user_id} to {item.to}"
            for item in emailed
        ]
        # On the real clock, whatever --now says: the outbox holds what streams resume from,
        # and a scan "as if" next month must not delete this week's events.
        pruned = prune(config["OUTBOX_RETENTION_DAYS"])
    except (OperationalError, ProgrammingError) as error:
        db.session.rollback()
        if "no such table" in str(error) or "does not exist" in str(error):
            raise click.ClickException(
                "The database is not set up yet: run `flask --app wsgi db upgrade` first."
            ) from None
        raise click.ClickException(f"The scan could not reach the database: {error.orig}") from None
    for line in lines:
        click.echo(line)
    click.echo(
        f"scan at {now.isoformat()}: {len(created)} reminder(s) opened, {len(emailed)} email(s) queued, "
        f"{pruned} old outbox row(s) pruned"
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(reminders_cli)
