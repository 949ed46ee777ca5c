"""The Segmenter's headless session: live tuning, class picks, merge/split/paint, and replay of its recipe."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.core.calibration import Calibration
from fourd_widgets.tools.segmenter import SegmenterSession


def bands_cube(seed: int = 0) -> tuple[fw.DataCube, np.ndarray]:
    """Three vertical bands, each with a spot of its own, plus noise; and the band of every position."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.array([0] * 4 + [1] * 4 + [2] * 4)[None], 10, axis=0)
    a = rng.normal(0.1, 0.02, (10, 12, 16, 16)).clip(0).astype(np.float32)
    for k, (i, j) in enumerate([(4, 4), (4, 11), (11, 8)]):
        a[truth == k, i - 1:i + 2, j - 1:j + 2] += 1.0
    return fw.DataCube(a, Calibration(origin=(8.0, 8.0))), truth


@pytest.fixture
def session():
    cube, truth = bands_cube()
    s = SegmenterSession(cube)
    s.set_features(bin=2).set(n_classes=3, n_components=3).wait()
    yield s, truth
    s.close()


def test_classes_follow_the_bands_and_the_recipe_replays_them(session):
    s, truth = session
    assert not s.error
    c = s.classification
    assert all(len(np.unique(c.labels[truth == k])) == 1 for k in range(3)) and c.n_classes == 3
    res = fw.run(s.params, s.cube)
    np.testing.assert_array_equal(res["classify"].labels, c.labels)  # bit-equal replay of the trained model
    np.testing.assert_array_equal(res["decompose"].maps, s.decomposition.maps)


def test_dragging_components_slices_one_pca_fit(session):
    s, _ = session
    events = []
    s.listen(lambda e, v: events.append((e, v)))
    before = s._pca_cache[1]
    s.set_decomposition(n_components=2).wait()
    assert s._pca_cache[1] is before  # no refit: the maps are the first two of the cached fit
    np.testing.assert_array_equal(s.decomposition.maps, before.maps[..., :2])
    comps = [v for e, v in events if e == "components"]
    assert comps and comps[-1].maps.shape[-1] == 2 and comps[-1].loading_images.shape[0] == 2


def test_click_a_class_to_see_its_mean_pattern(session):
    s, truth = session
    k = s.class_at(3, 10)
    got = []
    s.listen(lambda e, v: got.append(v) if e == "class_pattern" else None)
    pattern = s.select_class(k)
    members = s.cube.to_numpy()[s.classification.labels == k]
    np.testing.assert_allclose(pattern, members.mean(axis=0), rtol=1e-5)
    assert got and got[-1][0] == k


def test_merge_then_split_and_an_impossible_merge(session):
    s, truth = session
    a, b = s.class_at(0, 0), s.class_at(0, 11)
    s.merge(a, b).wait()
    assert s.classification.n_classes == 2 and s.params.steps[1].model.n_classes == 2
    merged = s.class_at(0, 0)
    assert (s.classification.labels[(truth == 0) | (truth == 2)] == merged).all()
    s.split(merged).wait()
    assert s.classification.n_classes == 3
    assert all(len(np.unique(s.classification.labels[truth == k])) == 1 for k in range(3))
    s.merge(0, 7)
    assert "two different classes" in s.messages["classes"][0]


def test_painted_labels_give_a_semi_supervised_pass(session):
    s, truth = session
    s.paint([(2, 1), (5, 2)], 1).paint([(2, 5)], 0).paint([(2, 9)], 2).wait()
    np.testing.assert_array_equal(s.classification.labels, np.array([1, 0, 2])[truth])
    assert (s.params.steps[1].seeds >= 0).sum() == 4


def test_bad_numbers_are_messages_not_exceptions(session):
    s, _ = session
    s.set(n_components=500).wait()
    assert "n_components" in s.error


def test_a_classification_record_alone_sets_the_features_of_both():
    cube, _ = bands_cube()
    s = SegmenterSession(cube, fw.ClassifyParams(features=fw.FeatureParams(bin=2), n_components=3, n_classes=3))
    try:
        s.wait()
        assert s.decompose_record.features == s.classify_record.features
        assert s.decomposition.maps.shape[-1] == 3 and s.decomposition.loading_images.shape[1:] == (8, 8)
    finally:
        s.close()


def test_a_slow_refit_keeps_the_previous_classes_shown_with_progress(session, monkeypatch):
    """Issue 15: for NMF, ICA and GMM the previous result stays, with progress shown, until the refit arrives."""
    import threading

    import fourd_widgets.tools.segmenter as segmenter

    s, _ = session
    before = s.classification
    gate, entered = threading.Event(), threading.Event()
    real = segmenter.classify_features

    def slow(*args, **kwargs):  # the refit, held until the test has looked at the session
        entered.set()
        gate.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(segmenter, "classify_features", slow)
    s.set(method="gmm", n_classes=2)
    assert entered.wait(30)
    assert s.classification is before and s.busy  # the old classes stay, and the session says it is working
    gate.set()
    s.wait()
    assert s.classification is not before and s.classification.n_classes == 2 and not s.busy
