"""RadialProfilerSession without a browser: k bands, regions and G(r) follow the data, replay, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.fem import RadialStatisticsParams
from fourd_widgets.analysis.fem_maps import FEMParams
from fourd_widgets.analysis.pdf import PDFParams
from fourd_widgets.analysis.polar import PolarParams
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import MissingCalibrationError
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.results import Results
from fourd_widgets.tools.radial_profiler import RadialProfilerSession

ORIGIN = (19.6, 20.1)
STEP = 0.025  # 1/Å per px
SPECKLED_K, SMOOTH_K = 10 * STEP, 14 * STEP  # ring radii 10 px (left half) and 14 px (right half)


def _cube() -> DataCube:
    """8x8 scan: rows 0-3 hold a ring at 10 px with six-fold speckle of random phase (nanocrystal-like),
    rows 4-7 a smooth ring at 14 px, on a flat background."""
    rng = np.random.default_rng(11)
    x, y = np.meshgrid(np.arange(40) - ORIGIN[0], np.arange(40) - ORIGIN[1], indexing="ij")
    r, th = np.hypot(x, y), np.arctan2(y, x)
    data = np.empty((8, 8, 40, 40))
    for i in range(8):
        for j in range(8):
            if i < 4:
                data[i, j] = np.exp(-0.5 * ((r - 10) / 1.2) ** 2) * (1 + 0.8 * np.cos(6 * th + rng.uniform(0, 7)))
            else:
                data[i, j] = np.exp(-0.5 * ((r - 14) / 1.2) ** 2)
    return DataCube(data + 0.1, Calibration(origin=ORIGIN, reciprocal_step=STEP, reciprocal_units="1/Å"))


@pytest.fixture(scope="module")
def cube() -> DataCube:
    return _cube()


@pytest.fixture
def session(cube):
    s = RadialProfilerSession(cube, RadialStatisticsParams(polar=PolarParams(n_theta=36), keep_polar=True,
                                                           symmetry_orders=(2, 6)),
                              fem=FEMParams(k_ranges=((0.3, 0.4),)), pdf=PDFParams(k_min=0.1, k_width=0.05))
    yield s.wait()
    s.close()


def _peak_k(curves: dict) -> float:
    return float(curves["k"][np.nanargmax(curves["mean"])])


def test_moving_the_band_onto_the_speckled_ring_lights_up_its_half_of_the_scan(session):
    seen = []
    session.listen(lambda ev, v: seen.append(v) if ev == "profiles" else None)
    off = session.result.band_map
    session.set_band(0, (SPECKLED_K - 0.03, SPECKLED_K + 0.03)).wait()
    on = session.result.band_map
    # angular contrast 0.8 cos(6θ) gives Var/mean² = 0.32 on the ring; the smooth ring none (background only)
    assert on[:4].min() > 0.1 and on[4:].max() < 0.01
    # the first band (12-16 px) sits on the smooth ring and only the tail of the speckled one
    assert off[4:].max() < 0.01 and off[:4].max() < 0.2 * on[:4].min()
    # V(k) shown inside the band moved with it, and peaks on the speckled ring
    band = seen[-1]
    inside = np.isfinite(band["V_band"])
    assert np.all(np.abs(band["k"][inside] - SPECKLED_K) <= 0.03 + 1e-9)
    assert abs(band["k"][np.nanargmax(band["V"])] - SPECKLED_K) <= STEP
    # the annulus drawn on the pattern is the band, in detector px about the origin
    ov = session.overlays()[0]
    assert (ov["x"], ov["y"]) == ORIGIN and ov["r_in"] == pytest.approx(8.8) and ov["r_out"] == pytest.approx(11.2)


def test_a_region_gives_its_own_profiles_and_symmetry(session):
    session.set_fem(symmetry_order=6).set_region({"kind": "rectangle", "x0": 0, "x1": 4, "y0": 0, "y1": 8}).wait()
    seen = []
    session.listen(lambda ev, v: seen.append(v) if ev == "profiles" else None)
    session.set_region({"kind": "rectangle", "x0": 4, "x1": 8, "y0": 0, "y1": 8}).wait()
    bottom = seen[-1]
    session.set_region({"kind": "rectangle", "x0": 0, "x1": 4, "y0": 0, "y1": 8}).wait()
    top = seen[-1]
    assert abs(_peak_k(top) - SPECKLED_K) <= STEP and abs(_peak_k(bottom) - SMOOTH_K) <= STEP
    session.set_band(0, (SPECKLED_K - 0.03, SPECKLED_K + 0.03)).wait()
    sym = session.images()["symmetry 6"]
    # |F_6| / F_0 of 1 + 0.8 cos 6θ is 0.4 on the ring (diluted by the band's background bins)
    assert sym[:4].min() > 0.15 and sym[4:].max() < 0.02
    session.set_region(None).wait()
    assert session.fem_params.region is None


def test_the_session_replays_headless_and_saves(session, tmp_path):
    session.set_band(0, (SPECKLED_K - 0.03, SPECKLED_K + 0.03)).set_band(1, (0.32, 0.38))
    session.set_region({"kind": "rectangle", "x0": 0, "x1": 4, "y0": 2, "y1": 6}).set_pdf(density=0.05).wait()
    assert session.pdf is not None and [s.step for s in session.params.steps] == ["radial_statistics", "fem", "pdf"]
    res = fw.run(Recipe.from_json(session.params.to_json()), session.cube, progress=False)
    assert res["radial_statistics"] == session.stats
    assert res["fem"] == session.result and res["pdf"] == session.pdf
    back = Results.load(session.export_h5(tmp_path / "profiler.h5"))
    assert back["fem"] == session.result and back["pdf"] == session.pdf
    again = RadialProfilerSession.from_params(session.cube, session.params).wait()
    try:
        assert again.fem_params == session.fem_params and again.pdf_params == session.pdf_params
        np.testing.assert_array_equal(again.result.band_map, session.result.band_map)
    finally:
        again.close()


def test_a_k_range_outside_the_detector_is_refused_with_a_message(session):
    before = session.fem_params
    session.set_band(0, (2.0, 2.2))
    text, level = session.messages["bands"]
    assert level == "error" and "outside the detector" in text and "choose a range inside" in text
    assert session.fem_params == before  # the record keeps the last good bands
    session.set_band(0, (0.3, 0.35)).wait()
    assert session.messages["bands"][0] == ""


def test_a_mask_that_hides_a_whole_ring_is_named(cube):
    x, y = np.meshgrid(np.arange(40) - ORIGIN[0], np.arange(40) - ORIGIN[1], indexing="ij")
    stop = (np.hypot(x, y) > 7.5) & (np.hypot(x, y) < 12.5)  # hides the speckled ring at every angle
    s = RadialProfilerSession(cube, RadialStatisticsParams(polar=PolarParams(n_theta=36, mask=stop)),
                              fem=FEMParams(k_ranges=((SPECKLED_K - 0.03, SPECKLED_K + 0.03),)))
    try:
        s.wait()
        text, level = s.messages["bands"]
        assert level == "error" and "mask hides every ring" in text
        s.set_band(0, (SMOOTH_K - 0.03, SMOOTH_K + 0.03)).wait()  # off the beam stop: fine
        assert s.messages["bands"][0] == "" and s.result is not None
    finally:
        s.close()


def test_a_pattern_without_a_calibrated_origin_is_refused(cube):
    bare = cube.with_calibration(Calibration(reciprocal_step=STEP))
    with pytest.raises(MissingCalibrationError, match="radial profiler needs the calibration 'origin'.*measure_origin"):
        RadialProfilerSession(bare)


def test_a_density_of_zero_is_refused_with_a_message(session):
    before = session.pdf_params
    session.set_pdf(density=0.0)
    text, level = session.messages["pdf"]
    assert level == "error" and "density must be a positive number density" in text
    assert session.pdf_params == before


def test_uncalibrated_k_shows_profiles_but_says_why_there_is_no_g_of_r(cube):
    s = RadialProfilerSession(cube.with_calibration(Calibration(origin=ORIGIN))).wait()
    try:
        assert s.result is not None and s.pdf is None
        text, level = s.messages["pdf"]
        assert level == "info" and "1/Å" in text
        assert [p.step for p in s.params.steps] == ["radial_statistics", "fem"]
    finally:
        s.close()


def test_the_profiler_is_a_registered_tool_and_a_dashboard_page():
    from fourd_widgets.app.chain import dashboard_pages
    from fourd_widgets.core import registry

    entry = next(t for t in registry.tools() if t.name == "RadialProfiler")
    assert entry.session_class() is RadialProfilerSession and entry.view_class() is fw.RadialProfiler
    assert "polar" in [p.name for p in dashboard_pages()]


def test_the_dashboard_page_opens_the_profiler_and_its_steps_join_the_saved_recipe(cube):
    from fourd_widgets.app.chain import ToolChain

    chain = ToolChain(cube, size=200)
    try:
        tool = chain.tool("polar").wait()
        assert isinstance(tool, fw.RadialProfiler) and tool.result is not None
        recipe = chain.recipe()
        assert [s.step for s in recipe.steps] == ["radial_statistics", "fem", "pdf"]
        assert fw.run(recipe, cube, progress=False)["fem"] == tool.result
    finally:
        chain.close()
    bare = ToolChain(cube.with_calibration(Calibration()), size=200)
    try:  # the dashboard shows this message on the page (it catches FourDError)
        with pytest.raises(MissingCalibrationError, match="origin"):
            bare.tool("polar")
    finally:
        bare.close()
