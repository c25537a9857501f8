"""Accounts: sign up, log in with remember-me, log out, settings, failed-login limits."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from webapp.extensions import db
from webapp.models import Reminder, User
from webapp.reminders.lifecycle import open_reminder

PASSWORD = "correct horse"


def field_error(response, field_id: str) -> str | None:
    """The message shown beside a form field (the <small> the field's aria-describedby names)."""
    match = re.search(
        rf'<small class="field-error" id="{re.escape(field_id)}-error">(.*?)</small>',
        response.get_data(as_text=True),
        re.S,
    )
    return html.unescape(match.group(1)) if match else None


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count(User.id)))


def get_user(app, email="ada@example.com") -> User:
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == email))
        db.session.expunge_all()
        return user


# --- sign up ----------------------------------------------------------------------------------


def test_signup_creates_user_with_hashed_password_and_logs_in(client, app, auth):
    response = auth.register(email="  Ada@Example.COM ", password=PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"
    user = get_user(app)
    assert user.email == "ada@example.com"
    assert user.password_hash != PASSWORD and PASSWORD not in user.password_hash
    assert user.check_password(PASSWORD)
    # The inactivity clock starts at sign-up.
    assert user.last_active_at == user.created_at == user.reminder_clock
    assert user.last_weight_at is None and user.last_goal_at is None
    assert client.get("/dashboard").status_code == 200


def test_production_hash_is_werkzeugs_default(tmp_path):
    from werkzeug.security import generate_password_hash

    from webapp import create_app

    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": "x" * 32,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
        }
    )
    with app.app_context():
        user = User(email="a@example.com")
        user.set_password(PASSWORD)
    default_method = generate_password_hash("x").split("$", 1)[0]
    assert user.password_hash.split("$", 1)[0] == default_method
    assert user.check_password(PASSWORD) and not user.check_password("wrong password")


def test_signup_page_has_labelled_fields(client):
    page = client.get("/account/signup").get_data(as_text=True)
    assert '<label for="email">Email</label>' in page
    assert '<label for="password">Password</label>' in page


def test_duplicate_email_gets_clear_message_regardless_of_case(client, app, auth):
    auth.register()
    auth.logout()
    response = auth.register(email="ADA@example.com", password="another password")
    assert response.status_code == 422
    assert field_error(response, "email") == "An account with this email already exists. Log in instead."
    assert user_count(app) == 1
    assert get_user(app).check_password(PASSWORD)


@pytest.mark.parametrize(
    ("email", "password", "field", "message"),
    [
        ("", PASSWORD, "email", "Enter your email address."),
        ("   ", PASSWORD, "email", "Enter your email address."),
        ("not-an-email", PASSWORD, "email", "Enter a valid email address, such as ada@example.com."),
        ("ada@", PASSWORD, "email", "Enter a valid email address, such as ada@example.com."),
        ("@example.com", PASSWORD, "email", "Enter a valid email address, such as ada@example.com."),
        ("ada@@example.com", PASSWORD, "email", "Enter a valid email address, such as ada@example.com."),
        (
            "ada lovelace@example.com",
            PASSWORD,
            "email",
            "Enter a valid email address, such as ada@example.com.",
        ),
        ("ada@localhost", PASSWORD, "email", "Enter a valid email address, such as ada@example.com."),
        ("ada@exa\x00mple.com", PASSWORD, "email", "Remove the control characters from the email address."),
        ("<script>@example.com", PASSWORD, "email", "Enter a valid email address, such as ada@example.com."),
        ("a" * 250 + "@example.com", PASSWORD, "email", "An email address has at most 254 characters."),
        ("ada@example.com", "", "password", "Choose a password."),
        ("ada@example.com", "        ", "password", "Choose a password."),
        ("ada@example.com", "1234567", "password", "Use at least 8 characters."),
        ("ada@example.com", "x" * 201, "password", "Use at most 200 characters."),
    ],
)
def test_signup_bad_input(client, app, email, password, field, message):
    response = client.post("/account/signup", data={"email": email, "password": password})
    assert response.status_code == 422
    assert message in (field_error(response, field) or "")
    assert user_count(app) == 0
    # The field is marked invalid for assistive technology.
    assert f'aria-describedby="{field}-error"' in response.get_data(as_text=True)


