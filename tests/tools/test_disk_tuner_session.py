"""DiskTunerSession without a browser: what each field recomputes, run/cancel, errors as messages."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.io.results import Results
from fourd_widgets.tools.disk_tuner import DiskTunerSession

ROW_BYTES = 16 * 128 * 128 * 4  # one scan row of the small sample: 16 chunks per run


@pytest.fixture(scope="module")
def cube():
    return fw.datasets.sample("strained_crystal", small=True)[0]


@pytest.fixture
def session(cube):
    s = DiskTunerSession(cube, n_positions=3).wait()
    yield s
    s.close()


def counts_after(s: DiskTunerSession, **changes) -> tuple[int, int, str]:
    corr, det = s.correlations, s.detections
    s.set(**changes).wait()
    return s.correlations - corr, s.detections - det, s.compute_times[-1][0]


def test_each_field_recomputes_only_what_it_changes(session) -> None:
    assert counts_after(session, min_relative_intensity=0.2) == (0, 1, "filter")
    assert counts_after(session, max_num_peaks=7) == (0, 1, "filter")
    assert counts_after(session, sigma_cc=3.0) == (1, 1, "correlate")
    tpl = session.template
    session.set_template(kernel="gaussian", sigma=4.0).wait()
    assert session.template is not tpl and session.compute_times[-1][0] == "template"
    corr = session.correlations
    session.pick(0, 0, slot=1).wait()
    assert session.correlations == corr + 1 and session.positions[1] == (0, 0)


def test_strip_equals_the_headless_run(session, cube) -> None:
    whole = fw.run(session.params, cube)["find_disks"]
    for k, (rx, ry) in enumerate(session.positions):
        np.testing.assert_array_equal(session.strip_peaks.at(k)["qx"], whole.at(rx, ry)["qx"])


def test_refused_values_are_messages(session) -> None:
    before = session.find_params
    session.set(min_relative_intensity=2.0)
    assert "min_relative_intensity" in session.messages["detect"][0] and session.error
    assert session.find_params == before
    session.set_vacuum_region({"kind": "polygon", "vertices": [[0, 0], [0, 6], [6, 6], [6, 0]]}).wait()
    assert "does not look like vacuum" in session.messages["template"][0]
    assert session.strip_peaks is not None  # the last good strip stays


def test_run_replays_and_cancel_keeps_the_finished_part(cube, tmp_path) -> None:
    s = DiskTunerSession(cube, n_positions=1, engine_options={"chunk_bytes": ROW_BYTES, "workers": 1}).wait()
    try:
        s.run_on_all().wait_run()
        assert s.run_state == "done" and s.peaks == fw.run(s.params, cube)["find_disks"]
        saved = Results.load(s.export_h5(tmp_path / "disks.h5"))
        assert saved.recipe == s.params and saved["find_disks"] == s.peaks
        full = s.peaks.counts()
        s.listen(lambda e, v: e == "progress" and 0 < v[0] < v[1] and s.cancel())
        s.run_on_all().wait_run()
        assert s.run_state == "cancelled" and s.peaks is None and s.busy == ""
        done = np.isfinite(s.partial_counts)
        assert done.any() and not done.all()
        np.testing.assert_array_equal(s.partial_counts[done], full[done])
        assert "cancelled" in s.messages["run"][0]
    finally:
        s.close()


def test_the_tuner_shows_which_refinement_auto_chose(session) -> None:
    """Issue 12 item 21: 'auto' picks the refinement by the probe radius, and the tuner says which."""
    assert session.find_params.subpixel == "auto"
    r = session.template.radius
    assert session.refinement == (f"auto → disk: probe radius {r:.2f} px ≥ 4 px, each disk is correlated "
                                  "with the probe, then fitted with the recorded central disk")
    session.set(probe_fit=False).wait()
    assert session.refinement == (f"auto → disk: probe radius {r:.2f} px ≥ 4 px, each disk is correlated "
                                  "with the probe")
    session.set(probe_fit=True).wait()
    alpha = 2.0 * 1000 * 0.019687 * 0.0156  # 2 px spots at the simulator's 300 kV and 0.0156 1/Å per px
    spots, _ = fw.datasets.simulate((3, 3), (96, 96), convergence_semiangle_mrad=alpha)
    small = DiskTunerSession(spots, n_positions=2).wait()
    try:
        r = small.template.radius
        assert abs(r - 2.0) < 0.1  # the measured spot radius
        assert small.refinement == (f"auto → spot: probe radius {r:.2f} px < 4 px, small spots are refined by "
                                    "their centroid")
        small.set(subpixel="dft").wait()
        assert small.refinement == "dft"
    finally:
        small.close()
