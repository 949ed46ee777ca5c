"""The incremental classification (IncrementalPCA over float32 batches, MiniBatchKMeans) on many batches:
the same classes as in memory, and a replay of its record gives the same labels bit for bit."""

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
    # 40 rows per IncrementalPCA batch (not the 270 of one batch): seven partial fits
    monkeypatch.setattr(classify_module, "PCA_BATCH_BYTES", 40 * 4 * 64)
    p = ClassifyParams(features=FeatureParams(bin=2), n_components=3, n_classes=3, method="kmeans",
                       standardize=standardize, patterns=())
    full = classify(cube, p)
    inc = classify(cube, p.replace(incremental=True, batch_size=16))
    same = [(full.labels == a) == (inc.labels == b) for a in range(3) for b in range(3)]
    assert sum(bool(s.all()) for s in same) == 3  # identical partitions up to relabelling
    lut = {int(truth[inc.labels == k][0]): k for k in range(3)}
    np.testing.assert_array_equal(inc.labels, np.vectorize(lut.get)(truth))  # and the true bands
    # the model centres the data with IncrementalPCA's running mean: the mean of all rows
    x = fw.analysis.compute_features(cube, p.features).values.reshape(-1, 64)
    if not standardize:
        np.testing.assert_allclose(inc.model.mean, x.mean(axis=0, dtype=np.float64), rtol=1e-6)
    replay = fw.run(Recipe((inc.params,)), cube)["classify"]
    np.testing.assert_array_equal(replay.labels, inc.labels)
    np.testing.assert_array_equal(replay.probabilities, inc.probabilities)
    np.testing.assert_array_equal(replay.coordinates, inc.coordinates)
