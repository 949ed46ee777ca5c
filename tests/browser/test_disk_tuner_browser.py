"""The disk tuner in a real browser (JupyterLab and Voila, Chromium via Playwright).

One flow, served both ways: move the relative-threshold slider and see fewer
markers drawn on the strip; press "run on all" and see the peak-count map
painted; Python's state (dumped by the notebook) agrees with the page and with
a headless replay of ``tuner.params``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from browser_helpers import canvas_pixels, wait_state, wait_views, write_notebook
import test_explorer_browser
from test_explorer_browser import open_in_lab

pytestmark = pytest.mark.browser

SETUP = '''\
import json, os, threading
from pathlib import Path
import numpy as np
import fourd_widgets as fw
from fourd_widgets.widgets.disk_tuner import DiskTuner
STATE = Path({state!r})
cube, truth = fw.datasets.sample("strained_crystal", small=True)
tuner = DiskTuner(cube, size=240)
_lock = threading.Lock()

def dump(*_):
    with _lock:
        peaks = tuner.peaks
        state = {{"markers": tuner.marker_counts(), "min_rel": tuner.find_params.min_relative_intensity,
                 "run": tuner.run_state, "params": tuner.params.to_json()}}
        tmp = STATE / "state.tmp.npz"
        np.savez(tmp, state=json.dumps(state), virtual=np.zeros(0) if peaks is None else peaks.counts(),
                 pattern=np.zeros(0), wire=np.zeros(0))
        os.replace(tmp, STATE / "state.npz")

tuner.on_update(dump)
tuner.wait()
dump()
tuner
'''

#: Views in page order: real space, kernel, six patterns, peak count, Bragg vector map.
STRIP, COUNTS = slice(2, 8), 8


def strip_markers(page) -> list[int]:
    return page.evaluate("""() => Array.from(document.querySelectorAll('.fw-tuner-strip .fw-view'))
                                  .map(v => +v.dataset.markersDrawn)""")


def tune_and_run(page, state_dir: Path) -> None:
    """Slider -> fewer markers on the page and in Python; run on all -> count map painted and == replay."""
    import fourd_widgets as fw
    from fourd_widgets.core.recipe import Recipe

    wait_views(page, 8)
    first = wait_state(state_dir, lambda s: sum(s["markers"]) > 0, "the first markers")
    page.wait_for_function("(n) => Array.from(document.querySelectorAll('.fw-tuner-strip .fw-view'))"
                           ".reduce((a, v) => a + +v.dataset.markersDrawn, 0) === n", arg=sum(first["markers"]))
    assert strip_markers(page) == first["markers"]

    readout = page.locator(".fw-tuner-min-rel .widget-readout")
    readout.scroll_into_view_if_needed()
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("0.5")
    page.keyboard.press("Enter")
    tuned = wait_state(state_dir, lambda s: s["min_rel"] == pytest.approx(0.5, rel=0.02)
                       and sum(s["markers"]) < sum(first["markers"]), "fewer markers in Python")
    page.wait_for_function("(n) => Array.from(document.querySelectorAll('.fw-tuner-strip .fw-view'))"
                           ".reduce((a, v) => a + +v.dataset.markersDrawn, 0) === n", arg=sum(tuned["markers"]))
    assert strip_markers(page) == tuned["markers"]
    step = Recipe.from_json(tuned["params"]).steps[0]  # showing the sliders fixed no automatic value
    assert step.min_peak_spacing is None and step.edge_boundary is None and step.template.radius is None

    page.locator("button.fw-tuner-run").click()
    done = wait_state(state_dir, lambda s: s["run"] == "done" and s["virtual"].size > 0, "the run on all")
    page.wait_for_function("() => +document.querySelector('.fw-tuner-counts .fw-view').dataset.imageVersion >= 1")
    px = np.frombuffer(canvas_pixels(page, COUNTS), np.uint8).reshape(-1, 4)
    assert (px[:, 3] > 0).mean() > 0.5  # the map is painted, not blank
    cube, _ = fw.datasets.sample("strained_crystal", small=True)
    replay = fw.run(Recipe.from_json(done["params"]), cube)["find_disks"]
    np.testing.assert_array_equal(replay.counts(), done["virtual"])


def write_tuner_notebook(folder: Path, name: str, state: Path) -> Path:
    state.mkdir(parents=True, exist_ok=True)
    return write_notebook(folder, name, SETUP.format(state=str(state)), "# Disk tuner under test")


def test_lab_tune_threshold_and_run(page, lab, notebook_root: Path, tmp_path: Path, monkeypatch) -> None:
    # open_in_lab writes the explorer's notebook; it writes the tuner's here
    monkeypatch.setattr(test_explorer_browser, "write_test_notebook", write_tuner_notebook)
    open_in_lab(page, lab, notebook_root, "lab_tuner.ipynb", tmp_path)
    tune_and_run(page, tmp_path)


def test_voila_tune_threshold_and_run(page, voila, notebook_root: Path, tmp_path: Path) -> None:
    write_tuner_notebook(notebook_root, "voila_tuner.ipynb", tmp_path)
    page.goto(f"{voila.base}/voila/render/voila_tuner.ipynb")
    tune_and_run(page, tmp_path)
    assert page.locator(".jp-InputArea-editor").count() == 0 and "Traceback" not in page.inner_text("body")
