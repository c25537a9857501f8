"""The phone: an installable app (manifest, icons, favicon) and a dashboard that starts with the
weight field at 390 x 844, in English and Korean, light and dark, in Chromium."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from PIL import Image

from .support import ROOT, seed_pages

PHONE = {"width": 390, "height": 844}
# Screenshots of every phone check land here (CI keeps the folder as the run's artefacts).
ARTEFACTS = Path(os.environ.get("WEIGHIN_ARTEFACTS", ROOT / "test-artefacts"))


def test_manifest_makes_the_app_installable(client):
    response = client.get("/manifest.webmanifest", headers={"Accept-Language": "ko-KR"})
    assert response.status_code == 200
    assert response.mimetype == "application/manifest+json"
    manifest = response.json
    assert manifest["name"] == "Weigh-in" and manifest["short_name"] == "Weigh-in"
    assert manifest["start_url"] == "/dashboard" and manifest["display"] == "standalone"
    assert manifest["lang"] == "ko" and "체중" in manifest["description"]
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["theme_color"])
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["background_color"])
    sizes = {(icon["sizes"], icon["purpose"]) for icon in manifest["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes
    for icon in manifest["icons"]:
        image = client.get(icon["src"])
        assert image.status_code == 200 and image.mimetype == "image/png"
        side = int(icon["sizes"].split("x")[0])
        path = ROOT / icon["src"].lstrip("/")
        image.close()
        with Image.open(path) as drawn:
            assert drawn.size == (side, side)


def test_favicon_and_touch_icon_are_served(client):
    favicon = client.get("/favicon.ico")
    assert favicon.status_code == 200 and favicon.mimetype in {"image/x-icon", "image/vnd.microsoft.icon"}
    favicon.close()
    page = client.get("/account/login").get_data(as_text=True)
    assert '<link rel="manifest" href="/manifest.webmanifest">' in page
    assert 'rel="apple-touch-icon"' in page
    assert page.count('name="theme-color"') == 2  # one for each colour scheme
    for href in re.findall(r'<link rel="(?:icon|apple-touch-icon)" href="([^"]+)"', page):
        served = client.get(href)
        assert served.status_code == 200
        served.close()


# The outermost elements that reach past the screen's right edge, to say what to fix.
WIDEST_ELEMENTS = """(limit) => [...document.querySelectorAll("body *")]
  .filter(e => e.getBoundingClientRect().right > limit + 1
    && !(e.parentElement && e.parentElement.getBoundingClientRect().right > limit + 1))
  .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + "." + [...e.classList].join(".")
    + " " + Math.round(e.getBoundingClientRect().right) + "px")"""


def _sign_up(page, url: str) -> None:
    page.goto(f"{url}/account/signup")
    page.locator("input[name=email]").fill("min@example.com")
    page.locator("input[name=password]").fill("correct horse battery")
    page.locator("#content form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/dashboard$"))


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_new_korean_user_on_a_phone_sees_the_weight_field_first(make_server, browser, scheme):
    from playwright.sync_api import expect

    server = make_server(f"phone-{scheme}")
    context = browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="ko-KR",
        color_scheme=scheme,
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(f"{server.url}/account/signup")
        expect(page.locator("html")).to_have_attribute("lang", "ko")
        # The zone comes from the browser's language, in a select the person can see and change.
        expect(page.get_by_label("시간대")).to_have_value("Asia/Seoul")
        _sign_up(page, server.url)
        expect(page.get_by_role("heading", name="체중 기록하기")).to_be_visible()
        weight = page.get_by_label("체중", exact=True)
        assert weight.get_attribute("inputmode") == "decimal"
        box = weight.bounding_box()
        assert box["y"] + box["height"] <= PHONE["height"], "the weight field is below the first screen"
        assert box["height"] >= 44, "the weight field is too small to tap"
        button = page.get_by_role("button", name="기록하기")
        assert button.bounding_box()["height"] >= 44
        assert page.locator("#stat-latest").count() == 0  # no empty cards for a new user
        assert page.evaluate("() => document.scrollingElement.scrollWidth") <= PHONE["width"]
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTEFACTS / f"phone-dashboard-new-ko-{scheme}.png", full_page=True)

        weight.fill("72,5")
        button.click()
        expect(page.locator("#quick-add-message")).to_have_text("기록했습니다: 72.5 kg")
        expect(weight).to_have_value("")
        expect(page.locator("#stat-latest")).to_contain_text("72.5 kg")
        assert page.evaluate("() => document.scrollingElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=ARTEFACTS / f"phone-dashboard-ko-{scheme}.png", full_page=True)
    finally:
        context.close()


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_a_phone_without_sideways_scrolling(make_server, browser, scheme):
    server = make_server(f"phone-pages-{scheme}")
    cookies, entry_id = seed_pages(server)
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, color_scheme=scheme)
    context.add_cookies([{"name": "session", "value": cookies["admin"], "url": server.url}])
    page = context.new_page()
    page.set_default_timeout(15_000)
    too_wide = []
    try:
        for name, path in [
            ("dashboard", "/dashboard"),
            ("history", "/entries"),
            ("edit", f"/entries/{entry_id}/edit"),
            ("goal", "/goal"),
            ("settings", "/account/settings"),
            ("admin", "/admin/"),
            ("admins", "/admin/admins"),
        ]:
            page.goto(server.url + path)
            ARTEFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=ARTEFACTS / f"phone-{name}-{scheme}.png", full_page=True)
            width = page.evaluate("() => document.scrollingElement.scrollWidth")
            if width > PHONE["width"]:
                widest = page.evaluate(WIDEST_ELEMENTS, PHONE["width"])
                too_wide.append(f"{path}: {width} px ({'; '.join(widest)})")
            # The navigation stays within the screen's width.
            nav = page.locator("header nav").bounding_box()
            assert nav["x"] + nav["width"] <= PHONE["width"] + 1, path
    finally:
        context.close()
    assert not too_wide, "pages wider than the phone: " + ", ".join(too_wide)
