"""Draw the app's PNG icons and favicon from static/icons/*.svg with Debian's Chromium.

Usage: .venv/bin/python scripts/icons.py   (run after changing an SVG; commit the files it writes)
"""

import io
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ICONS = Path(__file__).resolve().parent.parent / "static" / "icons"
# (source SVG, output file, size in px)
OUTPUTS = [
    ("icon.svg", "icon-192.png", 192),
    ("icon.svg", "icon-512.png", 512),
    ("icon-maskable.svg", "icon-maskable-512.png", 512),
    ("icon-maskable.svg", "apple-touch-icon.png", 180),
    ("icon.svg", "favicon-48.png", 48),
]


def render(page, svg: str, size: int) -> bytes:
    page.set_viewport_size({"width": size, "height": size})
    page.set_content(
        f'<html><body style="margin:0;background:transparent">'
        f'<img src="data:image/svg+xml;base64,{svg}" width="{size}" height="{size}" style="display:block">'
        "</body></html>"
    )
    return page.screenshot(omit_background=True, clip={"x": 0, "y": 0, "width": size, "height": size})


def main() -> None:
    import base64

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        for source, output, size in OUTPUTS:
            svg = base64.b64encode((ICONS / source).read_bytes()).decode()
            (ICONS / output).write_bytes(render(page, svg, size))
            print(f"wrote static/icons/{output}")
        browser.close()
    favicon = Image.open(io.BytesIO((ICONS / "favicon-48.png").read_bytes()))
    favicon.save(ICONS / "favicon.ico", sizes=[(16, 16), (32, 32), (48, 48)])
    (ICONS / "favicon-48.png").unlink()
    print("wrote static/icons/favicon.ico")


if __name__ == "__main__":
    main()
