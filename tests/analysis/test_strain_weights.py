"""Issue 12 item 16: the lattice with defaults, and the default lattice-fit weighting, on the shared abTEM
Si [001] files.

Every default: ``find_disks`` with ``FindDisksParams()`` (its probe fit included), ``strain_map`` with
``StrainMapParams()``. The lattice of a file (of a row, of a grain) is the median of its per-position fits;
the figures for each weighting are in ``fit_lattice``'s docstring (the evidence the default was chosen by).
"""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.strain import StrainMapParams, strain_from_lattice, strain_map

pytestmark = pytest.mark.shared_data

HOMOGENEOUS = ("si_001_unstrained", "si_001_exx_1pct", "si_001_rot_10deg")
#: The issue's target for strain between two files (the README's vacuum-probe accuracy is 0.03-0.065 %).
STRAIN_TOL = 5e-4
#: The issue's target for the lattice itself (measured with defaults: 0.006 / 0.005 / 0.019 %).
LATTICE_TARGET = 2e-4


def _found(shared_data, params):
    out = {}
    for name in HOMOGENEOUS:
        cube = fw.load(shared_data / f"{name}.h5")
        with h5py.File(shared_data / f"{name}.h5", "r") as f:
            gt = f["ground_truth"].attrs
            dk = float(np.ravel(f.attrs["reciprocal_sampling_invA"])[0])
            truth = (np.asarray(gt["g1_invA"]) / dk, np.asarray(gt["g2_invA"]) / dk)
        out[name] = (fw.find_disks(cube, params), cube.calibration, truth)
    return out


@pytest.fixture(scope="module")
def found(shared_data):
    return _found(shared_data, fw.FindDisksParams())


@pytest.fixture(scope="module")
def found_edge(shared_data):
    """Every default but the edge stage of the per-disk refinement (``subpixel='edge'``)."""
    return _found(shared_data, fw.FindDisksParams(subpixel="edge"))


def lattice(found, name, weights=None):
    """The file's median fitted (g1, g2), ordered and signed like the true pair, and the true pair."""
    peaks, cal, (t1, t2) = found[name]
    sm = strain_map(peaks, StrainMapParams() if weights is None else StrainMapParams(weights=weights), cal)
    return like_truth(*(np.nanmedian(g.reshape(-1, 2), axis=0) for g in (sm.g1, sm.g2)), t1, t2), (t1, t2)


def like_truth(g1, g2, t1, t2):
    """The fitted pair (g1, g2) ordered and signed like the true pair (t1, t2)."""
    options = [(s1 * a, s2 * b) for a, b in ((g1, g2), (g2, g1)) for s1 in (1, -1) for s2 in (1, -1)]
    return min(options, key=lambda ab: np.hypot(*(ab[0] - t1)) + np.hypot(*(ab[1] - t2)))


def worst_strain_between_files(found, weights=None):
    lat = {n: lattice(found, n, weights) for n in HOMOGENEOUS}
    worst = 0.0
    for a, b in itertools.permutations(HOMOGENEOUS, 2):
        got = strain_from_lattice(*lat[b][0], *lat[a][0])
        true = strain_from_lattice(*lat[b][1], *lat[a][1])
        worst = max(worst, max(abs(float(got[c]) - float(true[c])) for c in ("exx", "eyy", "exy")))
    return worst


def lattice_error(found, name):
    (g1, g2), (t1, t2) = lattice(found, name)
    return max(np.hypot(*(g1 - t1)), np.hypot(*(g2 - t2))) / np.hypot(*t1)


def test_default_strain_between_any_two_files_within_target(found):
    assert worst_strain_between_files(found) < STRAIN_TOL  # measured 0.027 %


def test_both_weightings_meet_the_targets_on_clean_data(found):
    """Uniform weights are a little closer on these noise-free files (lattice 0.013 % against 0.019 %,
    strain between files 0.007 % against 0.010 %); both meet the issue's targets, so the choice between
    them is made under shot noise (next test)."""
    for weights in ("intensity", "uniform"):
        assert worst_strain_between_files(found, weights) < STRAIN_TOL
        for n in HOMOGENEOUS:
            (g1, g2), (t1, t2) = lattice(found, n, weights)
            assert max(np.hypot(*(g1 - t1)), np.hypot(*(g2 - t2))) / np.hypot(*t1) < LATTICE_TARGET, (weights, n)