def test_signup_with_missing_fields_entirely(client, app):
    response = client.post("/account/signup", data={})
    assert response.status_code == 422
    assert field_error(response, "email") == "Enter your email address."
    assert field_error(response, "password") == "Choose a password."
    assert user_count(app) == 0


def test_signup_when_logged_in_goes_to_dashboard(client, auth):
    auth.register()
    assert client.get("/account/signup").headers["Location"] == "/dashboard"


# --- log in, remember me, log out -------------------------------------------------------------


def test_login_with_email_in_any_case(client, auth):
    auth.register()
    auth.logout()
    response = auth.login(email=" ADA@example.com ")
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"
    assert client.get("/dashboard").status_code == 200


@pytest.mark.parametrize(
    ("email", "password", "field", "message"),
    [
        ("", PASSWORD, "email", "Enter your email address."),
        ("ada@example.com", "", "password", "Enter your password."),
        ("a" * 300 + "@example.com", PASSWORD, "email", "An email address has at most 254 characters."),
    ],
)
def test_login_bad_input(client, auth, email, password, field, message):
    auth.register()
    auth.logout()
    response = auth.login(email=email, password=password)
    assert response.status_code == 422
    assert field_error(response, field) == message
    assert client.get("/dashboard").status_code == 302


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("ada@example.com", "wrong password"),
        ("nobody@example.com", PASSWORD),
        ("not-an-email", PASSWORD),
        ("ada@example.com", "x" * 201),
    ],
)
def test_login_wrong_credentials_says_the_same_thing(client, auth, email, password):
    auth.register()
    auth.logout()
    response = auth.login(email=email, password=password)
    assert response.status_code == 422
    assert "That email and password do not match an account." in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_remember_me_sets_a_lasting_cookie_that_logs_back_in(client, auth):
    auth.register()
    auth.logout()
    response = auth.login(remember="y")
    cookies = response.headers.getlist("Set-Cookie")
    remember = next(c for c in cookies if c.startswith("remember_token="))
    assert "HttpOnly" in remember and "SameSite=Lax" in remember and "Expires=" in remember
    # The browser is closed: the session cookie is gone, the remember cookie is not.
    client.delete_cookie("session")
    assert client.get("/dashboard").status_code == 200


def test_without_remember_me_no_remember_cookie(client, auth):
    auth.register()
    auth.logout()
    response = auth.login()
    assert not any(c.startswith("remember_token=") for c in response.headers.getlist("Set-Cookie"))
    client.delete_cookie("session")
    assert client.get("/dashboard").status_code == 302


def test_logout_is_post_only_and_ends_session(client, auth):
    auth.register()
    auth.login(remember="y")
    assert client.get("/account/logout").status_code == 405
    assert client.get("/dashboard").status_code == 200
    response = auth.logout()
    assert response.status_code == 302 and response.headers["Location"] == "/account/login"
    assert client.get("/dashboard").status_code == 302
    # The remember cookie is cleared too, so the next visit does not log straight back in.
    client.delete_cookie("session")
    assert client.get("/dashboard").status_code == 302


def test_login_page_follows_local_next(client, auth):
    auth.register()
    auth.logout()
    response = client.post(
        "/account/login?next=/account/settings%3Ftab%3D1",
        data={"email": "ada@example.com", "password": PASSWORD},
    )
    assert response.headers["Location"] == "/account/settings?tab=1"


def test_protected_page_sends_to_login_and_back(client, auth):
    auth.register()
    auth.logout()
    response = client.get("/account/settings")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/login?next=")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'action="/account/login?next=/account/settings"' in page
    response = client.post(
        "/account/login?next=%2Faccount%2Fsettings", data={"email": "ada@example.com", "password": PASSWORD}
    )
    assert response.headers["Location"] == "/account/settings"


# --- failed-login limits ----------------------------------------------------------------------

