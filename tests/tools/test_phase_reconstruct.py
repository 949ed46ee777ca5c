"""PhaseTuner "reconstruct": ptychography from the tuned sliders, painted, cancelled, resumed, replayed."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.phase_common import phase_agreement
from fourd_widgets.analysis.ptychography import reconstruct_ptychography
from fourd_widgets.core.errors import ParameterError
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.datasets.phase import simulate_phase
from fourd_widgets.tools.phase_tuner import PhaseTunerSession

C10, ROTATION = 40.0, 15.0
KW = dict(iterations=4, batch_size=64, step_size=1.0, probe_fixed_iterations=1)


@pytest.fixture(scope="module")
def small():
    """A 16x16 scan of the weak-phase SrTiO3 object (0.3 rad), C10 = 40 Å, scan turned by 15°; 48x48 detector
    at 2 mrad/px (0.2 Å object pixels)."""
    return simulate_phase(scan_shape=(16, 16), scan_step_A=0.3, detector_shape=(48, 48), reciprocal_step_mrad=2.0,
                          C10=C10, scan_rotation_deg=ROTATION, workers=1)


@pytest.fixture
def tuned(small):
    cube, _ = small
    s = PhaseTunerSession(cube, bin=2, engine_options={"workers": 1}).wait()
    s.set(C10=C10, rotation_deg=ROTATION).wait()
    yield s
    s.close()


def _paintings(session):
    got = []
    session.listen(lambda event, value: got.append(value) if event == "ptychography" else None)
    return got


def test_reconstruct_starts_from_the_sliders_paints_and_replays(tuned, small):
    cube, truth = small
    painted = _paintings(tuned)
    tuned.reconstruct(paint_every=2, **KW).wait()
    rec = tuned.params.steps[-1]
    assert tuned.params.labels[-1] == "ptychography"
    assert (rec.C10, rec.rotation_deg, rec.flip, rec.iterations) == (C10, ROTATION, False, 4)
    # painted every second iteration: the phase on the object grid, the probe on the detector's, the curve so far
    assert [p["iteration"] for p in painted] == [2, 4] and painted[-1]["done"]
    res = tuned.results()["ptychography"]
    assert painted[0]["errors"].shape == (2,) and painted[0]["probe"].shape == (48, 48)
    np.testing.assert_array_equal(painted[-1]["phase"], res.phase.astype(np.float32))
    np.testing.assert_array_equal(painted[-1]["errors"], res.errors)
    # started from the tuned defocus, 4 iterations already follow the truth: measured r 0.984, slope 0.88; from
    # C10 = 0 the same run gives slope 0.45 (a defocused probe spreads the phase), so slope > 0.75 needs the tuning
    r, slope = phase_agreement(res.phase_on_scan()[2:-2, 2:-2], truth.phase_on_scan[2:-2, 2:-2], 0.3, sigma_A=0.3)
    assert r > 0.95 and slope > 0.75, (r, slope)
    # fw.run replays the recipe, reconstruction included, to the bit
    again = fw.run(Recipe.from_json(tuned.params.to_json()), cube, workers=1, progress=False)["ptychography"]
    for name in ("object", "probe", "errors", "positions_px"):
        np.testing.assert_array_equal(getattr(again, name), getattr(res, name), err_msg=name)
    # and a session rebuilt from the recipe keeps the record
    other = PhaseTunerSession.from_params(cube, tuned.params, start=False)
    try:
        assert other.params.steps[-1] == rec
    finally:
        other.close()


def test_cancel_then_resume_equals_an_uninterrupted_run(tuned, small):
    cube, _ = small
    painted = _paintings(tuned)
    stopped = threading.Event()

    def cancel_at_two(event, value):
        if event == "ptychography" and value["iteration"] == 2:
            tuned.cancel_reconstruction()
            stopped.set()

    tuned.listen(cancel_at_two)
    tuned.reconstruct(**KW).wait()
    assert stopped.is_set() and tuned.reconstruction.iteration == 2
    assert "ptychography" not in tuned.results() and "cancelled after iteration 2" in tuned.status
    assert [p["iteration"] for p in painted] == [1, 2]
    tuned.resume().wait()
    assert [p["iteration"] for p in painted] == [1, 2, 3, 4]  # continued, not restarted
    got = tuned.results()["ptychography"]
    want = reconstruct_ptychography(cube, tuned.params.steps[-1], workers=1, progress=False)
    for name in ("object", "probe", "errors", "positions_px"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_a_moved_slider_starts_afresh_and_bad_fields_are_refused(tuned):
    painted = _paintings(tuned)
    tuned.reconstruct(iterations=1, batch_size=64).wait()
    tuned.set(C10=C10 + 10).wait()
    tuned.reconstruct(iterations=2).wait()
    assert tuned.params.steps[-1].C10 == C10 + 10 and tuned.params.steps[-1].batch_size == 64
    assert [p["iteration"] for p in painted] == [1, 1, 2]
    with pytest.raises(ParameterError, match="no field 'iteration'"):
        tuned.reconstruct(iteration=3)
    with pytest.raises(ParameterError, match="iterations"):
        tuned.reconstruct(iterations=-1)


def test_view_buttons_paint_cancel_and_resume(small):
    from fourd_widgets.widgets.phase_tuner import PhaseTuner

    cube, _ = small
    tuner = PhaseTuner(cube, engine_options={"workers": 1}).wait()
    panel = tuner.reconstruct_panel
    try:
        s = tuner.session
        s.listen(lambda e, v: s.cancel_reconstruction() if e == "ptychography" and v["iteration"] == 1 else None)
        panel.iterations.value, panel.batch_size.value = 3, 64
        panel.reconstruct_button.click()
        tuner.wait()
        # cancelled after the first iteration: one point on the curve, resume offered, cancel not
        assert list(panel.curve.y) == list(s.reconstruction.painted["errors"]) and len(panel.curve.y) == 1
        assert not panel.resume_button.disabled and panel.cancel_button.disabled
        assert s.params.steps[-1].iterations == 3 and s.params.steps[-1].batch_size == 64
        s._listeners.pop()
        panel.resume_button.click()
        tuner.wait()
        assert len(panel.curve.y) == 3 and panel.phase_view.title.endswith("iteration 3 of 3")
        assert panel.resume_button.disabled and "ptychography" in tuner.session.results()
    finally:
        tuner.close()
