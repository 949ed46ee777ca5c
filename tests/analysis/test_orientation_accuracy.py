"""Orientation maps against the ground truth of the shared abTEM Si files (issue targets).

Peaks come from ``find_disks`` with each file's ``vacuum_probe`` as template (default parameters);
the plan is the default one (Laue group's fundamental sector, 1 degree steps) built from each
cube's calibration. Orientations are compared as misorientations under Si's symmetry (orix's m-3m
rotations). A zero-order pattern of a centrosymmetric crystal is unchanged by a half-turn about the
beam (Friedel's law); for [001] and [011] that half-turn is a symmetry of Si, for [111] it is not
(it is 60 degrees about [111] modulo m-3m), so there the truth's half-turn twin is an equally right
answer and both are accepted.

At the bicrystal's mixed positions the disks of the two grains overlap and find_disks merges them, so
that check uses the route for overlapping disks: raw patterns read as disk rims, each decomposed into
two orientations (``orientation_map_raw(read="disk_rims", decompose=True)``), then fitted with the
grains around it (the second pass of :mod:`fourd_widgets.analysis.orientation_boundaries`).
"""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.crystal import zone_axis_matrix
from fourd_widgets.analysis.disks import FindDisksParams, find_disks
from fourd_widgets.analysis.orientation import orientation_map
from fourd_widgets.analysis.orientation_plan import OrientationPlanParams, build_plan
from fourd_widgets.analysis.orientation_raw import OrientationMapRawParams, orientation_map_raw, raw_plan
from fourd_widgets.analysis.orientation_results import misorientation_deg

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]
HALF_TURN = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def maps(shared_data):
    out = {}
    for name in ("si_polycrystal_4zones", "si_001_rot_10deg", "si_001_bicrystal_10deg"):
        cube, truth = fw.datasets.load_shared(name, root=shared_data)
        peaks = find_disks(cube, FindDisksParams(), template=truth["vacuum_probe"])
        plan = build_plan(OrientationPlanParams(), cube.calibration, detector_shape=cube.detector_shape)
        out[name] = (orientation_map(peaks, None, cube.calibration, plan=plan), truth, plan)
    return out


def _err(U, truth, sym):
    return np.minimum(misorientation_deg(U, truth, sym), misorientation_deg(U, HALF_TURN @ truth, sym))


def test_polycrystal_grains_and_orientations(maps):
    om, truth, plan = maps["si_polycrystal_4zones"]
    sym = plan.phases[0].symmetry
    R = np.asarray(truth["orientation_matrices"], float)
    gid = np.asarray(truth["grain_id"])
    err = np.stack([_err(om.matrix[..., 0, :, :], R[g], sym) for g in range(len(R))], -1)  # (Rx, Ry, grains)
    # grain id: the truth grain nearest in orientation is the position's own grain everywhere
    assert np.array_equal(np.argmin(err, -1), gid)
    own = np.take_along_axis(err, gid[..., None], -1)[..., 0]
    # issue target 1 deg; the in-plane angle is within the misorientation, so < 0.5 deg covers its target too
    assert own.max() < 0.5, own.max()
    # each grain's map is one orientation: reliable and with the right beam direction
    assert np.all(om.reliability > 0.02)


def test_rotated_crystal_within_0p2_degrees(maps):
    om, truth, plan = maps["si_001_rot_10deg"]
    U = zone_axis_matrix(plan.phases[0].crystal, (0, 0, 1), float(truth["rotation_deg"]))
    err = _err(om.matrix[..., 0, :, :], U, plan.phases[0].symmetry)
    assert err.max() < 0.2, err.max()  # issue target


def test_bicrystal_pure_positions_within_0p2_degrees(maps):
    om, truth, plan = maps["si_001_bicrystal_10deg"]
    crystal, sym = plan.phases[0].crystal, plan.phases[0].symmetry
    fb = np.asarray(truth["fraction_probe_on_grainB"])
    rot = np.asarray(truth["rotation_deg"], float)
    pure = (fb < 0.1) | (fb > 0.9)
    err = np.full(fb.shape, np.nan)
    for i, j in zip(*np.nonzero(pure)):
        err[i, j] = _err(om.matrix[i, j, 0], zone_axis_matrix(crystal, (0, 0, 1), rot[i, j]), sym)
    assert np.nanmax(err) < 0.2, np.nanmax(err)  # issue target


@pytest.fixture(scope="module")
def decomposed(shared_data):
    """The bicrystal on the route for overlapping disks: raw patterns read as disk rims, each pattern
    decomposed into two orientations (find_disks merges the two grains' disks, 5.8 px apart for 8 px radii)."""
    cube, truth = fw.datasets.load_shared("si_001_bicrystal_10deg", root=shared_data)
    return orientation_map_raw(cube, OrientationMapRawParams(read="disk_rims", decompose=True)), truth


