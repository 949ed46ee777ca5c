"""The low-dose strain mapper in a real browser (Voila + Chromium): the σ maps are drawn beside the strain maps,
and dragging the σ-limit slider masks positions in Python and on the maps."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from browser_helpers import WAIT_S, press_and_move, view_info, wait_views, write_notebook

pytestmark = pytest.mark.browser

SETUP = '''\
import json, os, threading
from pathlib import Path
import numpy as np
import fourd_widgets as fw
from fourd_widgets.core import DataCube
from fourd_widgets.widgets.strain_lowdose import LowDoseStrainMapper
STATE = Path({state!r})
cube, truth = fw.datasets.sample("strained_crystal", small=True)
data = np.asarray(cube.read(slice(None), slice(None)), float)
counts = np.random.default_rng(0).poisson(data / data.sum(axis=(2, 3), keepdims=True) * 2000).astype(np.float32)
low = DataCube(counts, calibration=cube.calibration)
mapper = LowDoseStrainMapper(low, size=200)
_lock = threading.Lock()

def dump(*_):
    with _lock:
        s = mapper.strain
        state = {{"max_sigma": mapper.session.record.max_sigma, "masked": int(s.mask.sum()),
                  "updates": mapper.updates, "params": mapper.params.to_json()}}
        tmp = STATE / "state.tmp.npz"
        np.savez(tmp, state=json.dumps(state), sigma_exx=s.sigma_exx, top=mapper.session.full.max_strain_sigma())
        os.replace(tmp, STATE / "state.npz")

mapper.on_update(dump)
mapper.wait()
dump()
mapper
'''


def read(state: Path) -> dict | None:
    f = state / "state.npz"
    if not f.exists():
        return None
    try:
        with np.load(f) as z:
            out = json.loads(str(z["state"]))
            out["sigma_exx"], out["top"] = z["sigma_exx"], z["top"]
            return out
    except (OSError, ValueError, KeyError, EOFError):  # being replaced right now
        return None


def wait_for(state: Path, predicate, what: str) -> dict:
    deadline = time.monotonic() + WAIT_S
    last = None
    while time.monotonic() < deadline:
        last = read(state) or last
        if last is not None and predicate(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {(last or {}).get('max_sigma')}, "
                         f"{(last or {}).get('masked')}")


def test_voila_sigma_maps_and_sigma_limit(page, voila, notebook_root: Path, tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    write_notebook(notebook_root, "voila_lowdose.ipynb", SETUP.format(state=str(tmp_path)),
                   "# Low-dose strain mapper under test")
    page.goto(f"{voila.base}/voila/render/voila_lowdose.ipynb")
    wait_views(page, 8)
    first = wait_for(tmp_path, lambda s: s["updates"] >= 1 or s["masked"] == 0, "the first maps")
    assert first["max_sigma"] is None and first["masked"] == 0
    # views in page order: ε_xx, σ ε_xx, ε_yy, σ ε_yy, ...: each σ map is drawn beside its strain map
    sig = view_info(page, 1)
    assert sig["colormap"] == "magma"
    assert sig["vmax"] == pytest.approx(100 * float(np.nanmax(first["top"])), rel=0.3)
    assert view_info(page, 0)["colormap"] == "rdbu"
    # drag the σ-limit slider's handle to the left: positions above the limit are masked
    handle = page.locator(".fw-lowdose-strain .noUi-handle, .fw-lowdose-strain .ui-slider-handle").first
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    track = page.locator(".fw-lowdose-strain .widget-slider").first.bounding_box()
    press_and_move(page, (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2), (-0.6 * track["width"], 0), 8)
    page.mouse.up()
    limited = wait_for(tmp_path, lambda s: s["max_sigma"] is not None, "the σ limit set by the slider")
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
