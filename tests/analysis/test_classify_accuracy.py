"""Classification against the simulated ground truth in ../shared/data (issue 15's accuracy targets)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import fourd_widgets as fw
from fourd_widgets.analysis.classify import ClassifyParams, classify
from fourd_widgets.analysis.features import FeatureParams


def matched_fraction(labels: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of positions whose label equals the truth after the best relabelling (Hungarian)."""
    n = int(max(labels.max(), truth.max())) + 1
    table = np.zeros((n, n))
    np.add.at(table, (labels.ravel(), truth.ravel()), 1)
    r, c = linear_sum_assignment(-table)
    return float(table[r, c].sum() / labels.size)


@pytest.fixture(scope="module")
def polycrystal(shared_data):
    path = shared_data / "si_polycrystal_4zones.h5"
    with h5py.File(path, "r") as f:
        truth = f["ground_truth/grain_id"][()]
    clean = fw.load(path)
    counts = np.random.default_rng(0).poisson(clean.to_numpy() * 1e4).astype(np.uint16)  # 1e4 e- per pattern
    return clean, fw.DataCube(counts, clean.calibration), truth


@pytest.mark.parametrize("noisy", [False, True], ids=["noise-free", "poisson-1e4"])
@pytest.mark.parametrize("n_classes", [None, 4], ids=["bic", "given"])
def test_polycrystal_classes_equal_the_grains(polycrystal, noisy, n_classes):
    clean, counts, truth = polycrystal
    cube = counts if noisy else clean
    # the automatic route: BIC on a diagonal Gaussian mixture over <= 10 principal components
    r = classify(cube, ClassifyParams(features=FeatureParams(bin=4, scaling="sqrt"), n_components=8,
                                      n_classes=n_classes, patterns=("mean",)))
    assert r.n_classes == 4
    assert matched_fraction(r.labels, truth) == 1.0  # 100 % up to relabelling, as the issue asks
    if n_classes is None:
        assert r.bic is not None and int(r.bic[0, np.argmin(r.bic[1])]) == 4


def test_bicrystal_grain_b_probability_follows_the_probe_fraction(shared_data):
    path = shared_data / "si_001_bicrystal_10deg.h5"
    with h5py.File(path, "r") as f:
        frac = f["ground_truth/fraction_probe_on_grainB"][()]
        grain = f["ground_truth/grain_label"][()]
    r = classify(fw.load(path), ClassifyParams(features=FeatureParams(bin=4, scaling="sqrt"), n_components=2,
                                               n_classes=2, method="kmeans", probability="unmixing",
                                               patterns=()))
    assert matched_fraction(r.labels, grain) == 1.0  # the two grains are separated
    b = int(np.argmax([(r.labels == k)[grain == 1].mean() for k in range(2)]))
    mixed = (frac > 0.1) & (frac < 0.9)
    assert mixed.sum() == 80
    p = r.probabilities[..., b][mixed]
    # the targets: mean absolute error <= 0.1 and Pearson r >= 0.95 over the mixed positions
    assert np.abs(p - frac[mixed]).mean() <= 0.1
    assert np.corrcoef(p, frac[mixed])[0, 1] >= 0.95
