"""The incremental classification (principal axes from the covariance summed over row batches, or
IncrementalPCA above COVARIANCE_MAX_FEATURES; MiniBatchKMeans) on many batches: the same classes as in
memory, and a replay of its record gives the same labels bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis import classify as classify_module
from fourd_widgets.analysis.classify import ClassifyParams, classify
from fourd_widgets.analysis.features import FeatureParams
from fourd_widgets.core.recipe import Recipe

from .test_classify import phases_cube


@pytest.mark.parametrize("standardize", [False, True])
def test_incremental_route_over_many_pca_batches_matches_in_memory_and_replays_bit_equal(monkeypatch, standardize):
    cube, truth = phases_cube(seed=4, shape=(18, 15))  # 270 positions, 64 features
    # 40 rows per PCA batch (not the 270 of one batch): seven batches
    monkeypatch.setattr(classify_module, "PCA_BATCH_BYTES", 40 * 4 * 64)
    p = ClassifyParams(features=FeatureParams(bin=2), n_components=3, n_classes=3, method="kmeans",
                       standardize=standardize, patterns=())
    full = classify(cube, p)
    inc = classify(cube, p.replace(incremental=True, batch_size=16))
    same = [(full.labels == a) == (inc.labels == b) for a in range(3) for b in range(3)]
    assert sum(bool(s.all()) for s in same) == 3  # identical partitions up to relabelling
    lut = {int(truth[inc.labels == k][0]): k for k in range(3)}
    np.testing.assert_array_equal(inc.labels, np.vectorize(lut.get)(truth))  # and the true bands
    # the model centres the data with the mean of all rows, summed batch by batch
    x = fw.analysis.compute_features(cube, p.features).values.reshape(-1, 64)
    if not standardize:
        np.testing.assert_allclose(inc.model.mean, x.mean(axis=0, dtype=np.float64), rtol=1e-6)
    replay = fw.run(Recipe((inc.params,)), cube)["classify"]
    np.testing.assert_array_equal(replay.labels, inc.labels)
    np.testing.assert_array_equal(replay.probabilities, inc.probabilities)
    np.testing.assert_array_equal(replay.coordinates, inc.coordinates)


@pytest.mark.parametrize("standardize", [False, True])
def test_covariance_axes_are_the_pca_of_the_rows_even_far_from_the_origin(standardize):
    # four directions of distinct spread (ratios >= 2: well-separated eigenvalues) in 12 features, on an
    # offset of 1e4 against unit spread: summing squares about zero would cancel ~8 of float64's 16 digits
    rng = np.random.default_rng(5)
    basis = np.linalg.qr(rng.normal(size=(12, 12)))[0][:4]
    x = 1e4 + (rng.normal(size=(3000, 4)) * [8.0, 4.0, 2.0, 1.0]) @ basis + 0.1 * rng.normal(size=(3000, 12))
    x = x * np.linspace(1, 3, 12) if standardize else x  # unequal feature scales: standardising matters
    mean, scale, axes = classify_module._covariance_axes(x, 3, standardize, rows=257)  # 12 batches, a short last one
    from sklearn.decomposition import PCA
    sd = x.std(axis=0) if standardize else np.ones(12)
    ref = PCA(3, svd_solver="full").fit((x - x.mean(axis=0)) / sd).components_
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scale, sd, rtol=1e-9)
    # the same axes up to sign (1e-9: float64 round-off amplified by the eigenvalue gaps, not a fit tolerance)
    np.testing.assert_allclose(np.abs((axes * ref).sum(axis=1)), 1.0, atol=1e-9)
    # signed reproducibly: each axis's largest loading is positive
    assert (axes[np.arange(3), np.argmax(np.abs(axes), axis=1)] > 0).all()


@pytest.mark.parametrize("standardize", [False, True])
def test_the_covariance_and_incrementalpca_routes_agree(monkeypatch, standardize):
    """Up to COVARIANCE_MAX_FEATURES the incremental route takes the axes from the covariance; above it
    from IncrementalPCA's partial fits: both give the same model on data both can take."""
    cube, truth = phases_cube(seed=8, shape=(18, 15))  # 270 positions, 64 features
    monkeypatch.setattr(classify_module, "PCA_BATCH_BYTES", 40 * 4 * 64)  # seven batches in both routes
    p = ClassifyParams(features=FeatureParams(bin=2), n_components=3, n_classes=3, method="kmeans",
                       standardize=standardize, incremental=True, batch_size=16, patterns=())
    cov = classify(cube, p)
    from sklearn.decomposition import IncrementalPCA
    fits = []
    real = IncrementalPCA.partial_fit
    monkeypatch.setattr(IncrementalPCA, "partial_fit", lambda self, *a, **k: fits.append(1) or real(self, *a, **k))
    monkeypatch.setattr(classify_module, "COVARIANCE_MAX_FEATURES", 63)
    ipca = classify(cube, p)
    assert len(fits) == 7  # the IncrementalPCA route was taken, batch by batch
    # the covariance route is the exact PCA of the rows: the in-memory scikit-learn PCA of the same
    # (scaled) features; three bands span two directions around their mean, so the two signal axes agree
    # (up to sign) to float64 round-off; the third axis is noise, free to differ
    from sklearn.decomposition import PCA
    x = fw.analysis.compute_features(cube, p.features).values.reshape(-1, 64).astype(np.float64)
    sd = x.std(axis=0) if standardize else np.ones(64)
    exact = PCA(3, svd_solver="full").fit((x - x.mean(axis=0)) / sd).components_
    np.testing.assert_allclose(np.abs((cov.model.components[:2] * exact[:2]).sum(axis=1)), 1.0, atol=1e-9)
    if not standardize:
        # IncrementalPCA keeps only k directions between batches, so it is exact only up to what it
        # drops: little here (noise 0.02 against spots of 1), the axes agree to its float32 round-off.
        # Standardised, the 62 noise features weigh as much as the signal ones and IncrementalPCA's
        # truncation tilts its axes (~0.5 %): there only the partitions are compared
        np.testing.assert_allclose(np.abs((cov.model.components[:2] * ipca.model.components[:2]).sum(axis=1)),
                                   1.0, atol=1e-5)
    np.testing.assert_allclose(cov.model.mean, ipca.model.mean, rtol=1e-6)
    np.testing.assert_allclose(cov.model.scale, ipca.model.scale, rtol=1e-6)
    same = [(cov.labels == a) == (ipca.labels == b) for a in range(3) for b in range(3)]
    assert sum(bool(s.all()) for s in same) == 3  # identical partitions up to relabelling
    lut = {int(truth[cov.labels == k][0]): k for k in range(3)}
    np.testing.assert_array_equal(cov.labels, np.vectorize(lut.get)(truth))  # and the true bands