TRY_AGAIN = re.compile(r"Too many failed attempts\. Try again in (\d+) minutes?\.")


def test_failed_logins_are_limited_per_account(client, auth):
    auth.register()
    auth.logout()
    for _ in range(5):
        assert auth.login(password="wrong password").status_code == 422
    # Even the right password is refused until the window passes: otherwise guessing goes on.
    response = auth.login()
    assert response.status_code == 429
    match = TRY_AGAIN.search(response.get_data(as_text=True))
    assert match and 1 <= int(match.group(1)) <= 15
    assert client.get("/dashboard").status_code == 302
    # Another account from the same address is not locked by this one's failures.
    auth.register(email="grace@example.com")
    auth.logout()
    assert auth.login(email="grace@example.com").status_code == 302


def test_failed_logins_are_limited_per_address(client, auth):
    auth.register()
    auth.logout()
    for number in range(20):
        auth.login(email=f"guess{number}@example.com", password="wrong password")
    response = auth.login()
    assert response.status_code == 429
    assert TRY_AGAIN.search(response.get_data(as_text=True))
    # Someone at another address can still log in.
    other = client.application.test_client()
    response = other.post(
        "/account/login",
        data={"email": "ada@example.com", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert response.status_code == 302


def test_successful_login_clears_the_account_count(client, auth):
    auth.register()
    auth.logout()
    for _ in range(4):
        auth.login(password="wrong password")
    assert auth.login().status_code == 302
    auth.logout()
    for _ in range(4):
        assert auth.login(password="wrong password").status_code == 422
    assert auth.login().status_code == 302


def test_failed_login_storage_is_the_configured_one(app):
    from limits.storage import MemoryStorage

    from webapp.extensions import limiter

    strategy = app.extensions["weighin_login_throttle"]
    assert strategy.storage is limiter.storage
    assert isinstance(strategy.storage, MemoryStorage)


def _plain_app(tmp_path, name, **overrides):
    from tests.support import FAST_HASH, TEST_SECRET
    from webapp import create_app

    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / name),
            "SECRET_KEY": TEST_SECRET,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / (name + '.db')}",
            "WTF_CSRF_ENABLED": False,
            "PASSWORD_HASH_METHOD": FAST_HASH,
            **overrides,
        }
    )
    with app.app_context():
        db.create_all()
    return app


def test_an_app_without_limits_does_not_switch_them_off_for_the_next_app(tmp_path, monkeypatch):
    """Flask-Limiter's Limiter is one object per process; one app's choice must not leak into another."""
    monkeypatch.delenv("RATELIMIT_ENABLED", raising=False)
    unlimited = _plain_app(tmp_path, "unlimited", RATELIMIT_ENABLED=False)
    assert unlimited.extensions["weighin_login_throttle"] is None
    app = _plain_app(tmp_path, "limited")
    client = app.test_client()
    client.post("/account/signup", data={"email": "ada@example.com", "password": PASSWORD})
    client.post("/account/logout")
    for _ in range(5):
        client.post("/account/login", data={"email": "ada@example.com", "password": "wrong password"})
    assert (
        client.post("/account/login", data={"email": "ada@example.com", "password": PASSWORD}).status_code
        == 429
    )
    for each in (unlimited, app):
        with each.app_context():
            db.engine.dispose()


