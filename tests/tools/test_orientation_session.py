"""The orientation mapper's session, without a browser: chosen patterns, overlays, whole scan, grains, replay."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.crystal import Crystal, zone_axis_matrix
from fourd_widgets.analysis.orientation import OrientationMapParams
from fourd_widgets.analysis.orientation_plan import OrientationPlanParams
from fourd_widgets.analysis.orientation_results import misorientation_deg
from fourd_widgets.datasets.crystal import Grain
from fourd_widgets.tools.orientation import OrientationSession, default_positions

SMALL_PLAN = OrientationPlanParams(zone_axis_range="given", zone_axes=((0, 0, 1), (0, 1, 1), (1, 1, 1)))
HALF_TURN = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def scene():
    """Two grains side by side: Si [001] at 20 deg (left half of the scan) and Si [011] at -10 deg."""
    grains = [Grain.preset("Si", zone_axis=(0, 0, 1), rotation_deg=20.0),
              Grain.preset("Si", zone_axis=(0, 1, 1), rotation_deg=-10.0)]
    gmap = np.zeros((6, 6), int)
    gmap[3:] = 1
    cube, _ = fw.datasets.simulate((6, 6), (96, 96), grains=grains, grain_map=gmap, reciprocal_step=0.02,
                                   convergence_semiangle_mrad=1.5, seed=4)
    return cube, gmap


def _truth(gmap):
    si = Crystal.from_parameters(5.431, 227, [("Si", 0, 0, 0)])
    sym = np.asarray(si.laue_group.proper_subgroup.to_matrix()).reshape(-1, 3, 3)
    return [zone_axis_matrix(si, (0, 0, 1), 20.0), zone_axis_matrix(si, (0, 1, 1), -10.0)], sym


def _err(U, T, sym):
    return np.minimum(misorientation_deg(U, T, sym), misorientation_deg(U, HALF_TURN @ T, sym))


def test_chosen_patterns_and_the_overlay_of_the_best_match(scene):
    cube, gmap = scene
    s = OrientationSession(cube, params=OrientationMapParams(plan=SMALL_PLAN)).wait()
    try:
        assert s.error == ""
        assert sorted(s.chosen) == sorted(default_positions(cube.scan_shape))
        truth, sym = _truth(gmap)
        for (rx, ry), m in s.chosen.items():
            assert _err(m["matrix"][0], truth[gmap[rx, ry]], sym) < 0.5
        view = s.pattern_view()
        assert view["image"].shape == cube.detector_shape and len(view["matches"]) == 3
        # the simulated spots of the best match sit on the detected disks (within 1.5 px)
        peaks = s.peaks.at(*s.selected)
        q = np.stack([peaks["qx"], peaks["qy"]], -1)
        far = np.linalg.norm(q - np.asarray(cube.calibration.origin), axis=1) > 5
        spots = view["spots"][0]["xy"]
        d = np.min(np.linalg.norm(q[far][:, None] - spots[None], axis=-1), axis=1)
        assert np.all(d < 1.5), d
        # why it matched: the correlation peaks at the in-plane angle of the match (modulo the pattern's symmetry)
        curve = view["angle_correlation"]
        assert curve.shape == view["angles_deg"].shape and np.argmax(view["zone_correlation"]) >= 0
        # a matching change re-matches the chosen patterns only
        s.set(num_matches=2).wait()
        assert len(s.pattern_view()["matches"]) == 2
        assert s.plan.params == SMALL_PLAN
    finally:
        s.close()


def test_run_on_all_paints_partial_ipf_maps_and_equals_the_replay(scene):
    cube, gmap = scene
    s = OrientationSession(cube, params=OrientationMapParams(plan=SMALL_PLAN), start=False)
    events = []
    s.listen(lambda e, v: events.append((e, v)) if e in ("ipf", "grains") else None)
    try:
        s.run_on_all().wait()
        assert s.error == ""
        ipf = [v for e, v in events if e == "ipf"]
        assert len(ipf) >= 2 and ipf[-1][0].shape == (6, 6, 3)
        assert not np.isnan(ipf[-1][0]).any()
        replay = fw.run(s.params, cube)["orientation_map"]
        assert replay == s.result
        assert s.grains.count == 2 and np.array_equal(s.grains.labels, gmap)
        s.set_grain_threshold(90.0)  # everything within 90 deg: one grain
        assert s.grains.count == 1
        again = OrientationSession.from_params(cube, s.params, start=False)
        assert again.record == s.record and again.disks == s.disks
        again.close()
    finally:
        s.close()


def test_select_outside_the_scan_is_refused(scene):
    cube, _ = scene
    s = OrientationSession(cube, params=OrientationMapParams(plan=SMALL_PLAN), start=False)
    try:
        with pytest.raises(fw.errors.ParameterError, match="outside the scan"):
            s.select(10, 0)
    finally:
        s.close()


def test_the_raw_pattern_route_matches_the_chosen_patterns_and_replays(scene):
    cube, gmap = scene
    s = OrientationSession(cube, params=OrientationMapParams(plan=SMALL_PLAN, num_matches=2), start=False)
    try:
        s.set_route("patterns").wait()
        assert s.error == "" and s.route == "patterns"
        # the matching fields and the plan carry over; the recipe is the one raw step (no disk detection)
        assert s.record.step == "orientation_map_raw" and s.record.num_matches == 2 and s.record.plan == SMALL_PLAN
        assert [p.step for p in s.params.steps] == ["orientation_map_raw"]
        assert s.peaks is None  # nothing detected on this route
        truth, sym = _truth(gmap)
        for (rx, ry), m in s.chosen.items():
            assert _err(m["matrix"][0], truth[gmap[rx, ry]], sym) < 0.5
        assert len(s.pattern_view()["matches"]) == 2
        s.run_on_all().wait()
        assert s.error == "" and np.array_equal(s.grains.labels, gmap)
        assert fw.run(s.params, cube)["orientation_map_raw"] == s.result
        again = OrientationSession.from_params(cube, s.params, start=False)
        assert again.route == "patterns" and again.record == s.record
        again.close()
        s.set_route("peaks").wait()
        assert s.record.step == "orientation_map" and s.record.num_matches == 2
        with pytest.raises(fw.errors.ParameterError, match="route"):
            s.set_route("pixels")
    finally:
        s.close()
