"""Open a local HTML file in headless Chromium (Playwright driving the system's Chromium, e.g.
Debian's ``chromium`` package that ``.ci/run`` installs) and report what a reader would see:
a full-page screenshot, every console error and page error, and each image's loaded size."""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

# The flags the machine notes give for a closed network: no background connections, no sandbox as root.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def chromium_or_skip() -> str:
    """Path of a Chromium binary (``HMARL_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on
    PATH) with Playwright importable; skips the test with the reason otherwise."""
    path = os.environ.get("HMARL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium; .ci/run does it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright not installed (pip install -e '.[test]')")
    return path


def render(html_file: Path, chromium: str, width: int = 1200) -> dict:
    """``{"screenshot": PIL image, "errors": [...], "images": [{"alt", "complete", "width", "height"}]}``."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url[:80]}"))
            page.goto(Path(html_file).resolve().as_uri(), wait_until="load")
            images = page.evaluate("[...document.images].map(i => ({alt: i.alt, complete: i.complete,"
                                   " width: i.naturalWidth, height: i.naturalHeight}))")
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    return {"screenshot": Image.open(io.BytesIO(shot)).convert("RGB"), "errors": errors, "images": images}
