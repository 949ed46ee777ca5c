"""The ready-made scenes: shapes, ground truth, determinism, and errors."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets import datasets
from fourd_widgets.errors import ParameterError


def test_exports():
    assert set(datasets.__all__) >= {"simulate", "sample", "sample_names", "GroundTruth", "Grain", "load_shared"}
    assert {"strained_crystal", "polycrystal", "amorphous_film", "gold_nanoparticles", "bicrystal",
            "vacuum_probe"} <= set(datasets.sample_names())


@pytest.mark.parametrize("name", datasets.sample_names())
def test_every_scene_small(name):
    cube, truth = datasets.sample(name, small=True, detector_shape=(64, 64), reciprocal_step=0.0312)
    assert cube.shape == (16, 16, 64, 64)
    assert cube.metadata["sample"] == name
    assert truth.scan_shape == (16, 16)
    cal = cube.calibration
    assert cal.origin == pytest.approx(tuple(truth.origin_map.reshape(-1, 2).mean(0)))
    assert cal.reciprocal_step == 0.0312 and cal.real_units == "Å" and cal.reciprocal_units == "1/Å"
    data = cube.to_numpy()
    if truth.dose is None:
        assert data.dtype == np.float32
        # fractions of the probe: never more than the whole probe per pattern (pixel sampling of a
        # 3.3 px disk with a 0.6 px edge changes its integral by < 6e-5; float32 sums add ~1e-6)
        assert np.all(data.sum(axis=(2, 3)) <= 1.0 + 1e-4)
    else:
        assert data.dtype.kind == "u"
        # counts are Poisson(dose x expected): the scan's total count is within 5 sd of the model's
        expected, _ = datasets.sample(name, small=True, detector_shape=(64, 64), reciprocal_step=0.0312, dose=None)
        mu = truth.dose * float(expected.to_numpy().astype(np.float64).sum())
        assert abs(float(data.sum(dtype=np.float64)) - mu) < 5 * np.sqrt(mu)
    again, _ = datasets.sample(name, small=True, detector_shape=(64, 64), reciprocal_step=0.0312)
    np.testing.assert_array_equal(again.to_numpy(), data)


def test_strained_crystal_truth():
    _, truth = datasets.sample("strained_crystal", scan_shape=(9, 5), detector_shape=(64, 64), reciprocal_step=0.03)
    # e_xx rises linearly 0 -> 1 % along Rx; the bump adds e_yy, e_xy and rotation, never e_xx
    np.testing.assert_allclose(truth.strain_exx, np.linspace(0, 0.01, 9)[:, None] * np.ones((1, 5)), atol=1e-12)
    assert 0 < truth.strain_eyy.max() <= 0.005 and truth.rotation_deg.max() <= 0.3
    assert np.ptp(truth.origin_map[..., 0]) > 0.5  # a visible descan
    assert (truth.grain_map == 0).all()


def test_polycrystal_and_bicrystal_maps():
    _, poly = datasets.sample("polycrystal", small=True, dose=None, detector_shape=(32, 32), reciprocal_step=0.06)
    assert len(np.unique(poly.grain_map)) >= 4
    assert {tuple(g.zone_axis) for g in poly.grains} >= {(0, 0, 1), (0, 1, 1), (1, 1, 1)}
    assert poly.amorphous.max() > 0 and poly.amorphous.min() == 0  # boundaries only
    _, bi = datasets.sample("bicrystal", scan_shape=(6, 4), detector_shape=(32, 32), reciprocal_step=0.06)
    np.testing.assert_array_equal(bi.grain_map[:, 0], [0, 0, 0, 1, 1, 1])
    assert bi.grain_rotation_deg.tolist() == [0.0, 10.0]
    # the rotation shows in the g vectors: g1 of grain 1 is g1 of grain 0 turned by +10 deg
    t = np.radians(10)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    np.testing.assert_allclose(bi.g1_ref_invA[1], rot @ bi.g1_ref_invA[0], atol=1e-12)


def test_amorphous_film_and_gold():
    _, film = datasets.sample("amorphous_film", small=True, dose=None, detector_shape=(32, 32), reciprocal_step=0.06)
    assert (film.amorphous == 1).all() and 0 < (film.grain_map >= 0).mean() < 0.5
    _, au = datasets.sample("gold_nanoparticles", small=True, detector_shape=(32, 32), reciprocal_step=0.06)
    assert au.beam_stop_mask is not None and au.ellipse == (1.02, 0.98, 30.0)
    assert all(g.name == "Au" for g in au.grains)


def test_seed_changes_random_layout():
    _, a = datasets.sample("polycrystal", small=True, seed=1, detector_shape=(32, 32), reciprocal_step=0.06)
    _, b = datasets.sample("polycrystal", small=True, seed=2, detector_shape=(32, 32), reciprocal_step=0.06)
    assert not np.array_equal(a.grain_map, b.grain_map)


def test_unknown_sample_names_the_choices():
    with pytest.raises(ParameterError) as err:
        datasets.sample("graphene")
    assert err.value.field == "name"
    assert "graphene" in str(err.value) and "strained_crystal" in str(err.value)
    with pytest.raises(ParameterError) as err:
        datasets.sample("vacuum_probe", scan_shape=(0, 3))
    assert err.value.field == "scan_shape"
