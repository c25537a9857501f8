"""Escalation: a reminder no page showed is emailed once, inside the user's own hours; one that a
page showed (a load, a poll, a real stream), or that ended first, or whose user turned email off,
is not. The clock is injected (`--now`) and the mail goes to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import gevent
import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.mail.queue import send_due
from webapp.models import OutboxEvent, QueuedMail, Reminder, User
from webapp.reminders import lifecycle
from webapp.reminders.escalation import escalate, in_hours, next_in_hours

from .support import ROOT, GunicornProcess, Seeder, add_user, flask_cli, log_in_client, server_env

# Monday 2 March 2026, 09:00 UTC (18:00 in Seoul). Users sign up a week before.
OPENED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SIGNED_UP = OPENED - timedelta(days=7)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("moment", "zone", "hours", "expected"),
    [
        # Inside the hours: at once.
        ("2026-03-03T09:00", "UTC", (8, 20), "2026-03-03T09:00"),
        # 03:00 in Seoul (18:00 UTC) waits for 08:00 Seoul, 23:00 UTC.
        ("2026-03-02T18:00", "Asia/Seoul", (8, 20), "2026-03-02T23:00"),
        # 21:00 in Seoul waits for the next morning.
        ("2026-03-02T12:00", "Asia/Seoul", (8, 20), "2026-03-02T23:00"),
        # 06:30 in New York (EST) waits for 08:00.
        ("2026-03-02T11:30", "America/New_York", (8, 20), "2026-03-02T13:00"),
        # Hours across midnight: 23:00 is in 22-6, 12:00 waits for 22:00.
        ("2026-03-02T23:00", "UTC", (22, 6), "2026-03-02T23:00"),
        ("2026-03-02T12:00", "UTC", (22, 6), "2026-03-02T22:00"),
        ("2026-03-02T05:59", "UTC", (22, 6), "2026-03-02T05:59"),
        # The end hour is not included.
        ("2026-03-02T20:00", "UTC", (8, 20), "2026-03-03T08:00"),
    ],
)
def test_next_moment_inside_the_users_hours(moment, zone, hours, expected):
    start = datetime.fromisoformat(moment).replace(tzinfo=UTC)
    got = next_in_hours(start, ZoneInfo(zone), hours)
    assert got == datetime.fromisoformat(expected).replace(tzinfo=UTC)
    assert in_hours(got.astimezone(ZoneInfo(zone)).hour, hours)


# -- in process, SQLite ------------------------------------------------------------------------


def _user(email="ada@example.com", **fields) -> int:
    return add_user(email, at=SIGNED_UP, **{"display_name": "Ada", **fields}).id


def _reminder(user_id: int) -> Reminder:
    db.session.expire_all()
    return db.session.scalars(
        sa.select(Reminder).where(Reminder.user_id == user_id).order_by(Reminder.id.desc())
    ).one()


def _mail() -> list[QueuedMail]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(QueuedMail).order_by(QueuedMail.id)))


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app
        db.session.remove()


def test_an_unseen_reminder_is_emailed_once_at_the_first_moment_it_may_be(ctx, tmp_path):
    user_id = _user()
    assert [r.user_id for r in lifecycle.scan(OPENED)] == [user_id]
    reminder = _reminder(user_id)
    assert reminder.email_at == OPENED + DAY  # 09:00 UTC is inside 8-20
    assert escalate(OPENED + DAY - timedelta(seconds=1)) == []
    queued = escalate(OPENED + DAY)
    assert [(item.user_id, item.to) for item in queued] == [(user_id, "ada@example.com")]
    reminder = _reminder(user_id)
    assert (reminder.email_at, reminder.emailed_at) == (None, OPENED + DAY)
    # Never twice, however often it runs.
    assert escalate(OPENED + 2 * DAY) == []
    assert [(row.kind, row.reminder_id, row.status) for row in _mail()] == [
        ("reminder", reminder.id, "queued")
    ]
    assert len(send_due(OPENED + DAY).sent) == 1
    (eml,) = (tmp_path / "instance" / "mail").glob("*.eml")
    text = eml.read_text()
    assert "Hello Ada" in text and "8 days since you signed up" in text
    assert "http://127.0.0.1:5000/dashboard#weight" in text


def test_a_seoul_user_is_not_emailed_at_three_in_the_morning(ctx):
    user_id = _user(timezone="Asia/Seoul")
    opened = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)  # 03:00 in Seoul
    lifecycle.scan(opened)
    eight_in_seoul = datetime(2026, 3, 3, 23, 0, tzinfo=UTC)
    assert _reminder(user_id).email_at == eight_in_seoul
    assert escalate(opened + DAY) == []
    assert len(escalate(eight_in_seoul)) == 1


def test_a_late_scan_outside_the_hours_waits_for_the_next_morning(ctx):
    user_id = _user()
    lifecycle.scan(OPENED)
    # The user moved to Seoul meanwhile; the next scan runs at 21:00 UTC, 06:00 in Seoul.
    db.session.execute(sa.update(User).where(User.id == user_id).values(timezone="Asia/Seoul"))
    db.session.commit()
    late = datetime(2026, 3, 3, 21, 0, tzinfo=UTC)
    assert escalate(late) == []
    assert _reminder(user_id).email_at == datetime(2026, 3, 3, 23, 0, tzinfo=UTC)
    assert len(escalate(late + timedelta(hours=2))) == 1


def test_a_banner_shown_by_a_page_load_sends_no_email(ctx, client):
    user_id = _user()
    lifecycle.scan(OPENED)
    log_in_client(client, client.application, user_id)
    assert "You have not logged your weight since" in client.get("/dashboard").text
    reminder = _reminder(user_id)
    assert reminder.shown_at is not None and reminder.email_at is None
    shown = reminder.shown_at
    client.get("/dashboard")  # recorded once, not on every page
    assert _reminder(user_id).shown_at == shown
    assert escalate(OPENED + 2 * DAY) == [] and _mail() == []


def test_a_banner_shown_by_a_long_poll_sends_no_email(ctx, client):
    user_id = _user()
    lifecycle.scan(OPENED)
    log_in_client(client, client.application, user_id)
    assert "You have not logged your weight since" in client.get("/events/wait?after=0").text
    assert _reminder(user_id).shown_at is not None
    assert escalate(OPENED + 2 * DAY) == []


def test_a_banner_shown_by_polling_after_the_mail_was_queued_cancels_it(ctx, client):
    user_id = _user()
    lifecycle.scan(OPENED)
    assert len(escalate(OPENED + DAY)) == 1
    log_in_client(client, client.application, user_id)
    assert "You have not logged your weight since" in client.get("/events/area").text
    assert [row.status for row in _mail()] == ["cancelled"]
    assert send_due(OPENED + DAY).sent == []


def test_showings_that_arrive_together_are_committed_together_and_each_waiter_after_it(ctx):
    """The transports' group commit (issue 16): one UPDATE and one COMMIT for a wake-up's worth of
    streams, each released only once its reminder's showing is committed, queued mail cancelled."""
    from webapp.reminders.escalation import shown_recorder

    users = [_user(f"u{n}@example.com") for n in range(5)]
    lifecycle.scan(OPENED)
    assert len(escalate(OPENED + DAY)) == 5  # queued, not yet sent
    reminders = [_reminder(user_id).id for user_id in users]
    db.session.remove()
    seen: list[bool] = []

    def show(reminder_id):
        with ctx.app_context():  # as a stream's wake-up does
            shown_recorder().record(reminder_id)
            seen.append(db.session.get(Reminder, reminder_id).shown_at is not None)
            db.session.remove()

    gevent.joinall([gevent.spawn(show, rid) for rid in reminders + reminders[:1]])
    assert seen == [True] * 6
    assert all(_reminder(user_id).shown_at is not None for user_id in users)
    assert [row.status for row in _mail()] == ["cancelled"] * 5
    shown_announcements = db.session.scalar(sa.select(sa.func.count()).where(OutboxEvent.kind == "shown"))
    assert shown_announcements == 1
    assert send_due(OPENED + DAY).sent == []


