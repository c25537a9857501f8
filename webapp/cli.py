"""Top-level CLI commands: create-admin and demo."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import OperationalError, ProgrammingError

from .accounts.emails import validated_email
from .accounts.forms import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from .accounts.queries import user_by_email
from .accounts.service import new_user
from .extensions import db
from .models import User

NOT_MIGRATED = "The database is not set up yet: run `flask --app wsgi db upgrade` first."


@contextmanager
def database_ready():
    """Turn 'no such table' and 'cannot connect' into one line a person can act on."""
    try:
        yield
    except (OperationalError, ProgrammingError) as error:
        db.session.rollback()
        message = str(error.orig) if error.orig is not None else str(error)
        if "no such table" in message or ("relation" in message and "does not exist" in message):
            raise click.ClickException(NOT_MIGRATED) from None
        raise click.ClickException(f"The database cannot be reached: {message.splitlines()[0]}") from None


def _email_argument(ctx, param, value: str) -> str:
    try:
        return validated_email(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        try:
            password = sys.stdin.readline().rstrip("\r\n")
        except UnicodeDecodeError:
            raise click.ClickException("The password on standard input is not valid UTF-8.") from None
        if any(0xDC80 <= ord(c) <= 0xDCFF for c in password):  # undecodable bytes, surrogate-escaped
            raise click.ClickException("The password on standard input is not valid UTF-8.")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise click.ClickException(f"The password must have at most {MAX_PASSWORD_LENGTH} characters.")
    return password


@click.command("create-admin")
@click.argument("email", callback=_email_argument)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of asking.",
)
@with_appcontext
def create_admin(email: str, password_stdin: bool) -> None:
    """Create an admin account for EMAIL, or make an existing account an admin.

    For a new account it asks for a password twice (or reads it with --password-stdin).
    An existing account keeps its password unless --password-stdin gives a new one.
    """
    with database_ready():
        user = user_by_email(email)
    if user is not None and not password_stdin:
        if user.is_admin:
            click.echo(f"{email} is already an admin (password unchanged).")
            return
        user.is_admin = True
        with database_ready():
            db.session.commit()
        click.echo(f"{email} is now an admin (password unchanged).")
        return
    password = _read_password(password_stdin)
    if user is None:
        user = new_user(email, password)
        db.session.add(user)
    else:
        user.set_password(password)
    user.is_admin = True
    with database_ready():
        db.session.commit()
    click.echo(f"Admin {email} is ready.")


@click.command("demo")
@click.option(
    "--if-empty", is_flag=True, help="Do nothing (and succeed) if the database has any user already."
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=None,
    help="Seed for the sample history, for the same data on every run.",
)
@click.option("--no-scan", is_flag=True, help="Do not run a reminder scan afterwards.")
@with_appcontext
def demo_command(if_empty: bool, seed: int | None, no_scan: bool) -> None:
    """Fill the database with sample users, weeks of backdated history and an admin account.

    Several sample users have been idle for longer than REMINDER_AFTER_DAYS, so the admin page
    shows inactive users at once. Running it again adds only what is missing.
    """
    from .demo import ADMIN_EMAIL, fill_demo_data

    with database_ready():
        if if_empty and db.session.scalar(db.select(User.id).limit(1)) is not None:
            click.echo("The database has users already; no demo data added.")
            return
        result = fill_demo_data(
            after_days=current_app.config["REMINDER_AFTER_DAYS"], seed=seed, scan_reminders=not no_scan
        )

    if result.users_created:
        click.echo(
            f"Added {len(result.users_created)} sample users with {result.entries_created} weights "
            f"and {result.goals_created} goal changes; {result.reminders_opened} reminder(s) opened."
        )
        click.echo(
            f"Sample users ({result.users_created[0]} and others) share the password: "
            f"{result.sample_password}"
        )
    if result.users_skipped:
        click.echo(f"{len(result.users_skipped)} sample users were there already and were left alone.")
    if result.admin_password:
        click.echo(f"Admin account: {ADMIN_EMAIL}  password: {result.admin_password}")
    elif result.admin_skipped:
        click.echo(f"{ADMIN_EMAIL} exists already; its password is unchanged.")


def init_app(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(demo_command)
