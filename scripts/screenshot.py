"""Take the README's dashboard screenshot from a running Weigh-in with Debian's Chromium.

Usage: .venv/bin/python scripts/screenshot.py URL EMAIL PASSWORD [OUT.png]
(for example against `./scripts/run` with a demo user it printed).
"""

import sys

from playwright.sync_api import sync_playwright


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    url, email, password = sys.argv[1:4]
    out = sys.argv[4] if len(sys.argv) > 4 else "docs/dashboard.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(f"{url.rstrip('/')}/account/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/dashboard")
        page.wait_for_timeout(1000)
        page.screenshot(path=out, full_page=True)
        browser.close()
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
