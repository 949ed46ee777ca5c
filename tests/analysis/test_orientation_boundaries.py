"""The grains around a boundary as its two grains (the second pass of ``decompose=True``) against known sums.

A (10, 3) scan of spotty Si patterns from the built-in simulator (kinematic, 0.4 mrad probe: spots 1.3 px
in radius): rows 0-3 grain A ([001] at 0 deg), rows 7-9 grain B ([001] at 15 deg), and in between the sums
0.75 A + 0.25 B, 0.5 A + 0.5 B, 0.25 A + 0.75 B (a boundary crossing the probe); at (0, 2) a pattern of a
third orientation ([011] at 10 deg), a grain of one position that the neighbours' pair must not overwrite.
Orientations are compared as misorientations under Si's symmetry, the half-turn about the beam accepted.
"""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.orientation_boundaries import boundary_fit
from fourd_widgets.analysis.orientation_pairs import MIN_WEIGHT, ring_fit
from fourd_widgets.analysis.orientation_plan import OrientationPlanParams, build_plan
from fourd_widgets.analysis.orientation_raw import OrientationMapRawParams, PatternPolar, orientation_map_raw
from fourd_widgets.analysis.orientation_results import misorientation_deg
from fourd_widgets.core.datacube import DataCube
from fourd_widgets.datasets.crystal import Grain, orientation_matrix

HALF_TURN = np.diag([-1.0, -1.0, 1.0])
SCAN = (10, 3)
GRAINS = [((0, 0, 1), 0.0), ((0, 0, 1), 15.0), ((0, 1, 1), 10.0)]  # A, B, the third
ON_A = np.array([1, 1, 1, 1, 0.75, 0.5, 0.25, 0, 0, 0], float)  # share of grain A by row
THIRD = (0, 2)


@pytest.fixture(scope="module")
def boundary():
    grains = [Grain.preset("Si", zone_axis=z, rotation_deg=r) for z, r in GRAINS]
    pure = []
    for g in range(len(grains)):
        cube, _ = fw.datasets.simulate(SCAN, (128, 128), grains=grains, grain_map=np.full(SCAN, g),
                                       reciprocal_step=0.0156, convergence_semiangle_mrad=0.4, seed=5 + g,
                                       background=0.05)
        pure.append(cube.to_numpy().astype(float))
    share = ON_A[:, None, None, None]
    data = share * pure[0] + (1 - share) * pure[1]
    data[THIRD] = pure[2][THIRD]
    plan = build_plan(OrientationPlanParams(g_max=0.97), cube.calibration)
    truth = np.stack([orientation_matrix(g) for g in grains])
    cube = DataCube(data, cube.calibration)
    with_grains = orientation_map_raw(cube, OrientationMapRawParams(decompose=True), plan=plan)
    alone = orientation_map_raw(cube, OrientationMapRawParams(decompose=True, boundary_radius_px=0), plan=plan)
    return cube, truth, plan, with_grains, alone


def _err(U, V, sym):
    return min(float(misorientation_deg(U, V, sym)), float(misorientation_deg(U, HALF_TURN @ V, sym)))


def _pair_error(om, i, j, truth, sym):
    e = [[_err(om.matrix[i, j, m], truth[g], sym) for g in (0, 1)] for m in (0, 1)]
    return min(e[0][0] + e[1][1], e[0][1] + e[1][0])


def test_mixed_positions_take_the_neighbouring_grains(boundary):
    _, truth, plan, om, alone = boundary
    sym = plan.phases[0].symmetry
    for i in (4, 5, 6):
        for j in range(SCAN[1]):
            # the grains' orientations are their pure positions' single matches (kinematic spots: in-plane
            # angle exact, tilt from the excitation errors; measured 0.00 deg here): 0.5 deg in sum for both.
            # Each pattern alone gives 1.7-4.3 deg in sum here (the fit's free intensities pull the angles)
            assert _pair_error(om, i, j, truth, sym) < 0.5, (i, j)
            # the weights are the share of each grain in the sum (measured within 0.04: spot overlaps, background)
            a = int(np.argmin([_err(om.matrix[i, j, m], truth[0], sym) for m in (0, 1)]))
            assert abs(om.weight[i, j, a] - ON_A[i]) < 0.05, (i, j)
            assert om.weight[i, j, 0] >= om.weight[i, j, 1]
    assert max(_pair_error(alone, i, 0, truth, sym) for i in (4, 5, 6)) > 0.5  # the pass is what does it


def test_a_grain_of_one_position_is_kept(boundary):
    _, truth, plan, om, alone = boundary
    # the neighbours' pair (A, B) leaves 26 times what the third orientation alone leaves: it is not taken
    assert np.array_equal(om.matrix[THIRD], alone.matrix[THIRD])
    assert np.array_equal(om.weight[THIRD], alone.weight[THIRD])
    assert _err(om.matrix[THIRD][0], truth[2], plan.phases[0].symmetry) < 1.0


def test_single_grain_positions_get_no_second_grain(boundary):
    _, truth, plan, om, _ = boundary
    sym = plan.phases[0].symmetry
    for i in (0, 1, 2, 3, 7, 8, 9):
        for j in range(SCAN[1]):
            if (i, j) == THIRD:
                continue
            assert om.weight[i, j, 1] < MIN_WEIGHT, (i, j)
            assert _err(om.matrix[i, j, 0], truth[0 if ON_A[i] else 1], sym) < 0.5, (i, j)


def test_boundary_fit_keeps_another_grain_and_takes_the_pair(boundary):
    cube, truth, plan, om, _ = boundary
    p = OrientationMapRawParams(decompose=True)
    polar = PatternPolar(plan, p, cube.calibration, cube.scan_shape, cube.detector_shape)
    ph = plan.phases[0]
    data = cube.to_numpy()

    def fit(i, j):
        _, rings = polar.read_pattern(polar.polar_block(data[i:i + 1, j:j + 1], slice(i, i + 1),
                                                        slice(j, j + 1))[0])
        return ring_fit(rings[0], ph.shells, plan.n_angles, plan.params.kernel_size)

    # the third orientation's pattern, its own match 1 and a spurious second: the grains' pair does not explain it
    own = np.stack([truth[2], truth[0]])
    assert boundary_fit(fit(*THIRD), ph, plan, own, np.array([0.9, 0.1]), [truth[0], truth[1]], 5.0) is None
    # the half-and-half sum with a wrong second orientation: the grains' pair is taken, weights about 0.5
    res = boundary_fit(fit(5, 0), ph, plan, np.stack([truth[0], truth[2]]), np.array([0.6, 0.4]),
                       [truth[0], truth[1]], 5.0)
    assert res is not None and res["matrix"].shape == (2, 3, 3)
    assert abs(res["weight"][0] - 0.5) < 0.05


def test_records_before_the_grains_pass_replay_as_they_were():
    old = {"step": "orientation_map_raw", "schema_version": 2, "read": "disk_rims", "decompose": True}
    p = OrientationMapRawParams.from_dict(old)
    assert (p.read, p.decompose, p.boundary_radius_px) == ("disk_rims", True, 0.0)
    assert OrientationMapRawParams.from_dict(p.to_dict()) == p
    first = OrientationMapRawParams.from_dict({"step": "orientation_map_raw", "schema_version": 1})
    assert first.boundary_radius_px == 0
    assert OrientationMapRawParams().boundary_radius_px > 0  # new records take the grains around
