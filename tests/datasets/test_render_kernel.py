"""The render kernels against plain numpy references (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import erfc

from fourd_widgets.kernels.render import add_disk, disk_profile_integral, poisson_counts, render_patterns


def _disk_reference(shape, cx, cy, radius, sigma, value, dinv):
    """The soft-edged disk evaluated on every pixel with numpy (no bounding box, no cut-off)."""
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    dx, dy = i - cx, j - cy
    u = dinv[0, 0] * dx + dinv[0, 1] * dy
    v = dinv[1, 0] * dx + dinv[1, 1] * dy
    r = np.hypot(u, v)
    return value * 0.5 * erfc((r - radius) / (np.sqrt(2) * sigma))


@settings(max_examples=40, deadline=None)
@given(
    cx=st.floats(-5, 45), cy=st.floats(-5, 45), radius=st.floats(1.5, 12), sigma=st.floats(0.2, 1.0),
    a=st.floats(0.9, 1.1), b=st.floats(0.9, 1.1), theta=st.floats(0, 180),
)
def test_add_disk_matches_numpy_reference(cx, cy, radius, sigma, a, b, theta):
    t = np.radians(theta)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    D = R @ np.diag([a, b]) @ R.T
    dinv = np.linalg.inv(D)
    extent = (radius + 6 * sigma + 1) * max(a, b)
    out = np.zeros((40, 41))
    add_disk(out, cx, cy, radius, sigma, 2.0, dinv, extent)
    ref = _disk_reference(out.shape, cx, cy, radius, sigma, 2.0, dinv)
    # the kernel cuts the erfc tail at 6 sigma: erfc(6/sqrt 2)/2 = 1e-9 of the height
    np.testing.assert_allclose(out, ref, atol=2.0 * 2e-9, rtol=0)


@settings(max_examples=25, deadline=None)
@given(cx=st.floats(20, 28), cy=st.floats(20, 28), radius=st.floats(3, 10), sigma=st.floats(0.5, 1.0))
def test_sampled_disk_keeps_integral_and_centre(cx, cy, radius, sigma):
    out = np.zeros((48, 48))
    add_disk(out, cx, cy, radius, sigma, 1.0, np.eye(2), radius + 6 * sigma + 1)
    total = out.sum()
    i, j = np.meshgrid(np.arange(48), np.arange(48), indexing="ij")
    # Poisson summation: the sampling error is the disk's Fourier transform at 1/px damped by
    # exp(-2 pi^2 sigma^2) <= 7e-3 (sigma >= 0.5); measured worst cases are 5e-4 of the integral and
    # 6e-4 px of the centroid (sigma 0.5, R 3-8 px). Narrower edges (sigma 0.4) reach 5e-3 px.
    assert abs(total / disk_profile_integral(radius, sigma) - 1) < 2e-3
    assert abs((out * i).sum() / total - cx) < 2e-3
    assert abs((out * j).sum() / total - cy) < 2e-3


def test_render_patterns_is_disks_plus_radial_times_transmission():
    rng = np.random.default_rng(3)
    n_pos, shape = 3, (32, 30)
    origins = rng.uniform(12, 18, (n_pos, 2))
    counts = np.array([2, 0, 3])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    qx, qy = rng.uniform(0, 32, offsets[-1]), rng.uniform(0, 30, offsets[-1])
    val = rng.uniform(0.1, 1, offsets[-1])
    r = np.arange(0, 60, 0.05)
    tables = np.stack([np.exp(-0.5 * ((r - 8) / 2) ** 2), np.exp(-r / 5)])
    weights = np.array([[1.0, 0.5], [0.0, 0.0], [0.0, 2.0]])
    trans = np.ones(shape)
    trans[10:14, :] = 0
    dinv = np.linalg.inv(np.diag([1.05, 0.95]))
    out = np.zeros((n_pos,) + shape)
    render_patterns(out, origins, offsets, qx, qy, val, 4.0, 0.5, dinv, 8.0, weights, tables, 0.05, trans)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    for p in range(n_pos):
        ref = np.zeros(shape)
        for q in range(offsets[p], offsets[p + 1]):
            ref += _disk_reference(shape, qx[q], qy[q], 4.0, 0.5, val[q], dinv)
        dx, dy = i - origins[p, 0], j - origins[p, 1]
        rr = np.hypot(dinv[0, 0] * dx + dinv[0, 1] * dy, dinv[1, 0] * dx + dinv[1, 1] * dy)
        for t in range(2):
            ref += weights[p, t] * np.interp(rr, r, tables[t])
        np.testing.assert_allclose(out[p], ref * trans, atol=1e-8)


@pytest.mark.parametrize("lam", [0.05, 0.8, 6.0, 11.99, 12.0, 40.0, 3000.0])
def test_poisson_counts_follow_the_poisson_law(lam):
    n = 100_000
    out = np.empty(n, np.uint32)
    poisson_counts(np.full(n, lam, np.float32), 1.0, 2024, out, 2.0**32 - 1)
    ks = np.arange(int(stats.poisson.ppf(1e-5, lam)), int(stats.poisson.ppf(1 - 1e-5, lam)) + 1)
    expected = stats.poisson.pmf(ks, lam) * n
    keep = expected > 5
    observed = np.array([(out == k).sum() for k in ks])
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    # fixed seed, so deterministic; a correct sampler fails this 1e-4 of the time per seed
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4
    assert abs(out.mean() - lam) < 5 * np.sqrt(lam / n)


def test_poisson_counts_saturate_and_repeat():
    out = np.empty((3, 4), np.uint16)
    poisson_counts(np.full((3, 4), 1e6), 1.0, 1, out, 65535.0)
    assert (out == 65535).all()
    a, b = np.empty(50, np.uint32), np.empty(50, np.uint32)
    poisson_counts(np.full(50, 7.0), 1.0, 9, a, 2.0**32 - 1)
    poisson_counts(np.full(50, 7.0), 1.0, 9, b, 2.0**32 - 1)
    np.testing.assert_array_equal(a, b)
    poisson_counts(np.full(50, 7.0), 1.0, 10, b, 2.0**32 - 1)
    assert not np.array_equal(a, b)
