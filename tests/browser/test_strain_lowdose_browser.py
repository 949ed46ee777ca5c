"""The StrainMapper's whole-pattern route in a real browser (Voila + Chromium): choosing the route draws the σ maps
beside the strain maps, and dragging the σ-limit slider masks positions in Python and on the maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from browser_helpers import press_and_move, read_state, view_info, wait_state, wait_views, write_notebook

pytestmark = pytest.mark.browser

SETUP = '''\
import json, os, threading
from pathlib import Path
import numpy as np
import fourd_widgets as fw
from fourd_widgets.core import DataCube
from fourd_widgets.widgets import StrainMapper
STATE = Path({state!r})
cube, truth = fw.datasets.sample("strained_crystal", small=True)
data = np.asarray(cube.read(slice(None), slice(None)), float)
counts = np.random.default_rng(0).poisson(data / data.sum(axis=(2, 3), keepdims=True) * 2000).astype(np.float32)
low = DataCube(counts, calibration=cube.calibration)
mapper = StrainMapper(low, fw.find_disks(low), low.calibration, size=200)
_lock = threading.Lock()

def dump(*_):
    with _lock:
        low_dose = mapper.session.lowdose
        if low_dose is None or low_dose.full is None:
            return
        s = mapper.strain
        state = {{"max_sigma": low_dose.record.max_sigma, "masked": int(s.mask.sum()), "route": mapper.route,
                  "updates": mapper.updates, "params": mapper.params.to_json()}}
        tmp = STATE / "state.tmp.npz"
        np.savez(tmp, state=json.dumps(state), sigma_exx=s.sigma_exx, top=low_dose.full.max_strain_sigma())
        os.replace(tmp, STATE / "state.npz")

mapper.on_update(dump)
mapper.wait()
dump()
mapper
'''



def test_voila_sigma_maps_and_sigma_limit(page, voila, notebook_root: Path, tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    write_notebook(notebook_root, "voila_strain_route.ipynb", SETUP.format(state=str(tmp_path)),
                   "# Strain mapper's whole-pattern route under test")
    page.goto(f"{voila.base}/voila/render/voila_strain_route.ipynb")
    wait_views(page, 6)  # Bragg vector map, pattern, the four strain maps of the disk route
    assert read_state(tmp_path) is None  # no whole-pattern fit before the route is chosen
    # choose the route with its button: the σ maps appear
    button = page.locator(".fw-strain-mapper button", has_text="whole-pattern fit").first
    button.scroll_into_view_if_needed()
    button.click()
    first = wait_state(tmp_path, lambda s: s["route"] == "whole_pattern", "the whole-pattern maps")
    assert first["max_sigma"] is None and first["masked"] == 0
    assert json.loads(first["params"])["steps"][0]["step"] == "whole_pattern_fit"
    wait_views(page, 10)
    # views in page order: Bragg vector map, pattern, ε_xx, ε_yy, ε_xy, θ, then σ ε_xx ... beside them
    sig = view_info(page, 6)
    assert sig["colormap"] == "magma"
    assert sig["vmax"] == pytest.approx(100 * float(np.nanmax(first["top"])), rel=0.3)
    strain = view_info(page, 2)
    assert strain["colormap"] == "rdbu"
    assert sig["box"]["left"] > strain["box"]["left"] and sig["box"]["width"] > 0  # drawn to the right
    # drag the σ-limit slider's handle to the left: positions above the limit are masked
    handle = page.locator(".fw-strain-mapper .noUi-handle, .fw-strain-mapper .ui-slider-handle").first
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    track = page.locator(".fw-strain-mapper .widget-slider").first.bounding_box()
    press_and_move(page, (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2), (-0.6 * track["width"], 0), 8)
    page.mouse.up()
    limited = wait_state(tmp_path, lambda s: s["max_sigma"] is not None, "the σ limit set by the slider")
    above = limited["top"] > limited["max_sigma"]
    assert 0 < limited["masked"] == int(above.sum())
    assert np.isnan(limited["sigma_exx"][above]).all()
    # the recipe carries the limit: replay gives the same mask
    import fourd_widgets as fw
    from fourd_widgets.core import DataCube
    from fourd_widgets.core.recipe import Recipe

    cube, _ = fw.datasets.sample("strained_crystal", small=True)
    data = np.asarray(cube.read(slice(None), slice(None)), float)
    counts = np.random.default_rng(0).poisson(data / data.sum(axis=(2, 3), keepdims=True) * 2000).astype(np.float32)
    replay = fw.run(Recipe.from_json(limited["params"]), DataCube(counts, calibration=cube.calibration))
    np.testing.assert_array_equal(np.isnan(replay["whole_pattern_fit"].sigma_exx), np.isnan(limited["sigma_exx"]))
