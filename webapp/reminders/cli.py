"""`flask reminders ...` commands."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from ..timeutil import parse_iso_instant, utcnow
from .lifecycle import scan

reminders_cli = AppGroup("reminders", help="Reminder commands.")


class _Instant(click.ParamType):
    name = "ISO-8601"

    def convert(self, value, param, ctx):
        try:
            return parse_iso_instant(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or date-time, such as 2026-11-26T09:00:00+00:00", param, ctx)


@reminders_cli.command("scan")
@click.option("--now", type=_Instant(), default=None, help="Scan as if the clock read this ISO 8601 time.")
def scan_command(now):
    """Run one reminder scan and print the reminders it opened."""
    now = now or utcnow()
    created = scan(now, current_app.config["REMINDER_AFTER_DAYS"])
    for reminder in created:
        click.echo(f"opened reminder {reminder.id} for user {reminder.user_id} (inactive since {reminder.inactive_since.isoformat()})")
    click.echo(f"scan at {now.isoformat()}: {len(created)} reminder(s) opened")


def init_app(app: Flask) -> None:
    app.cli.add_command(reminders_cli)
