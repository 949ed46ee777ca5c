"""The explorer in a real browser: JupyterLab and Voila serving a notebook, Chromium driven by Playwright.

Python state is read from the dumps the test notebook writes (see browser_helpers.SETUP):
``explorer.params``, the images shown and per-view counters of images sent from Python.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from browser_helpers import (assert_replay, canvas_pixels, d0, make_cube, press_and_move, screen_point, view_info,
                             wait_canvas_change, wait_state, wait_views, write_test_notebook)
from fourd_widgets.core.recipe import Recipe

pytestmark = pytest.mark.browser
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def cube():
    return make_cube()


def drag_detector(page, state_dir: Path, cube) -> dict:
    """Drag detector d0 by (+2, +3) detector pixels with the mouse; check both sides and the replay."""
    wait_views(page, 3)
    first = wait_state(state_dir, lambda s: s["exact"] and s["pattern"].size > 0, "the first exact images")
    assert d0(first)["x"] == 16.0 and d0(first)["y"] == 15.0
    page.locator(".fw-view").nth(0).scroll_into_view_if_needed()
    real_before = canvas_pixels(page, 1)
    info = view_info(page, 0)
    assert info["transform"]["s"] == pytest.approx(10.0)
    press_and_move(page, screen_point(info, 16.0, 15.0), (30, 20), 10)  # (+2, +3) pixels at 10 px per pixel
    page.mouse.up()
    moved = wait_state(state_dir, lambda s: s["exact"] and d0(s)["x"] == 18.0 and d0(s)["y"] == 18.0,
                       "Python to see the dragged detector")
    rec = Recipe.from_json(moved["params"]).steps[0].detectors[0]
    assert rec.center == (18.0, 18.0) and rec.radius == 4.0
    browser_d0 = next(o for o in view_info(page, 0)["overlays"] if o["id"] == "d0")
    assert (browser_d0["x"], browser_d0["y"], browser_d0["r"]) == (18.0, 18.0, 4.0)
    wait_canvas_change(page, 1, real_before, "the drag")
    assert not np.array_equal(moved["virtual"][0], first["virtual"][0])
    assert_replay(moved, cube)
    return moved


def click_real_space(page, state_dir: Path, cube, rx: int = 5, ry: int = 17) -> dict:
    """Click scan position (rx, ry) on the first real-space view; the diffraction view shows its pattern."""
    page.locator(".fw-view").nth(1).scroll_into_view_if_needed()
    before = view_info(page, 0)["version"]
    pixels = canvas_pixels(page, 0)
    page.mouse.click(*screen_point(view_info(page, 1), rx, ry))
    state = wait_state(state_dir, lambda s: (s["selector"]["x"], s["selector"]["y"]) == (rx, ry)
                       and s["pattern"].size and np.array_equal(s["pattern"], cube.pattern(rx, ry)),
                       f"the pattern at ({rx}, {ry})")
    page.wait_for_function("(v) => +document.querySelectorAll('.fw-view')[0].dataset.imageVersion > v", arg=before)
    wait_canvas_change(page, 0, pixels, "the click")
    assert_replay(state, cube)
    return state


def open_in_lab(page, lab, root: Path, name: str, state_dir: Path) -> None:
    """Open the test notebook in a fresh JupyterLab workspace and run all cells once the kernel is ready."""
    write_test_notebook(root, name, state_dir)
    page.goto(f"{lab.base}/lab/workspaces/{Path(name).stem}/tree/{name}?reset")
    page.wait_for_function("""(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        return w && w.context && w.context.path === name && w.sessionContext && w.sessionContext.session; }""",
                           arg=name)
    page.evaluate("""async () => { const w = window.jupyterapp.shell.currentWidget;
        await w.sessionContext.ready; await w.context.ready;
        await window.jupyterapp.commands.execute('notebook:run-all-cells'); }""")


def test_lab_drag_detector_and_replay(page, lab, notebook_root: Path, cube, tmp_path: Path) -> None:
    """Mouse drag of a detector: real-space canvas repaints, Python geometry + images == headless replay."""
    open_in_lab(page, lab, notebook_root, "lab_drag.ipynb", tmp_path)
    drag_detector(page, tmp_path, cube)


def test_lab_keyboard_moves_detector_not_cells(page, lab, notebook_root: Path, cube, tmp_path: Path) -> None:
    """WASD (Shift = 5 px) moves the selected detector; JupyterLab's 'd d' (delete cell) never fires."""
    open_in_lab(page, lab, notebook_root, "lab_keys.ipynb", tmp_path)
    wait_views(page, 3)
    wait_state(tmp_path, lambda s: s["exact"], "the first exact images")
    cells = page.locator(".jp-Notebook .jp-Cell").count()
    page.locator(".fw-view").nth(0).focus()
    page.keyboard.press("d")
    page.keyboard.press("d")
    page.keyboard.press("Shift+S")
    state = wait_state(tmp_path, lambda s: s["exact"] and (d0(s)["x"], d0(s)["y"]) == (21.0, 17.0),
                       "d0 moved by (+5, +2)")
    assert page.locator(".jp-Notebook .jp-Cell").count() == cells
    assert_replay(state, cube)