def test_a_failed_batch_of_showings_fails_each_waiter_and_the_next_batch_runs(ctx, monkeypatch):
    from webapp.reminders import escalation

    user_id = _user()
    lifecycle.scan(OPENED)
    reminder_id = _reminder(user_id).id
    db.session.remove()

    def broken(*reminder_ids, now=None):
        raise sa.exc.OperationalError("UPDATE reminders", {}, Exception("the database went away"))

    monkeypatch.setattr(escalation, "record_shown", broken)
    outcomes: list[str] = []

    def show():
        with ctx.app_context():
            try:
                escalation.shown_recorder().record(reminder_id)
                outcomes.append("recorded")
            except sa.exc.OperationalError:
                outcomes.append("failed")

    gevent.joinall([gevent.spawn(show) for _ in range(3)])
    assert outcomes == ["failed"] * 3 and _reminder(user_id).shown_at is None
    monkeypatch.undo()
    escalation.shown_recorder().record(reminder_id)
    assert _reminder(user_id).shown_at is not None


@pytest.mark.parametrize("how", ["weight", "goal", "dismiss", "reminders off"])
def test_a_reminder_ended_before_its_mail_went_out_sends_none(ctx, how):
    user_id = _user()
    lifecycle.scan(OPENED)
    assert len(escalate(OPENED + DAY)) == 1  # queued, not yet sent
    user = db.session.get(User, user_id)
    later = OPENED + DAY + timedelta(minutes=1)
    if how == "weight":
        lifecycle.record_weight_logged(user, later)
    elif how == "goal":
        lifecycle.record_goal_changed(user, later)
    elif how == "dismiss":
        lifecycle.dismiss(user, later)
    else:
        lifecycle.set_reminders_enabled(user, False, later)
    db.session.commit()
    assert [row.status for row in _mail()] == ["cancelled"]
    assert send_due(later).sent == []


