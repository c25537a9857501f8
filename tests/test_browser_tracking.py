"""In Debian's Chromium: sign up, log three weights with the quick-add form, set a goal, see it all, log out."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

pytestmark = pytest.mark.browser


def test_log_weights_set_goal_and_see_them_on_the_dashboard(make_server, browser):
    from playwright.sync_api import expect

    server = make_server("tracking")  # the real app: gevent server, migrated SQLite, CSRF on
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(f"{server.url}/account/signup")
        page.get_by_label("Email").fill("ada@example.com")
        page.get_by_label("Password").fill("correct horse battery")
        page.locator("#content form button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/dashboard$"))
        page.wait_for_function("() => window.htmx !== undefined")
        # A page reload would lose this; the quick-add must swap in place.
        page.evaluate("() => { window.__stillTheSamePage = true }")

        # The quick-add's own "now", in the new user's zone: sign-up guesses the zone from the
        # browser's Accept-Language (en-US: New York), so UTC days would put "yesterday" on the
        # same local day as today for five hours of every night.
        now = datetime.fromisoformat(page.locator("#measured_at_default").input_value())
        for weight, days_ago, shown in [
            ("80", 2, "80.0 kg"),
            ("79,5", 1, "79.5 kg"),
            ("79.2", 0, "79.2 kg"),
        ]:
            form = page.locator("#quick-add")
            form.get_by_label("Weight").fill(weight)
            if days_ago:
                form.locator("summary").click()
                when = (now - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M")
                form.get_by_label("Date and time").fill(when)
            form.get_by_role("button", name="Log weight").click()
            expect(page.locator("#dashboard-live [role=status]")).to_have_text(f"Logged {shown}.")
        assert page.evaluate("() => window.__stillTheSamePage") is True
        expect(page.locator("table.entries tbody tr")).to_have_count(3)
        expect(page.locator("#stat-latest")).to_contain_text("79.2 kg")

        page.get_by_role("link", name="Set a goal").click()
        page.get_by_label("Goal weight").fill("75")
        page.get_by_role("button", name="Save goal").click()
        expect(page).to_have_url(re.compile(r"/dashboard$"))
        expect(page.locator("#stat-goal")).to_contain_text("75.0 kg")
        expect(page.locator("#stat-goal")).to_contain_text("to lose")

        chart = page.locator("svg#weight-chart")
        expect(chart.locator("circle.weight-dot")).to_have_count(3)
        expect(chart.locator("polyline.trend-line")).to_have_count(1)
        expect(chart.locator("line.goal-line")).to_have_count(1)
        expect(chart.locator("desc")).to_contain_text("Goal 75.0 kg")
        assert chart.bounding_box()["width"] > 200  # drawn, not collapsed

        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(re.compile(r"/account/login$"))
        expect(page.get_by_text("You have logged out.")).to_be_visible()
    finally:
        context.close()
