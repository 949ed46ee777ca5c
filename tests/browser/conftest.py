"""Fixtures of the browser tests: JupyterLab and Voila servers, Chromium, screenshots of failures."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, start_lab, start_voila  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found")


@pytest.fixture(scope="session")
def notebook_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser_notebooks")


def _serve(start, root: Path, home: Path):
    _need_chromium()
    server = start(root, home)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def lab(notebook_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """JupyterLab on a free port of 127.0.0.1, no token, serving ``notebook_root``."""
    yield from _serve(start_lab, notebook_root, tmp_path_factory.mktemp("lab_home"))


@pytest.fixture(scope="session")
def voila(notebook_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """Voila on a free port of 127.0.0.1 serving ``notebook_root`` (code cells stripped)."""
    yield from _serve(start_voila, notebook_root, tmp_path_factory.mktemp("voila_home"))


@pytest.fixture(scope="session")
def browser():
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest):
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    pg = context.new_page()
    pg.set_default_timeout(90_000)
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    try:
        yield pg
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
            try:
                pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            except Exception:  # the page may be gone; the console log still helps
                pass
            (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(console))
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep the call-phase report on the item, so the page fixture can screenshot failures."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep
