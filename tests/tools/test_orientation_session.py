"""The orientation mapper's session, without a browser: chosen patterns, overlays, whole scan, grains, replay."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.crystal import Crystal, zone_axis_matrix
from fourd_widgets.analysis.orientation import OrientationMapParams
from fourd_widgets.analysis.orientation_plan import OrientationPlanParams
from fourd_widgets.analysis.orientation_raw import OrientationMapRawParams
from fourd_widgets.analysis.orientation_results import misorientation_deg
from fourd_widgets.core import DataCube
from fourd_widgets.core.recipe import Recipe
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


# --- the raw route's two-grain decomposition -----------------------------------------------------------------------
#: The probe fraction on grain B (Si [001] at 35 deg) of each position of the mixed scene, the rest on grain A
#: (Si [001] at 20 deg): pure A, 30 %, 50 %, 70 %, pure B, 40 %.
FRACTION_B = np.array([[0.0, 0.3, 0.5], [0.7, 1.0, 0.4]])


@pytest.fixture(scope="module")
def mixed():
    """Two grains 15 deg apart under the probe, mixed at known fractions (a grain boundary's patterns)."""
    kw = dict(reciprocal_step=0.02, convergence_semiangle_mrad=1.5, seed=4)
    a, _ = fw.datasets.simulate((1, 1), (96, 96), grains=[Grain.preset("Si", zone_axis=(0, 0, 1), rotation_deg=20.0)],
                                **kw)
    b, _ = fw.datasets.simulate((1, 1), (96, 96), grains=[Grain.preset("Si", zone_axis=(0, 0, 1), rotation_deg=35.0)],
                                **kw)
    A, B = np.asarray(a.pattern(0, 0), float), np.asarray(b.pattern(0, 0), float)
    f = FRACTION_B[..., None, None]
    cube = DataCube(((1 - f) * A + f * B).astype(np.float32), calibration=a.calibration)
    si = Crystal.from_parameters(5.431, 227, [("Si", 0, 0, 0)])
    sym = np.asarray(si.laue_group.proper_subgroup.to_matrix()).reshape(-1, 3, 3)
    return cube, [zone_axis_matrix(si, (0, 0, 1), 20.0), zone_axis_matrix(si, (0, 0, 1), 35.0)], sym


def test_the_two_grain_controls_set_the_record_and_the_map_has_weights_that_replay(mixed):
    cube, truth, sym = mixed
    s = OrientationSession(cube, params=OrientationMapParams(plan=SMALL_PLAN), start=False)
    try:
        s.set_route("patterns")
        assert s.record.read == "intensity" and s.record.decompose is False  # the record's defaults
        s.set(decompose=True).wait()
        assert s.error == "" and s.record.decompose is True and s.params.steps[0].decompose is True
        # the preview of the chosen patterns is decomposed: each match shows its weight
        view = s.pattern_view()
        assert all("weight" in m for m in view["matches"]) and view["matches"][0]["weight"] > 0
        s.run_on_all().wait()
        assert s.error == ""
        w = s.result.weight
        assert np.isfinite(w).all() and np.all((w >= 0) & (w <= 1))
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-9)  # shares of one fitted intensity
        for (rx, ry), fb in np.ndenumerate(FRACTION_B):
            if fb in (0.0, 0.5, 1.0):
                continue  # pure grains and the even mixture: no order to check
            # at a mixed position the first two matches are the two grains, and the grain with more of the probe
            # has the larger weight. 2 deg (two in-plane steps of the plan; the grains are 15 deg apart): the other
            # grain's spots pull the refinement of a mixed pattern's matches (1.1 deg measured at 30 %)
            U = s.result.matrix[rx, ry]
            err = np.array([[_err(U[m], T, sym) for T in truth] for m in range(2)])
            pick = np.argmin(err, axis=1)
            assert sorted(pick.tolist()) == [0, 1] and err.min(axis=1).max() < 2.0, err
            w_b = w[rx, ry, int(np.argmax(pick == 1))]
            assert (w_b > 0.5) == (fb > 0.5), (fb, w[rx, ry])
        # the pattern panel also lists the map's matches at the selected position, with the map's weights
        shown = s.pattern_view()["map_matches"]
        assert [m["weight"] for m in shown] == w[s.selected].tolist()
        assert [m["in_plane_deg"] for m in shown] == s.result.in_plane_deg[s.selected].tolist()
        # the recipe keeps both fields through JSON and replays the same map, weights included
        rec = Recipe.from_json(s.params.to_json())
        assert rec.steps[0] == s.record and rec.steps[0].decompose is True
        assert fw.run(rec, cube)["orientation_map_raw"] == s.result
        again = OrientationSession.from_params(cube, rec, start=False)
        assert again.route == "patterns" and again.record.decompose is True
        again.close()
        s.set(num_matches=2).wait()  # the map is of the record before: its matches are no longer shown as current
        assert s.pattern_view()["map_matches"] == []
    finally:
        s.close()