def test_intensity_weights_are_steadier_under_shot_noise(shared_data):
    """The evidence for the default: with Poisson noise (1e5 electrons per pattern, si_001_unstrained),
    intensity weights, close to each disk position's inverse variance, halve the per-position scatter of
    the strain against uniform ones (measured 0.25 % against 0.44 % RMS; bench_strain_limits --part weights)."""
    cube = fw.load(shared_data / "si_001_unstrained.h5")
    data = cube.to_numpy().astype(np.float64)
    noisy = np.random.default_rng(0).poisson(data / data.sum((2, 3), keepdims=True) * 1e5).astype(np.float32)
    noisy_cube = fw.DataCube(noisy, calibration=cube.calibration)
    peaks = fw.find_disks(noisy_cube, fw.FindDisksParams())
    scatter = {}
    for weights in ("intensity", "uniform"):
        sm = strain_map(peaks, StrainMapParams(weights=weights), noisy_cube.calibration)
        g1, g2 = sm.g1.reshape(-1, 2), sm.g2.reshape(-1, 2)
        e = strain_from_lattice(g1, g2, np.nanmedian(g1, 0), np.nanmedian(g2, 0))
        scatter[weights] = float(np.sqrt(np.nanmean(np.square([e["exx"], e["eyy"], e["exy"]]))))
    assert scatter["intensity"] < 0.8 * scatter["uniform"], scatter


@pytest.mark.parametrize("name", HOMOGENEOUS)
def test_default_lattice_within_the_issue_s_target(found, name):
    """Issue 12 item 16: with defaults, each homogeneous file's lattice within 0.02 % of the true g vectors
    (measured 0.006 / 0.005 / 0.019 %)."""
    assert lattice_error(found, name) < LATTICE_TARGET


# How item 16 was reached. The window correlation alone leaves 0.005-0.017 px per disk, the same at every
# position, which depends on each disk's place on the pixel grid (0.023 / 0.015 / 0.027 % with it alone:
# test below). The diffracted disks of these files are the aperture's amplitude moved by a sinc
# interpolation (their g is no multiple of the simulation grid), so their rims ring (105-125 % of the
# interior just inside the edge) in a way that depends on that place; no template with a fixed edge, edge
# model or edge map follows it (tried: sharper template edges, more smoothing, higher correlation power, a
# pixel-phase bias table, rim fits, the gradient map's centre of symmetry; bench/RESULTS.md). The default
# now fits each disk with the recorded central disk moved the same way (analysis/disk_probe_fit.py).
def test_the_window_correlation_alone_misses_the_target(shared_data):
    """The probe fit is what brings the lattice within 0.02 %: without it the largest error is 0.027 %."""
    found = _found(shared_data, fw.FindDisksParams(probe_fit=False))
    assert max(lattice_error(found, n) for n in HOMOGENEOUS) > LATTICE_TARGET


def test_the_edge_stage_reaches_the_lattice_target(found_edge):
    """The opt-in edge stage (``subpixel='edge'``) brings every lattice within the issue's 0.02 % (measured
    0.015 / 0.018 / 0.013 %) and keeps strain between files within its 0.05 % (measured 0.020 %)."""
    assert max(lattice_error(found_edge, n) for n in HOMOGENEOUS) < LATTICE_TARGET
    assert worst_strain_between_files(found_edge) < STRAIN_TOL


def _row_lattices(name, shared_data, params, truths=None, rows_of_means=True):
    """Per scan row: the lattice fitted to the row's mean pattern (``rows_of_means``) or the median of its
    positions' fits, against the truth; largest error of g1, g2 in % of |g|."""
    from fourd_widgets.analysis.disks import find_disks_in_patterns

    cube = fw.load(shared_data / f"{name}.h5")
    if truths is None:
        with h5py.File(shared_data / f"{name}.h5", "r") as f:
            gt = f["ground_truth"].attrs
            dk = float(np.ravel(f.attrs["reciprocal_sampling_invA"])[0])
            truths = [(np.asarray(gt["g1_invA"]) / dk, np.asarray(gt["g2_invA"]) / dk)] * cube.scan_shape[0]
    if rows_of_means:
        means = cube.to_numpy().astype(np.float32).mean(axis=1)
        peaks = find_disks_in_patterns(means[:, None], fw.probe_template(cube), params)
        found = (peaks, cube.calibration)
    else:
        found = (fw.find_disks(cube, params), cube.calibration)
    sm = strain_map(found[0], StrainMapParams(), found[1])
    errs = []
    for r, (t1, t2) in enumerate(truths):
        g1, g2 = like_truth(*(np.nanmedian(v[r].reshape(-1, 2), axis=0) for v in (sm.g1, sm.g2)), t1, t2)
        errs.append(max(np.hypot(*(g1 - t1)), np.hypot(*(g2 - t2))) / np.hypot(*t1))
    return np.array(errs)


