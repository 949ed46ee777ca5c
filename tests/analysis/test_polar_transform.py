"""Polar transform with full pixel splitting: conservation, geometry, masks, descan, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fourd_widgets.analysis.polar import (PolarParams, distortion, polar_geometry, polar_pattern, polar_transform,
                                          split_block)
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import MissingCalibrationError, ParameterError, ShapeError


def _farthest(shape, origin, D):
    c = np.array([[-0.5, -0.5], [-0.5, shape[1] - 0.5], [shape[0] - 0.5, -0.5], [shape[0] - 0.5, shape[1] - 0.5]])
    return float(np.linalg.norm((c - origin) @ np.linalg.inv(D).T, axis=1).max())


@settings(max_examples=25, deadline=None)
@given(ox=st.floats(10, 30), oy=st.floats(10, 30), a=st.floats(0.9, 1.1), th=st.floats(0, 180),
       n_theta=st.integers(8, 200), q_step=st.floats(0.3, 3.0))
def test_intensity_is_conserved(ox, oy, a, th, n_theta, q_step):
    """Every pixel's fractions sum to one, so the split total equals the pattern total (1e-6 relative)."""
    rng = np.random.default_rng(0)
    img = rng.random((40, 36)) * 100
    D = distortion(Calibration(ellipse=(a, 1 / a, th)), True)
    q_max = _farthest(img.shape, (ox, oy), D) + 0.5 * q_step  # the last bin holds the farthest corner
    p = PolarParams(q_max=q_max, q_step=q_step, n_theta=n_theta)
    geo = polar_geometry(p, img.shape, (ox, oy), D)
    total = split_block(img[None], geo).sum()
    assert abs(total / img.sum() - 1) < 1e-6
    # with a mask, exactly the unmasked intensity is kept
    mask = rng.random(img.shape) < 0.2
    geo_m = polar_geometry(p.replace(mask=mask), img.shape, (ox, oy), D)
    assert abs(split_block(img[None], geo_m).sum() / img[~mask].sum() - 1) < 1e-6


def test_uniform_pattern_gives_uniform_bins_and_full_coverage():
    img = np.full((64, 64), 3.0)
    v, geo = polar_pattern(img, (31.2, 32.7), q_max=30, n_theta=90, q_step=0.7)
    assert np.allclose(v[geo.valid], 3.0, rtol=1e-9)
    # each bin's pixel area is its geometric area, up to the chords that approximate the
    # pixels' curved outlines in (q, θ); they matter only within a few px of the origin
    edges = 0.7 * np.arange(geo.q.size + 1)
    nominal = 0.5 * (edges[1:] ** 2 - edges[:-1] ** 2) * 2 * np.pi / 90
    ratio = geo.area / nominal
    assert np.abs(ratio.mean(axis=0)[4:] - 1).max() < 5e-3
    assert np.abs(ratio[:, 15:] - 1).max() < 0.01


def test_splitting_matches_brute_force_supersampling():
    """Bin sums agree with 64x64 sub-pixel sampling of each pixel through the same ellipse."""
    rng = np.random.default_rng(3)
    img = 0.5 + rng.random((24, 24))
    o = (11.3, 12.6)
    ell = (1.06, 1 / 1.06, 25.0)
    D = distortion(Calibration(ellipse=ell), True)
    p = PolarParams(q_max=11, q_step=1.0, n_theta=24)
    v, geo = polar_pattern(img, o, p, ellipse=ell)
    sums = split_block(img[None], geo)[0]
    s = (np.arange(64) + 0.5) / 64 - 0.5
    ii, jj, si, sj = np.meshgrid(np.arange(24), np.arange(24), s, s, indexing="ij")
    u = np.stack([(ii + si - o[0]).ravel(), (jj + sj - o[1]).ravel()]) .T @ np.linalg.inv(D).T
    q = np.hypot(u[:, 0], u[:, 1])
    t = np.mod(np.arctan2(u[:, 1], u[:, 0]), 2 * np.pi)
    w = np.repeat(img.ravel(), 64 * 64) / (64 * 64)
    ref = np.zeros((24, 11))
    keep = q < 11
    np.add.at(ref, ((t[keep] / (2 * np.pi / 24)).astype(int), q[keep].astype(int)), w[keep])
    # from radius 3 px on (bins of 0.8 px² and more) pixels are split by detector area up to
    # the chords that approximate their curved outlines in (q, θ) (~0.2 % of a pixel), and the
    # 64² sampling resolves a bin's edge to ~0.1 %: 1 % is a clear margin for both
    rel = np.abs(sums[:, 3:] - ref[:, 3:]) / ref[:, 3:]
    assert rel.max() < 0.01


