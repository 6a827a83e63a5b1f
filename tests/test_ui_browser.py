"""`maasctl ui` in a real browser: Debian's headless Chromium driven by Playwright (never `playwright install`).

Skipped, with the reason, only where Chromium or Playwright is missing (.ci/run installs both).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_ui import EPOCHS, RUN, add_run

from maasctl.serving.server import ServerThread
from maasctl.ui.app import UiApp

CHROMIUM = os.environ.get("MAASCTL_TEST_CHROMIUM", "/usr/bin/chromium")
OTHER = "20261123-130000-bbbbbb"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file() and not shutil.which(CHROMIUM):
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def site(store, models):
    store.register(models["small"], "blobs", aliases=["production"])
    store.register(models["small_b"], "blobs", aliases=["candidate", "staging"])
    store.register(models["multi"], "blobs")
    add_run(store)
    add_run(store, OTHER, epochs=4, lr=0.05)
    server = ServerThread(UiApp(store)).start()
    yield server.url, store
    server.stop()


def watch(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))
    return problems


def test_model_page_alias_move_run_curves(browser, site, tmp_path):
    url, store = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = watch(page)

    page.goto(url + "/models/blobs")
    rows = page.locator("table.versions tbody tr")
    assert rows.count() == 3
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(3)] == ["blobs@3", "blobs@2", "blobs@1"]
    aliases = dict(zip(page.locator("table.aliases tbody tr td:nth-child(1)").all_inner_texts(),
                       page.locator("table.aliases tbody tr td:nth-child(2)").all_inner_texts()))
    assert aliases == {"candidate": "blobs@2", "production": "blobs@1", "staging": "blobs@2"}
    page.screenshot(path=str(tmp_path / "model.png"), full_page=True)

    store.set_alias("blobs@3", "production")  # another process moves the alias; a reload shows it
    page.reload()
    production = page.locator("table.aliases tbody tr", has_text="production")
    assert production.locator("td").nth(1).inner_text() == "blobs@3"
    assert "1 → 3" in production.inner_text()

    # keyboard: the first Tab reaches the skip link, Enter on a focused version link opens it
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.locator("table.versions a[href=\"/models/blobs/2\"]").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(url + "/models/blobs/2")
    assert page.locator("h1").inner_text() == "blobs@2"

    page.goto(url + f"/runs/{RUN}")
    charts = page.locator("svg.chart")
    assert charts.count() == 2  # loss, accuracy
    for i in range(2):
        lines = charts.nth(i).locator("polyline")
        assert lines.count() == 2  # train and validation
        for j in range(2):
            assert len(lines.nth(j).get_attribute("points").split()) == EPOCHS
        assert charts.nth(i).locator("circle").count() == 2 * EPOCHS
        box = charts.nth(i).bounding_box()
        assert box and box["width"] > 200 and box["height"] > 100  # drawn, not collapsed
    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)

    # dark mode follows the system setting
    page.emulate_media(color_scheme="dark")
    page.reload()
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(13, 17, 23)"
    page.screenshot(path=str(tmp_path / "run-dark.png"), full_page=True)

    # compare two runs with the keyboard only: Space ticks a checkbox, Enter submits
    page.emulate_media(color_scheme="light")
    page.goto(url + "/runs")
    page.locator(f'input[value="{OTHER}"]').focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")  # the run's link
    page.keyboard.press("Tab")  # the next run's checkbox
    assert page.evaluate("document.activeElement.value") == RUN
    page.keyboard.press("Space")
    page.locator("form button").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/runs/compare?**")
    points = [len(p.split()) for p in page.locator("svg.chart polyline").evaluate_all(
        "els => els.map(e => e.getAttribute('points'))")]
    assert sorted(points) == [4, 4, EPOCHS, EPOCHS]
    assert page.locator("table.params tbody tr").all_inner_texts()[0].split() == ["train.epochs", "4", str(EPOCHS)]
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

    page.goto(url + "/models/nope")
    assert page.locator("h1").inner_text() == "404 Not found"
    problems = [p for p in problems if "404 (Not Found)" not in p]  # the 404 page itself is expected
    assert problems == []
    assert (tmp_path / "run.png").stat().st_size > 10_000
    page.close()
