"""`flask create-admin` and `flask demo`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import FAST_HASH, TEST_SECRET, flask_cli, server_env
from webapp import create_app
from webapp.demo import ADMIN_EMAIL, PROFILES, fill_demo_data
from webapp.extensions import db
from webapp.models import GoalChange, Reminder, User, WeightEntry

PASSWORD = "correct horse"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def get_user(email: str) -> User | None:
    return db.session.scalar(db.select(User).where(User.email == email))


# --- create-admin -----------------------------------------------------------------------------


def test_create_admin_from_stdin(app, runner):
    result = runner.invoke(
        args=["create-admin", "Root@Example.com", "--password-stdin"], input=f"{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert "Admin root@example.com is ready." in result.output
    with app.app_context():
        user = get_user("root@example.com")
        assert user.is_admin and user.check_password(PASSWORD)
        assert user.last_active_at == user.created_at == user.reminder_clock


def test_create_admin_prompts_twice(app, runner):
    result = runner.invoke(args=["create-admin", "root@example.com"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Password") == 1 and "Repeat for confirmation" in result.output
    assert PASSWORD not in result.output
    with app.app_context():
        assert get_user("root@example.com").check_password(PASSWORD)


def test_create_admin_asks_again_when_the_two_differ(app, runner):
    result = runner.invoke(
        args=["create-admin", "root@example.com"],
        input=f"{PASSWORD}\nsomething else\n{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output


def test_create_admin_promotes_an_existing_user_keeping_the_password(app, runner, auth):
    auth.register()
    result = runner.invoke(args=["create-admin", "ada@example.com"])
    assert result.exit_code == 0, result.output
    assert "ada@example.com is now an admin (password unchanged)." in result.output
    with app.app_context():
        user = get_user("ada@example.com")
        assert user.is_admin and user.check_password(PASSWORD)
    result = runner.invoke(args=["create-admin", "ada@example.com"])
    assert "already an admin" in result.output


def test_create_admin_with_stdin_resets_an_existing_password(app, runner, auth):
    auth.register()
    result = runner.invoke(
        args=["create-admin", "ada@example.com", "--password-stdin"], input="a new password\n"
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert get_user("ada@example.com").check_password("a new password")


@pytest.mark.parametrize(
    ("email", "stdin", "message"),
    [
        ("not-an-email", PASSWORD, "Enter a valid email address, such as ada@example.com."),
        ("root@", PASSWORD, "Enter a valid email address"),
        ("", PASSWORD, "Enter your email address."),
        ("x" * 250 + "@example.com", PASSWORD, "at most 254 characters"),
        ("root@example.com", "short", "The password must have at least 8 characters."),
        ("root@example.com", "", "The password must have at least 8 characters."),
        ("root@example.com", "x" * 201, "The password must have at most 200 characters."),
    ],
)
def test_create_admin_bad_input(app, runner, email, stdin, message):
    result = runner.invoke(args=["create-admin", email, "--password-stdin"], input=f"{stdin}\n")
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(User.id))) == 0


def test_create_admin_on_a_database_that_is_not_migrated(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": TEST_SECRET,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'empty.db'}",
        }
    )
    runner = app.test_cli_runner()
    for args in (["create-admin", "root@example.com", "--password-stdin"], ["demo"]):
        result = runner.invoke(args=args, input=f"{PASSWORD}\n")
        assert result.exit_code == 1
        assert "The database is not set up yet: run `flask --app wsgi db upgrade` first." in result.output
    with app.app_context():
        db.engine.dispose()


# --- demo -------------------------------------------------------------------------------------


def test_demo_fills_a_fresh_database(app, runner):
    result = runner.invoke(args=["demo", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert f"Admin account: {ADMIN_EMAIL}  password: " in result.output
    admin_password = result.output.split(f"Admin account: {ADMIN_EMAIL}  password: ")[1].split()[0]
    sample_password = result.output.split("share the password: ")[1].split()[0]
    with app.app_context():
        admin = get_user(ADMIN_EMAIL)
        assert admin.is_admin and admin.check_password(admin_password)
        assert get_user("ada@example.com").check_password(sample_password)
        assert not get_user("ada@example.com").is_admin
        assert db.session.scalar(db.select(db.func.count(User.id))) == len(PROFILES) + 1
        assert db.session.scalar(db.select(db.func.count(WeightEntry.id))) > 200
        # Nobody reads example.com's mail: sample people get banners, never reminder emails.
        assert not get_user("ada@example.com").email_reminders


def _demo_app(tmp_path, name="demo"):
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / name),
            "SECRET_KEY": TEST_SECRET,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / (name + '.db')}",
            "PASSWORD_HASH_METHOD": FAST_HASH,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    with app.app_context():
        db.create_all()
    return app


@pytest.mark.parametrize("after_days", [7, 3, 30])
def test_demo_history_agrees_with_the_activity_clocks(tmp_path, after_days):
    app = _demo_app(tmp_path)
    with app.app_context():
        result = fill_demo_data(now=NOW, after_days=after_days, seed=1)
        cutoff = NOW - timedelta(days=after_days)
        inactive = open_reminders = 0
        for user in db.session.scalars(db.select(User)):
            entries = db.session.scalars(
                db.select(WeightEntry.measured_at).where(WeightEntry.user_id == user.id)
            ).all()
            goals = db.session.scalars(
                db.select(GoalChange.created_at).where(GoalChange.user_id == user.id)
            ).all()
            assert user.last_weight_at == (max(entries) if entries else None), user.email
            assert user.last_goal_at == (max(goals) if goals else None), user.email
            assert all(user.created_at <= t <= NOW for t in [*entries, *goals]), user.email
            assert user.last_active_at == max(
                t for t in (user.created_at, user.last_weight_at, user.last_goal_at) if t is not None
            ), user.email
            reminders = db.session.scalars(db.select(Reminder).where(Reminder.user_id == user.id)).all()
            opened = [r for r in reminders if r.status == "open"]
            if user.last_active_at <= cutoff:
                inactive += 1
            if opened:
                open_reminders += 1
                # The scan opened it, so the user really was due, and the clock is parked.
                assert user.reminder_clock is None and user.reminders_enabled
                assert user.last_active_at <= cutoff
                assert opened[0].inactive_since == user.last_active_at
            elif not user.reminders_enabled:
                assert user.reminder_clock is None
            else:
                assert user.reminder_clock >= user.last_active_at
                assert user.reminder_clock > cutoff, f"{user.email} is due but the scan left them"
            for entry_kg in db.session.scalars(
                db.select(WeightEntry.mass_g).where(WeightEntry.user_id == user.id)
            ):
                assert 35_000 <= entry_kg <= 250_000
        assert inactive >= 5
        assert open_reminders == result.reminders_opened >= 4
        dismissed = db.session.scalars(db.select(Reminder).where(Reminder.status == "dismissed")).all()
        assert len(dismissed) == 1
        assert (
            db.session.scalar(db.select(User).where(User.email == "barbara@example.com")).reminders_enabled
            is False
        )
        never_logged = db.session.scalar(db.select(User).where(User.email == "dennis@example.com"))
        assert never_logged.last_weight_at is None and never_logged.last_goal_at is None
        assert never_logged.last_active_at <= cutoff
        db.engine.dispose()


def test_demo_is_reproducible_with_a_seed(tmp_path):
    histories = []
    for name in ("one", "two"):
        app = _demo_app(tmp_path, name)
        with app.app_context():
            fill_demo_data(now=NOW, seed=42)
            histories.append(
                db.session.execute(
                    db.select(
                        WeightEntry.user_id, WeightEntry.measured_at, WeightEntry.mass_g, WeightEntry.note
                    ).order_by(WeightEntry.id)
                ).all()
            )
            db.engine.dispose()
    assert histories[0] == histories[1]


def test_demo_is_safe_to_run_twice(app, runner):
    first = runner.invoke(args=["demo"])
    assert first.exit_code == 0, first.output
    with app.app_context():
        counts = [
            db.session.scalar(db.select(db.func.count()).select_from(model))
            for model in (User, WeightEntry, GoalChange, Reminder)
        ]
        admin_hash = get_user(ADMIN_EMAIL).password_hash
    second = runner.invoke(args=["demo"])
    assert second.exit_code == 0, second.output
    assert "left alone" in second.output and "password is unchanged" in second.output
    assert "password: " not in second.output
    with app.app_context():
        assert counts == [
            db.session.scalar(db.select(db.func.count()).select_from(model))
            for model in (User, WeightEntry, GoalChange, Reminder)
        ]
        assert get_user(ADMIN_EMAIL).password_hash == admin_hash


def test_demo_does_not_make_an_existing_admin_at_example_com_an_admin(app, runner, auth):
    auth.register(email=ADMIN_EMAIL)
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = get_user(ADMIN_EMAIL)
        assert not user.is_admin and user.check_password(PASSWORD)


def test_demo_if_empty_leaves_a_used_database_alone(app, runner, auth):
    auth.register()
    result = runner.invoke(args=["demo", "--if-empty"])
    assert result.exit_code == 0
    assert "no demo data added" in result.output
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(User.id))) == 1


def test_demo_if_empty_fills_an_empty_database(app, runner):
    result = runner.invoke(args=["demo", "--if-empty", "--seed", "3"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(User.id))) == len(PROFILES) + 1


@pytest.mark.parametrize("seed", ["-1", "abc", "1.5"])
def test_demo_bad_seed(app, runner, seed):
    result = runner.invoke(args=["demo", "--seed", seed])
    assert result.exit_code == 2
    assert "Invalid value for '--seed'" in result.output


def test_demo_and_create_admin_through_the_real_command_line(tmp_path):
    """What scripts/run does (migrate, demo --if-empty), then create-admin, on a fresh database."""
    env = server_env(tmp_path)
    flask_cli(["db", "upgrade"], env)
    first = flask_cli(["demo", "--if-empty", "--seed", "5"], env)
    assert "Admin account: admin@example.com" in first.stdout
    assert "reminder(s) opened" in first.stdout
    made = flask_cli(["create-admin", "ops@example.com", "--password-stdin"], env, input=f"{PASSWORD}\n")
    assert "Admin ops@example.com is ready." in made.stdout
