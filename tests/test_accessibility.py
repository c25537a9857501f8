"""axe-core in Chromium over every page and state: zero violations of any impact.

Signed out, a new user, a user with data, the reminder banner, form errors, the admin pages and
an error page; light and dark; desktop and phone. axe-core comes from npm (`.ci/run` installs it
under .axe/, or AXE_CORE_PATH names axe.min.js); without it the test skips, and fails in CI.
"""

from __future__ import annotations

import os

import pytest

from .support import ROOT, seed_pages, unavailable

pytestmark = pytest.mark.browser

AXE = os.environ.get("AXE_CORE_PATH", str(ROOT / ".axe" / "node_modules" / "axe-core" / "axe.min.js"))
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
RUN_AXE = """async () => {
  // axe's default rules (WCAG 2 A and AA, best practices) and the experimental
  // label-content-name-mismatch: a control's accessible name must contain its visible text.
  const rules = {"label-content-name-mismatch": {enabled: true}};
  const result = await axe.run(document, {resultTypes: ["violations"], rules});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map(n => n.target.join(" ") + " :: " + n.failureSummary.replace(/\\s+/g, " ")),
  }));
}"""


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_has_no_axe_violations(make_server, browser, scheme, viewport):
    if not os.path.exists(AXE):
        unavailable(f"axe-core not found at {AXE} (npm install --prefix .axe axe-core, or set AXE_CORE_PATH)")
    server = make_server(f"axe-{scheme}-{viewport}")
    cookies, entry_id = seed_pages(server)
    found: list[str] = []

    def check(page, state: str) -> None:
        page.add_script_tag(path=AXE)
        for violation in page.evaluate(RUN_AXE):
            found.append(
                f"{state}: {violation['id']} ({violation['impact']}) {violation['help']}\n    "
                + "\n    ".join(violation["nodes"])
            )

    def visit(who: str | None, path: str, state: str, locale: str = "en-US"):
        # bypass_csp: the page's Content-Security-Policy would refuse the injected axe-core script.
        context = browser.new_context(
            viewport=VIEWPORTS[viewport], color_scheme=scheme, locale=locale, bypass_csp=True
        )
        if who:
            context.add_cookies([{"name": "session", "value": cookies[who], "url": server.url}])
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(server.url + path)
        check(page, state)
        return context, page

    pages = [
        (None, "/account/login", "signed out: log in"),
        (None, "/account/signup", "signed out: sign up"),
        (None, "/account/signup", "signed out: sign up in Korean", "ko-KR"),
        (None, "/account/forgot", "signed out: forgot password"),
        (None, "/no-such-page", "error page: 404"),
        ("new", "/dashboard", "new user: dashboard"),
        ("idle", "/dashboard", "banner showing: dashboard"),
        ("admin", "/dashboard", "user with data: dashboard"),
        ("admin", "/dashboard", "user with data: dashboard in Korean", "ko-KR"),
        ("admin", "/entries", "user with data: history"),
        ("admin", f"/entries/{entry_id}/edit", "user with data: edit entry"),
        ("admin", f"/entries/{entry_id}/delete", "user with data: delete entry"),
        ("admin", "/goal", "user with data: goal"),
        ("admin", "/account/settings", "settings"),
        ("admin", "/entries/import", "import"),
        ("admin", "/admin/", "admin: inactive users"),
        ("admin", "/admin/admins", "admin: manage admins"),
    ]
    for who, path, state, *locale in pages:
        context, _ = visit(who, path, state, *locale)
        context.close()

    # Form errors, as a person makes them.
    context, page = visit(None, "/account/signup", "signed out: sign up")
    page.locator("input[name=email]").fill("not an address")
    page.locator("#content form button[type=submit]").click()
    page.wait_for_selector(".field-error")
    check(page, "form errors: sign up")
    context.close()
    context, page = visit("admin", "/dashboard", "user with data: dashboard")
    page.wait_for_function("() => window.htmx !== undefined")
    page.locator("#quick-add input[name=weight]").fill("-3")
    page.locator("#quick-add button[type=submit]").click()
    page.wait_for_selector("#quick-add .field-error")
    check(page, "form errors: dashboard")
    # Keyboard focus on the form's button, where the focus ring must show.
    page.locator("#quick-add button[type=submit]").focus()
    check(page, "focused button: dashboard")
    context.close()

    report = "\n".join(dict.fromkeys(found))
    assert not found, f"axe-core found {len(found)} violations ({scheme}, {viewport}):\n{report}"