@pytest.mark.services
def test_failed_logins_share_redis_when_the_broker_is_redis(tmp_path, monkeypatch):
    """With BROKER_URL=redis://, failed logins are counted in that Redis, so workers share the count."""
    import redis
    from limits.storage import RedisStorage

    from tests.support import FAST_HASH, TEST_SECRET, unavailable
    from webapp import create_app

    url = "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError:
        unavailable("Redis is not running on 127.0.0.1:6379")
    monkeypatch.setenv("BROKER_URL", url)
    monkeypatch.setenv("SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("REMINDER_SCAN_INTERVAL", "0")
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path),
            "WTF_CSRF_ENABLED": False,
            "PASSWORD_HASH_METHOD": FAST_HASH,
        }
    )
    assert app.config["RATELIMIT_STORAGE_URI"] == url
    strategy = app.extensions["weighin_login_throttle"]
    assert isinstance(strategy.storage, RedisStorage)
    with app.app_context():
        db.create_all()
    email = f"redis-{tmp_path.name}@example.com"
    try:
        client = app.test_client()
        for _ in range(5):
            client.post("/account/login", data={"email": email, "password": "wrong password"})
        # A second app (another worker) sees the same count.
        other = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path), "WTF_CSRF_ENABLED": False})
        response = other.test_client().post("/account/login", data={"email": email, "password": "whatever1"})
        assert response.status_code == 429
    finally:
        from webapp.accounts import throttle

        for limit, kind, key in (
            (throttle.FAILED_LOGINS_PER_ACCOUNT, "account", email),
            (throttle.FAILED_LOGINS_PER_ADDRESS, "address", "127.0.0.1"),
        ):
            strategy.clear(limit, "failed-login", kind, key)
        with app.app_context():
            db.engine.dispose()


# --- settings ---------------------------------------------------------------------------------


def settings_data(**overrides):
    data = {
        "display_name": "Ada L.",
        "unit": "lb",
        "timezone": "Europe/Berlin",
        "reminders_enabled": "y",
        "email_reminders": "y",
        "remind_after_days": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_settings_page_shows_current_values(client, auth):
    auth.register()
    page = client.get("/account/settings").get_data(as_text=True)
    assert 'value="UTC"' in page
    assert '<option selected value="kg">' in page
    assert 'id="timezone-names"' in page and '<option value="Europe/Berlin">' in page


def test_settings_save_everything(client, app, auth):
    auth.register()
    response = client.post("/account/settings", data=settings_data())
    assert response.status_code == 302
    user = get_user(app)
    assert (user.display_name, user.unit, user.timezone, user.reminders_enabled) == (
        "Ada L.",
        "lb",
        "Europe/Berlin",
        True,
    )
    assert "Settings saved." in client.get("/account/settings").get_data(as_text=True)


def test_settings_time_zone_is_matched_without_case(client, app, auth):
    auth.register()
    client.post("/account/settings", data=settings_data(timezone="  america/new_york "))
    assert get_user(app).timezone == "America/New_York"


def test_turning_reminders_off_goes_through_the_lifecycle(client, app, auth):
    auth.register()
    with app.app_context():
        user = auth.user()
        open_reminder(user.id)
        db.session.commit()
    client.post("/account/settings", data=settings_data(reminders_enabled=None))
    with app.app_context():
        user = auth.user()
        assert user.reminders_enabled is False
        assert user.reminder_clock is None
        assert user.open_reminder() is None
        reminder = db.session.scalar(db.select(Reminder).where(Reminder.user_id == user.id))
        assert reminder.status == "dismissed"
    client.post("/account/settings", data=settings_data())
    with app.app_context():
        user = auth.user()
        assert user.reminders_enabled is True
        assert user.reminder_clock == user.last_active_at


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"display_name": "x" * 81}, "display_name", "Use at most 80 characters."),
        ({"display_name": "Ada\x00"}, "display_name", "Use letters, digits, spaces and punctuation only."),
        (
            {"display_name": "Ada\nLovelace"},
            "display_name",
            "Use letters, digits, spaces and punctuation only.",
        ),
        ({"unit": "stone"}, "unit", "Choose kilograms (kg) or pounds (lb)."),
        ({"unit": ""}, "unit", "Choose kilograms (kg) or pounds (lb)."),
        ({"timezone": ""}, "timezone", "Choose a time zone."),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "Choose a time zone from the list"),
        ({"timezone": "Europe/Berlin\x00"}, "timezone", "Choose a time zone from the list"),
        ({"timezone": "../../etc/passwd"}, "timezone", "Choose a time zone from the list"),
        ({"timezone": "Europe/" + "x" * 300}, "timezone", "Choose a time zone from the list"),
        ({"timezone": "+02:00"}, "timezone", "Choose a time zone from the list"),
        ({"remind_after_days": "2"}, "remind_after_days", "Choose from 3 to 60 days."),
        ({"remind_after_days": "61"}, "remind_after_days", "Choose from 3 to 60 days."),
        ({"remind_after_days": "0"}, "remind_after_days", "Choose from 3 to 60 days."),
        ({"remind_after_days": "99999"}, "remind_after_days", "Enter a whole number of days from 3 to 60"),
        ({"remind_after_days": "seven"}, "remind_after_days", "Enter a whole number of days from 3 to 60"),
        ({"remind_after_days": "7.5"}, "remind_after_days", "Enter a whole number of days from 3 to 60"),
        ({"remind_after_days": "-7"}, "remind_after_days", "Enter a whole number of days from 3 to 60"),
        ({"remind_after_days": "١٢"}, "remind_after_days", "Enter a whole number of days from 3 to 60"),
        ({"remind_after_days": "1e1"}, "remind_after_days", "Enter a whole number of days from 3 to 60"),
    ],
)
def test_settings_bad_input(client, app, auth, overrides, field, message):
    auth.register()
    response = client.post("/account/settings", data=settings_data(**overrides))
    assert response.status_code == 422
    assert message in (field_error(response, field) or "")
    user = get_user(app)
    # Nothing is stored, not even the fields that were fine.
    assert (user.display_name, user.unit, user.timezone) == ("", "kg", "UTC")
    assert (user.email_reminders, user.remind_after_days) == (True, 0)


