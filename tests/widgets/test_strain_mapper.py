"""StrainMapper state: picks snap to candidates, maps equal a headless replay of ``mapper.params``, bad input
gives a message beside its control."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile

from fourd_widgets.analysis.disks import FindDisksParams, PeakTable, find_disks
from fourd_widgets.analysis.run import run
from fourd_widgets.analysis.strain import StrainMap, StrainMapParams, strain_map
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.datasets import sample
from fourd_widgets.widgets.calibration_tool import CalibrationTool
from fourd_widgets.widgets.overlays import make_overlay
from fourd_widgets.widgets.strain_mapper import MAP_NAMES, StrainMapper

DISKS = FindDisksParams()


@pytest.fixture(scope="module")
def scene():
    cube, truth = sample("strained_crystal", small=True)
    # the simulator's exact disk centres: tests of the tool, not of disk detection
    exact = PeakTable(truth.scan_shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                      truth.peak_intensity)
    return cube, truth, exact, Calibration(origin_map=truth.origin_map, origin=truth.origin)


@pytest.fixture
def make():
    made: list = []

    def factory(*args, **kw) -> StrainMapper:
        m = StrainMapper(*args, **kw).wait()
        made.append(m)
        return m

    yield factory
    for m in made:
        m.close()


def assert_same_maps(a: StrainMap, b: StrainMap) -> None:
    for n in (*MAP_NAMES, "mask", "failure", "g1", "g2"):
        np.testing.assert_array_equal(getattr(a, n), getattr(b, n), err_msg=n)


def test_suggested_basis_and_maps(scene, make) -> None:
    cube, truth, exact, cal = scene
    m = make(cube, exact, cal)
    b = m.basis
    np.testing.assert_array_equal(m.g1, b.g1)
    np.testing.assert_array_equal(m.g2, b.g2)
    # the pickers sit on the chosen candidates; the candidates are drawn as markers
    g1 = m.bvm_view.overlay("g1")
    assert (g1["x"] - m._centre[0], g1["y"] - m._centre[1]) == pytest.approx(tuple(b.g1))
    assert len(m.bvm_view.marker_points("candidates")[0]) == len(b.candidates)
    # the maps are the StrainMap in percent (θ in degrees), diverging, symmetric, shared by the three strains
    np.testing.assert_allclose(m.map_views["exx"].data, 100 * m.strain.exx)
    limits = {n: (v.vmin, v.vmax) for n, v in m.map_views.items()}
    assert limits["exx"] == limits["eyy"] == limits["exy"] and limits["exx"][0] == -limits["exx"][1] > -np.inf
    assert limits["theta_deg"][0] == -limits["theta_deg"][1]
    assert all(v.colormap == "rdbu" for v in m.map_views.values())
    # equals the analysis function on the same parameters (the tool adds no numerics)
    assert_same_maps(m.strain, strain_map(exact, m.strain_params, cal))


def test_click_snaps_to_candidate(scene, make) -> None:
    cube, _, exact, cal = scene
    m = make(None, exact, cal)
    b = m.basis
    target = next(i for i in range(len(b.candidates)) if i not in (b.index_g1, b.index_g2)
                  and abs(b.candidates[i][0] * b.g2[1] - b.candidates[i][1] * b.g2[0]) > 1)
    x, y = b.candidates[target] + m._centre + (1.4, -1.2)   # a click near, not on, the spot
    m.bvm_view.set_overlay({**m.bvm_view.overlay("g1"), "x": round(x), "y": round(y)})  # what click_moves sends
    m.wait()
    np.testing.assert_array_equal(m.g1, b.candidates[target])
    assert m.bvm_view.overlay("g1")["x"] == pytest.approx(b.candidates[target][0] + m._centre[0])
    assert m._pick.value == "g2" and m.bvm_view.click_moves == "g2"   # the next click picks g2
    assert_same_maps(m.strain, strain_map(exact, StrainMapParams(g1=m.strain_params.g1, g2=m.strain_params.g2,
                                                                 reference_region=m.strain_params.reference_region),
                                          cal))
    # a click far from every spot picks nothing and says so
    before = m.g1.copy()
    m.pick_at("g1", m._centre[0] + 0.5 * b.g1[0] + 0.5 * b.g2[0] + 0.3, m._centre[1])
    assert "no Bragg spot" in m.basis_message.value
    np.testing.assert_array_equal(m.g1, before)


def test_reference_region_recomputes_cheaply(scene, make) -> None:
    cube, truth, exact, cal = scene
    m = make(None, exact, cal)
    fit = m.fit
    # the browser edits the rectangle on one map: every map gets it, the fit is reused
    view = m.map_views["eyy"]
    view.set_overlay(make_overlay("rectangle", "reference", x0=0, x1=1, y0=0, y1=16))
    m.wait()
    assert m.fit is fit
    for v in m.map_views.values():
        assert v.overlay("reference")["x1"] == 1.0
    assert m.strain_params.reference_region.sum() == 16 and m.strain_params.reference_region[0].all()
    # row 0 is unstrained in the simulator: exx follows the ground truth
    err = np.abs(m.strain.exx - truth.strain_exx)
    assert np.nanmax(err) < 2e-4
    # polygon regions too
    m._region_kind.value = "polygon"
    m.wait()
    assert m.map_views["exx"].overlay("reference")["kind"] == "polygon" and m.strain_params.reference_region.any()


def test_frame_and_fit_options(scene, make) -> None:
    _, _, exact, cal = scene
    m = make(None, exact, cal)
    exx0 = m.strain.exx.copy()
    m._frame.value = 90.0
    m.wait()
    np.testing.assert_allclose(m.strain.eyy, exx0, atol=1e-12)   # rotating the frame by 90° swaps xx and yy
    m._spacing.value = 2.0
    m.wait()
    assert m.strain_params.max_peak_spacing == 2.0 and m.strain_params.frame_deg == 90.0


def test_pattern_with_fitted_lattice(scene, make) -> None:
    cube, _, exact, cal = scene
    m = make(cube, exact, cal)
    m.map_views["theta_deg"].set_overlay(make_overlay("point", "position", x=5, y=9))   # a click there
    np.testing.assert_array_equal(m.pattern_view.data, cube.pattern(5, 9))
    lat = m.pattern_view.overlay("fit")
    assert lat["kind"] == "lattice"
    np.testing.assert_allclose((lat["ax"], lat["ay"]), m.fit.g1[5, 9])
    np.testing.assert_allclose((lat["x"], lat["y"]), cal.origin_map[5, 9] + m.fit.origin[5, 9])
    xy = m.pattern_view.marker_points("peaks")[0]
    assert len(xy) == exact.counts()[5, 9]
    assert all(v.overlay("position")["x"] == 5 for v in m.map_views.values())


def test_replay_equals_tool_with_nan_positions(scene, make, tmp_path) -> None:
    data = np.array(scene[0].read(slice(None), slice(None)))
    data[3, 5] = 0.0        # blank patterns: no disks, so the fit fails there
    data[10, 2] = 0.0
    cube = DataCube(data, scene[0].calibration)
    peaks = find_disks(cube, DISKS)
    tool = CalibrationTool(cube, peaks).wait()
    try:
        m = make(cube, peaks, tool, disks=DISKS)
        assert m.strain.mask[3, 5] and m.strain.mask[10, 2]
        assert m.strain.mask.any() and np.isnan(m.strain.exx[m.strain.mask]).all()
        res = run(Recipe.from_json(m.params.to_json()), cube)
        assert_same_maps(res["strain_map"], m.strain)
        again = StrainMapper.from_params(cube, peaks, m.params.to_json()).wait()
        try:
            assert again.params.to_json() == m.params.to_json()
            assert_same_maps(again.strain, m.strain)
        finally:
            again.close()
    finally:
        tool.close()


def test_exports(scene, make, tmp_path) -> None:
    _, _, exact, cal = scene
    m = make(None, exact, cal)
    m._path.value = str(tmp_path / "maps")
    m._save["HDF5"].click()
    m._save["TIFF"].click()
    m._save["PNG"].click()
    assert "saved" in m.export_message.value
    assert_same_maps(StrainMap.load_hdf5(tmp_path / "maps.h5"), m.strain)
    with h5py.File(tmp_path / "maps.h5") as f:
        assert "recipe" in f
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "maps_exx.tif"), m.strain.exx.astype(np.float32))
    png = (tmp_path / "maps_exx.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_messages(scene, make) -> None:
    cube, _, exact, cal = scene
    # missing calibration: the Bragg vector map needs the origin
    nocal = make(None, exact, Calibration())
    assert "origin" in nocal.basis_message.value and nocal.strain is None
    # collinear basis: both pickers on the same spot
    m = make(None, exact, cal)
    shown = m.strain
    m.pick("g2", m.basis.index_g1)
    assert "collinear" in m.basis_message.value
    assert m.strain is shown and m.bvm_view.overlay("g2")["x"] == m.bvm_view.overlay("g1")["x"]
    # too few peaks for any fit
    m.set_options(min_num_peaks=500)
    m.wait()
    assert "no position could be fitted" in m.fit_message.value
    m.set_options(min_num_peaks=5)
    m.wait()
    assert m.fit_message.value == ""
    # a reference region with no valid fit (all its positions have too few peaks)
    sparse = PeakTable(exact.scan_shape, exact.offsets, exact.qx, exact.qy, exact.intensity, exact.correlation)
    counts = sparse.counts()
    keep = np.ones(len(sparse), bool)
    for rx in range(2):
        for ry in range(16):
            p = rx * 16 + ry
            keep[exact.offsets[p] + 3:exact.offsets[p + 1]] = False
    thin = PeakTable(exact.scan_shape, np.concatenate([[0], np.cumsum(np.where(
        np.arange(256) < 32, np.minimum(counts.ravel(), 3), counts.ravel()))]), exact.qx[keep], exact.qy[keep],
        exact.intensity[keep], exact.correlation[keep])
    r = make(None, thin, cal)
    r.set_reference(make_overlay("rectangle", x0=0, x1=2, y0=0, y1=16))
    r.wait()
    assert "reference region" in r.reference_message.value and "too few" in r.reference_message.value
    # an empty region
    r.set_reference(make_overlay("rectangle", x0=40, x1=50, y0=0, y1=4))
    assert "covers no scan position" in r.reference_message.value
