"""The admin page in Debian's Chromium: it keeps itself current over /events, and "remind now" reaches
the user's open page live. A real gevent server runs as a subprocess; the CLI runs with its env."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta

import pytest

from webapp.timeutil import utcnow

from .support import flask_cli

pytestmark = pytest.mark.browser

ADMIN = ("boss@example.com", "boss-password")
QUIET = ("quiet@example.com", "quiet-password")
TIMEOUT_MS = 15000


def _backdate(env: dict, email: str, days: int) -> None:
    """Move a user's sign-up and activity clocks into the past, as if they had been quiet since.

    Written straight to the server's SQLite file: it announces nothing, exactly like time passing,
    so the admin page can only learn of it from the next scan.
    """
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    then = (utcnow() - timedelta(days=days)).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    with sqlite3.connect(path) as conn:
        changed = conn.execute(
            "UPDATE users SET created_at = ?, last_active_at = ?, reminder_clock = ? WHERE email = ?",
            (then, then, then, email),
        ).rowcount
    assert changed == 1


def _log_in(page, url, email, password, next_path):
    page.goto(f"{url}/account/login?next={next_path}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.locator("#content").get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_path}")


# The button reads "Remind now" and names the user in visually hidden text after it ("for ..."), so
# the accessible name starts with what is visible; Chromium may double the space before the span.
REMIND_QUIET = re.compile(r"^Remind now\s+for quiet@example\.com$")


def test_admin_page_is_live_and_remind_now_reaches_the_user(make_server, browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    server = make_server("admin-live", SSE_HEARTBEAT=1)
    flask_cli(["create-admin", ADMIN[0], "--password-stdin"], server.env, input=ADMIN[1] + "\n")

    user_context = browser.new_context()
    admin_context = browser.new_context()
    try:
        # The user signs up and keeps their dashboard open.
        user_page = user_context.new_page()
        user_page.goto(f"{server.url}/account/signup")
        user_page.get_by_label("Email").fill(QUIET[0])
        user_page.get_by_label("Password").fill(QUIET[1])
        user_page.locator("#content").get_by_role("button", name="Sign up").click()
        user_page.wait_for_url("**/dashboard")
        banner = user_page.locator("#reminder-banner")
        expect(banner).to_have_count(0)

        admin_page = admin_context.new_page()
        # The stream's first snapshot makes the page refresh its live part once: waiting for that
        # proves the page is connected, so what follows is news, not the first snapshot.
        with admin_page.expect_response(lambda response: "/admin/live" in response.url, timeout=TIMEOUT_MS):
            _log_in(admin_page, server.url, *ADMIN, next_path="/admin/")
        table = admin_page.locator("#inactive-users")
        row = admin_page.locator('tr[data-user-email="quiet@example.com"]')
        expect(table).to_be_visible()
        expect(row).to_have_count(0)

        # Time passes (ten quiet days); then a scan notices and announces it: the row appears.
        _backdate(server.env, QUIET[0], days=10)
        expect(row).to_have_count(0)
        later = (utcnow() + timedelta(minutes=1)).isoformat()
        scan = flask_cli(["reminders", "scan", "--now", later], server.env)
        assert "1 reminder(s) opened" in scan.stdout
        expect(row).to_have_count(1)
        expect(row.locator(".reminder-state")).to_have_text("open")
        expect(admin_page.locator("#count-inactive")).to_have_text("1")
        expect(admin_page.locator("#count-open")).to_have_text("1")

        # The scan's banner reached the user's page; they dismiss it and the admin row follows.
        expect(banner).to_be_visible()
        user_page.get_by_role("button", name="Dismiss").click()
        expect(banner).to_have_count(0)
        expect(row.locator(".reminder-state")).to_have_text("dismissed")
        expect(admin_page.locator("#count-dismissed")).to_have_text("1")

        # Remind now: the banner is back on the user's open page at once, once only.
        admin_page.get_by_role("button", name=REMIND_QUIET).click()
        expect(admin_page.locator("#admin-status")).to_contain_text("Reminder sent to quiet@example.com")
        expect(banner).to_be_visible()
        expect(banner).to_have_count(1)
        expect(row.locator(".reminder-state")).to_have_text("open")
        expect(row).to_contain_text("sent by boss@example.com")
        expect(admin_page.locator("#recent-reminders")).to_contain_text("reminded quiet@example.com")

        # Pressing it again shows the open reminder again: still one banner, one open reminder.
        admin_page.get_by_role("button", name=REMIND_QUIET).click()
        expect(admin_page.locator("#admin-status")).to_contain_text("already had an open reminder")
        expect(banner).to_have_count(1)
        expect(admin_page.locator("#count-open")).to_have_text("1")

        # The user logs a weight: the banner goes and they leave the admin's table.
        user_page.get_by_role("textbox", name="Weight", exact=True).fill("72.5")
        user_page.get_by_role("button", name="Log weight").click()
        expect(banner).to_have_count(0)
        expect(row).to_have_count(0)
        expect(admin_page.locator("#count-inactive")).to_have_text("0")
        expect(admin_page.locator("#count-open")).to_have_text("0")
    finally:
        user_context.close()
        admin_context.close()