def test_a_reminder_ended_before_its_hour_queues_nothing(ctx):
    user_id = _user()
    lifecycle.scan(OPENED)
    lifecycle.record_weight_logged(db.session.get(User, user_id), OPENED + timedelta(hours=3))
    db.session.commit()
    assert _reminder(user_id).email_at is None
    assert escalate(OPENED + 2 * DAY) == [] and _mail() == []


def test_no_email_for_a_user_who_turned_email_reminders_off(ctx):
    off = _user("off@example.com", email_reminders=False)
    later = _user("later@example.com")
    lifecycle.scan(OPENED)
    assert _reminder(off).email_at is None
    # Turned off after the reminder opened: the escalation checks again.
    db.session.execute(sa.update(User).where(User.id == later).values(email_reminders=False))
    db.session.commit()
    assert escalate(OPENED + DAY) == [] and _mail() == []


def test_an_admins_remind_now_escalates_too(ctx):
    user_id = _user()
    lifecycle.open_reminder(user_id, OPENED, source="admin")
    db.session.commit()
    assert _reminder(user_id).email_at == OPENED + DAY
    assert len(escalate(OPENED + DAY)) == 1


# -- the command line and a real stream, on SQLite and PostgreSQL -------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cli.db'}"
    return request.getfixturevalue("postgres_url")


def _scan(env, now: datetime) -> str:
    return flask_cli(["reminders", "scan", "--now", now.isoformat()], env).stdout


def test_cli_scans_on_the_injected_clock_email_exactly_one_unseen_reminder(
    tmp_path, database_url, smtp_server
):
    env = server_env(tmp_path, DATABASE_URL=database_url, MAIL_URL=smtp_server.url)
    flask_cli(["db", "upgrade"], env)
    seeder = Seeder(SimpleNamespace(env=env, log_path=tmp_path / "seed.log"))
    try:
        with seeder.app.app_context():
            unseen = _user("unseen@example.com")
            resolved = _user("resolved@example.com")
            db.session.remove()
        assert "2 reminder(s) opened, 0 email(s) queued" in _scan(env, OPENED)
        with seeder.app.app_context():
            lifecycle.record_weight_logged(db.session.get(User, resolved), OPENED + timedelta(hours=1))
            db.session.commit()
            db.session.remove()
        assert "0 email(s) queued" in _scan(env, OPENED + DAY - timedelta(minutes=1))
        out = _scan(env, OPENED + DAY)
        assert f"of user {unseen} to unseen@example.com" in out and "1 email(s) queued" in out
        assert "0 email(s) queued" in _scan(env, OPENED + 2 * DAY)
        sent = flask_cli(["mail", "send", "--now", (OPENED + DAY).isoformat()], env).stdout
        assert "mail: 1 sent" in sent
        (message,) = smtp_server.wait_for_messages(1)
        assert message["To"] == "unseen@example.com" and message["Subject"] == "Time to log your weight"
        assert (
            "mail: 0 sent" in flask_cli(["mail", "send", "--now", (OPENED + 3 * DAY).isoformat()], env).stdout
        )
        assert len(smtp_server.messages()) == 1
    finally:
        seeder.close()


def test_a_reminder_shown_on_an_open_page_by_a_real_stream_or_websocket_sends_no_mail(make_server, tmp_path):
    from simple_websocket import Client

    server = make_server(REMINDER_EMAIL_AFTER=3600, REMINDER_EMAIL_HOURS="0-24")
    seeder = Seeder(server)
    try:
        shown = seeder.user("shown@example.com", days_ago=8)
        socket_user = seeder.user("socket@example.com", days_ago=8)
        unseen = seeder.user("unseen@example.com", days_ago=8)
        ws = Client.connect(
            f"ws://127.0.0.1:{server.port}/events/ws",
            headers={"Cookie": f"session={seeder.cookie(socket_user)}"},
        )
        try:
            with seeder.client(shown) as client, client.stream("GET", "/events", timeout=30) as stream:
                assert stream.status_code == 200
                assert "3 reminder(s) opened" in seeder.scan()
                for line in stream.iter_lines():
                    if "You have not logged your weight since" in line:
                        break
            while True:
                frame = ws.receive(timeout=15)
                assert frame is not None, "no banner over the WebSocket"
                if 'id="reminder-banner"' in json.loads(frame)["html"]:
                    break
        finally:
            ws.close()
        out = seeder.scan(days_ahead=1)
        assert f"of user {unseen} " in out and "1 email(s) queued" in out
        assert f"of user {shown} " not in out and f"of user {socket_user} " not in out
    finally:
        seeder.close()


@pytest.mark.services
def test_two_gunicorn_workers_and_the_cli_sending_at_once_deliver_each_email_once(
    tmp_path, postgres_url, smtp_server
):
    users = 30
    env = server_env(
        tmp_path,
        DATABASE_URL=postgres_url,
        MAIL_URL=smtp_server.url,
        MAIL_SEND_INTERVAL=1,
        REMINDER_EMAIL_HOURS="0-24",
    )
    flask_cli(["db", "upgrade"], env)
    server = GunicornProcess(env, tmp_path / "gunicorn.log", workers=2)
    seeder = Seeder(server)
    try:
        ids = [seeder.user(f"user{n}@example.com", days_ago=10) for n in range(users)]
        # Opened two days ago (on the injected clock), so their emails are due now on the real one.
        assert f"{users} reminder(s) opened" in seeder.scan(days_ahead=-2)
        server.start()
        assert len(server.wait_for_workers()) == 2
        # The CLI sends too, over and over, while both workers' senders run every second.
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "mail", "send"]
        senders = [
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(3)
        ]
        assert f"{users} email(s) queued" in seeder.scan()
        for _ in range(3):
            senders.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
            )
        sent_by_cli = 0
        for proc in senders:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            sent_by_cli += int(re.search(r"mail: (\d+) sent", out).group(1))
        messages = smtp_server.wait_for_messages(users)
        with seeder.app.app_context():
            statuses = db.session.scalars(sa.select(QueuedMail.status)).all()
            db.session.remove()
        assert statuses == ["sent"] * users
        # Every row is sent and recorded: nothing more can go out, so this count is final.
        received = sorted(message["To"] for message in smtp_server.messages())
        assert received == sorted(f"user{n}@example.com" for n in range(users))
        assert len({message["Message-ID"] for message in messages}) == users
        assert sent_by_cli <= users and len(ids) == users
    finally:
        server.stop()
        seeder.close()


def test_the_reminder_email_speaks_the_users_language(ctx):
    from webapp.reminders.emails import queue_reminder_email

    user = db.session.get(User, _user())
    user.locale = "ko"  # the Language choice in Settings
    queue_reminder_email(user, None, OPENED + DAY)
    db.session.commit()
    (row,) = _mail()
    assert row.subject == "체중을 기록할 시간입니다"
    assert "Ada님, 안녕하세요." in row.body_text and "가입한 지 8일이 지났지만" in row.body_text
    assert '<html lang="ko">' in row.body_html and "kg 단위로 체중 기록하기" in row.body_html


