"""Crystallinity features (local FEM per radial bin) and crystalline/amorphous classes on the simulated film."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import rankdata

import fourd_widgets as fw
from fourd_widgets.analysis.classify import ClassifyParams, classify
from fourd_widgets.analysis.features import compute_features
from fourd_widgets.analysis.features_polar import PolarFeatureParams, features_of, polar_features
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import ParameterError
from fourd_widgets.core.params import record_from_dict
from fourd_widgets.datasets import load_shared


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half)."""
    r = rankdata(score)
    n1, n0 = truth.sum(), (~truth).sum()
    return float((r[truth].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def spotted_cube() -> tuple[DataCube, np.ndarray]:
    """4x4 patterns: a smooth ring everywhere, and six Bragg spots on it where ``crystal`` is True."""
    x, y = np.meshgrid(np.arange(40) - 20.0, np.arange(40) - 20.0, indexing="ij")
    ring = np.exp(-0.5 * ((np.hypot(x, y) - 12) / 1.5) ** 2)
    spots = ring * np.exp(3 * (np.cos(6 * np.arctan2(y, x)) - 1))
    crystal = np.zeros((4, 4), bool)
    crystal[1:3, 2:] = True
    a = np.where(crystal[..., None, None], 1 + ring + 4 * spots, 1 + ring)
    return DataCube(a, Calibration(origin=(20, 20))), crystal


def test_spots_on_a_ring_raise_the_ratio_only_in_their_band():
    cube, crystal = spotted_cube()
    f = polar_features(cube, PolarFeatureParams(scaling="none", q_max=19))
    ring = np.abs(f.axis - 12) < 2
    # a smooth ring has no angular variance (pixel splitting leaves ~1e-3); spots give O(1)
    assert (f.values[crystal][:, ring].mean(axis=1) > 0.1).all()
    assert (f.values[~crystal].max(axis=1) < 0.01).all()
    assert (f.values[crystal][:, np.abs(f.axis - 12) > 5].max() < 0.01)
    bands = polar_features(cube, PolarFeatureParams(kind="fem_bands", k_ranges=((10, 14), (2, 5)), scaling="none"))
    assert bands.values.shape == (4, 4, 2) and np.array_equal(bands.values[..., 0] > 0.1, crystal)


def test_the_record_replays_through_json_and_bad_bands_are_explained():
    rec = ClassifyParams(features=PolarFeatureParams(k_ranges=((0.25, 0.95),)), n_classes=2)
    again = record_from_dict(json.loads(json.dumps(rec.to_dict())))
    assert type(again.features) is PolarFeatureParams and again == rec
    with pytest.raises(ParameterError, match="k_ranges"):
        PolarFeatureParams(kind="fem_bands")
    with pytest.raises(ParameterError, match="hi > lo"):
        PolarFeatureParams(k_ranges=((0.5, 0.3),))
    cube, _ = spotted_cube()
    np.testing.assert_array_equal(features_of(cube, fw.FeatureParams(bin=4)).values,
                                  compute_features(cube, fw.FeatureParams(bin=4)).values)


@pytest.fixture(scope="module")
def fem_film(shared_data):
    return load_shared("si_amorphous_nanocrystals_fem", root=shared_data)


def test_crystalline_against_amorphous_positions(fem_film):
    """Issue 15: crystalline against amorphous positions of the a-Si/nc-Si film, scored against
    ``crystal_under_probe`` by ROC AUC (target >= 0.95).

    Local FEM per radial bin over the whole detector, log scaled, then PCA and a two-class
    diagonal Gaussian mixture; the crystalline class is the one whose members fluctuate most
    round the rings (chosen from the features, not from the truth). Measured: AUC 0.999 of the
    crystalline-class probability (labels alone: 0.99 of positions right). The band-mean local
    FEM map (kind 'fem_bands' over {111} and {220}) reaches only 0.96: the probe (~1.2 nm) is as
    wide as the crystals, and the other reflections of the profile are what separate the edges.
    With Poisson counts (counted=True, one draw): 0.998 at 1e6 e-/pattern, 0.987 at 1e5, 0.79 at 1e4
    (there the {111} band holds ~130 electrons per pattern).
    """
    cube, truth = fem_film
    crystal = truth["crystal_under_probe"] >= 0
    r = classify(cube, ClassifyParams(features=PolarFeatureParams(), n_components=4, n_classes=2, patterns=()))
    f = polar_features(cube, PolarFeatureParams()).values
    k = int(np.argmax([f[r.labels == c].mean() for c in range(2)]))
    auc = roc_auc(crystal.ravel(), r.probabilities[..., k].ravel())
    assert auc >= 0.95
    assert (r.labels == k).mean() == pytest.approx(crystal.mean(), abs=0.05)  # about a third of the film
    replay = fw.run(fw.Recipe.from_json(fw.Recipe((r.params,)).to_json()), cube)
    np.testing.assert_array_equal(replay["classify"].labels, r.labels)  # the stored model, bit-equal


def test_the_segmenter_separates_the_crystals_with_the_fem_feature(fem_film):
    """The same as a Segmenter user: pick the 'fem_profile' features, two classes (the AUC as above)."""
    from fourd_widgets.tools.segmenter import SegmenterSession
    from fourd_widgets.widgets.segmenter import Segmenter

    cube, truth = fem_film
    crystal = truth["crystal_under_probe"] >= 0
    view = Segmenter(cube, fw.ClassifyParams(n_components=4, n_classes=2, patterns=("mean",)))
    s: SegmenterSession = view.session
    try:
        view.kind.value = "fem_profile"  # the feature dropdown, as a user picks it
        s.wait()
        assert not s.error and type(s.params.steps[1].features) is PolarFeatureParams
        assert view.scaling.value == "log"  # the record's scaling is shown
        c = s.classification
        f = polar_features(cube, s.classify_record.features).values
        k = int(np.argmax([f[c.labels == j].mean() for j in range(2)]))
        assert roc_auc(crystal.ravel(), c.probabilities[..., k].ravel()) >= 0.95
        np.testing.assert_array_equal(fw.run(s.params, cube)["classify"].labels, c.labels)
    finally:
        s.close()


def test_counted_crystallinity_finds_the_grains_of_the_sample_film():
    """The built-in amorphous film (Poisson counts, four small grains): with the shot noise removed from the
    angular variance (counted=True) the two classes are the grains and the amorphous film, every position
    (measured: 100 %; without the correction 99.6 %; pattern features with sqrt scaling: 8 %)."""
    cube, truth = fw.datasets.sample("amorphous_film", small=True)
    grains = truth.grain_map >= 0
    r = classify(cube, ClassifyParams(features=PolarFeatureParams(counted=True), n_components=4, n_classes=2,
                                      patterns=()))
    crystalline = r.labels == r.labels[grains][0]
    np.testing.assert_array_equal(crystalline, grains)