@pytest.mark.parametrize("probe_fit", [True, False])
def test_rows_of_one_crystal_differ_beyond_the_target_in_the_data(shared_data, probe_fit):
    """Why the per-row target of the gradient file is out of reach. In si_001_rot_10deg every row has the
    same true lattice and its disks the same places on the pixel grid, yet each row's MEAN pattern (all the
    data a row holds) gives row lattices up to 0.042 % (probe fit) or 0.049 % (correlation alone) from the
    truth while the whole file is within 0.019 %. Re-simulated with the files' own settings
    (``test_strain_resimulated.py``, ``bench/bench_strain_resimulated.py``) the causes are the data's: the
    reading of one crystal changes with the probe's distance to the periodic box's seam (0.03 % between the
    file's first row and the box centre, 0.2 % at 16 Å), and the draw of four frozen-phonon configurations
    moves a row by up to 0.03 % (with 32 configurations, or none, the unstrained crystal's rows are within
    0.014 %)."""
    errs = _row_lattices("si_001_rot_10deg", shared_data, fw.FindDisksParams(probe_fit=probe_fit))
    assert errs.max() > LATTICE_TARGET


@pytest.mark.xfail(strict=True, reason="the shipped rows lie 24-32 Å from the periodic box's seam and carry 4 "
                   "frozen-phonon configurations: worst row 0.051 %, 5 of 16 within; re-simulated at the box centre "
                   "without phonons every row is within 0.012 % (test_strain_resimulated.py)")
def test_gradient_rows_within_the_issue_s_target(shared_data):
    with h5py.File(shared_data / "si_001_exx_gradient.h5", "r") as f:
        exx = np.asarray(f["ground_truth"].attrs["strain_exx_per_row"], float)
    with h5py.File(shared_data / "si_001_unstrained.h5", "r") as f:
        g0 = (np.asarray(f.attrs["g1_px"], float), np.asarray(f.attrs["g2_px"], float))
    truths = [tuple(g * np.array([1 / (1 + e), 1.0]) for g in g0) for e in exx]  # F = diag(1 + exx, 1)
    errs = _row_lattices("si_001_exx_gradient", shared_data, fw.FindDisksParams(), truths, rows_of_means=False)
    assert errs.max() < LATTICE_TARGET


@pytest.mark.xfail(strict=True, reason="every scanned position is within 8 Å of the boundary with 1.7-6 % of the "
                   "probe on the other grain: grain lattices 0.100 / 0.068 %. No position of the file's 64 Å box is "
                   "farther than 16 Å from a boundary (x = 32 Å and the periodic edge); re-simulated without phonons "
                   "the grains' centres read 0.036 / 0.058 % off (bench/RESULTS.md, 'The shared files re-simulated')")
def test_bicrystal_grains_within_the_issue_s_target(shared_data):
    name = "si_001_bicrystal_10deg"
    cube = fw.load(shared_data / f"{name}.h5")
    with h5py.File(shared_data / f"{name}.h5", "r") as f:
        frac = f["ground_truth/fraction_probe_on_grainB"][()]
        gt = f["ground_truth"].attrs
        dk = float(np.ravel(f.attrs["reciprocal_sampling_invA"])[0])
        truth = {k: (np.asarray(gt[f"g1_invA_grain{k}"]) / dk, np.asarray(gt[f"g2_invA_grain{k}"]) / dk) for k in "AB"}
    sm = strain_map(fw.find_disks(cube, fw.FindDisksParams()), StrainMapParams(), cube.calibration)
    for grain, where in (("A", frac < 0.05), ("B", frac > 0.95)):
        t1, t2 = truth[grain]
        g1, g2 = like_truth(*(np.nanmedian(v[where].reshape(-1, 2), axis=0) for v in (sm.g1, sm.g2)), t1, t2)
        assert max(np.hypot(*(g1 - t1)), np.hypot(*(g2 - t2))) / np.hypot(*t1) < LATTICE_TARGET, grain
