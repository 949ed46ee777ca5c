"""The DiskTuner's lattice route in a real browser (Voila, Chromium via Playwright).

Click "whole-pattern fit": Python fits the strip's lattices and the page draws the fitted sites
on every strip pattern, beside the detected disks (their sum is what each view draws).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser_helpers import wait_state, wait_views, write_notebook

pytestmark = pytest.mark.browser

SETUP = '''\
import json, os, threading
from pathlib import Path
import numpy as np
import fourd_widgets as fw
from fourd_widgets.widgets.disk_tuner import DiskTuner
STATE = Path({state!r})
cube, truth = fw.datasets.sample("strained_crystal", small=True)
tuner = DiskTuner(cube, size=240, n_positions=3)
_lock = threading.Lock()

def dump(*_):
    with _lock:
        state = {{"route": tuner.route, "disks": tuner.marker_counts(), "sites": tuner.lattice_marker_counts(),
                 "params": tuner.params.to_json()}}
        tmp = STATE / "state.tmp.npz"
        np.savez(tmp, state=json.dumps(state), virtual=np.zeros(0), pattern=np.zeros(0), wire=np.zeros(0))
        os.replace(tmp, STATE / "state.npz")

tuner.on_update(dump)
tuner.wait()
dump()
tuner
'''


def drawn(page) -> list[int]:
    return page.evaluate("""() => Array.from(document.querySelectorAll('.fw-tuner-strip .fw-view'))
                                  .map(v => +v.dataset.markersDrawn)""")


def test_voila_lattice_route_draws_the_fitted_sites(page, voila, notebook_root: Path, tmp_path: Path) -> None:
    from fourd_widgets.core.recipe import Recipe

    tmp_path.mkdir(parents=True, exist_ok=True)
    write_notebook(notebook_root, "voila_tuner_route.ipynb", SETUP.format(state=str(tmp_path)), "# Tuner route")
    page.goto(f"{voila.base}/voila/render/voila_tuner_route.ipynb")
    wait_views(page, 5)
    first = wait_state(tmp_path, lambda s: sum(s["disks"]) > 0, "the first disks")
    page.locator(".fw-tuner-route button", has_text="whole-pattern fit").click()
    fitted = wait_state(tmp_path, lambda s: s["route"] == "whole_pattern" and min(s["sites"]) > 0, "the fitted sites")
    want = [d + n for d, n in zip(first["disks"], fitted["sites"])]
    page.wait_for_function("(want) => JSON.stringify(Array.from(document.querySelectorAll("
                           "'.fw-tuner-strip .fw-view')).map(v => +v.dataset.markersDrawn)) === JSON.stringify(want)",
                           arg=want)
    assert drawn(page) == want
    assert [s.step for s in Recipe.from_json(fitted["params"]).steps] == ["whole_pattern_fit"]
    assert page.locator(".fw-tuner-lattice").is_visible() and "Traceback" not in page.inner_text("body")
