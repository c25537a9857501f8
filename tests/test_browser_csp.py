"""Every page under the strict Content-Security-Policy in Chromium (issue 11): htmx, the live
banner and quick-add work, and the browser reports no violation at all."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

PAGES = [
    "/dashboard",
    "/entries",
    "/goal",
    "/entries/import",
    "/account/settings",
    "/account/password",
    "/account/email",
    "/account/delete",
    "/admin/",
    "/admin/admins",
]
ANONYMOUS_PAGES = ["/account/login", "/account/signup", "/account/forgot"]


@pytest.fixture
def server(make_server):
    return make_server(SSE_HEARTBEAT=2)


def _watch(page, violations: list[str]) -> None:
    # Chromium reports each refused script, style, frame or connection as a console error.
    def note(message) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.on("console", note)


def test_no_page_breaks_the_content_security_policy(browser, server, seeder):
    from playwright.sync_api import expect

    violations: list[str] = []
    admin = seeder.user("ada@example.com", days_ago=10, admin=True)
    anonymous = browser.new_context()
    context = browser.new_context()
    try:
        page = anonymous.new_page()
        _watch(page, violations)
        for path in ANONYMOUS_PAGES:
            page.goto(server.url + path)
            expect(page.get_by_label("Email")).to_be_visible()

        context.add_cookies([{"name": "session", "value": seeder.cookie(admin), "url": server.url}])
        page = context.new_page()
        _watch(page, violations)
        for path in PAGES:
            response = page.goto(server.url + path)
            assert response is not None and response.status == 200, path
            assert response.headers["content-security-policy"].startswith("default-src 'self'")

        # The live banner arrives over the stream, and its Dismiss works with the page's token.
        page.goto(server.url + "/dashboard")
        page.wait_for_function(
            "() => document.querySelector('#reminder-area')?._htmx?.sse?.status === 200", timeout=15_000
        )
        seeder.scan()
        banner = page.locator("#reminder-area #reminder-banner")
        expect(banner).to_be_visible(timeout=5_000)
        banner.get_by_role("button", name="Dismiss").click()
        expect(banner).to_have_count(0, timeout=5_000)

        # Quick-add posts with htmx and swaps the dashboard in place.
        form = page.locator("#quick-add")
        form.get_by_label("Weight").fill("71.5")
        form.get_by_role("button", name="Log weight").click()
        expect(page.locator("#dashboard-live [role=status]")).to_have_text("Logged 71.5 kg.")
    finally:
        anonymous.close()
        context.close()
    assert violations == []
