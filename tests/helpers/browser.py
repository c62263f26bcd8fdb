"""Pages opened in a real browser: Debian's Chromium, headless, through its ChromeDriver
(``.ci/run`` installs both: packages chromium and chromium-driver)."""

from __future__ import annotations

import base64
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def need_browser() -> None:
    """Skip (saying why) where no Chromium is installed; fail instead where the environment
    says one must be (CI sets MER_RAY_REQUIRE_BROWSER=1 after installing it)."""
    missing = [p for p in (CHROMIUM, DRIVER) if not Path(p).exists()]
    if missing:
        why = (f"no {', '.join(missing)}: apt-get install chromium chromium-driver "
               f"(.ci/run does)")
        if os.environ.get("MER_RAY_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)


@contextmanager
def browser(width: int = 1280, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def visit(driver, page: Path) -> dict:
    """Open ``page`` (a file); returns its text, the console's errors (a resource that failed
    to load is one) and the images and style sheets that did not load."""
    driver.get(page.resolve().as_uri())
    broken = driver.execute_script(
        "const bad = [];"
        "for (const i of document.images) {"
        "  if (!i.complete || i.naturalWidth === 0) bad.push(i.getAttribute('src')); }"
        "for (const l of document.querySelectorAll('link[rel=stylesheet]')) {"
        "  if (!l.sheet) bad.push(l.getAttribute('href')); }"
        "return bad;")
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return {"text": driver.find_element("tag name", "body").text, "errors": errors,
            "broken": broken, "title": driver.title}


def screenshot(driver, out: Path) -> Path:
    """The whole page (beyond the window) as a PNG."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                 "scale": 1}})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    return out
