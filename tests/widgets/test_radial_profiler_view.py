"""The RadialProfiler view maps drags and controls to its session, and every control explains itself."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.widgets.help_text import unexplained
from fourd_widgets.widgets.radial_profiler import RadialProfiler

STEP = 0.025


@pytest.fixture
def profiler():
    rng = np.random.default_rng(2)
    x, y = np.meshgrid(np.arange(40) - 19.6, np.arange(40) - 20.1, indexing="ij")
    r, th = np.hypot(x, y), np.arctan2(y, x)
    data = np.stack([[np.exp(-0.5 * ((r - 10) / 1.2) ** 2) * (1 + 0.8 * np.cos(6 * th + rng.uniform(0, 7)))
                      + np.exp(-0.5 * ((r - 15) / 1.2) ** 2) + 0.1 for _ in range(6)] for _ in range(6)])
    cube = DataCube(data, Calibration(origin=(19.6, 20.1), reciprocal_step=STEP, reciprocal_units="1/Å",
                                      real_step=2.0))
    p = RadialProfiler(cube).wait()
    yield p
    p.close()


def test_dragging_a_band_edge_moves_the_band_and_its_part_of_v_of_k(profiler):
    before = np.isfinite(profiler.plots.V_band.y).nonzero()[0]
    ovs = [dict(ov) for ov in profiler.pattern_view.overlays]
    band = next(ov for ov in ovs if ov["id"] == "band0")
    band["r_in"], band["r_out"] = 9.0, 11.0  # what dragging the edges in the browser writes
    profiler.pattern_view.overlays = ovs
    profiler.wait()
    assert profiler.session.fem_params.k_ranges[0] == pytest.approx((9 * STEP, 11 * STEP))
    after = np.isfinite(profiler.plots.V_band.y).nonzero()[0]
    assert not np.array_equal(before, after)
    assert np.allclose(profiler.plots.V_band.x[after], np.clip(profiler.plots.V_band.x[after], 9 * STEP, 11 * STEP))
    # the map shown is the band's local FEM map: the speckled ring at 10 px fluctuates (Var/mean² ≈ 0.3)
    assert profiler.map_view.data.min() > 0.1


def test_moving_a_band_centre_puts_it_back_on_the_origin(profiler):
    ovs = [dict(ov) for ov in profiler.pattern_view.overlays]
    ovs[0]["x"] += 3
    profiler.pattern_view.overlays = ovs
    assert profiler.pattern_view.overlays[0]["x"] == pytest.approx(19.6)


def test_the_region_and_the_pdf_controls_reach_the_session(profiler):
    profiler._region.value = True
    profiler.wait()
    assert profiler.session.fem_params.region is not None and profiler.map_view.overlays[0]["id"] == "region"
    profiler._density.value = "0"
    assert "density must be a positive" in profiler.pdf_message.value
    profiler._density.value = "0.05"
    profiler.wait()
    assert profiler.session.pdf_params.density == 0.05 and profiler.pdf.g is not None
    assert np.allclose(profiler.plots.G.y, profiler.pdf.G)


def test_every_control_explains_itself(profiler):
    assert unexplained(profiler.widget) == []


def test_the_view_rebuilds_from_its_recipe(profiler):
    profiler.set_band(0, (0.3, 0.36))
    profiler.wait()
    again = RadialProfiler.from_params(profiler.cube, profiler.params.to_json()).wait()
    try:
        assert again.session.fem_params == profiler.session.fem_params
        assert again.result == profiler.result and again.pdf == profiler.pdf
    finally:
        again.close()
