"""The app in a real browser: the demo's dashboard and tour, and the dashboard on a folder of data."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest

from ..browser.browser_helpers import CHROMIUM, CHROMIUM_ARGS, wait_views
from .app_helpers import port_is_open, wait_until
from .conftest import DATA_SHAPE

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
#: Limit for the page to show something (a wait, not a speed check).
PAGE_TIMEOUT_MS = 120_000


@pytest.fixture
def browser_page(tmp_path: Path, request: pytest.FixtureRequest):
    """A Chromium page (fresh profile); a screenshot goes to test-artifacts/ if the test fails."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; run bash scripts/install.sh")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True,
        )
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            yield page
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is None or report.failed:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            context.close()


def assert_no_code_and_no_traceback(page) -> None:
    """Voila shows the app only: no code cell, no source, no Python traceback."""
    body = page.inner_text("body")
    assert page.locator(".jp-InputArea-editor").count() == 0
    assert "Traceback" not in body and "import" not in body


@pytest.mark.browser
@pytest.mark.slow
def test_demo_opens_the_dashboard(demo, browser_page) -> None:
    page = browser_page
    page.goto(demo.url)
    wait_views(page, 3, timeout=PAGE_TIMEOUT_MS / 1000)  # diffraction + two virtual images, painted
    info = page.locator(".fw-dashboard-info")
    assert "built-in sample" in info.inner_text() and "scan 64 x 64, detector 128 x 128" in info.inner_text()
    assert page.locator(".fw-dashboard-chooser").count() == 0  # no folder: no file chooser
    assert_no_code_and_no_traceback(page)

    # Ctrl-C: the demo stops Voila and exits cleanly.
    assert demo.signal(signal.SIGINT) == 0
    assert "stopped." in demo.rest_outputs()
    assert not port_is_open(demo.port)


@pytest.mark.browser
@pytest.mark.slow
def test_demo_lab_opens_the_tour_in_jupyterlab(demo_lab, browser_page) -> None:
    demo = demo_lab
    page = browser_page
    page.goto(demo.url)
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="tour.ipynb")
    tab.first.wait_for(state="visible")
    assert "lm-mod-current" in (tab.first.get_attribute("class") or "")
    heading = page.locator(".jp-NotebookPanel:visible .jp-RenderedMarkdown h1")
    heading.first.wait_for(state="visible")
    assert heading.first.inner_text().strip().startswith("A tour of fourd_widgets")

    # The Python side: opening the notebook started a python3 kernel for it.
    def sessions() -> list:
        url = f"http://127.0.0.1:{demo.port}/api/sessions?token={demo.token}"
        with urllib.request.urlopen(url, timeout=60) as response:
            return json.load(response)

    found = wait_until(sessions, timeout=PAGE_TIMEOUT_MS / 1000)
    assert [(s["name"], s["type"], s["kernel"]["name"]) for s in found] == [
        ("tour.ipynb", "notebook", "python3")]

    assert demo.signal(signal.SIGTERM) == 0
    assert not port_is_open(demo.port)


def chooser_options(page) -> list[str]:
    select = page.locator(".fw-dashboard-chooser select")
    select.wait_for(state="visible")
    return [o.strip() for o in select.locator("option").all_inner_texts()]


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_lists_the_folder_and_opens_a_file(dashboard, browser_page) -> None:
    page = browser_page
    page.goto(dashboard.url)
    # Only the files inside the folder: not the file beside it, nor the link to that file.
    assert chooser_options(page) == ["broken.h5", "scans/good.h5"]
    page.locator(".fw-dashboard-chooser select").select_option("scans/good.h5")
    wait_views(page, 3, timeout=PAGE_TIMEOUT_MS / 1000)
    rx, ry, qx, qy = DATA_SHAPE
    info = page.locator(".fw-dashboard-info").inner_text()
    assert f"scans/good.h5: scan {rx} x {ry}, detector {qx} x {qy}, uint16" in info
    assert page.locator(".fw-dashboard-error").count() == 0
    assert_no_code_and_no_traceback(page)


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_shows_a_corrupt_file_as_a_message(dashboard, browser_page) -> None:
    page = browser_page
    page.goto(dashboard.url)
    assert "broken.h5" in chooser_options(page)
    page.locator(".fw-dashboard-chooser select").select_option("broken.h5")
    error = page.locator(".fw-dashboard-error")
    error.wait_for(state="visible")
    assert "broken.h5" in error.inner_text()
    assert page.locator(".fw-view").count() == 0  # no explorer for a file that did not open
    assert_no_code_and_no_traceback(page)
    assert dashboard.signal(signal.SIGTERM) == 0
    assert not port_is_open(dashboard.port)
