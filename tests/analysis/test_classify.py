"""Features, decompositions and classification on small synthetic cubes (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.class_model import ClassificationError, merge_classes, split_class
from fourd_widgets.analysis.classify import (ClassifyParams, DecomposeParams, classify, class_patterns, decompose)
from fourd_widgets.analysis.detectors import Annulus, Circle
from fourd_widgets.analysis.features import FeatureParams, compute_features
from fourd_widgets.core.calibration import Calibration
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.results import Results


def phases_cube(seed: int = 0, shape=(12, 10), det=(16, 16), noise=0.02) -> tuple[fw.DataCube, np.ndarray]:
    """Three 'phases' (a spot at three places) in vertical bands, with Gaussian noise; and the truth."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.int64)
    truth[:, shape[1] // 3:] = 1
    truth[:, 2 * shape[1] // 3:] = 2
    spots = [(4, 4), (4, 11), (11, 8)]
    a = rng.normal(0.1, noise, shape + det).clip(0).astype(np.float32)
    for k, (i, j) in enumerate(spots):
        a[truth == k, i - 1:i + 2, j - 1:j + 2] += 1.0
    return fw.DataCube(a, Calibration(origin=(8.0, 8.0))), truth


def test_pattern_features_bin_crop_mask_and_scale_like_numpy():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 50, (3, 4, 8, 12)).astype(np.uint16)
    mask = np.zeros((8, 12), bool)
    mask[2, 3] = True
    f = compute_features(fw.DataCube(a), FeatureParams(bin=2, crop=(0, 8, 2, 10), mask=mask, scaling="sqrt"),
                         chunk_bytes=256)
    ref = a.astype(float) * ~mask
    ref = ref[:, :, 0:8, 2:10].reshape(3, 4, 4, 2, 4, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(f.values, np.sqrt(ref).reshape(3, 4, -1), rtol=1e-6)
    assert f.pattern_shape == (4, 4)


def test_aligned_features_undo_the_descan():
    base = np.zeros((10, 10), np.float32)
    base[3, 6] = 1.0
    a = np.zeros((2, 2, 10, 10), np.float32)
    omap = np.zeros((2, 2, 2))
    for i, (sx, sy) in enumerate([(0, 0), (2, 0), (0, 2), (2, 2)]):
        a[i // 2, i % 2] = np.roll(base, (sx, sy), axis=(0, 1))
        omap[i // 2, i % 2] = (5 + sx, 5 + sy)
    cube = fw.DataCube(a, Calibration(origin_map=omap))
    f = compute_features(cube, FeatureParams(bin=1, align=True)).values.reshape(4, 10, 10)
    # every pattern's spot lands at the same place once shifted onto the mean origin
    spots = {tuple(np.argwhere(v == 1)[0]) for v in f}
    assert len(spots) == 1
    with pytest.raises(fw.errors.MissingCalibrationError, match="origin_map"):
        compute_features(fw.DataCube(a), FeatureParams(align=True))


def test_radial_virtual_and_array_features():
    yy, xx = np.mgrid[:32, :32]
    r = np.hypot(yy - 16, xx - 16)
    a = np.stack([np.where((r > 6) & (r < 8), 1.0, 0.0), np.where((r > 10) & (r < 12), 1.0, 0.0)])
    cube = fw.DataCube(a.reshape(1, 2, 32, 32).astype(np.float32), Calibration(origin=(16.0, 16.0)))
    f = compute_features(cube, FeatureParams(kind="radial", q_step=2.0, q_max=14.0))
    # the ring of each pattern is where its radial profile peaks
    assert abs(f.axis[np.argmax(f.values[0, 0])] - 7) <= 1 and abs(f.axis[np.argmax(f.values[0, 1])] - 11) <= 1
    v = compute_features(cube, FeatureParams(kind="virtual", detectors=(Circle((16, 16), 9), Annulus((16, 16), 9, 13))))
    np.testing.assert_allclose(v.values[0, 0], [a[0][r <= 9].sum(), 0.0], atol=1e-4)
    arr = compute_features(cube, FeatureParams(kind="array", values=np.ones((1, 2, 3))))
    assert arr.values.shape == (1, 2, 3)


def test_bragg_features_count_peaks_on_the_grid_and_sites():
    t = fw.PeakTable((1, 2), [0, 2, 3], qx=[10.0, 14.0, 10.0], qy=[10.0, 10.0, 10.0], intensity=[1.0, 2.0, 5.0],
                     correlation=[1.0, 1.0, 1.0])
    cube = fw.DataCube(np.zeros((1, 2, 20, 20), np.float32), Calibration(origin=(10.0, 10.0)))
    from fourd_widgets.analysis.features import bragg_features
    g = bragg_features(t, FeatureParams(kind="bragg", bragg_bin=4.0), (20, 20), (10.0, 10.0))
    assert g.values.shape == (1, 2, 25) and g.values[0, 0].sum() == 3.0 and g.values[0, 1].sum() == 5.0
    s = compute_features(cube, FeatureParams(kind="bragg", sites=np.array([[0.0, 0.0], [4.0, 0.0]])), peaks=t)
    assert s.values[0].tolist() == [[1.0, 2.0], [5.0, 0.0]]


def test_classes_found_and_class_patterns_are_the_class_means():
    cube, truth = phases_cube()
    r = classify(cube, ClassifyParams(features=FeatureParams(bin=2), n_components=3, n_classes=3,
                                      patterns=("mean", "max", "median")), chunk_bytes=4096)
    a = cube.to_numpy()
    for k in range(3):
        members = a[r.labels == k]
        assert (r.labels == k).sum() > 0
        np.testing.assert_allclose(r.mean_patterns[k], members.mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(r.max_patterns[k], members.max(axis=0))
        np.testing.assert_allclose(r.median_patterns[k], np.median(members, axis=0), rtol=1e-6)
    # one class per band, whatever the label numbers
    assert all(len(np.unique(r.labels[truth == k])) == 1 for k in range(3))
    assert len(np.unique(r.labels)) == 3


def test_replay_is_bit_equal_and_the_model_classifies_another_scan_without_refitting(tmp_path):
    cube, truth = phases_cube(seed=1)
    r = classify(cube, ClassifyParams(features=FeatureParams(bin=2), n_components=3, method="gmm", restarts=3))
    assert r.params.model is not None and r.agreement is not None
    res = fw.run(Recipe((r.params,)), cube)
    np.testing.assert_array_equal(res["classify"].labels, r.labels)
    np.testing.assert_array_equal(res["classify"].probabilities, r.probabilities)
    # the record as JSON, then on a new scan with new noise: the model is applied, not refitted
    back = Recipe.from_json(Recipe((r.params,)).to_json()).steps[0]
    np.testing.assert_array_equal(back.model.centres, r.params.model.centres)
    other, truth2 = phases_cube(seed=7)
    r2 = classify(other, back)
    np.testing.assert_array_equal(r2.params.model.centres, r.params.model.centres)
    lut = {int(truth[r.labels == k][0]): k for k in range(3)}
    np.testing.assert_array_equal(r2.labels, np.vectorize(lut.get)(truth2))
    # results file round trip
    saved = Results.load(res.save(tmp_path / "c.h5"))["classify"]
    np.testing.assert_array_equal(saved.labels, r.labels)
    assert saved.params == res["classify"].params


def test_incremental_route_matches_the_in_memory_one():
    cube, truth = phases_cube(seed=2, shape=(16, 12))
    p = ClassifyParams(features=FeatureParams(bin=2), n_components=3, n_classes=3, method="kmeans", patterns=())
    full = classify(cube, p)
    inc = classify(cube, p.replace(incremental=True, batch_size=32))
    same = [(full.labels == a) == (inc.labels == b) for a in range(3) for b in range(3)]
    assert sum(bool(s.all()) for s in same) == 3  # identical partitions up to relabelling
    d1 = decompose(cube, DecomposeParams(features=FeatureParams(bin=2), n_components=3))
    d2 = decompose(cube, DecomposeParams(features=FeatureParams(bin=2), n_components=3, incremental=True,
                                         batch_size=64))
    # the same principal axes (up to sign) and the same scree, in both routes
    # (three bands span two directions; the third axis is noise, free to differ)
    np.testing.assert_allclose(np.abs((d1.loadings[:2] * d2.loadings[:2]).sum(axis=1)), 1.0, atol=1e-6)
    np.testing.assert_allclose(d1.explained_variance_ratio[:2], d2.explained_variance_ratio[:2], rtol=1e-6)


def test_decompositions_give_maps_and_loadings_as_patterns():
    cube, truth = phases_cube(seed=3)
    # three bands span two directions around their mean (ICA unmixes those two; NMF needs three parts)
    for method, k in (("pca", 3), ("nmf", 3), ("ica", 2)):
        d = decompose(cube, DecomposeParams(features=FeatureParams(bin=1), method=method, n_components=k))
        assert d.maps.shape == (12, 10, k) and d.loading_images.shape == (k, 16, 16)
        # each band is told apart by the components: band means differ by more than the spread inside
        means = np.array([d.maps[truth == k].mean(axis=0) for k in range(3)])
        spread = max(d.maps[truth == k].std(axis=0).max() for k in range(3))
        assert min(np.linalg.norm(means[i] - means[j]) for i in range(3) for j in range(i)) > 5 * spread, method
    pca = decompose(cube, DecomposeParams(features=FeatureParams(bin=1), n_components=3, n_scree=10))
    ev = pca.explained_variance_ratio
    assert ev.shape == (10,) and np.all(np.diff(ev) <= 1e-12) and ev[:2].sum() > 0.9  # two directions hold 3 bands


def test_merge_and_split_edit_the_model():
    cube, truth = phases_cube(seed=4)
    r = classify(cube, ClassifyParams(features=FeatureParams(bin=2), n_components=3, n_classes=3, patterns=()))
    a, b = int(r.labels[0, 0]), int(r.labels[0, -1])
    merged = merge_classes(r.model, a, b)
    m = classify(cube, r.params.replace(model=merged), patterns=())
    assert m.n_classes == 2 and (m.labels[truth == 0] == m.labels[0, -1]).all()
    back = split_class(merged, m.coordinates, m.labels.reshape(-1), int(m.labels[0, 0]))
    s = classify(cube, r.params.replace(model=back), patterns=())
    assert s.n_classes == 3 and all(len(np.unique(s.labels[truth == k])) == 1 for k in range(3))


def test_bad_input_says_what_to_do():
    cube, _ = phases_cube(seed=5, shape=(4, 3))
    a = cube.to_numpy().copy()
    a[1, 2, 3, 3] = np.nan
    with pytest.raises(ClassificationError, match=r"NaN.*\[\[1, 2\]\].*mask"):
        classify(fw.DataCube(a), n_classes=2, n_components=2)
    with pytest.raises(ClassificationError, match="at most 12 .*n_components <= 12"):
        classify(cube, n_classes=2, n_components=20)
    r = classify(cube, ClassifyParams(features=FeatureParams(bin=2), n_components=2, n_classes=2, method="kmeans"))
    with pytest.raises(ClassificationError, match="two different classes"):
        merge_classes(r.model, 0, 0)
    with pytest.raises(ClassificationError, match="class 1 has no position.*merge it"):
        from fourd_widgets.analysis.class_model import check_classes
        check_classes(np.zeros(5, int), 2, "the merge")
    import fourd_widgets.analysis.classify as c
    old = c.IN_MEMORY_LIMIT_MB
    c.IN_MEMORY_LIMIT_MB = 0
    try:
        with pytest.raises(ClassificationError, match="incremental=True"):
            classify(cube, n_classes=2, n_components=2)
    finally:
        c.IN_MEMORY_LIMIT_MB = old
    with pytest.raises(ClassificationError, match="needs n_classes"):
        classify(cube, method="kmeans", n_components=2)


def test_semi_supervised_pass_follows_painted_labels():
    cube, truth = phases_cube(seed=6)
    seeds = np.full(truth.shape, -1)
    seeds[0, 0], seeds[0, 5], seeds[0, 9] = 2, 0, 1  # one brush stroke per band, in an order of our own
    r = classify(cube, ClassifyParams(features=FeatureParams(bin=2), n_components=3, seeds=seeds, patterns=()))
    np.testing.assert_array_equal(r.labels, np.array([2, 0, 1])[truth])


def test_class_patterns_of_a_cube_larger_than_a_chunk():
    cube, truth = phases_cube(seed=8)
    out = class_patterns(cube, truth, 3, ("mean",), chunk_bytes=2048)
    np.testing.assert_allclose(out["mean"][1], cube.to_numpy()[truth == 1].mean(axis=0), rtol=1e-5)


def test_bragg_vector_co_occurrence_finds_the_grains():
    from scipy.optimize import linear_sum_assignment

    from fourd_widgets.analysis.bragg_classes import BraggClassParams, bragg_classes
    cube, truth = fw.datasets.sample("polycrystal", small=True)
    peaks = fw.PeakTable(truth.scan_shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                         truth.peak_intensity)
    r = bragg_classes(peaks, BraggClassParams(bragg_bin=2.0), detector_shape=cube.detector_shape,
                      origin=truth.origin_map)
    grains = truth.grain_map
    assert r.probabilities.shape[-1] == len(np.unique(grains)) and (r.labels >= 0).all()
    table = np.zeros((6, 6))
    np.add.at(table, (r.labels.ravel(), grains.ravel()), 1)
    rows, cols = linear_sum_assignment(-table)
    assert table[rows, cols].sum() == grains.size  # every position in its grain's class
    # merging is what the co-occurrence threshold says: with merge_above tiny, everything merges into one
    one = bragg_classes(peaks, BraggClassParams(bragg_bin=2.0, merge_above=1e-6, split=False),
                        detector_shape=cube.detector_shape, origin=truth.origin_map)
    assert one.probabilities.shape[-1] == 1


def test_bragg_classes_without_detector_or_origin_says_what_is_missing():
    from fourd_widgets.analysis.bragg_classes import bragg_classes
    from fourd_widgets.analysis.peaks import PeakTable
    from fourd_widgets.core.errors import ParameterError

    peaks = PeakTable((2, 2), np.zeros(5, np.int64), [], [], [], [])
    with pytest.raises(ParameterError, match="detector_shape=\\(Qx, Qy\\) and origin="):
        bragg_classes(peaks)


def test_clustering_regularised_on_the_scan_grid_gives_the_contiguous_bands():
    """method='connectivity': Ward clustering joined only between scan neighbours. Heavy noise scatters
    single positions in feature space; the grid keeps each class one connected band."""
    from scipy import ndimage

    cube, truth = phases_cube(noise=0.05)
    r = classify(cube, ClassifyParams(features=FeatureParams(bin=2), n_components=3, n_classes=3,
                                      method="connectivity"))
    assert all(len(np.unique(r.labels[truth == k])) == 1 for k in range(3))
    assert len(np.unique(r.labels)) == 3
    for k in range(3):
        assert ndimage.label(r.labels == k)[1] == 1  # each class one connected region of the scan