def test_lab_click_shows_pattern(page, lab, notebook_root: Path, cube, tmp_path: Path) -> None:
    """A click in real space moves the selector; the diffraction view shows that position's pattern."""
    open_in_lab(page, lab, notebook_root, "lab_click.ipynb", tmp_path)
    wait_views(page, 3)
    wait_state(tmp_path, lambda s: s["exact"] and s["pattern"].size > 0, "the first exact images")
    click_real_space(page, tmp_path, cube)


def test_lab_colormap_and_contrast_send_no_image(page, lab, notebook_root: Path, cube, tmp_path: Path) -> None:
    """Colormap and contrast change the canvas in the browser; Python sends no new image."""
    open_in_lab(page, lab, notebook_root, "lab_look.ipynb", tmp_path)
    wait_views(page, 3)
    start = wait_state(tmp_path, lambda s: s["exact"] and s["pattern"].size > 0, "the first exact images")
    view = page.locator(".fw-view").nth(1)
    view.scroll_into_view_if_needed()
    pixels = canvas_pixels(page, 1)
    view.locator("select.fw-cmap").select_option("magma")
    page.wait_for_function("() => document.querySelectorAll('.fw-view')[1].dataset.colormap === 'magma'")
    pixels = wait_canvas_change(page, 1, pixels, "the colormap change")
    vmax = view_info(page, 1)["vmax"]
    view.locator("select.fw-contrast").select_option("absolute")
    high = view.locator("input.fw-high")
    high.fill(str(vmax / 2))
    high.press("Tab")
    wait_canvas_change(page, 1, pixels, "the contrast change")
    state = wait_state(tmp_path, lambda s: s["colormaps"][1] == "magma" and s["contrast"][1] == "absolute"
                       and s["vmax"][1] == pytest.approx(vmax / 2, rel=1e-3), "Python to see the new look")
    assert state["versions"] == start["versions"], "a look change must not send an image"
    assert view_info(page, 1)["version"] == start["versions"][1]
    assert view_info(page, 1)["vmax"] == pytest.approx(vmax / 2, rel=1e-3)
    # drag the low limit on the histogram to the right: a new vmin, still no image sent
    pixels = canvas_pixels(page, 1)
    box = view.locator("canvas.fw-hist").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 1, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.25, y, steps=5)
    page.mouse.up()
    wait_canvas_change(page, 1, pixels, "the histogram drag")
    low = wait_state(tmp_path, lambda s: s["vmin"][1] is not None and s["vmin"][1] > state["vmin"][1],
                     "Python to see the histogram's new vmin")
    assert low["versions"] == start["versions"]
    # the PNG button saves what the canvas shows
    with page.expect_download() as download:
        view.locator("button.fw-png").click()
    saved = Path(download.value.path())
    assert download.value.suggested_filename.endswith(".png") and saved.read_bytes()[:4] == b"\x89PNG"


def test_voila_drag_and_click(page, voila, notebook_root: Path, cube, tmp_path: Path) -> None:
    """The same explorer served by Voila: drag, click, replay; no code is shown."""
    write_test_notebook(notebook_root, "voila_explorer.ipynb", tmp_path)
    page.goto(f"{voila.base}/voila/render/voila_explorer.ipynb")
    drag_detector(page, tmp_path, cube)
    click_real_space(page, tmp_path, cube, 20, 3)
    assert page.locator(".jp-InputArea-editor").count() == 0
    assert "make_cube" not in page.inner_text("body")


def test_voila_dashboard_notebook(page, voila, notebook_root: Path) -> None:
    """notebooks/explorer_dashboard.ipynb renders as an app: views painted, no code, no traceback."""
    shutil.copy(NOTEBOOKS / "explorer_dashboard.ipynb", notebook_root / "dashboard.ipynb")
    page.goto(f"{voila.base}/voila/render/dashboard.ipynb")
    wait_views(page, 3, timeout=180)
    body = page.inner_text("body")
    assert "Traceback" not in body and "import" not in body
    assert page.locator(".jp-InputArea-editor").count() == 0
    info = view_info(page, 0)
    assert info["version"] >= 1 and len(info["overlays"]) >= 2
