"""The PhaseTuner in a real browser (Voila + Chromium): type a defocus into the C10 slider and see the tcBF and
SSB previews repainted; Python's records hold the new defocus and replay the SSB phase shown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from browser_helpers import canvas_pixels, wait_canvas_change, wait_state, wait_views, write_notebook

pytestmark = pytest.mark.browser

SETUP = '''\
import json, os, threading
import json
from pathlib import Path
import numpy as np
import fourd_widgets as fw
from fourd_widgets.datasets.phase import simulate_phase
STATE = Path({state!r})
cube, truth = simulate_phase(scan_shape=(16, 16), scan_step_A=3.905 / 16, detector_shape=(48, 48), C10=80.0,
                             workers=1)
tuner = fw.PhaseTuner(cube, size=200)
_lock = threading.Lock()

def dump(*_):
    with _lock:
        state = {{"C10": tuner.session.record("ssb").C10, "slider": tuner.defocus.value,
                 "params": tuner.params.to_json(), "updates": tuner.updates, "error": tuner.error}}
        tmp = STATE / "state.tmp.npz"
        np.savez(tmp, state=json.dumps(state), virtual=tuner.session.images()["ssb"], pattern=np.zeros(0),
                 wire=np.zeros(0))
        os.replace(tmp, STATE / "state.npz")

tuner.on_update(dump)
tuner.wait()
dump()
tuner
'''

#: Views in page order: the shift field, then DPC, iDPC, tcBF, SSB.
TCBF, SSB = 3, 4


def test_voila_defocus_slider_repaints_the_previews(page, voila, notebook_root: Path, tmp_path: Path) -> None:
    import fourd_widgets as fw
    from fourd_widgets.core.recipe import Recipe
    from fourd_widgets.datasets.phase import simulate_phase

    state_dir = tmp_path / "state"
    state_dir.mkdir()
    write_notebook(notebook_root, "voila_phase.ipynb", SETUP.format(state=str(state_dir)), "# PhaseTuner under test")
    page.goto(f"{voila.base}/voila/render/voila_phase.ipynb")
    wait_views(page, 5)
    first = wait_state(state_dir, lambda s: s["updates"] >= 1, "the first previews")
    assert first["C10"] == 0.0 and first["error"] == ""
    before = {i: canvas_pixels(page, i) for i in (TCBF, SSB)}

    readout = page.locator(".fw-phase-defocus .widget-readout")
    readout.scroll_into_view_if_needed()
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("80")
    page.keyboard.press("Enter")
    tuned = wait_state(state_dir, lambda s: s["C10"] == pytest.approx(80.0), "the defocus in Python")
    assert tuned["slider"] == pytest.approx(80.0)
    for i in (TCBF, SSB):  # the page shows the new previews
        wait_canvas_change(page, i, before[i], "the defocus slider moved")
    # the SSB phase shown is the recipe's, replayed headless
    cube, _ = simulate_phase(scan_shape=(16, 16), scan_step_A=3.905 / 16, detector_shape=(48, 48), C10=80.0,
                             workers=1)
    replay = fw.run(Recipe.from_json(tuned["params"]), cube, progress=False)["ssb"].phase
    np.testing.assert_array_equal(replay, tuned["virtual"])
    assert "Traceback" not in page.inner_text("body")


PTYCHO_SETUP = '''\
import json, os, threading
import json
from pathlib import Path
import numpy as np
import fourd_widgets as fw
from fourd_widgets.datasets.phase import simulate_phase
STATE = Path({state!r})
cube, truth = simulate_phase(scan_shape=(16, 16), scan_step_A=0.3, detector_shape=(48, 48), reciprocal_step_mrad=2.0,
                             workers=1)
tuner = fw.PhaseTuner(cube, size=160, engine_options={{"workers": 1}})
tuner.reconstruct_panel.iterations.value = 400  # far more than the test waits for: it cancels
_lock = threading.Lock()
_seen = {{"state": "", "paintings": 0}}

def dump(event=None, value=None):
    if event not in (None, "ptychography", "ptychography_state"):
        return
    with _lock:
        if event == "ptychography_state":
            _seen["state"] = value
        if event == "ptychography":
            _seen["paintings"] += 1
        rec = tuner.session.reconstruction
        painted = rec.painted
        state = {{**_seen, "iteration": rec.iteration,
                 "params": tuner.params.to_json(), "error": tuner.error}}
        tmp = STATE / "state.tmp.npz"
        np.savez(tmp, state=json.dumps(state), virtual=np.zeros(0) if painted is None else painted["phase"],
                 pattern=np.zeros(0), wire=np.zeros(0))
        os.replace(tmp, STATE / "state.npz")

tuner.session.listen(dump)
tuner.wait()
dump()
tuner
'''

#: The ptychography panel's views follow the five above: object phase, probe intensity.
PHASE, PROBE = 5, 6


def test_voila_reconstruct_paints_the_phase_and_cancels(page, voila, notebook_root: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    write_notebook(notebook_root, "voila_ptycho.ipynb", PTYCHO_SETUP.format(state=str(state_dir)),
                   "# PhaseTuner reconstruct under test")
    page.goto(f"{voila.base}/voila/render/voila_ptycho.ipynb")
    wait_views(page, 5)
    first = wait_state(state_dir, lambda s: "iteration" in s, "the tuner's previews")
    assert first["paintings"] == 0 and first["error"] == ""
    blank = canvas_pixels(page, PHASE)

    button = page.locator(".fw-ptycho-reconstruct button, button.fw-ptycho-reconstruct").first
    button.scroll_into_view_if_needed()
    button.click()
    wait_state(state_dir, lambda s: s["paintings"] >= 2, "two paintings of the reconstruction")
    wait_views(page, PROBE + 1)  # the phase and probe views painted in the page
    painted = wait_canvas_change(page, PHASE, blank, "the reconstruction painted its phase")
    rgba = np.frombuffer(painted, np.uint8).reshape(-1, 4)
    assert len(np.unique(rgba[:, 0])) > 10  # an image of the object, not a flat fill

    page.locator(".fw-ptycho-cancel button, button.fw-ptycho-cancel").first.click()
    stopped = wait_state(state_dir, lambda s: s["state"] == "cancelled", "the cancel")
    assert 2 <= stopped["iteration"] < 400 and stopped["error"] == ""
    # the recipe holds the reconstruction asked for, from the sliders' rotation and defocus
    step = json.loads(stopped["params"])["steps"][-1]
    assert step["step"] == "ptychography" and step["iterations"] == 400
    resume = page.locator(".fw-ptycho-resume button, button.fw-ptycho-resume").first
    page.wait_for_function("(b) => !b.disabled", arg=resume.element_handle(), timeout=30000)
    assert "Traceback" not in page.inner_text("body")
