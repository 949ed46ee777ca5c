"""Fixtures of the application tests: a sample HDF5 file, the CLI, a running demo or dashboard."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import fourd_widgets as fw
from .app_helpers import AppProcess, DemoProcess, run_cli
from fourd_widgets.app.demo import DEMO_SAMPLE, free_port, prepare_demo, write_cube_h5

#: Shape of the cube written into the dashboard's folder.
DATA_SHAPE = (8, 9, 32, 32)


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


def _running(process_factory):
    running = process_factory()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def demo(demo_folder: Path):
    """``fourd-widgets demo`` (the dashboard) on the session's demo folder, a free port; stopped afterwards."""
    yield from _running(lambda: DemoProcess(demo_folder, free_port()))


@pytest.fixture
def demo_lab(demo_folder: Path):
    """``fourd-widgets demo --lab`` (JupyterLab and the tour) on the session's demo folder; stopped afterwards."""
    yield from _running(lambda: DemoProcess(demo_folder, free_port(), "--lab"))


@pytest.fixture(scope="session")
def data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the dashboard: a small cube in a sub-folder, a corrupt file, a link and a file outside.

    ``data/scans/good.h5`` holds a :data:`DATA_SHAPE` cube; ``data/broken.h5`` is
    not HDF5; ``data/escape.h5`` links to ``outside.h5``, next to ``data/``.
    """
    base = tmp_path_factory.mktemp("dashboard")
    folder = base / "data"
    (folder / "scans").mkdir(parents=True)
    rng = np.random.default_rng(3)
    cube = fw.DataCube(rng.poisson(4.0, size=DATA_SHAPE).astype(np.uint16),
                       fw.Calibration(real_step=1.0, reciprocal_step=0.02, origin=(16.0, 16.0)))
    write_cube_h5(cube, folder / "scans" / "good.h5")
    write_cube_h5(cube, base / "outside.h5")
    (folder / "broken.h5").write_bytes(b"this is not an HDF5 file\n" * 10)
    (folder / "notes.txt").write_text("not data")
    os.symlink(base / "outside.h5", folder / "escape.h5")
    return folder


@pytest.fixture
def dashboard(data_folder: Path):
    """``fourd-widgets dashboard DATA`` on a free port; stopped afterwards."""
    out = data_folder.parent / "out"  # never the default ./fourd-widgets-out of the test's working folder
    yield from _running(lambda: AppProcess(["dashboard", str(data_folder), "--out", str(out)], free_port()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the test item (``item.rep_call``), for screenshots on failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