def test_bicrystal_mixed_positions_give_both_grains(maps, decomposed):
    """Issue target. Measured: within 1 deg in sum at 80 of 80 (median 0.025, worst 0.06 deg) with the grains'
    second pass; each pattern alone (boundary_radius_px=0) 25 of 80 (bench/RESULTS.md, orientation section)."""
    _, _, plan = maps["si_001_bicrystal_10deg"]
    om, truth = decomposed
    crystal, sym = plan.phases[0].crystal, plan.phases[0].symmetry
    fb = np.asarray(truth["fraction_probe_on_grainB"])
    A, B = (zone_axis_matrix(crystal, (0, 0, 1), float(truth[k])) for k in ("rotation_deg_grainA",
                                                                            "rotation_deg_grainB"))
    for i, j in zip(*np.nonzero((fb >= 0.1) & (fb <= 0.9))):
        first_two = om.matrix[i, j, :2]
        e = np.array([[_err(U, G, sym) for G in (A, B)] for U in first_two])
        assert min(e[0, 0] + e[1, 1], e[0, 1] + e[1, 0]) < 1.0


def _decomposed(shared_data, name):
    cube, truth = fw.datasets.load_shared(name, root=shared_data)
    om = orientation_map_raw(cube, OrientationMapRawParams(read="disk_rims", decompose=True))
    plan = raw_plan(OrientationMapRawParams(read="disk_rims"), cube.calibration, cube.detector_shape)
    return om, truth, plan.phases[0]


def test_bicrystal_decomposed_pure_positions_within_0p2_degrees(decomposed, maps):
    """The grains' pair is taken near the boundary too: match 1 of the single-grain positions keeps the issue's
    0.2 degrees (the grains' orientations are the mean of their single-grain positions'). Measured: median 0.013,
    max 0.093 deg with the in-plane angle fitted to the rim peaks; 0.028 / 0.202 with the correlation's (pulled by
    the other grain's rims, at 2-4 % of the probe, 10 degrees away)."""
    _, _, plan = maps["si_001_bicrystal_10deg"]
    om, truth = decomposed
    crystal, sym = plan.phases[0].crystal, plan.phases[0].symmetry
    fb = np.asarray(truth["fraction_probe_on_grainB"])
    rot = np.asarray(truth["rotation_deg"], float)
    err = [_err(om.matrix[i, j, 0], zone_axis_matrix(crystal, (0, 0, 1), rot[i, j]), sym)
           for i, j in zip(*np.nonzero((fb < 0.1) | (fb > 0.9)))]
    assert max(err) < 0.2, max(err)  # issue target


def test_bicrystal_weights_follow_the_probe_fraction(decomposed, maps):
    """At the mixed positions the fitted weight of grain B follows the share of the probe on grain B."""
    _, _, plan = maps["si_001_bicrystal_10deg"]
    om, truth = decomposed
    crystal, sym = plan.phases[0].crystal, plan.phases[0].symmetry
    fb = np.asarray(truth["fraction_probe_on_grainB"])
    B = zone_axis_matrix(crystal, (0, 0, 1), float(truth["rotation_deg_grainB"]))
    mixed = (fb >= 0.1) & (fb <= 0.9)
    wB = [om.weight[i, j, int(np.argmin([_err(om.matrix[i, j, m], B, sym) for m in (0, 1)]))]
          for i, j in zip(*np.nonzero(mixed))]
    # a linear trend, not equality: the rims are read of the square-root intensity (r 0.96 before the grains'
    # pass, 0.98 with it)
    assert np.corrcoef(wB, fb[mixed])[0, 1] >= 0.95


def test_single_grain_file_gets_no_second_grain(shared_data):
    """si_001_rot_10deg is one grain: no position keeps a second orientation (before the grains' pass the pair fit
    put a neighbour 10-12 degrees away at 6-9 % of the spot intensity everywhere)."""
    from fourd_widgets.analysis.orientation_pairs import MIN_WEIGHT

    om, truth, phase = _decomposed(shared_data, "si_001_rot_10deg")
    assert np.all(om.weight[..., 1] < MIN_WEIGHT), np.nanmax(om.weight[..., 1])
    U = zone_axis_matrix(phase.crystal, (0, 0, 1), float(truth["rotation_deg"]))
    assert _err(om.matrix[..., 0, :, :], U, phase.symmetry).max() < 0.2  # issue target


def test_polycrystal_decomposed_grain_ids(shared_data):
    """On four grains the decomposed raw route keeps every position's grain: match 1 is nearest its own grain."""
    om, truth, phase = _decomposed(shared_data, "si_polycrystal_4zones")
    R = np.asarray(truth["orientation_matrices"], float)
    err = np.stack([_err(om.matrix[..., 0, :, :], R[g], phase.symmetry) for g in range(len(R))], -1)
    assert np.array_equal(np.argmin(err, -1), np.asarray(truth["grain_id"]))


def test_polycrystal_grain_segmentation_is_the_truth(maps):
    from fourd_widgets.analysis.orientation_grains import ipf_colors, segment_grains

    om, truth, _ = maps["si_polycrystal_4zones"]
    gid = np.asarray(truth["grain_id"])
    g = segment_grains(om, 5.0)
    # the same partition as the truth (labels may be numbered differently): 100 % of positions
    pairs = set(zip(g.labels.ravel().tolist(), gid.ravel().tolist()))
    assert len(pairs) == g.count == len(np.unique(gid))
    assert sorted(g.sizes.tolist()) == sorted(np.bincount(gid.ravel()).tolist())
    # IPF-z: the [001] grains are red, [011] green, [111] blue (TSL key)
    rgb = ipf_colors(om, "z")
    for grain, channel in ((0, 0), (1, 1), (2, 2), (3, 0)):
        assert np.all(np.argmax(rgb[gid == grain], -1) == channel), grain