@pytest.mark.parametrize(
    ("typed", "stored", "shown"), [("14", 14, "14"), (" 3 ", 3, "3"), ("60", 60, "60"), ("", 0, "")]
)
def test_settings_remind_after_days(client, app, auth, typed, stored, shown):
    auth.register()
    page = client.get("/account/settings").get_data(as_text=True)
    assert "Remind me after (days)" in page and "this site's default (7 days)" in page
    assert client.post("/account/settings", data=settings_data(remind_after_days=typed)).status_code == 302
    assert get_user(app).remind_after_days == stored
    page = client.get("/account/settings").get_data(as_text=True)
    assert re.search(rf'<input [^>]*name="remind_after_days"[^>]* value="{shown}"', page)


def test_turning_email_reminders_off_drops_the_queued_message_and_on_brings_it_back(client, app, auth):
    from webapp.mail.queue import send_due
    from webapp.models import QueuedMail
    from webapp.reminders.escalation import escalate

    auth.register()
    with app.app_context():
        user = auth.user()
        opened = user.created_at
        due = open_reminder(user.id, opened).email_at
        db.session.commit()
        assert len(escalate(due)) == 1
    client.post("/account/settings", data=settings_data(email_reminders=None))
    with app.app_context():
        assert get_user(app).email_reminders is False
        assert db.session.scalars(db.select(QueuedMail.status)).all() == ["cancelled"]
        assert send_due(due + timedelta(days=1)).sent == []
        db.session.remove()
    # On again: the reminder was already decided once, so it is not emailed a second time.
    client.post("/account/settings", data=settings_data())
    with app.app_context():
        assert get_user(app).email_reminders is True
        assert escalate(due + timedelta(days=2)) == []


def test_email_reminders_turned_on_before_the_email_arm_the_open_reminder(client, app, auth):
    from webapp.reminders.escalation import escalate

    auth.register()
    client.post("/account/settings", data=settings_data(email_reminders=None))
    with app.app_context():
        user = auth.user()
        opened = user.created_at
        open_reminder(user.id, opened)
        db.session.commit()
        assert user.open_reminder().email_at is None
    client.post("/account/settings", data=settings_data())
    with app.app_context():
        due = auth.user().open_reminder().email_at
        # A day after opening at the earliest, in Europe/Berlin's daytime.
        assert due >= opened + timedelta(days=1) and 8 <= due.astimezone(ZoneInfo("Europe/Berlin")).hour < 20
        assert escalate(due - timedelta(seconds=1)) == [] and len(escalate(due)) == 1


def test_settings_need_login(client):
    response = client.get("/account/settings")
    assert response.status_code == 302
    assert client.post("/account/settings", data=settings_data()).status_code == 302
