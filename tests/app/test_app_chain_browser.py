"""A non-programmer in the Voila dashboard: pick a file, explore -> disks -> calibration -> strain, save, replay."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.app.demo import free_port, write_cube_h5

from ..browser.browser_helpers import wait_views
from .app_helpers import AppProcess
from .test_app_browser import PAGE_TIMEOUT_MS, assert_no_code_and_no_traceback, browser_page  # noqa: F401


@pytest.fixture
def crystal_dashboard(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    cube, _truth = fw.datasets.sample("strained_crystal", small=True)
    write_cube_h5(cube, data / "crystal.h5")
    out = tmp_path / "out"
    app = AppProcess(["dashboard", str(data), "--out", str(out)], free_port())
    try:
        yield app, data, out
    finally:
        app.stop()


def open_tab(page, name: str) -> None:
    page.locator(".fw-dashboard-tabs .lm-TabBar-tab", has_text=name).first.click()


def page_note(page) -> str:
    notes = page.locator(".fw-page-note:visible")  # the shown page's; hidden tabs are display: none
    return " ".join(n.inner_text() for n in notes.all())


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_goes_from_explore_to_strain_and_saves_one_recipe(crystal_dashboard, browser_page) -> None:
    app, data, out = crystal_dashboard
    page = browser_page
    page.goto(app.url)
    page.locator(".fw-dashboard-chooser select").select_option("crystal.h5")
    wait_views(page, 3, timeout=PAGE_TIMEOUT_MS / 1000)

    open_tab(page, "calibration")  # too early: the page says what to do first
    page.wait_for_function("() => document.body.innerText.includes('run on all')")
    assert "run on all" in page_note(page)

    open_tab(page, "disks")
    run_all = page.get_by_role("button", name="run on all")
    run_all.wait_for(state="visible")
    run_all.click()
    # a user waits for the run to end, then goes on; the calibration page opens once the disks are there
    deadline = time.monotonic() + PAGE_TIMEOUT_MS / 1000
    while True:
        open_tab(page, "calibration")
        page.wait_for_timeout(500)
        if "run on all" not in page_note(page):
            break
        assert time.monotonic() < deadline, "the disks of every pattern were not found in time"
        open_tab(page, "disks")
        page.wait_for_timeout(1000)
    open_tab(page, "strain")
    # the strain page paints its maps (views inside a hidden tab have no layout box)
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('.fw-view'))
                 .some(v => v.offsetParent !== null && v.closest('.fw-dashboard-tabs') && +v.dataset.imageVersion >= 1
                            && v.getBoundingClientRect().width > 0)""",
        timeout=PAGE_TIMEOUT_MS)
    assert page_note(page) == ""

    page.get_by_role("button", name="save recipe").click()
    saved = page.locator(".fw-dashboard-saved")
    page.wait_for_function("() => document.querySelector('.fw-dashboard-saved').innerText.includes('saved')")
    path = out / "crystal.strain.recipe.json"
    assert str(path) in saved.inner_text() and path.is_file()
    assert_no_code_and_no_traceback(page)
    assert sorted(p.name for p in data.iterdir()) == ["crystal.h5"]  # nothing written in the data folder

    recipe = fw.Recipe.load(path)
    assert {"virtual_image", "find_disks", "origin", "strain_map"} <= set(recipe.labels)
    with fw.load(data / "crystal.h5") as cube:
        strain = fw.run(recipe, cube, progress=False)["strain_map"]
    assert np.isfinite(strain.exx[~strain.mask]).all() and (~strain.mask).mean() >= 0.95
