"""Whole-pattern lattice fit at low dose against the ground truth of the shared abTEM Si files (issue 13).

Set-up, as the issue states it: the noise-free ``si_001_unstrained`` and ``si_001_exx_1pct``
patterns (fractions of the beam) times 2000 e⁻ per probe, Poisson noise drawn with
``np.random.default_rng(seed)`` for seeds 0-9, all 256 positions of each file (no subsampling:
the bias target 5e-4 needs them, since one position scatters by about 1 % in ε and the mean of
2560 positions then has a standard error of 2e-4). The strain reference is the fit of the
noise-free unstrained file (the README's advice: relative to the unstrained file, which cancels
the bias the probe model shares across files). Pooling over σ = 2 scan steps (the neighbourhood
of today's ±0.2 % figure) is checked on seeds 0-2 only, to keep the run short.

The Cramér-Rao bound is the one of the fit's own model (probe template with 0.75 px edge blur,
amplitudes from the noise-free pattern), computed at the true lattice for every fourth
position of a file; the tests print it beside the observed scatter.
"""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.disks import FindDisksParams, find_disks
from fourd_widgets.analysis.lattice_fit import (WholePatternFitParams, lattice_cramer_rao_bound,
                                                whole_pattern_fit)
from fourd_widgets.analysis.probe import ProbeTemplateParams, probe_template
from fourd_widgets.analysis.strain import strain_map
from fourd_widgets.core import DataCube

pytest.importorskip("h5py")

FILES = ("si_001_unstrained", "si_001_exx_1pct")
DOSE = 2000.0
SEEDS = range(10)


@pytest.fixture(scope="module")
def sets(shared_data):
    out = {}
    for name in FILES:
        cube, truth = fw.datasets.load_shared(name, root=shared_data)
        out[name] = (cube, truth, np.asarray(cube.read(slice(None), slice(None)), np.float64))
    return out


@pytest.fixture(scope="module")
def template(sets):
    return probe_template(sets["si_001_unstrained"][1]["vacuum_probe"], ProbeTemplateParams(source="vacuum_image"))


@pytest.fixture(scope="module")
def reference(sets, template):
    cube, _, _ = sets["si_001_unstrained"]
    return whole_pattern_fit(cube, WholePatternFitParams(counts_per_unit=DOSE), template=template)


def _noisy(cube, data, seed, dose=DOSE):
    counts = np.random.default_rng(seed).poisson(data * dose).astype(np.float32)
    return DataCube(counts, calibration=cube.calibration)


@pytest.fixture(scope="module")
def low_dose(sets, template, reference):
    """Per file: maps (seed, Rx, Ry) of ε, θ and their σ, and the valid fraction."""
    out = {}
    for name in FILES:
        cube, truth, data = sets[name]
        maps = [whole_pattern_fit(_noisy(cube, data, seed), template=template, reference=reference) for seed in SEEDS]
        out[name] = {k: np.stack([getattr(m, k) for m in maps])
                     for k in ("exx", "eyy", "exy", "theta_deg", "sigma_exx", "sigma_eyy", "sigma_exy", "mask")}
    return out


@pytest.fixture(scope="module")
def bound(sets, template):
    """RMS over every fourth position of the Cramér-Rao bound at the true lattice (unstrained file)."""
    cube, truth, data = sets["si_001_unstrained"]
    dk = cube.calibration.reciprocal_step
    g1, g2 = np.asarray(truth["g1_invA"]) / dk, np.asarray(truth["g2_invA"]) / dk
    sig = [lattice_cramer_rao_bound(data[i, j], template, cube.calibration.origin, g1, g2, DOSE).sigma
           for i in range(0, 16, 4) for j in range(0, 16, 4)]
    return {k: float(np.sqrt(np.mean([s[k] ** 2 for s in sig]))) for k in sig[0]}


def _scatter(values):
    """Per-position standard deviation over seeds, RMS over positions."""
    return float(np.sqrt(np.nanmean(np.nanvar(values, axis=0, ddof=1))))


def _means(low_dose, sets, name):
    m = low_dose[name]
    means = {k: float(np.nanmean(m[k])) for k in ("exx", "eyy", "exy", "theta_deg")}
    n = int((~m["mask"]).sum())
    sem = {k: float(np.nanstd(m[k])) / np.sqrt(n) for k in means}
    print(f"\n{name} at {DOSE:g} e/probe, 10 seeds: valid {1 - m['mask'].mean():.3f}, means {means}, "
          f"standard errors of the means {sem}")
    return means, sem, sets[name][1]