def test_recording_shown_never_commits_a_requests_own_pending_changes(ctx):
    from webapp.events.area import AreaLinks, render_area

    user_id = _user()
    lifecycle.scan(OPENED)
    links = AreaLinks("/dashboard#weight", "/reminders/dismiss", "token")
    db.session.get(User, user_id).display_name = "half-saved"  # a change its request has not committed
    assert "You have not logged your weight since" in render_area(user_id, links)
    db.session.rollback()
    assert db.session.get(User, user_id).display_name == "Ada"
    assert _reminder(user_id).shown_at is None
    render_area(user_id, links)  # the next render, with nothing pending, records it
    assert _reminder(user_id).shown_at is not None


def test_stale_due_rows_neither_send_nor_starve_the_rest(ctx):
    stale = [_user(f"stale{n}@example.com") for n in range(3)]
    fresh = _user("fresh@example.com")
    lifecycle.scan(OPENED)
    # Older data: ended or shown reminders that still carry an email_at (today's code clears it).
    db.session.execute(
        sa.update(Reminder)
        .where(Reminder.user_id.in_(stale[:2]))
        .values(status="dismissed", open_for_user_id=None, email_at=OPENED)
    )
    db.session.execute(
        sa.update(Reminder).where(Reminder.user_id == stale[2]).values(shown_at=OPENED, email_at=OPENED)
    )
    db.session.commit()
    assert [item.user_id for item in escalate(OPENED + DAY, batch=2)] == [fresh]
    assert db.session.scalar(sa.select(sa.func.count()).where(Reminder.email_at.is_not(None))) == 0


def test_recording_showings_marks_each_once_and_cancels_only_queued_mail(either_db_app):
    """PostgreSQL marks the showings and cancels their queued mail in one statement (issue 16);
    both databases must end the same: a showing kept from its first time, queued mail cancelled,
    mail already sent left alone, and the admins told once per batch that changed something."""
    from webapp.models import ADMINS_CHANNEL
    from webapp.reminders.escalation import record_shown

    app = either_db_app
    with app.app_context():
        users = [_user(f"user{n}@example.com") for n in range(4)]
        lifecycle.scan(OPENED)
        earlier, queued, sent, plain = (_reminder(user_id) for user_id in users)
        earlier.shown_at = OPENED + timedelta(minutes=5)
        for reminder, status in ((queued, "queued"), (sent, "sent")):
            db.session.add(
                QueuedMail(
                    kind="reminder",
                    user_id=reminder.user_id,
                    reminder_id=reminder.id,
                    to_address="someone@example.com",
                    subject="s",
                    body_text="t",
                    body_html="h",
                    message_id=f"<{reminder.id}@example.com>",
                    status=status,
                    due_at=OPENED + DAY if status == "queued" else None,
                )
            )
        db.session.commit()
        ids = [earlier.id, queued.id, sent.id, plain.id]
        admins_before = _outbox_count(ADMINS_CHANNEL)

        shown_at = OPENED + timedelta(hours=1)
        record_shown(*ids, now=shown_at)
        db.session.expire_all()
        rows = {r.id: r for r in db.session.scalars(sa.select(Reminder).where(Reminder.id.in_(ids)))}
        assert rows[earlier.id].shown_at == OPENED + timedelta(minutes=5)  # its first time kept
        assert [rows[i].shown_at for i in ids[1:]] == [shown_at] * 3
        assert [rows[i].email_at for i in ids[1:]] == [None] * 3
        assert [(m.reminder_id, m.status, m.due_at) for m in _mail()] == [
            (queued.id, "cancelled", None),
            (sent.id, "sent", None),
        ]
        assert _outbox_count(ADMINS_CHANNEL) == admins_before + 1

        record_shown(*ids, now=shown_at + DAY)  # all shown already: nothing changes, nobody told
        db.session.expire_all()
        assert rows[plain.id].shown_at == shown_at
        assert _outbox_count(ADMINS_CHANNEL) == admins_before + 1


def _outbox_count(channel: str) -> int | None:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(OutboxEvent).where(OutboxEvent.channel == channel)
    )
