"""The StrainMapper in a real browser (Voila + Chromium): pick g1 and g2 by clicking spots on the Bragg vector
map, draw the reference region by dragging a corner of the rectangle on a map; Python sees both and the maps
equal the analysis function on the recorded parameters."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from browser_helpers import press_and_move, screen_point, view_info, wait_state, wait_views, write_notebook

pytestmark = pytest.mark.browser

SETUP = '''\
import json, os, threading
from pathlib import Path
import numpy as np
import fourd_widgets as fw
from fourd_widgets.analysis.disks import PeakTable
from fourd_widgets.widgets.strain_mapper import StrainMapper
STATE = Path({state!r})
cube, truth = fw.datasets.sample("strained_crystal", small=True)
peaks = PeakTable(truth.scan_shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                  truth.peak_intensity)
cal = fw.Calibration(origin_map=truth.origin_map, origin=truth.origin)
mapper = StrainMapper(None, peaks, cal, size=240)
_lock = threading.Lock()

def dump(*_):
    with _lock:
        p = mapper.strain_params
        state = {{"g1": list(p.g1), "g2": list(p.g2), "candidates": mapper.basis.candidates.tolist(),
                  "centre": list(mapper._centre), "reference": mapper.reference_overlay,
                  "region_sum": int(p.reference_region.sum()), "params": mapper.params.to_json(),
                  "messages": [mapper.basis_message.value, mapper.fit_message.value, mapper.reference_message.value],
                  "map_overlays": [v.overlay("reference") for v in mapper.map_views.values()],
                  "updates": mapper.updates}}
        tmp = STATE / "state.tmp.npz"
        np.savez(tmp, state=json.dumps(state), exx=mapper.strain.exx)
        os.replace(tmp, STATE / "state.npz")

mapper.on_update(dump)
mapper.wait()
dump()
mapper
'''



def nearest(cands: np.ndarray, vec) -> np.ndarray:
    return cands[int(np.argmin(np.hypot(*(cands - np.asarray(vec)).T)))]


def test_voila_pick_basis_and_draw_reference(page, voila, notebook_root: Path, tmp_path: Path) -> None:
    """Two clicks pick g1 then g2 (snapped to spots); a corner drag sets the reference on every map."""
    tmp_path.mkdir(exist_ok=True)
    write_notebook(notebook_root, "voila_strain.ipynb", SETUP.format(state=str(tmp_path)), "# StrainMapper under test")
    page.goto(f"{voila.base}/voila/render/voila_strain.ipynb")
    wait_views(page, 5)
    first = wait_state(tmp_path, lambda s: s["updates"] >= 1 or s["region_sum"] > 0, "the first maps")
    cands, centre = np.asarray(first["candidates"]), np.asarray(first["centre"])
    # the opposite spots of the suggested pair: a new, non-collinear basis after each click
    a, b = nearest(cands, -np.asarray(first["g1"])), nearest(cands, -np.asarray(first["g2"]))
    page.locator(".fw-view").nth(0).scroll_into_view_if_needed()
    for target in (a, b):
        x, y = target + centre + (0.6, -0.6)   # a little off the spot: the pick snaps
        page.mouse.click(*screen_point(view_info(page, 0), x, y))
        time.sleep(0.3)
    picked = wait_state(tmp_path, lambda s: np.allclose(s["g1"], a) and np.allclose(s["g2"], b),
                      "g1 and g2 picked by the clicks")
    assert picked["messages"] == ["", "", ""]
    # the browser shows the pickers on the spots it snapped to
    shown = {o["id"]: o for o in view_info(page, 0)["overlays"]}
    assert shown["g1"]["x"] == pytest.approx(a[0] + centre[0], abs=1e-6)
    assert shown["g2"]["y"] == pytest.approx(b[1] + centre[1], abs=1e-6)

    # the reference rectangle (rows 0..3) moved on the ε_xx map: drag its body down two rows
    page.locator(".fw-view").nth(1).scroll_into_view_if_needed()
    info = view_info(page, 1)
    ref = next(o for o in info["overlays"] if o["id"] == "reference")
    start = screen_point(info, 1.0, 5.0)
    press_and_move(page, start, (0, 2 * info["transform"]["s"] * info["box"]["height"] / info["box"]["ch"]), 8)
    page.mouse.up()
    drawn = wait_state(tmp_path, lambda s: s["reference"]["x0"] == ref["x0"] + 2, "the reference region drawn")
    assert drawn["region_sum"] == 64
    assert all(o["x0"] == ref["x0"] + 2 for o in drawn["map_overlays"])     # every map shows it
    page.wait_for_function("""(x0) => { const v = document.querySelectorAll('.fw-view')[3];
        return JSON.parse(v.dataset.overlays || '[]').some(o => o.id === 'reference' && o.x0 === x0); }""",
                           arg=ref["x0"] + 2)
    # the maps shown are the analysis function's on the recorded parameters
    import fourd_widgets as fw
    from fourd_widgets.analysis.disks import PeakTable
    from fourd_widgets.analysis.strain import strain_map
    from fourd_widgets.core.recipe import Recipe

    _, truth = fw.datasets.sample("strained_crystal", small=True)
    peaks = PeakTable(truth.scan_shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                      truth.peak_intensity)
    recipe = Recipe.from_json(drawn["params"])
    expected = strain_map(peaks, recipe.steps[-1], recipe.calibration)
    np.testing.assert_array_equal(expected.exx, drawn["exx"])
    region = recipe.steps[-1].reference_region
    assert region[2:6].all() and not region[:2].any() and not region[6:].any()
    assert page.locator(".jp-InputArea-editor").count() == 0
