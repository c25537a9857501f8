"""Two `flask reminders scan` processes at once on one database open exactly one reminder per user."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from webapp import create_app
from webapp.extensions import db
from webapp.models import Reminder, User

from .support import FAST_HASH, ROOT, TEST_SECRET, flask_cli, server_env

USERS = 600
SIGNED_UP = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SCAN_AT = (SIGNED_UP + timedelta(days=8)).isoformat()


def _seed(database_url: str, tmp_path) -> None:
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "seed-instance"),
            "SECRET_KEY": TEST_SECRET,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "PASSWORD_HASH_METHOD": FAST_HASH,
        }
    )
    with app.app_context():
        db.session.execute(
            sa.insert(User),
            [
                {
                    "email": f"user{n}@example.com",
                    "password_hash": "-",
                    "created_at": SIGNED_UP,
                    "last_active_at": SIGNED_UP,
                    "reminder_clock": SIGNED_UP,
                    "display_name": "",
                    "unit": "kg",
                    "timezone": "UTC",
                    "reminders_enabled": True,
                    "is_admin": False,
                }
                for n in range(USERS)
            ],
        )
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def _count(database_url: str, tmp_path) -> tuple[int, int, int]:
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "seed-instance"),
            "SECRET_KEY": TEST_SECRET,
            "SQLALCHEMY_DATABASE_URI": database_url,
        }
    )
    with app.app_context():
        try:
            total = db.session.scalar(db.select(sa.func.count(Reminder.id)))
            users_with_open = db.session.scalar(
                db.select(sa.func.count(sa.distinct(Reminder.open_for_user_id))).where(
                    Reminder.open_for_user_id.is_not(None)
                )
            )
            per_user = db.session.scalars(
                db.select(sa.func.count(Reminder.id)).group_by(Reminder.user_id)
            ).all()
            worst = max(per_user, default=0)
            return total, users_with_open, worst
        finally:
            db.session.remove()
            db.engine.dispose()


def _two_scans_at_once(env: dict) -> list[int]:
    """Start two scan processes together and return how many reminders each opened."""
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "reminders", "scan", "--now", SCAN_AT]
    procs = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    opened = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"scan failed:\n{out}\n{err}"
        opened.append(int(re.search(r"(\d+) reminder\(s\) opened", out).group(1)))
    return opened


def _assert_one_each(database_url: str, tmp_path, opened: list[int]) -> None:
    total, users_with_open, worst = _count(database_url, tmp_path)
    assert sum(opened) == USERS, opened
    assert (total, users_with_open, worst) == (USERS, USERS, 1)


def test_two_scans_at_once_on_sqlite(tmp_path):
    env = server_env(tmp_path)
    flask_cli(["db", "upgrade"], env)
    _seed(env["DATABASE_URL"], tmp_path)
    _assert_one_each(env["DATABASE_URL"], tmp_path, _two_scans_at_once(env))


def test_two_scans_at_once_on_postgresql(tmp_path, postgres_url):
    env = server_env(tmp_path, DATABASE_URL=postgres_url)
    flask_cli(["db", "upgrade"], env)
    _seed(postgres_url, tmp_path)
    _assert_one_each(postgres_url, tmp_path, _two_scans_at_once(env))
