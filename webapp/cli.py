"""Top-level CLI commands: create-admin and demo."""

from __future__ import annotations

import sys

import click
from flask import Flask
from sqlalchemy.exc import OperationalError, ProgrammingError

from .extensions import db
from .models import User
from .timeutil import utcnow


def _valid_email(value: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise click.BadParameter(str(error)) from None


@click.command("create-admin")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of asking.")
def create_admin(email, password_stdin):
    """Create an admin account for EMAIL, or make an existing account an admin."""
    email = _valid_email(email)
    try:
        user = db.session.scalar(db.select(User).where(User.email == email))
    except (OperationalError, ProgrammingError):
        raise click.ClickException("The database is not set up yet: run `flask --app wsgi db upgrade` first.") from None
    if user is not None and not password_stdin:
        user.is_admin = True
        db.session.commit()
        click.echo(f"{email} is now an admin (password unchanged).")
        return
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.BadParameter("the password must have at least 8 characters", param_hint="password")
    if user is None:
        now = utcnow()
        user = User(email=email, created_at=now, last_active_at=now, reminder_clock=now)
        db.session.add(user)
    user.set_password(password)
    user.is_admin = True
    db.session.commit()
    click.echo(f"Admin {email} is ready.")


def init_app(app: Flask) -> None:
    app.cli.add_command(create_admin)
