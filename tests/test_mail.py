"""Mail: MAIL_URL and the other mail variables, the durable queue, and sending through a real
SMTP server (aiosmtpd in a subprocess), including one that dies in the middle of the queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser

import pytest

from webapp.config import ConfigError, load_config, mail_settings
from webapp.extensions import db
from webapp.mail.queue import LEASE, enqueue, retry_delay, send_due
from webapp.models import QueuedMail
from webapp.testing import SmtpServer

from .support import build_app, flask_cli, free_port, server_env

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def config(tmp_path, **env):
    return load_config(tmp_path / "instance", env={k: str(v) for k, v in env.items()})


# -- configuration ---------------------------------------------------------------------------


def test_mail_defaults_write_files_under_instance(tmp_path):
    cfg = config(tmp_path)
    assert cfg["MAIL_BACKEND"] == "webapp.mail.eml"
    assert cfg["MAIL_FILE_PATH"] == str(tmp_path / "instance" / "mail")
    assert cfg["MAIL_SEND_INTERVAL"] == 30
    assert cfg["REMINDER_EMAIL_AFTER"] == 86400
    assert cfg["REMINDER_EMAIL_HOURS"] == (8, 20)
    assert cfg["PUBLIC_URL"] == "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", ("mail.example.com", 25, None, None, False, False)),
        (
            "smtp+starttls://u%40x:p%3Ass@mail.example.com",
            ("mail.example.com", 587, "u@x", "p:ss", True, False),
        ),
        ("smtps://me:secret@mail.example.com:2465", ("mail.example.com", 2465, "me", "secret", False, True)),
    ],
)
def test_mail_url_schemes(tmp_path, url, expected):
    cfg = mail_settings({"MAIL_URL": url}, tmp_path)
    assert cfg["MAIL_BACKEND"] == "smtp"
    got = tuple(cfg[k] for k in ("MAIL_SERVER", "MAIL_PORT", "MAIL_USERNAME", "MAIL_PASSWORD"))
    assert got + (cfg["MAIL_USE_TLS"], cfg["MAIL_USE_SSL"]) == expected


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MAIL_URL", "garbage", "MAIL_URL must start with smtp://"),
        ("MAIL_URL", "http://mail.example.com", "MAIL_URL must start with smtp://"),
        ("MAIL_URL", "smtp://", "MAIL_URL must name the mail server"),
        ("MAIL_URL", "smtp://mail.example.com:notaport", "MAIL_URL has an invalid port"),
        ("MAIL_URL", "smtp://mail.example.com:99999", "MAIL_URL has an invalid port"),
        ("MAIL_URL", "smtp://mail.example.com/inbox", "MAIL_URL takes only"),
        ("MAIL_URL", "smtp://user@mail.example.com", "both a user name and a password"),
        ("MAIL_FROM", "not an address", "MAIL_FROM must be an address"),
        ("MAIL_SEND_INTERVAL", "soon", "MAIL_SEND_INTERVAL must be a whole number"),
        ("REMINDER_EMAIL_AFTER", "-5", "REMINDER_EMAIL_AFTER must be a whole number"),
        ("REMINDER_EMAIL_HOURS", "25-3", "REMINDER_EMAIL_HOURS must be the local hours"),
        ("REMINDER_EMAIL_HOURS", "a-b", "REMINDER_EMAIL_HOURS must be the local hours"),
        ("REMINDER_EMAIL_HOURS", "9", "REMINDER_EMAIL_HOURS must be the local hours"),
        ("REMINDER_EMAIL_HOURS", "9-9", "must differ"),
        ("REMINDER_EMAIL_HOURS", "8-25", "end hour 1 to 24"),
        ("PUBLIC_URL", "weighin.example.com", "PUBLIC_URL must be the site's address"),
        ("PUBLIC_URL", "ftp://weighin.example.com", "PUBLIC_URL must be the site's address"),
    ],
)
def test_bad_mail_variables_are_refused_clearly(tmp_path, variable, value, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **{variable: value})


def test_mail_url_errors_never_show_the_password(tmp_path):
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, MAIL_URL="smtp://me:hunter2@mail.example.com/x")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(("value", "hours"), [("9-17", (9, 17)), (" 22 - 6 ", (22, 6)), ("0-24", (0, 24))])
def test_email_hours(tmp_path, value, hours):
    assert config(tmp_path, REMINDER_EMAIL_HOURS=value)["REMINDER_EMAIL_HOURS"] == hours


def test_server_refuses_to_start_on_a_bad_mail_url(tmp_path):
    env = server_env(tmp_path, MAIL_URL="smtp//nowhere")
    result = flask_cli(["mail", "send"], env, check=False)
    assert result.returncode != 0
    assert "MAIL_URL must start with smtp://" in result.stderr


# -- the queue -------------------------------------------------------------------------------


def _queue(count: int, start: int = 0, now: datetime = NOW) -> None:
    for n in range(start, start + count):
        enqueue(
            kind="test",
            to=f"user{n}@example.com",
            subject=f"Message {n}",
            text=f"Hello {n}",
            html=f"<p>Hello {n}</p>",
            headers={"X-Test-Number": str(n)},
            now=now,
        )
    db.session.commit()


def _ids(messages) -> list[str]:
    return [message["Message-ID"] for message in messages]


@pytest.fixture
def smtp_app(tmp_path, smtp_server):
    app = build_app(tmp_path, "smtp", **mail_settings({"MAIL_URL": smtp_server.url}, tmp_path))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_file_backend_writes_one_eml_per_message(app, tmp_path):
    with app.app_context():
        _queue(2)
        report = send_due(NOW)
        assert [address for _, address, _ in report.sent] == ["user0@example.com", "user1@example.com"]
    files = sorted((tmp_path / "instance" / "mail").glob("*.eml"))
    assert len(files) == 2
    parsed = [BytesParser(policy=policy.default).parsebytes(path.read_bytes()) for path in files]
    assert sorted(message["To"] for message in parsed) == ["user0@example.com", "user1@example.com"]


def test_messages_arrive_through_a_real_smtp_server(smtp_app, smtp_server):
    _queue(3)
    report = send_due(NOW)
    assert len(report.sent) == 3 and not report.failed
    messages = smtp_server.wait_for_messages(3)
    assert [m["Subject"] for m in messages] == ["Message 0", "Message 1", "Message 2"]
    first = messages[0]
    assert first["X-Test-Number"] == "0"
    assert first["Date"] and first["Message-ID"].startswith("<")
    assert first.get_body(("plain",)).get_content().strip() == "Hello 0"
    assert first.get_body(("html",)).get_content().strip() == "<p>Hello 0</p>"
    rows = db.session.scalars(db.select(QueuedMail).order_by(QueuedMail.id)).all()
    assert {(row.status, row.attempts, row.due_at, row.sent_at) for row in rows} == {("sent", 1, None, NOW)}
    assert _ids(messages) == [row.message_id for row in rows]
    # A second pass finds nothing due.
    assert send_due(NOW + timedelta(hours=1)).sent == []


def test_credentials_in_mail_url_log_in(tmp_path):
    folder = tmp_path / "smtp-auth"
    folder.mkdir()
    server = SmtpServer(folder, auth="weighin:s3cret").start()
    try:
        good = build_app(tmp_path, "good", **mail_settings({"MAIL_URL": server.url}, tmp_path))
        with good.app_context():
            _queue(1)
            assert len(send_due(NOW).sent) == 1
        wrong = f"smtp://weighin:wrong@127.0.0.1:{server.port}"
        bad = build_app(tmp_path, "bad", **mail_settings({"MAIL_URL": wrong}, tmp_path))
        with bad.app_context():
            _queue(1)
            report = send_due(NOW)
            assert report.sent == [] and "SMTPAuthenticationError: 535" in report.failed[0][2]
    finally:
        server.stop()
    assert len(server.messages()) == 1


def test_unreachable_server_is_retried_with_growing_backoff_and_the_error_kept(tmp_path):
    port = free_port()  # nothing listens here
    app = build_app(tmp_path, "down", **mail_settings({"MAIL_URL": f"smtp://127.0.0.1:{port}"}, tmp_path))
    with app.app_context():
        _queue(3)
        clock = NOW
        for attempt in (1, 2, 3):
            report = send_due(clock)
            assert report.sent == [] and len(report.failed) == 1
            first = db.session.get(QueuedMail, 1)
            assert (first.status, first.attempts) == ("queued", attempt)
            assert "ConnectionRefusedError" in first.last_error
            assert first.due_at == clock + retry_delay(attempt)
            # The others were not tried, only put back for the same moment.
            others = db.session.scalars(db.select(QueuedMail).where(QueuedMail.id > 1)).all()
            assert {(row.status, row.attempts, row.due_at) for row in others} == {("queued", 0, first.due_at)}
            assert send_due(clock + retry_delay(attempt) - timedelta(seconds=1)).failed == []
            clock = first.due_at
        assert retry_delay(1) < retry_delay(2) < retry_delay(3) <= retry_delay(50) == timedelta(hours=1)
        db.session.remove()

    # The server comes back an hour later: everything arrives, once.
    folder = tmp_path / "smtp-late"
    folder.mkdir()
    server = SmtpServer(folder, port=port).start()
    try:
        with app.app_context():
            assert len(send_due(clock + timedelta(hours=1)).sent) == 3
        assert len(set(_ids(server.messages()))) == len(server.messages()) == 3
    finally:
        server.stop()


def test_smtp_server_killed_mid_queue_every_message_arrives_once(tmp_path):
    folder = tmp_path / "smtp-dies"
    folder.mkdir()
    server = SmtpServer(folder, die_after=12).start()
    app = build_app(tmp_path, "dies", **mail_settings({"MAIL_URL": server.url}, tmp_path))
    with app.app_context():
        _queue(50)
        report = send_due(NOW)
        assert len(report.sent) == 12 and len(report.failed) == 1
        assert server.proc.wait(timeout=10) != 0  # it died receiving the 13th
        assert db.session.scalar(db.select(db.func.count()).where(QueuedMail.status == "queued")) == 38
        # Back up, without dying this time.
        server = SmtpServer(folder, port=server.port).start()
        try:
            later = NOW + timedelta(hours=1)
            assert len(send_due(later).sent) == 38
            assert send_due(later).sent == []
            received = server.messages()
        finally:
            server.stop()
        expected = db.session.scalars(db.select(QueuedMail.message_id).order_by(QueuedMail.id)).all()
    assert sorted(_ids(received)) == sorted(expected)  # all 50, none twice


def test_a_claimed_message_whose_sender_died_is_sent_after_the_lease(smtp_app, smtp_server):
    """A sender that claimed and died (no record): another takes the row once the lease ends."""
    import sqlalchemy as sa

    _queue(1)
    db.session.execute(sa.update(QueuedMail).values(status="sending", lease="dead", due_at=NOW + LEASE))
    db.session.commit()
    assert send_due(NOW + LEASE - timedelta(seconds=1)).sent == []
    assert len(send_due(NOW + LEASE).sent) == 1
    assert len(smtp_server.wait_for_messages(1)) == 1


def test_mail_send_command_prints_what_it_sent(tmp_path, smtp_server):
    env = server_env(tmp_path, MAIL_URL=smtp_server.url)
    flask_cli(["db", "upgrade"], env)
    app = build_app(tmp_path, "cli", SQLALCHEMY_DATABASE_URI=env["DATABASE_URL"])
    with app.app_context():
        _queue(2)
        db.session.remove()
        db.engine.dispose()
    result = flask_cli(["mail", "send", "--now", NOW.isoformat()], env)
    assert "sent message 1 (test) to user0@example.com" in result.stdout
    assert "mail: 2 sent, 0 failed" in result.stdout
    assert len(smtp_server.wait_for_messages(2)) == 2
    bad = flask_cli(["mail", "send", "--now", "yesterday"], env, check=False)
    assert bad.returncode == 2 and "is not an ISO 8601 date" in bad.stderr


def test_without_mail_url_a_subprocess_writes_its_mail_under_its_instance_path(tmp_path):
    """INSTANCE_PATH moves the instance folder, .eml mail included, out of the code's own folder."""
    env = server_env(tmp_path, INSTANCE_PATH=tmp_path / "elsewhere")
    env.pop("MAIL_URL", None)
    flask_cli(["db", "upgrade"], env)
    app = build_app(tmp_path, "files", SQLALCHEMY_DATABASE_URI=env["DATABASE_URL"])
    with app.app_context():
        _queue(1)
        message_id = db.session.scalar(db.select(QueuedMail.message_id))
        db.session.remove()
        db.engine.dispose()
    result = flask_cli(["mail", "send", "--now", NOW.isoformat()], env)
    assert "mail: 1 sent, 0 failed" in result.stdout
    (eml,) = (tmp_path / "elsewhere" / "mail").glob("*.eml")
    assert BytesParser(policy=policy.default).parsebytes(eml.read_bytes())["Message-ID"] == message_id