def test_ellipse_correction_straightens_an_elliptical_ring():
    ell = (1.08, 1 / 1.08, 35.0)
    D = distortion(Calibration(ellipse=ell), True)
    x, y = np.meshgrid(np.arange(96) - 47.6, np.arange(96) - 48.3, indexing="ij")
    u = np.stack([x.ravel(), y.ravel()]).T @ np.linalg.inv(D).T
    r = np.hypot(u[:, 0], u[:, 1]).reshape(96, 96)
    img = np.exp(-0.5 * ((r - 30) / 2.0) ** 2)
    v, geo = polar_pattern(img, (47.6, 48.3), q_max=40, q_step=0.5, n_theta=72, ellipse=ell)
    peak = (v[:, 20:] * geo.q[20:]).sum(1) / v[:, 20:].sum(1)  # ring centroid per angle: constant once corrected
    assert peak.std() < 0.01
    v0, geo0 = polar_pattern(img, (47.6, 48.3), q_max=40, q_step=0.5, n_theta=72)
    assert ((v0[:, 20:] * geo0.q[20:]).sum(1) / v0[:, 20:].sum(1)).std() > 1.0


def test_cube_transform_follows_the_origin_map():
    """Descan: tables cut from shift-invariant ones equal tables built for each (rounded) origin."""
    rng = np.random.default_rng(5)
    data = rng.random((3, 2, 32, 30)).astype(np.float32)
    om = 14 + rng.random((3, 2, 2)) * 3
    om[0, 0] = (15.3, 15.3)
    om[0, 1] = (16.3, 14.3)  # same sub-pixel part, other whole pixels
    mask = np.zeros((32, 30), bool)
    mask[3:6, 20:24] = True
    cube = DataCube(data, Calibration(origin_map=om, ellipse=(1.03, 1 / 1.03, 40.0)))
    pc = polar_transform(cube, q_max=12, n_theta=36, origin_step=0.01, mask=mask, progress=False, workers=1)
    for i in range(3):
        for j in range(2):
            o = np.round(om[i, j] / 0.01) * 0.01
            v, geo = polar_pattern(data[i, j], o, q_max=12, n_theta=36, mask=mask, ellipse=(1.03, 1 / 1.03, 40.0))
            np.testing.assert_allclose(pc.data[i, j], v, rtol=1e-6, equal_nan=True)


def test_mask_makes_covered_bins_invalid():
    img = np.ones((48, 48))
    mask = np.zeros((48, 48), bool)
    mask[24:, 20:28] = True  # a beam-stop arm along +qx
    v, geo = polar_pattern(img, (23.5, 23.5), q_max=20, n_theta=36, mask=mask)
    assert not geo.valid[0, 8:].any()  # θ bin 0 points along +qx, into the arm
    assert geo.valid[18, 2:].all()
    assert np.allclose(v[geo.valid], 1)


def test_errors_name_what_is_missing():
    cube = DataCube(np.ones((1, 1, 16, 16)))
    with pytest.raises(MissingCalibrationError, match="origin"):
        polar_transform(cube, progress=False)
    with pytest.raises(ParameterError, match="outside the detector"):
        polar_pattern(np.ones((16, 16)), (8, 8), q_max=40)
    with pytest.raises(ShapeError, match="mask"):
        polar_pattern(np.ones((16, 16)), (8, 8), q_max=6, mask=np.zeros((8, 8), bool))
    with pytest.raises(ParameterError, match="q_max"):
        PolarParams(q_min=5, q_max=5.5)


def test_record_round_trips():
    p = PolarParams(q_max=20.0, n_theta=60, mask=np.eye(4, dtype=bool))
    assert PolarParams.from_dict(p.to_dict()) == p


def test_one_calibrated_origin_is_not_rounded():
    rng = np.random.default_rng(8)
    data = rng.random((1, 2, 30, 30))
    o = (14.437, 15.262)  # not a multiple of origin_step
    pc = polar_transform(DataCube(data, Calibration(origin=o)), q_max=12, n_theta=24, progress=False)
    v, _ = polar_pattern(data[0, 1], o, q_max=12, n_theta=24)
    np.testing.assert_allclose(pc.data[0, 1], v, rtol=1e-6, equal_nan=True)
