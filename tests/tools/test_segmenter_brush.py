"""The Segmenter's brush: strokes and masks painted into the record, a semi-supervised pass, replay."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

import fourd_widgets as fw
from fourd_widgets.analysis.class_paint import brush_mask
from fourd_widgets.datasets import load_shared
from fourd_widgets.tools.segmenter import SegmenterSession

from .test_segmenter_session import bands_cube, session  # noqa: F401  (the same three-band scan and session)


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half)."""
    r = rankdata(score)
    n1, n0 = truth.sum(), (~truth).sum()
    return float((r[truth].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_a_stroke_covers_the_positions_within_the_radius_of_its_path():
    ii, jj = np.meshgrid(np.arange(9), np.arange(12), indexing="ij")
    # an L-shaped stroke (2, 1) -> (2, 8) -> (6, 8); distance of every position to the two segments
    d1 = np.hypot(ii - 2, jj - np.clip(jj, 1, 8))
    d2 = np.hypot(ii - np.clip(ii, 2, 6), jj - 8)
    want = np.minimum(d1, d2) <= 1.5
    np.testing.assert_array_equal(brush_mask((9, 12), [(2, 1), (2, 8), (6, 8)], 1.5), want)
    dab = brush_mask((9, 12), [(4.2, 3.9)], 0.0)
    assert dab.sum() == 1 and dab[4, 4]


def test_painting_is_in_the_record_and_replays(session):
    s, truth = session
    # one stroke down the middle band for class 0, dabs in the others
    s.paint_labels([(0, 5), (9, 6)], 0).paint_labels([(5, 1)], 1, radius=1).paint_labels([(5, 10)], 2).wait()
    assert not s.error
    seeds = s.params.steps[1].seeds
    assert (seeds[:, 5:7] == 0).sum() >= 10 and (seeds == 1).sum() == 5 and (seeds == 2).sum() == 1
    np.testing.assert_array_equal(s.classification.labels, np.array([1, 0, 2])[truth])
    replay = fw.run(fw.Recipe.from_json(s.params.to_json()), s.cube)
    np.testing.assert_array_equal(replay["classify"].labels, s.classification.labels)  # the stored model
    # the same record without its model refits from the painting alone, to the same classes
    refit = fw.run(fw.Recipe((s.params.steps[1].replace(model=None),)), s.cube)
    np.testing.assert_array_equal(refit["classify"].labels, s.classification.labels)


def test_erasing_and_a_mask_and_bad_paint(session):
    s, truth = session
    s.paint_labels(truth == 2, 0).paint_labels(truth == 0, 1).wait()
    np.testing.assert_array_equal(s.classification.labels, np.where(truth == 2, 0, 1))  # two classes painted
    s.erase_labels(np.ones(truth.shape, bool)).wait()
    assert s.painted_labels is None and s.classification.n_classes == 2
    s.paint_labels([(0, 0)], 2).wait()
    assert "paint every class from 0 up" in s.error


@pytest.fixture(scope="module")
def fem_film(shared_data):
    return load_shared("si_amorphous_nanocrystals_fem", root=shared_data)


def test_a_few_painted_positions_find_the_nanocrystals(fem_film):
    """Pattern features cannot tell the four differently oriented nanocrystals from amorphous speckle
    unsupervised (AUC 0.73); a dab on each crystal and two strokes across the amorphous film give 0.999
    (measured; radius-1 dabs: 1.0)."""
    cube, truth = fem_film
    crystal = (truth["crystal_under_probe"] >= 0).ravel()
    s = SegmenterSession(cube, fw.ClassifyParams(features=fw.FeatureParams(scaling="sqrt"), n_components=4,
                                                 n_classes=2, patterns=("mean",)))
    try:
        s.wait()
        before = max(roc_auc(crystal, s.classification.probabilities[..., k].ravel()) for k in range(2))
        assert before < 0.8
        for centre in [(4, 4), (4, 12), (12, 4), (12, 12)]:
            s.paint_labels([centre], 1)
        s.paint_labels([(8, 0), (8, 15)], 0).paint_labels([(0, 8), (15, 8)], 0).wait()
        assert not s.error and (s.painted_labels >= 0).sum() == 35
        assert roc_auc(crystal, s.classification.probabilities[..., 1].ravel()) >= 0.95
    finally:
        s.close()


def test_dragging_the_marker_in_paint_mode_paints_one_stroke():
    """The view without a browser: the traits the front end sets while the marker is dragged."""
    from fourd_widgets.widgets.segmenter import PICK_ID, Segmenter

    cube, truth = bands_cube()
    view = Segmenter(cube, fw.ClassifyParams(features=fw.FeatureParams(bin=2), n_components=3, n_classes=3))
    s = view.session
    try:
        s.wait()
        fits = []
        s.listen(lambda e, v: fits.append(v) if e == "classes" else None)
        view.mode.value = "paint"
        view.paint_label.value = 1
        cv = view.class_view

        def move(x, y):
            cv.overlays = [dict(ov, x=float(x), y=float(y)) if ov["id"] == PICK_ID else ov for ov in cv.overlays]

        move(0, 1)  # a click: a dab of class 1
        s.wait()
        assert "paint every class from 0 up" in s.error  # class 0 is not painted yet
        cv.dragging = PICK_ID  # the marker is grabbed at (0, 1) and dragged down the left band
        for x in range(1, 10):
            move(x, 1)
        assert (s.painted_labels >= 0).sum() == 1  # nothing painted while the stroke goes on
        cv.dragging = ""
        s.wait()
        assert (s.painted_labels == 1).sum() == 10 and (s.painted_labels[:, 1] == 1).all()
        view.paint_label.value = 0
        move(5, 5)
        view.brush.radius.value = 1.0
        move(5, 10)
        s.wait()
        assert not s.error and s.classification.n_classes == 2  # the good fit cleared the message
        assert (s.painted_labels == 0).sum() == 1 + 5  # a dab, then a dab of radius 1
        # left band painted 1, right band 0; the middle band goes with what it resembles least apart
        assert (s.classification.labels[truth == 0] == 1).all() and (s.classification.labels[truth == 2] == 0).all()
        assert len(view.class_view.markers) == 1 and view.class_view.markers[0]["id"] == "painted"
    finally:
        s.close()
