"""Fixtures of the application tests: a sample HDF5 file, the CLI, a running demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from .app_helpers import DemoProcess, run_cli
from fourd_widgets.app.demo import DEMO_SAMPLE, free_port, prepare_demo


@pytest.fixture(scope="session")
def run_app():
    """:func:`run_cli`, for tests: ``run_app("info", path)``."""
    return run_cli


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo folder filled once per session by :func:`prepare_demo` (sample data + tour)."""
    folder = tmp_path_factory.mktemp("demo") / "demo"
    prepare_demo(folder)
    return folder


@pytest.fixture(scope="session")
def sample_h5(demo_folder: Path) -> Path:
    """The demo's sample data, as the demo wrote it to HDF5."""
    return demo_folder / f"{DEMO_SAMPLE}.h5"


@pytest.fixture
def demo(demo_folder: Path):
    """``fourd-widgets demo`` serving the session's demo folder on a free port; stopped afterwards."""
    running = DemoProcess(demo_folder, free_port())
    try:
        yield running
    finally:
        running.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the test item (``item.rep_call``), for screenshots on failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
