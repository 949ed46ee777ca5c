"""Issue 12 item 16: the default lattice-fit weighting, judged on the shared abTEM Si [001] files.

Every default: ``find_disks`` with ``FindDisksParams()``, ``strain_map`` with ``StrainMapParams()``.
The lattice of a file is the median of its per-position fits; the figures for each weighting are in
``fit_lattice``'s docstring (the evidence the default was chosen by).
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
#: The issue's target for the lattice itself; 0.027 % is reached (0.021 % with uniform weights, which
#: costs strain accuracy), so the target is the strict xfail below and 0.03 % the guard.
LATTICE_TARGET, LATTICE_GUARD = 2e-4, 3e-4


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
    g1, g2 = (np.nanmedian(g.reshape(-1, 2), axis=0) for g in (sm.g1, sm.g2))
    options = [(s1 * a, s2 * b) for a, b in ((g1, g2), (g2, g1)) for s1 in (1, -1) for s2 in (1, -1)]
    g1, g2 = min(options, key=lambda ab: np.hypot(*(ab[0] - t1)) + np.hypot(*(ab[1] - t2)))
    return (g1, g2), (t1, t2)


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


def test_the_default_weighting_gives_the_better_strain(found):
    """The evidence for the default: intensity weights beat uniform ones on strain between files
    (0.027 % against 0.032 %)."""
    assert worst_strain_between_files(found) < worst_strain_between_files(found, "uniform")


@pytest.mark.parametrize("name", HOMOGENEOUS)
def test_default_lattice_close_to_the_truth(found, name):
    assert lattice_error(found, name) < LATTICE_GUARD


# Tried for issue 12 item 16 (helper h10; bench/bench_strain_limits.py, figures in bench/RESULTS.md). The
# per-disk errors (0.005-0.017 px, the same at every position of a homogeneous file) move with every detail
# of the refinement and with each disk's place on the pixel grid, but no rule removes them without breaking
# issue 10's bicrystal (tests/analysis/test_strain_defaults.py). A synthetic template edge of 0.25 px (the
# data's disk edges are sharper than the default 0.5 px) gives 0.015 / 0.010 / 0.014 % (unstrained / 1 % /
# rot 10°), disk_sigma 1.2 px (a band-limited window correlation) 0.011 / 0.011 / 0.020 %, disk_corr_power
# 0.5 0.019 / 0.020 / 0.018 %, but each raises the bicrystal's worst pure-grain position from 0.23 % to
# 0.29-0.34 % and its RMS over grain A from 0.087 % to 0.109-0.131 %, past issue 10's 0.1 %. A correction
# table of the refinement's pixel-phase bias, made on disks drawn with the central beam's own radial profile,
# predicts the errors of the axis-aligned (400) disks (0.014 px at a phase of 0.14 px, measured 0.009-0.015
# px) but not the others' (0.017 px predicted, 0.003 px measured for the (220) disks at 0.43 px; the wrong
# sign on si_001_rot_10deg), and correlating each disk again with the template drawn at the disk's own
# sub-pixel phase made si_001_rot_10deg worse (0.044 %): each disk's dynamical contrast shapes its error as
# much as its sampling does. What is left is mostly a common magnification (g2 +0.011 to +0.027 % in all three files),
# which cancels in strain between files (0.027 %, target 0.05 %).
# Tried for issue 12 item 16 (helper p12edge; bench/bench_disk_edges.py, figures in bench/RESULTS.md):
# refining each disk by its EDGE, started from the default refinement. The files fix what an edge fit can
# use: the central beam is exactly the aperture's profile (an amplitude ramp 1 px wide at 8.127 px,
# squared), but each diffracted disk's rim rings (pixels just inside the edge at 120-128 % of the interior,
# then 85-90 %, the same at every position: the coherent interference with the probe's tail that issue 10's
# bicrystal shows), so the rim carries the largest systematic structure in the disk. Lattice error
# (unstrained / 1 % / rot 10°): fitting (a0 + a1 u + a2 v) f(|p - c| - R) + b over a +-2.5 px rim band, f the
# aperture's profile or a logistic, 0.018 / 0.018-0.031 / 0.081-0.140 % (bicrystal worst 0.28-0.36 %); the rim
# at half height along 72 rays and a robust circle fit, 0.017 / 0.026 / 0.033 % (0.38 %); the gradient
# magnitude correlated with the template's ring (a prototype, not in the script), 0.058 % and worse. What
# works is the centre of symmetry of each disk's gradient magnitude (its self-convolution peaks at twice the
# centre): subpixel='edge' gives 0.015 / 0.018 / 0.013 % (test_the_edge_stage_reaches_the_lattice_target),
# strain between files 0.020 %, bicrystal worst 0.166 % (0.232 % without). It is not the default: the edge
# map weights each part of the rim by its step, so hard disks with a +-60 % intensity ramp are placed up to
# 0.13 px off (the window correlation 0.06 px; tests/analysis/test_disk_refine.py's bound is 0.1 px), 4 px
# disks 0.10 px off (tests/analysis/test_disks.py's bound for 'disk' is 0.05 px), at 2000 e/probe the
# median disk error is 0.72-0.74 px against 0.65 px, its lattice figures move with the gradient smoothing
# (EDGE_SIGMA 0.45 px: rot 10° 0.024 %; 0.6 px: unstrained 0.020 %), and find_disks takes twice as long.
@pytest.mark.xfail(strict=True, reason="the lattice is up to 0.027 % off (si_001_rot_10deg; 0.021 % at most with "
                   "uniform weights): systematic disk-position errors of 0.005-0.017 px from each disk's dynamical "
                   "contrast and pixel phase; the refinement settings that bring it under 0.02 % push the "
                   "bicrystal's pure-grain strain past issue 10's 0.1 % RMS; the opt-in edge stage "
                   "(subpixel='edge') reaches it but is pulled more by intensity ramps and noise (comment above)")
def test_default_lattice_within_the_issue_s_target(found):
    assert max(lattice_error(found, n) for n in HOMOGENEOUS) < LATTICE_TARGET


def test_the_edge_stage_reaches_the_lattice_target(found_edge):
    """The opt-in edge stage (``subpixel='edge'``) brings every lattice within the issue's 0.02 % (measured
    0.015 / 0.018 / 0.013 %) and keeps strain between files within its 0.05 % (measured 0.020 %)."""
    assert max(lattice_error(found_edge, n) for n in HOMOGENEOUS) < LATTICE_TARGET
    assert worst_strain_between_files(found_edge) < STRAIN_TOL
