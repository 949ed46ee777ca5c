"""Whole-pattern lattice fit on synthetic patterns: recovery, the bound's dose scaling, σ maps saved and replayed."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.lattice_fit import (FIT_SIGMA_ABOVE, StrainSigmaMap, WholePatternFitParams,
                                                fit_pattern_lattice, lattice_cramer_rao_bound, lattice_pattern,
                                                whole_pattern_fit)
from fourd_widgets.analysis.probe import probe_template, synthetic_disk
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import ParameterError
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.results import Results

SHAPE = (64, 64)
G1, G2 = np.array([14.0, 1.0]), np.array([-1.0, 15.0])


@pytest.fixture(scope="module")
def template():
    return probe_template(synthetic_disk(SHAPE, 4.0, (32, 32)))


def _cube(template, scale=(1.0, 1.0), counts=2000.0, seed=None, scan=(4, 4)):
    """Patterns of a lattice stretched along x by ``scale[0]`` (rows) ... as (Rx, Ry) grid, total ``counts``."""
    pats = np.empty(scan + SHAPE)
    for i in range(scan[0]):
        s = scale[0] + (scale[1] - scale[0]) * i / max(scan[0] - 1, 1)
        F_invT = np.diag([1 / s, 1.0])  # g' = F^-T g with F = diag(s, 1)
        pat = lattice_pattern(template, (32.0, 32.0), F_invT @ G1, F_invT @ G2, SHAPE, max_index=2,
                              background=1e-4)
        pats[i] = pat / pat.sum() * counts
    if seed is not None:
        pats = np.random.default_rng(seed).poisson(pats).astype(np.float32)
    return DataCube(pats, calibration=Calibration(origin=(32, 32)))


def test_noise_free_lattice_is_recovered(template):
    cube = _cube(template, (1.0, 1.02))
    pats = np.asarray(cube.read(slice(None), slice(None))).reshape((-1,) + SHAPE)
    r = fit_pattern_lattice(pats, template, (32, 32), G1, G2, max_index=2)
    assert (r["status"] == 0).all()
    rows = np.repeat(np.arange(4), 4)
    s = 1.0 + 0.02 * rows / 3
    want_g1 = np.stack([G1[0] / s, np.full_like(s, G1[1])], 1)
    # the model built the data: only the start (mean-pattern) interpolation error remains
    np.testing.assert_allclose(r["g1"], want_g1, atol=2e-3)
    np.testing.assert_allclose(r["origin"], 32.0, atol=2e-3)


def test_strain_map_of_a_gradient(template):
    cube = _cube(template, (1.0, 1.02), counts=1e6)
    sm = whole_pattern_fit(cube, WholePatternFitParams(max_index=2, reference_g1=tuple(G1), reference_g2=tuple(G2)),
                           template=template)
    assert isinstance(sm, StrainSigmaMap) and not sm.mask.any()
    np.testing.assert_allclose(sm.exx[:, 0], [0.0, 0.02 / 3, 0.04 / 3, 0.02], atol=2e-4)
    np.testing.assert_allclose(sm.eyy, 0.0, atol=2e-4)
    assert (sm.sigma_exx > 0).all() and (sm.sigma_exx < 1e-3).all()  # 1e6 counts: a small σ


def test_bound_falls_as_one_over_root_dose(template):
    pat = np.asarray(_cube(template, counts=1.0).read(slice(0, 1), slice(0, 1)))[0, 0]
    a = lattice_cramer_rao_bound(pat, template, (32, 32), G1, G2, 1000.0, max_index=2)
    b = lattice_cramer_rao_bound(pat, template, (32, 32), G1, G2, 4000.0, max_index=2)
    # Poisson information is linear in the dose (amplitudes and background scale with it)
    for k in a.sigma:
        assert b.sigma[k] == pytest.approx(a.sigma[k] / 2, rel=1e-3)
    np.testing.assert_allclose(b.cov, a.cov / 4, rtol=1e-3, atol=1e-12)


def test_reported_sigma_matches_scatter_on_synthetic_counts(template):
    """On data the model describes exactly, the σ maps match the scatter over seeds (64 draws, 20 %)."""
    p = WholePatternFitParams(max_index=2, reference_g1=tuple(G1), reference_g2=tuple(G2))
    maps = [whole_pattern_fit(_cube(template, counts=3000.0, seed=seed), p, template=template) for seed in range(4)]
    ex = np.stack([m.exx for m in maps])
    se = np.sqrt(np.mean(np.stack([m.sigma_exx for m in maps]) ** 2))
    assert float(se) == pytest.approx(float(np.std(ex - 0.0)), rel=0.2)


def test_sigma_maps_saved_reloaded_and_replayed(template, tmp_path):
    cube = _cube(template, (1.0, 1.01), counts=3000.0, seed=7)
    p = WholePatternFitParams(max_index=2, pool_sigma=1.0,
                              template=fw.ProbeTemplateParams(source="vacuum_image", image=template.probe))
    sm = whole_pattern_fit(cube, p)
    path = Results({"whole_pattern_fit": sm}, Recipe((p,))).save(tmp_path / "r.h5")
    back = Results.load(path)["whole_pattern_fit"]
    assert isinstance(back, StrainSigmaMap) and back.pool_sigma == 1.0
    for n in ("exx", "sigma_exx", "sigma_eyy", "sigma_exy", "sigma_theta_deg", "sigma_g1", "lattice_cov", "sites"):
        np.testing.assert_array_equal(getattr(back, n), getattr(sm, n))
    replay = fw.run(Recipe((p,)), cube)["whole_pattern_fit"]
    for n in ("exx", "eyy", "theta_deg", "sigma_exx", "mask"):
        np.testing.assert_array_equal(getattr(replay, n), getattr(sm, n))


def test_sigma_threshold_masks_positions(template):
    cube = _cube(template, counts=3000.0, seed=3)
    p = WholePatternFitParams(max_index=2)
    free = whole_pattern_fit(cube, p, template=template)
    cut = float(np.median(free.max_strain_sigma()))
    limited = whole_pattern_fit(cube, p, template=template, max_sigma=cut)
    above = free.max_strain_sigma() > cut
    assert above.any() and (~above).any()
    np.testing.assert_array_equal(limited.mask, above)
    assert ((limited.failure & FIT_SIGMA_ABOVE) != 0).sum() == above.sum()


def test_a_lattice_off_the_detector_is_refused(template):
    cube = _cube(template)
    with pytest.raises(ParameterError, match="lattice sites"):
        whole_pattern_fit(cube, WholePatternFitParams(g1=(200.0, 0.0), g2=(0.0, 200.0), origin=(32.0, 32.0),
                                                      max_index=1), template=template)