@pytest.mark.parametrize("name", FILES)
def test_low_dose_mean_strain_and_rotation(low_dose, sets, name):
    """Means within 1.5e-4 (the noise-free model bias between the two files, 1.4e-4) plus three standard
    errors of the mean (about 2e-4 for ε: the per-position scatter is at the Cramér-Rao bound, ~1 %);
    θ within the issue's 0.05°; ≥ 95 % of positions valid."""
    means, sem, truth = _means(low_dose, sets, name)
    assert 1 - low_dose[name]["mask"].mean() >= 0.95
    for k in ("exx", "eyy", "exy"):
        assert abs(means[k] - truth[f"strain_{k}"]) <= 1.5e-4 + 3 * sem[k]
    assert abs(means["theta_deg"] - truth["rotation_deg"]) <= 0.05


@pytest.mark.parametrize("name", FILES)
def test_low_dose_issue_target(low_dose, sets, name):
    """The issue's literal target: |mean ε - true ε| ≤ 5e-4 for ε_xx, ε_yy and ε_xy.

    Measured: ε_xx -1.6e-4 (unstrained) and +4.1e-4 (1 %), after the second-order bias of the strain is
    removed (+1.3e-4 before, ``strain_bias``); on 60 other seeds the 1 % file's mean is +2.2e-4 ± 0.9e-4,
    so these seeds' +4.1e-4 is that offset plus one standard error of noise (bench/RESULTS.md, issue 13).
    """
    means, _, truth = _means(low_dose, sets, name)
    for k in ("exx", "eyy", "exy"):
        assert abs(means[k] - truth[f"strain_{k}"]) <= 5e-4


@pytest.mark.parametrize("name", FILES)
def test_scatter_near_the_cramer_rao_bound(low_dose, bound, name):
    """Per-position scatter at most 1.5x the bound of the model (both printed: the efficiency)."""
    m = low_dose[name]
    for k in ("exx", "eyy", "exy"):
        s = _scatter(m[k])
        print(f"{name} {k}: scatter {s:.2e}, Cramér-Rao bound {bound['sigma_' + k]:.2e}, "
              f"ratio {s / bound['sigma_' + k]:.2f}")
        assert s <= 1.5 * bound["sigma_" + k]


@pytest.mark.parametrize("name", FILES)
def test_standard_errors_match_the_scatter(low_dose, name):
    """The σ maps (RMS) match the observed per-position scatter within 20 %."""
    m = low_dose[name]
    for k in ("exx", "eyy", "exy"):
        s = _scatter(m[k])
        se = float(np.sqrt(np.nanmean(m["sigma_" + k] ** 2)))
        print(f"{name} {k}: reported σ {se:.2e}, observed {s:.2e}")
        assert se == pytest.approx(s, rel=0.2)


def test_pooled_scatter_below_the_detector_route(sets, template, reference):
    """With the σ = 2 steps pooling of today's best ±0.2 %, the scatter is below it (seeds 0-2)."""
    cube, truth, data = sets["si_001_exx_1pct"]
    p = WholePatternFitParams(pool_sigma=2.0)
    ex = np.stack([whole_pattern_fit(_noisy(cube, data, seed), p, template=template, reference=reference).exx
                   for seed in range(3)])
    rms = float(np.sqrt(np.nanmean((ex - truth["strain_exx"]) ** 2)))  # scatter and bias together
    print(f"pooled (σ = 2 steps) RMS error of ε_xx: {rms:.2e}")
    assert rms < 0.002


def test_high_dose_and_noise_free_no_worse_than_the_detector_route(sets, template, reference):
    """At 1e5 e/probe (seed 0) and noise-free, |median ε_xx - 1 %| no worse than find_disks + strain_map."""
    cube0, _, _ = sets["si_001_unstrained"]
    cube, truth, data = sets["si_001_exx_1pct"]
    det_ref = strain_map(find_disks(cube0, FindDisksParams(), template=template), None, cube0.calibration)
    errors = {}
    for label, c, scale in (("noise-free", cube, DOSE), ("1e5 e", _noisy(cube, data, 0, 1e5), 1.0)):
        ours = whole_pattern_fit(c, WholePatternFitParams(counts_per_unit=scale), template=template,
                                 reference=reference)
        det = strain_map(find_disks(c, FindDisksParams(), template=template), None, c.calibration, reference=det_ref)
        errors[label] = (abs(float(np.nanmedian(ours.exx)) - truth["strain_exx"]),
                         abs(float(np.median(det.exx)) - truth["strain_exx"]))
        print(f"{label}: |ε_xx error| whole-pattern {errors[label][0]:.2e}, detector route {errors[label][1]:.2e}")
        # no worse, up to 1e-4: the two routes' model biases on these files are both ~1e-4 to 3e-4
        assert errors[label][0] <= errors[label][1] + 1e-4