def test_the_read_control_sets_the_record_and_replays(mixed):
    cube, _, _ = mixed
    s = OrientationSession(cube, params=OrientationMapRawParams(plan=SMALL_PLAN), start=False)
    events = []
    s.listen(lambda e, v: events.append(v) if e == "record" else None)
    try:
        s.set(read="disk_rims").wait()
        assert s.error == "" and s.record.read == "disk_rims" and events[-1].read == "disk_rims"
        assert s.chosen and all("weight" not in m for m in s.pattern_view()["matches"])  # not decomposed
        s.run_on_all().wait()
        assert s.error == "" and np.isnan(s.result.weight).all()
        assert fw.run(Recipe.from_json(s.params.to_json()), cube)["orientation_map_raw"] == s.result
        with pytest.raises(fw.errors.ParameterError, match="read"):
            s.set(read="edges")
    finally:
        s.close()


def test_the_raw_route_s_fields_are_refused_on_the_peak_route_and_kept_for_the_raw_one(mixed):
    cube, _, _ = mixed
    s = OrientationSession(cube, params=OrientationMapRawParams(plan=SMALL_PLAN, decompose=True), start=False)
    try:
        s.set_route("peaks")
        before = s.record
        for field, value in (("decompose", True), ("read", "disk_rims")):
            with pytest.raises(fw.errors.ParameterError, match=f"'{field}'.*raw-patterns route") as caught:
                s.set(**{field: value})
            assert isinstance(caught.value, fw.errors.FourDError) and caught.value.field == field
            assert "set_route('patterns')" in str(caught.value)  # what to do
        assert s.record is before
        s.set(num_matches=2)
        s.set_route("patterns")  # its own fields come back; the shared ones as set meanwhile
        assert s.record.decompose is True and s.record.num_matches == 2
    finally:
        s.close()


#: Each pattern decomposed alone in the whole-scan map too, as the preview decomposes it (a record field that
#: adds a pass over the neighbouring positions, when the analysis has one, set to 0)
ALONE = {"boundary_radius_px": 0.0} if "boundary_radius_px" in OrientationMapRawParams.__dataclass_fields__ else {}


@pytest.mark.parametrize("read", ["intensity", "disk_rims"])
def test_the_preview_weights_are_the_whole_scan_s(mixed, read):
    cube, _, _ = mixed
    record = OrientationMapRawParams(plan=SMALL_PLAN, read=read, decompose=True, **ALONE)
    s = OrientationSession(cube, params=record)
    try:
        s.wait().run_on_all().wait()
        assert s.error == "" and np.isfinite(s.result.weight).all()
        for (rx, ry), m in s.chosen.items():
            np.testing.assert_allclose(m["weight"], s.result.weight[rx, ry], atol=1e-9)
    finally:
        s.close()


@pytest.mark.shared_data
def test_the_bicrystal_through_the_session_s_two_grain_controls(shared_data):
    """The real case: abTEM Si bicrystal, grains 10 deg apart with overlapping disks, boundary across the scan."""
    cube, truth = fw.datasets.load_shared("si_001_bicrystal_10deg", root=shared_data)
    s = OrientationSession(cube, route="patterns", start=False)
    try:
        s.set(read="disk_rims", decompose=True)
        # the record the analysis documents for overlapping disks, reached through the controls' fields alone
        assert s.record == OrientationMapRawParams(read="disk_rims", decompose=True)
        s.wait()
        assert s.error == "" and all(np.isfinite(m["weight"]).all() for m in s.chosen.values())
        s.run_on_all().wait()
        assert s.error == ""
        w, fb = s.result.weight, np.asarray(truth["fraction_probe_on_grainB"])
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-9)
        # where the probe is on one grain (fraction < 0.1 or > 0.9) the first match is that grain and carries most
        # of the fitted intensity. 0.5 deg: twice the 0.24 deg measured (the 0.2 deg target is checked by
        # tests/analysis/test_orientation_accuracy.py); Si [001] repeats every 90 deg in-plane
        pure = (fb < 0.1) | (fb > 0.9)
        d = (s.result.in_plane_deg[..., 0] - np.asarray(truth["rotation_deg"]) + 45.0) % 90.0 - 45.0
        assert np.abs(d[pure]).max() < 0.5 and w[..., 0][pure].min() > 0.5
    finally:
        s.close()
