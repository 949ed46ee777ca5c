"""The Segmenter's Bragg route: classes of Bragg-vector co-occurrence, merged and split by clicking, replayed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import fourd_widgets as fw
from fourd_widgets.analysis.bragg_classes import BraggClassParams, bragg_classes
from fourd_widgets.analysis.disks import FindDisksParams
from fourd_widgets.core.errors import ParameterError
from fourd_widgets.tools.segmenter import SegmenterSession
from fourd_widgets.widgets.segmenter import Segmenter


def matched_fraction(labels: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of positions whose label equals the truth after the best relabelling (Hungarian)."""
    n = int(max(labels.max(), truth.max())) + 1
    table = np.zeros((n, n))
    np.add.at(table, (labels.ravel(), truth.ravel()), 1)
    r, c = linear_sum_assignment(-table)
    return float(table[r, c].sum() / labels.size)


@pytest.fixture(scope="module")
def polycrystal():
    cube, truth = fw.datasets.sample("polycrystal", small=True)
    peaks = fw.PeakTable(truth.scan_shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                         truth.peak_intensity)
    return cube, truth, peaks


def test_bragg_classes_in_the_view_merge_and_split_by_clicking(polycrystal):
    cube, truth, peaks = polycrystal
    grains = truth.grain_map
    view = Segmenter(cube, peaks=peaks)
    s = view.session
    try:
        s.wait()
        view.class_method.value = "bragg"  # the dropdown, as a user picks it
        s.wait()
        s.use_bragg(bragg_bin=2.0).wait()
        assert not s.error and s.classification.n_classes == len(np.unique(grains))
        assert matched_fraction(s.classification.labels, grains) == 1.0  # every position in its grain's class
        pattern = s.select_class(s.class_at(0, 0))
        members = cube.to_numpy()[s.classification.labels == s.class_at(0, 0)]
        np.testing.assert_allclose(pattern, members.mean(axis=0), rtol=1e-5)
        # click a grain (a press and release on the marker, which starts at (0, 0), picks too), merge it with
        # the grain of another position, then split it again
        view.class_view.dragging = "pick"
        view.class_view.dragging = ""
        assert s.selected_class == s.class_at(0, 0)
        view.click(0, 0)
        a, b = s.class_at(0, 0), s.class_at(15, 6)
        assert s.selected_class == a and a != b
        view.merge_with.value = b
        view.merge_button.click()
        s.wait()
        merged = s.class_at(0, 0)
        assert s.classification.n_classes == len(np.unique(grains)) - 1
        assert (s.classification.labels[(grains == grains[0, 0]) | (grains == grains[15, 6])] == merged).all()
        view.click(0, 0)
        view.split_button.click()
        s.wait()
        assert matched_fraction(s.classification.labels, grains) == 1.0  # the split undoes the merge
        rec = s.params.steps[-1]
        assert isinstance(rec, BraggClassParams) and rec.edits == (("merge", min(a, b), max(a, b)), ("split", merged, 0))
        # the record (given peaks are not in it) gives the classes shown
        again = bragg_classes(peaks, BraggClassParams.from_dict(rec.to_dict()), detector_shape=cube.detector_shape,
                              origin=cube.calibration.origin)
        np.testing.assert_array_equal(again.labels, s.classification.labels)
        assert "bragg_classes" in s.results()
        s.merge(0, 99)
        assert "two different classes" in s.messages["classes"][0]
        view.class_method.value = "kmeans"  # back to features
        s.wait()
        assert s.bragg_record is None and not isinstance(s.params.steps[-1], BraggClassParams)
    finally:
        s.close()


def test_without_peaks_the_disks_are_found_and_the_recipe_replays(polycrystal):
    cube, _, _ = polycrystal
    small = fw.DataCube(cube.to_numpy()[:6, :6], cube.calibration)
    s = SegmenterSession(small)
    try:
        s.use_bragg().wait()
        assert not s.error and isinstance(s.params.steps[1], FindDisksParams)
        s.merge(0, 1).wait()
        replay = fw.run(fw.Recipe.from_json(s.params.to_json()), small)
        np.testing.assert_array_equal(replay["bragg_classes"].labels, s.classification.labels)
        again = SegmenterSession.from_params(small, s.params)
        try:
            again.wait()
            assert again.bragg_record == s.bragg_record
            np.testing.assert_array_equal(again.classification.labels, s.classification.labels)
        finally:
            again.close()
    finally:
        s.close()


def test_bad_edits_are_explained():
    with pytest.raises(ParameterError, match="not an edit"):
        BraggClassParams(edits=(("join", 0, 1),))
