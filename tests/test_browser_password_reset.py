"""Forgotten password, end to end in Debian's Chromium: the form, the message as a real SMTP server
(aiosmtpd) received it, its link, the new password, logged in; the old password and the used link
refused."""

from __future__ import annotations

import re

import pytest

from .support import Seeder, free_port

pytestmark = pytest.mark.browser

OLD_PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple 42"


@pytest.fixture
def server(make_server, smtp_server):
    port = free_port()
    return make_server(
        PORT=port, PUBLIC_URL=f"http://127.0.0.1:{port}", MAIL_URL=smtp_server.url, MAIL_SEND_INTERVAL=1
    )


def _log_in(page, server, password: str) -> None:
    page.goto(f"{server.url}/account/login")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_forgotten_password_to_logged_in_with_a_new_one(browser, server, smtp_server):
    from playwright.sync_api import expect

    seeder = Seeder(server)
    try:
        seeder.user("ada@example.com", password=OLD_PASSWORD)
    finally:
        seeder.close()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server.url}/account/login")
        page.get_by_role("link", name="Forgot your password?").click()
        page.get_by_label("Email").fill("ada@example.com")
        page.get_by_role("button", name="Send me a link").click()
        expect(page.get_by_role("status")).to_contain_text("we have sent it a link")

        (message,) = smtp_server.wait_for_messages(1)
        assert message["To"] == "ada@example.com"
        text = message.get_body(("plain",)).get_content()
        link = re.search(rf"{re.escape(server.url)}/account/reset/\S+", text).group(0)

        page.goto(link)
        page.get_by_label("New password").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Set password and log in").click()
        expect(page).to_have_url(f"{server.url}/dashboard")
        expect(page.get_by_text("Your new password is set, and you are logged in.")).to_be_visible()

        # The used link is refused, with a way to ask for another.
        page.goto(link)
        expect(page.get_by_role("alert")).to_contain_text("not valid, or it has been used already")
        expect(page.get_by_role("link", name="Ask for a new link")).to_be_visible()
    finally:
        context.close()

    other = browser.new_context()
    try:
        page = other.new_page()
        _log_in(page, server, OLD_PASSWORD)
        expect(page.get_by_role("alert")).to_contain_text("That email and password do not match an account.")
        _log_in(page, server, NEW_PASSWORD)
        expect(page).to_have_url(f"{server.url}/dashboard")
    finally:
        other.close()
