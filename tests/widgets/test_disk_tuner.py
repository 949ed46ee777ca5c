"""DiskTuner: state, params round trip, replay equality, messages beside the controls, run and cancel.

No browser here: the widgets are driven from Python (as the front end would set
their traits) and the tuner's synced state is checked.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.disks import FindDisksParams, find_disks_in_patterns
from fourd_widgets.analysis.probe import probe_template
from fourd_widgets.core import DataCube
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.widgets.disk_tuner import VACUUM_ID, DiskTuner

ROW_BYTES = 16 * 128 * 128 * 4  # one scan row of the small sample: 16 chunks per run


@pytest.fixture(scope="module")
def sample():
    return fw.datasets.sample("strained_crystal", small=True)


@pytest.fixture
def tuner(sample):
    t = DiskTuner(sample[0]).wait()
    yield t
    t.close()


def vacuum_cube(sample) -> DataCube:
    """The sample with its first four scan rows replaced by the bare probe (vacuum)."""
    cube, truth = sample
    data = cube.to_numpy().astype(np.float32)
    data[:4] = truth.vacuum_probe() * float(data[8, 8].sum())
    return DataCube(data, cube.calibration)


def test_strip_shows_the_headless_peaks_of_each_position(tuner, sample) -> None:
    cube, _ = sample
    assert len(tuner.strip_views) == 6 and len(set(tuner.positions)) == 6
    whole = fw.run(tuner.params, cube)["find_disks"]
    for view, (rx, ry) in zip(tuner.strip_views, tuner.positions):
        xy, _, _ = view.marker_points("disks")
        ref = whole.at(rx, ry)
        assert len(xy) == len(ref["qx"]) > 0
        np.testing.assert_array_equal(xy, np.column_stack([ref["qx"], ref["qy"]]).astype(np.float32))
        np.testing.assert_array_equal(view.data, cube.pattern(rx, ry))


def test_threshold_slider_refilters_without_correlating(tuner) -> None:
    before = tuner.marker_counts()
    corr, det = tuner.correlations, tuner.detections
    tuner._min_rel.value = 0.5  # what the browser slider sets
    tuner.wait()
    assert tuner.find_params.min_relative_intensity == 0.5
    after = tuner.marker_counts()
    assert sum(after) < sum(before)
    assert tuner.correlations == corr and tuner.detections > det
    assert tuner.compute_times[-1][0] == "filter"
    expected = find_disks_in_patterns(np.stack([tuner.cube.pattern(*p) for p in tuner.positions]),
                                      tuner.template, tuner.find_params)
    assert after == expected.counts().tolist()


def test_correlation_slider_recorrelates(tuner) -> None:
    corr = tuner.correlations
    tuner._sigma_cc.value = 3.0
    tuner.wait()
    assert tuner.correlations == corr + 1 and tuner.find_params.sigma_cc == 3.0
    assert tuner.compute_times[-1][0] == "correlate"


def test_histogram_handle_sets_relative_threshold(tuner) -> None:
    tuner._hist_handle.x = [np.log10(0.25)]
    tuner.wait()
    assert tuner.find_params.min_relative_intensity == pytest.approx(0.25)
    assert tuner._min_rel.value == pytest.approx(0.25)
    kept, rejected = (np.asarray(tuner._hist_bars.y)[k].sum() for k in range(2))
    assert kept == int(tuner.candidates.kept.sum()) and rejected > 0


def test_kernel_controls_and_preview(tuner) -> None:
    version = tuner.kernel_view.image_version
    tuner._kernel.value = "sigmoid"
    tuner.wait()
    t = tuner.find_params.template
    assert t.kernel == "sigmoid" and tuner.template.kind == "sigmoid"
    assert tuner.kernel_view.image_version > version
    image, r, profile = tuner.template.preview()
    np.testing.assert_array_equal(tuner.kernel_view.data, image)
    np.testing.assert_array_equal(tuner._profile_line.y, profile)
    assert profile.min() < 0  # the trench
    tuner._radii.value = (7.0, 11.0)
    tuner.wait()
    assert tuner.find_params.template.radii == (7.0, 11.0)


def test_click_moves_the_selected_position(tuner, sample) -> None:
    tuner._slot.index = 2
    assert tuner.real_view.click_moves == "p2"
    ovs = [dict(o, x=3.0, y=11.0) if o["id"] == "p2" else o for o in tuner.real_view.overlays]
    tuner.real_view.overlays = ovs  # as the front end sends a click
    tuner.wait()
    assert tuner.positions[2] == (3, 11)
    np.testing.assert_array_equal(tuner.strip_views[2].data, sample[0].pattern(3, 11))
    assert tuner.strip_views[2].title.startswith("3: (3, 11)")


def test_params_round_trip_and_replay(sample) -> None:
    cube, _ = sample
    tuner = DiskTuner(cube, n_positions=4).wait()
    try:
        tuner.set(min_relative_intensity=0.1, sigma_cc=1.5, max_num_peaks=9, subpixel="parabola")
        tuner.set_template(kernel="gaussian", sigma=5.0)
        tuner.wait()
        recipe = tuner.params
        assert isinstance(recipe, Recipe) and recipe.labels == ("find_disks",)
        again = DiskTuner.from_params(cube, recipe.to_json(), n_positions=4).wait()
        try:
            assert again.params == recipe and again.find_params.template.sigma == 5.0
            assert again._kernel.value == "gaussian" and again._max_peaks.value == 9
            assert again.marker_counts() == tuner.marker_counts()
        finally:
            again.close()
        assert DiskTuner.from_params(cube, recipe.steps[0], n_positions=1).wait().find_params == recipe.steps[0]
        tuner.run().wait_run()
        assert tuner.run_state == "done"
        replay = fw.run(Recipe.from_json(recipe.to_json()), cube)["find_disks"]
        assert replay == tuner.peaks and max(tuner.peaks.counts().max(), 0) <= 9
        np.testing.assert_array_equal(tuner.count_view.data, tuner.peaks.counts())
        np.testing.assert_array_equal(tuner.bragg_view.data, fw.bragg_vector_map(replay, cube.detector_shape))
    finally:
        tuner.close()


def test_vacuum_region_template_replays(sample) -> None:
    cube = vacuum_cube(sample)
    tuner = DiskTuner(cube, positions=[(8, 8), (12, 3)]).wait()
    try:
        tuner.set_vacuum_region({"kind": "rectangle", "x0": 0, "x1": 4, "y0": 0, "y1": 16}).wait()
        t = tuner.find_params.template
        assert t.source == "vacuum_region" and t.region.sum() == 64 and t.region[:4].all()
        assert tuner.template_message.value == "" and tuner._source.value == "vacuum region"
        assert any(o["id"] == VACUUM_ID for o in tuner.real_view.overlays)
        assert tuner.template.radius == pytest.approx(sample[1].disk_radius_px, abs=0.3)
        assert sum(tuner.marker_counts()) > 0
        tuner.run().wait_run()
        assert fw.run(Recipe.from_json(tuner.params.to_json()), cube)["find_disks"] == tuner.peaks
    finally:
        tuner.close()


@pytest.mark.parametrize("vacuum, words", [(np.ones((64, 64)), "shape"), (np.zeros((128, 128)), "all zero")])
def test_bad_vacuum_image_is_a_message(sample, vacuum, words) -> None:
    tuner = DiskTuner(sample[0], n_positions=2, vacuum=vacuum).wait()
    try:
        assert tuner.template_message.value == ""
        tuner._source.value = "vacuum image"
        tuner.wait()
        msg = tuner.template_message.value
        assert words in msg and "fw-error" in msg and "Traceback" not in msg
        assert tuner.marker_counts() == [0, 0]
        tuner._source.value = "synthetic"  # back to a good template: the message goes
        tuner.wait()
        assert tuner.template_message.value == "" and min(tuner.marker_counts()) > 0
    finally:
        tuner.close()


def test_region_without_vacuum_is_a_message(tuner) -> None:
    tuner.set_vacuum_region({"kind": "polygon", "vertices": [[0, 0], [0, 6], [6, 6], [6, 0]]}).wait()
    assert "does not look like vacuum" in tuner.template_message.value
    assert tuner.marker_counts() == [0] * 6


def test_thresholds_rejecting_everything_is_a_message(tuner) -> None:
    tuner._min_abs.value = 1e9
    tuner.wait()
    assert tuner.marker_counts() == [0] * 6
    assert "reject every peak" in tuner.detect_message.value
    tuner._min_abs.value = 0.0
    tuner.wait()
    assert tuner.detect_message.value == ""


def test_out_of_range_value_is_refused_beside_the_control(tuner) -> None:
    before = tuner.find_params
    tuner.set(min_relative_intensity=2.0)
    assert "min_relative_intensity" in tuner.detect_message.value
    assert tuner.find_params == before


def test_nan_pattern_is_skipped_with_a_message(sample) -> None:
    cube, truth = sample
    data = cube.to_numpy().copy()
    data[5, 5, 10, 10] = np.nan
    nan_cube = DataCube(data, cube.calibration)
    # the synthetic template measures a NaN-safe mean pattern, so it still works;
    # the spoiled pattern itself is flagged beside the detection controls
    tuner = DiskTuner(nan_cube, positions=[(5, 5), (9, 9)]).wait()
    try:
        assert tuner.template_message.value == ""
        assert "NaN" in tuner.detect_message.value and "pattern 1" in tuner.detect_message.value
        assert tuner.marker_counts()[0] == 0 and tuner.marker_counts()[1] > 0
    finally:
        tuner.close()
    params = FindDisksParams().replace(template=FindDisksParams().template.replace(source="vacuum_image"))
    tuner = DiskTuner(nan_cube, params, positions=[(5, 5), (9, 9)], vacuum=truth.vacuum_probe()).wait()
    try:
        assert tuner.template_message.value == ""
        assert "NaN" in tuner.detect_message.value and "pattern 1" in tuner.detect_message.value
        assert tuner.marker_counts()[0] == 0 and tuner.marker_counts()[1] > 0
        assert "NaN" in tuner.strip_views[0].title
        tuner.run().wait_run()
        assert tuner.run_state == "done" and "1 patterns held NaN" in tuner.run_message.value
        assert tuner.peaks.counts()[5, 5] == 0 and tuner.peaks.flags[5, 5] == 1
    finally:
        tuner.close()


def test_run_rejecting_everything_says_so(sample) -> None:
    tuner = DiskTuner(sample[0], n_positions=1).wait()
    try:
        tuner.set(min_absolute_intensity=1e9).run().wait_run()
        assert tuner.run_state == "done" and len(tuner.peaks) == 0
        assert "rejected every peak" in tuner.run_message.value
    finally:
        tuner.close()


def test_cancel_keeps_the_finished_part_and_writes_nothing(sample, tmp_path, monkeypatch) -> None:
    cube, _ = sample
    monkeypatch.chdir(tmp_path)
    tuner = DiskTuner(cube, n_positions=2, engine_options={"chunk_bytes": ROW_BYTES, "workers": 1}).wait()
    try:
        # cancel as soon as the first chunk is merged (the progress bar moves on the job's thread)
        tuner.progress.observe(lambda ch: 0 < ch["new"] < 1 and tuner.cancel(), names="value")
        tuner.run().wait_run()
        assert tuner.run_state == "cancelled" and tuner.peaks is None
        done = np.isfinite(tuner.partial_counts)
        assert done[0].all() and not done[-1].any()
        full = fw.run(tuner.params, cube)["find_disks"].counts()
        np.testing.assert_array_equal(tuner.partial_counts[done], full[done])
        np.testing.assert_array_equal(tuner.count_view.data, tuner.partial_counts)
        assert tuner.count_view.badge == "cancelled" and "cancelled" in tuner.run_message.value
        assert not tuner._cancel_btn.disabled is False and not tuner._run_btn.disabled
        assert os.listdir(tmp_path) == []
    finally:
        tuner.close()


def test_rejects_what_is_not_a_cube() -> None:
    with pytest.raises(TypeError, match="DataCube"):
        DiskTuner(np.zeros((2, 2, 8, 8)))


def test_template_matches_headless_template(tuner, sample) -> None:
    ref = probe_template(sample[0], FindDisksParams().template)
    np.testing.assert_array_equal(tuner.template.kernel, ref.kernel)


def test_slider_echo_of_an_automatic_value_changes_nothing(tuner) -> None:
    """The browser snaps 6.44 px to the 0.5 px step and sends it back: spacing and radius stay automatic."""
    before = tuner.find_params
    tuner._spacing.value = round(tuner._spacing.value * 2) / 2
    tuner._radius.value = round(tuner._radius.value * 20) / 20
    tuner.wait()
    assert tuner.find_params == before and before.min_peak_spacing is None and before.template.radius is None
    tuner._spacing.value = tuner._spacing.value + 2.0  # a real move
    assert tuner.find_params.min_peak_spacing == tuner._spacing.value


def test_lattice_record_survives_the_tuner_and_run_applies_it(sample) -> None:
    # The tuner has no control for the lattice constraint; a record that holds one must keep
    # it (no silent loss) and "run on all" must apply it, equal to the headless replay.
    from fourd_widgets.analysis.disks import FLAG_LATTICE, DiskLatticeParams

    cube, _ = sample
    p = FindDisksParams(lattice=DiskLatticeParams(scan_sigma=1.5))
    tuner = DiskTuner.from_params(cube, p, n_positions=2).wait()
    try:
        tuner.set(min_relative_intensity=0.05)
        tuner.wait()
        assert tuner.find_params.lattice == DiskLatticeParams(scan_sigma=1.5)
        tuner.run().wait_run()
        assert tuner.run_state == "done"
        assert (tuner.peaks.flags & FLAG_LATTICE).any()
        assert fw.run(tuner.params, cube)["find_disks"] == tuner.peaks
    finally:
        tuner.close()


def test_the_subpixel_note_names_the_refinement_auto_chose():
    """Issue 12 item 21: beside the subpixel menu, which refinement 'auto' chose."""
    from fourd_widgets.widgets.disk_tuner import DiskTuner

    cube, _ = fw.datasets.sample("strained_crystal", small=True)
    tuner = DiskTuner(cube, n_positions=2)
    try:
        tuner.session.wait()
        tuner._show_params()
        assert tuner._subpixel.value == "auto"
        assert "auto → disk" in tuner._subpixel_note.value
        assert tuner._probe_fit.value and "recorded central disk" in tuner._subpixel_note.value
        tuner._probe_fit.value = False  # the checkbox sets the record's probe_fit
        tuner.session.wait()
        tuner._show_params()
        assert tuner.session.find_params.probe_fit is False
        assert "recorded central disk" not in tuner._subpixel_note.value
        tuner._subpixel.value = "spot"
        tuner.session.wait()
        tuner._show_params()
        assert "auto" not in tuner._subpixel_note.value and "spot" in tuner._subpixel_note.value
    finally:
        tuner.close()
