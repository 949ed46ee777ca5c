"""Radial statistics and FEM: exact cases, shot-noise removal, and accuracy on the simulated a-Si/nc-Si film."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from fourd_widgets.analysis.fem import (RadialStatisticsParams, fem_variance, local_fem_map, radial_statistics,
                                        symmetry_map)
from fourd_widgets.analysis.fem_errors import fem_variance_bound
from fourd_widgets.analysis.polar import PolarParams
from fourd_widgets.analysis.polar_tables import polar_geometry
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import ParameterError
from fourd_widgets.datasets import load_shared

K111, K220 = 1 / 3.1356, 1 / 1.9202  # Si d-spacings (a = 5.431 Å), 1/Å


def _auc(labels: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic."""
    r = rankdata(score)
    n1, n0 = labels.sum(), (~labels).sum()
    return float((r[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _peak(k: np.ndarray, V: np.ndarray, k0: float) -> float:
    """Position of the maximum of V within ±15 % of k0, refined by a parabola through three bins."""
    near = np.nonzero(np.abs(k - k0) < 0.15 * k0)[0]
    i = near[np.argmax(V[near])]
    a, b, c = V[i - 1:i + 2]
    return float(k[i] + 0.5 * (a - c) / (a - 2 * b + c) * (k[1] - k[0]))


def test_scalar_fluctuations_give_exact_variances():
    """Patterns c_R * uniform: every definition of V is Var(c) / mean(c)^2 except the ring one (0)."""
    c = np.random.default_rng(0).uniform(1, 3, (5, 4))
    cube = DataCube(c[..., None, None] * np.ones((5, 4, 32, 32)), Calibration(origin=(15.3, 16.1)))
    st = radial_statistics(cube, polar=PolarParams(q_max=14, n_theta=24), progress=False, workers=1)
    fv = fem_variance(st)
    expect = c.var() / c.mean() ** 2
    assert np.allclose(fv.V_mean_of_variance[1:], expect, rtol=1e-9)
    assert np.allclose(fv.V_variance_of_mean[1:], expect, rtol=1e-9)
    assert np.allclose(fv.V_ring[1:], 0, atol=1e-12)
    assert np.allclose(fv.mean_profile[1:], c.mean(), rtol=1e-12)


def test_counting_bound_of_scalar_fluctuations_in_closed_form():
    """Patterns c_R * uniform: V_variance_of_mean = Var(c) / M^2 depends on the pixels only through the ring
    means m_R = sum_p U_pq lambda_p, so its Cramer-Rao variance is
    sum_R c_R (2 / (N M^2))^2 ((c_R - M) - V M)^2 sum_p U_pq^2, with U the ring-mean weights of the table."""
    c = np.random.default_rng(3).uniform(1, 3, (5, 4))
    origin = (15.3, 16.1)
    cube = DataCube(c[..., None, None] * np.ones((5, 4, 32, 32)), Calibration(origin=origin))
    p = PolarParams(q_max=14, n_theta=24)
    bound = fem_variance_bound(cube, polar=p, progress=False, workers=1)
    ptr, ring, weight = polar_geometry(p, (32, 32), origin).ring_weights()
    u2 = np.bincount(ring, weights=weight**2, minlength=bound.k.size)
    N, M = c.size, c.mean()
    V = c.var() / M**2
    expect = np.sum(c * (2 / (N * M**2)) ** 2 * ((c - M) - V * M) ** 2) * u2
    assert np.allclose(bound.V[1], V, rtol=1e-9)
    assert np.allclose(bound.relative[1, 1:], np.sqrt(expect[1:]) / V, rtol=1e-9)


def test_counting_bound_of_a_region_is_that_of_the_region_alone():
    rng = np.random.default_rng(0)
    data = 1 + 0.3 * rng.standard_normal((6, 5, 32, 32))
    p = PolarParams(q_max=12, n_theta=12)
    region = np.zeros((6, 5), bool)
    region[:3] = True
    whole = fem_variance_bound(DataCube(data, Calibration(origin=(15.5, 15.5))), polar=p, region=region,
                               progress=False, workers=2)
    alone = fem_variance_bound(DataCube(data[:3], Calibration(origin=(15.5, 15.5))), polar=p, progress=False)
    assert np.allclose(whole.relative, alone.relative, rtol=1e-9)


def test_counting_bound_refuses_counted_input_and_bad_doses():
    cube = DataCube(np.ones((2, 2, 24, 24)), Calibration(origin=(11.5, 11.5)))
    with pytest.raises(ParameterError, match="noise-free"):
        fem_variance_bound(cube, polar=PolarParams(q_max=10), counted=True, progress=False)
    bound = fem_variance_bound(cube, polar=PolarParams(q_max=10, n_theta=8), k_ranges=[(2, 5)], progress=False)
    with pytest.raises(ParameterError, match="dose must be positive"):
        bound.at(0.0)
    with pytest.raises(ParameterError, match="unknown definition"):
        bound.at(1e3, "V")
    with pytest.raises(ParameterError, match="fraction"):
        bound.dose_for(5.0)


def test_shot_noise_of_split_bins_is_removed():
    """Uniform Poisson patterns have no structural variance; the raw estimates hold only shot noise."""
    rng = np.random.default_rng(1)
    counts = rng.poisson(3.0, (16, 16, 40, 40)).astype(np.uint16)
    cube = DataCube(counts, Calibration(origin=(19.7, 20.2)))
    p = RadialStatisticsParams(polar=PolarParams(q_min=4, q_max=18, q_step=1.3, n_theta=30))
    raw = fem_variance(radial_statistics(cube, p, progress=False))
    fixed = fem_variance(radial_statistics(cube, p, counted=True, progress=False))
    # shot-noise V of a bin of area A (5-20 px² here) at 3 counts/px is at most 1/(3 A), less
    # where split pixels average; the corrected values spread by a few 1e-3 over 256 patterns
    assert raw.V_ring.min() > 0.03 and raw.V_mean_of_variance.min() > 0.03
    for V in (fixed.V_ring, fixed.V_mean_of_variance):
        assert np.abs(V).max() < 0.02
    # the ring mean pools a whole ring: its shot variance is small, and the sample variance of
    # 256 values scatters by sqrt(2 / 256) = 9 % of it, so 35 % is about 4 standard deviations
    assert (np.abs(fixed.V_variance_of_mean) < 0.35 * raw.V_variance_of_mean).all()


def test_symmetry_map_finds_sixfold_patterns():
    x, y = np.meshgrid(np.arange(48) - 23.5, np.arange(48) - 23.5, indexing="ij")
    th, r = np.arctan2(y, x), np.hypot(x, y)
    ring = np.exp(-0.5 * ((r - 14) / 2) ** 2)
    data = np.empty((3, 3, 48, 48))
    amp = np.array([[0, 0.5, 0], [0.2, 0, 0], [0, 0, 0.8]])
    for i in range(3):
        for j in range(3):
            data[i, j] = 1 + ring * (1 + amp[i, j] * np.cos(6 * th + 0.3 * i))
    cube = DataCube(data, Calibration(origin=(23.5, 23.5)))
    st = radial_statistics(cube, polar=PolarParams(q_max=22, n_theta=72), symmetry_orders=(4, 6),
                           progress=False)
    m6 = symmetry_map(st, (13.5, 14.5), 6)
    # |F_6| / F_0 at the ring's peak (ring height 1 on a background of 1) is amp / 2 * 1 / 2
    assert np.allclose(m6, amp / 4, atol=0.01)
    assert np.nanmax(symmetry_map(st, (13.5, 14.5), 4)) < 0.01
    with pytest.raises(ParameterError, match="symmetry_orders"):
        symmetry_map(st, (13, 15), 3)


def test_regions_and_replay():
    rng = np.random.default_rng(2)
    data = rng.random((6, 5, 24, 24))
    cube = DataCube(data, Calibration(origin=(11.6, 12.2), reciprocal_step=0.02))
    region = np.zeros((6, 5), bool)
    region[1:4, 2:] = True
    p = RadialStatisticsParams(polar=PolarParams(q_max=10, n_theta=20), keep_polar=True)
    whole = radial_statistics(cube, p, progress=False)
    sub = fem_variance(whole, region)
    direct = fem_variance(radial_statistics(cube, p, region=region, progress=False))
    np.testing.assert_allclose(sub.V_mean_of_variance, direct.V_mean_of_variance, rtol=1e-5)
    np.testing.assert_allclose(sub.V_variance_of_mean, direct.V_variance_of_mean, rtol=1e-12)
    np.testing.assert_allclose(whole.mean_profile(region), direct.mean_profile, rtol=1e-12)
    assert np.allclose(sub.k, whole.q * 0.02)
    replay = radial_statistics(cube, RadialStatisticsParams.from_dict(p.to_dict()), progress=False)
    np.testing.assert_array_equal(replay.annular_var, whole.annular_var)
    with pytest.raises(ParameterError, match="keep_polar"):
        fem_variance(radial_statistics(cube, p.replace(keep_polar=False), progress=False), region)


def test_bad_k_ranges_are_explained():
    mask = np.zeros((32, 32), bool)
    mask[np.hypot(*np.meshgrid(np.arange(32) - 16, np.arange(32) - 16, indexing="ij")) < 6] = True
    cube = DataCube(np.ones((2, 2, 32, 32)), Calibration(origin=(16, 16)))
    st = radial_statistics(cube, polar=PolarParams(q_max=14, n_theta=16, mask=mask), progress=False)
    with pytest.raises(ParameterError, match="outside the detector"):
        local_fem_map(st, (20, 25))
    with pytest.raises(ParameterError, match="hides every ring"):
        local_fem_map(st, (1, 3))
    assert np.isfinite(local_fem_map(st, (8, 10))).all()


# --- accuracy on the simulated film -------------------------------------------------------------
@pytest.fixture(scope="module")
def fem_film(shared_data):
    return load_shared("si_amorphous_nanocrystals_fem", root=shared_data)


@pytest.fixture(scope="module")
def fem_stats(fem_film):
    cube, _ = fem_film
    return radial_statistics(cube, polar=PolarParams(q_max=60, q_step=0.5, n_theta=90), progress=False)


def test_variance_peaks_at_si_111_and_220(fem_stats):
    fv = fem_variance(fem_stats)
    for V in (fv.V_mean_of_variance, fv.V_variance_of_mean, fv.V_ring):
        for k0 in (K111, K220):
            # ±2 % (the target) is 1.3 bins of 0.0078 1/Å at {111}
            assert abs(_peak(fv.k, V, k0) / k0 - 1) < 0.02


def test_local_fem_map_finds_the_nanocrystals(fem_film, fem_stats):
    _, truth = fem_film
    bands = [(0.29, 0.35), (0.49, 0.55)]  # {111} and {220}, ±10 %
    m = local_fem_map(fem_stats, bands)
    assert _auc(truth["crystal_under_probe"].ravel() >= 0, m.ravel()) >= 0.9


@pytest.fixture(scope="module")
def film_111(fem_film):
    """The film cropped to the 56x56 pixels round the origin (every ring out to 26 px, so the {111}
    band at 20.4 px is whole), with V(k) binned as the FEM tests bin it, its {111} band and the bound."""
    cube, _ = fem_film
    o = np.round(cube.calibration.origin).astype(int)
    data = np.ascontiguousarray(cube.to_numpy()[:, :, o[0] - 28:o[0] + 28, o[1] - 28:o[1] + 28], np.float64)
    cal = cube.calibration.replace(origin=tuple(np.asarray(cube.calibration.origin) - o + 28))
    p = RadialStatisticsParams(polar=PolarParams(q_max=26, q_step=2.0, n_theta=18))
    ref = fem_variance(radial_statistics(DataCube(data, cal), p, progress=False))
    band = np.abs(ref.k - K111) < 0.03
    bound = fem_variance_bound(DataCube(data, cal), p, k_ranges=[(K111 - 0.03, K111 + 0.03)], progress=False)
    return data, cal, p, ref, band, bound


def _draws(film_111, dose, n, definition="V_ring", counted=True):
    """V in the {111} band over n Poisson draws at dose e-/pattern, relative to the noise-free value."""
    data, cal, p, ref, band, _ = film_111
    v0 = getattr(ref, definition)[band].mean()
    out = []
    for seed in range(n):
        counts = np.random.default_rng(seed).poisson(data * dose).astype(np.uint16 if dose < 1e4 else np.uint32)
        st = radial_statistics(DataCube(counts, cal), p.replace(counted=counted), progress=False)
        out.append(getattr(fem_variance(st), definition)[band].mean() / v0 - 1)
    return np.array(out)


@pytest.mark.parametrize("dose, n", [(1e3, 200), (1e4, 60)])
def test_counted_variance_is_unbiased_and_as_precise_as_counting_allows(film_111, dose, n):
    """V_ring at the {111} peak from Poisson counts against the noise-free value (the issue's 5 %).

    The mean over the draws is within 5 % of the noise-free value: the shot-noise removal
    leaves no bias beyond the few per cent of a ratio of noisy sums (standard error of the mean:
    2 % at 1e3 with 200 draws, 0.6 % at 1e4 with 60).
    One draw cannot be within 5 % at these doses on this 16x16 scan: the Cramer-Rao bound of
    any unbiased estimate is 16 % at 1e3 and 5.1 % at 1e4 (the {111} band gets about 13 and 130
    electrons per pattern, mostly on a few nanocrystals), asserted in
    test_five_percent_per_draw_is_below_the_counting_bound. The draws' spread is held to the
    bound: not clearly below it (0.75x allows the 9 % sampling error of a standard deviation from 60
    draws 2.7 times) and at 1e4, where the bound's first-order term dominates, within 1.4x of it;
    at 1e3 (under one electron per bin, where the second-order term adds) within 2x (measured 1.8x).
    """
    r = _draws(film_111, dose, n)
    bound = film_111[5].at(dose, "V_ring", band=0)
    assert abs(r.mean()) < 0.05, r.mean()
    spread = r.std(ddof=1)
    assert 0.75 * bound < spread < (1.4 if dose >= 1e4 else 2.0) * bound, (spread, bound)


def test_shot_noise_removal_is_what_makes_it_unbiased(film_111):
    """Without the correction V at 1e3 e-/pattern is several times the noise-free value."""
    assert _draws(film_111, 1e3, 2, counted=False).min() > 4


def test_the_counting_bound_matches_the_spread_of_draws_at_high_dose(film_111):
    """At 1e6 e-/pattern the first-order (Cramer-Rao) term is the whole Poisson variance, so the
    spread of 60 draws equals the computed bound within the sampling error of a standard
    deviation from 60 draws (9 %, so 25 % allows 2.7 sigma), for each definition of V."""
    for d in ("V_mean_of_variance", "V_variance_of_mean", "V_ring"):
        spread = _draws(film_111, 1e6, 60, d).std(ddof=1)
        bound = film_111[5].at(1e6, d, band=0)
        assert abs(spread / bound - 1) < 0.25, (d, spread, bound)


def test_five_percent_per_draw_is_below_the_counting_bound(film_111):
    """The issue asks V at the {111} peak within 5 % of the noise-free value at 1e3 and 1e4 e-/pattern.

    For one draw of this 256-pattern scan no unbiased estimate can do that at 1e3: the bound is
    about 3x the target, and a 5 % standard error needs about 1e4 e-/pattern (dose_for). The bound
    falls as 1/sqrt(dose).
    """
    bound = film_111[5]
    assert bound.at(1e3, "V_ring", band=0) > 0.1
    assert 0.6e4 < bound.dose_for(0.05, "V_ring") < 2e4
    assert np.isclose(bound.at(1e3, band=0) / bound.at(1e5, band=0), 10.0)


def test_fem_record_drives_the_maps_and_replays():
    from fourd_widgets.analysis.fem_maps import FEMParams, fem

    x, y = np.meshgrid(np.arange(40) - 19.5, np.arange(40) - 19.5, indexing="ij")
    th, r = np.arctan2(y, x), np.hypot(x, y)
    amp = np.zeros((4, 3))
    amp[1, 2] = amp[3, 0] = 0.6
    data = np.stack([np.stack([1 + np.exp(-0.5 * ((r - 12) / 1.5) ** 2) * (1 + a * np.cos(4 * th)) for a in row])
                     for row in amp])
    cube = DataCube(data, Calibration(origin=(19.5, 19.5)))
    st = radial_statistics(cube, polar=PolarParams(q_max=18, n_theta=48), symmetry_orders=(4,), progress=False)
    p = FEMParams(k_ranges=((10.5, 13.5),), symmetry_order=4)
    res = fem(st, p)
    # the modulated patterns, and only they, fluctuate round the ring (pixelising a 1.5 px wide
    # ring leaves ~2e-5 in the others)
    assert (res.band_map[amp > 0] > 0.01).all() and (res.band_map[amp == 0] < 1e-3).all()
    assert np.array_equal(res.symmetry_map > 0.05, amp > 0)
    again = fem(st, FEMParams.from_dict(p.to_dict()))
    np.testing.assert_array_equal(again.band_map, res.band_map)
    moved = fem(st, p, k_ranges=((2.0, 4.0),))
    assert np.nanmax(moved.band_map) < 1e-3  # no ring there
    with pytest.raises(ParameterError, match="hi > lo"):
        FEMParams(k_ranges=((3.0, 2.0),))
