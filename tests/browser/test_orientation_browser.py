"""The OrientationMapper in a real browser (Voila + Chromium): click a position on the map and see its
pattern with the best match's spots drawn; run on all and see the IPF map; switch to the raw patterns and
tick "two grains": the matches table gains the weights; Python sees the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from browser_helpers import WAIT_S, screen_point, view_info, wait_state, wait_views, write_notebook

pytestmark = pytest.mark.browser

SETUP = '''\
import json, os, threading
from pathlib import Path
import numpy as np
import fourd_widgets as fw
from fourd_widgets.analysis.orientation import OrientationMapParams
from fourd_widgets.analysis.orientation_plan import OrientationPlanParams
from fourd_widgets.datasets.crystal import Grain
STATE = Path({state!r})
grains = [Grain.preset("Si", zone_axis=(0, 0, 1), rotation_deg=20.0), Grain.preset("Si", zone_axis=(0, 1, 1))]
gmap = np.zeros((6, 6), int)
gmap[3:] = 1
cube, _ = fw.datasets.simulate((6, 6), (96, 96), grains=grains, grain_map=gmap, reciprocal_step=0.02,
                               convergence_semiangle_mrad=1.5, seed=4)
plan = OrientationPlanParams(zone_axis_range="given", zone_axes=((0, 0, 1), (0, 1, 1), (1, 1, 1)))
mapper = fw.OrientationMapper(cube, params=OrientationMapParams(plan=plan), size=240)
_lock = threading.Lock()

def dump(*_):
    with _lock:
        s = mapper.session
        xy = mapper.pattern_view.marker_points("match0")[0] if mapper.pattern_view.markers else np.zeros((0, 2))
        state = {{"selected": list(s.selected), "table": mapper.table.value, "spots": len(xy),
                  "ipf_bytes": len(mapper.ipf.value), "done": s.result is not None,
                  "zone": None if s.result is None else s.result.zone_axis[..., 0, :].round(2).tolist(),
                  "updates": mapper.updates, "route": s.route, "decompose": getattr(s.record, "decompose", None),
                  "raw_disabled": [c.disabled for c in mapper.raw_controls.values()]}}
        tmp = STATE / "state.tmp.json"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, STATE / "state.json")

mapper.on_update(dump)
mapper.wait()
dump()
mapper
'''



def test_voila_click_a_position_then_run_on_all(page, voila, notebook_root: Path, tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    write_notebook(notebook_root, "voila_orientation.ipynb", SETUP.format(state=str(tmp_path)),
                   "# OrientationMapper under test")
    page.goto(f"{voila.base}/voila/render/voila_orientation.ipynb")
    wait_views(page, 2)
    first = wait_state(tmp_path, lambda s: s["spots"] > 0, "the first pattern with its match")
    assert "[0.00 0.00 1.00]" in first["table"]  # position (1, 1) lies in the [001] grain
    # the pattern view draws the best match's spots
    page.wait_for_function("() => +document.querySelectorAll('.fw-view')[0].dataset.markersDrawn > 0",
                           timeout=WAIT_S * 1000)
    # click position (4, 1) of the map: the [011] grain
    page.locator(".fw-view").nth(1).scroll_into_view_if_needed()
    page.mouse.click(*screen_point(view_info(page, 1), 4, 1))
    picked = wait_state(tmp_path, lambda s: s["selected"] == [4, 1] and "[0.00 1.00 1.00]" in s["table"],
                      "the clicked position's pattern and matches")
    assert picked["spots"] > 0
    # run on all: the IPF map arrives as a PNG image in the page
    page.get_by_role("button", name="run on all").click()
    done = wait_state(tmp_path, lambda s: s["done"] and s["ipf_bytes"] > 0, "the whole-scan map")
    assert [round(abs(v), 2) for v in done["zone"][0][0]] == [0.0, 0.0, 1.0]
    page.wait_for_function("() => Array.from(document.querySelectorAll('img')).some("
                           "i => (i.src || '').startsWith('blob:') || (i.src || '').startsWith('data:image/png'))",
                           timeout=WAIT_S * 1000)
    # the raw route's own controls: disabled on the peak route, enabled on the raw one; "two grains" decomposes
    assert len(done["raw_disabled"]) >= 2 and all(done["raw_disabled"]) and done["route"] == "peaks"
    page.get_by_role("button", name="raw patterns").click()
    wait_state(tmp_path, lambda s: s["route"] == "patterns" and not any(s["raw_disabled"]),
               "the raw route with its controls enabled")
    two = page.get_by_role("checkbox", name="two grains")
    two.scroll_into_view_if_needed()
    assert two.is_visible() and two.is_enabled()
    assert page.get_by_role("button", name="disk rims").is_enabled()
    two.click()
    decomposed = wait_state(tmp_path, lambda s: s["decompose"] is True and "<th>weight</th>" in s["table"],
                            "the decomposed matches with their weights")
    assert "share of the fitted spot intensity" in decomposed["table"]
