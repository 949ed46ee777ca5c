"""The demo in a real browser: JupyterLab opens with the tour notebook, and Ctrl-C stops it."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest

from .app_helpers import port_is_open, wait_until

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
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
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
            context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_demo_opens_the_tour_in_jupyterlab(demo, browser_page) -> None:
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

    # Ctrl-C: the demo stops JupyterLab and exits cleanly.
    assert demo.signal(signal.SIGINT) == 0
    assert "stopped." in demo.rest_outputs()
    assert not port_is_open(demo.port)
