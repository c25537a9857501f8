"""In Debian's Chromium: a password change logs another browser out; export, delete, sign up, import."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.browser

EMAIL = "ada@example.com"
PASSWORD = "correct horse battery"
NEW_PASSWORD = "battery staple horse"


def sign_up(page, url):
    from playwright.sync_api import expect

    page.goto(f"{url}/account/signup")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("#content form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))


def log_in(page, url, password):
    page.goto(f"{url}/account/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(password)
    page.locator("#content form button[type=submit]").click()


def test_a_password_change_logs_the_other_browser_out(make_server, browser):
    from playwright.sync_api import expect

    server = make_server("password")
    mine, other = browser.new_context(), browser.new_context()
    try:
        page, elsewhere = mine.new_page(), other.new_page()
        for tab in (page, elsewhere):
            tab.set_default_timeout(15_000)
        sign_up(page, server.url)
        log_in(elsewhere, server.url, PASSWORD)
        expect(elsewhere).to_have_url(re.compile(r"/dashboard$"))

        page.goto(f"{server.url}/account/settings")
        page.get_by_role("link", name="Change password").click()
        page.get_by_label("Current password").fill(PASSWORD)
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("Confirm new password").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_text("Your password is changed.")).to_be_visible()

        elsewhere.goto(f"{server.url}/dashboard")
        expect(elsewhere).to_have_url(re.compile(r"/account/login"))
        log_in(elsewhere, server.url, PASSWORD)
        expect(elsewhere.get_by_text("That email and password do not match an account.")).to_be_visible()
        log_in(elsewhere, server.url, NEW_PASSWORD)
        expect(elsewhere).to_have_url(re.compile(r"/dashboard$"))
        page.goto(f"{server.url}/dashboard")
        expect(page).to_have_url(re.compile(r"/dashboard$"))  # the browser that changed it stays in
    finally:
        mine.close()
        other.close()


def test_export_delete_sign_up_again_and_import_gives_the_same_history(make_server, browser, tmp_path):
    from playwright.sync_api import expect

    server = make_server("roundtrip")
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_up(page, server.url)
        now = datetime.now(UTC)  # the new user's zone is UTC
        for weight, days_ago, shown in (("80", 3, "80.0"), ("79,5", 2, "79.5"), ("79.25", 1, "79.25")):
            form = page.locator("#quick-add")
            form.get_by_label("Weight").fill(weight)
            when = form.get_by_label("Date and time")
            if not when.is_visible():
                form.locator("summary").click()
            when.fill((now - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M"))
            form.get_by_role("button", name="Log weight").click()
            expect(page.locator("#dashboard-live [role=status]")).to_contain_text(f"Logged {shown} kg")
        page.goto(f"{server.url}/entries")
        before = page.locator("table.entries tbody").inner_text()

        with page.expect_download() as download:
            page.get_by_role("link", name="Export CSV").click()
        exported = tmp_path / "export.csv"
        download.value.save_as(exported)

        page.goto(f"{server.url}/account/settings")
        page.get_by_role("link", name="Delete my account").click()
        expect(page.locator("#what-goes")).to_contain_text("3 weight entries")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Delete my account and everything in it").click()
        expect(page).to_have_url(re.compile(r"/account/signup$"))

        sign_up(page, server.url)
        page.goto(f"{server.url}/entries")
        page.get_by_role("link", name="Import CSV").click()
        page.get_by_label("CSV file").set_input_files(str(exported))
        page.get_by_role("button", name="Show what will be imported").click()
        expect(page.locator('[data-count="added"] strong')).to_have_text("3")
        page.get_by_role("button", name="Import 3 entries").click()
        expect(page.get_by_text("Imported 3 entries.")).to_be_visible()
        assert page.locator("table.entries tbody").inner_text() == before
    finally:
        context.close()
