"""CalibrationSession outliers: each says why it is one, and next_outlier steps through them (issue 10)."""

from __future__ import annotations

import numpy as np

import fourd_widgets as fw
from fourd_widgets.analysis import calibration
from fourd_widgets.analysis.calibration import OriginFitParams, fit_origin
from fourd_widgets.tools.calibration import CalibrationSession


def _cube_with_jumps():
    cube, _ = fw.datasets.sample("vacuum_probe", scan_shape=(6, 6), detector_shape=(32, 32))
    a = np.array(cube.to_numpy(), dtype=np.float64)
    a[1, 4] = np.roll(a[1, 4], 4, axis=0)   # the beam jumps 4 px here
    a[4, 2] = np.roll(a[4, 2], -6, axis=1)  # and 6 px there: the largest residual
    return fw.DataCube(a, cube.calibration)


def test_next_outlier_steps_through_the_jumps_largest_first_and_says_why():
    s = CalibrationSession(_cube_with_jumps()).wait()
    try:
        assert s.outlier_positions() == [(4, 2), (1, 4)]
        text, _ = s.messages["fit"]
        assert "2 outlier position(s)" in text and "disagrees" in text
        assert s.next_outlier() == (4, 2)
        text, level = s.messages["fit"]
        assert text.startswith("outlier 1/2 at (4, 2): residual ") and "px limit" in text and level == "warning"
        r = float(text.split("residual ")[1].split(" px")[0])
        assert 5.0 < r < 7.0  # the 6 px jump, less what the plane follows of it
        assert s.next_outlier() == (1, 4)
        assert s.next_outlier() == (4, 2)  # wraps around
    finally:
        s.close()


def test_sub_pixel_scatter_is_not_an_outlier(monkeypatch):
    """Noise-free data have a tiny MAD: a purely relative limit flagged half the bicrystal's positions
    for 0.02-0.2 px of centre-of-mass scatter; the 0.5 px floor keeps them, a 2 px jump still goes."""
    rng = np.random.default_rng(0)
    m = np.dstack([np.full((8, 8), 40.0), np.full((8, 8), 41.0)])
    m += rng.normal(0, 0.003, m.shape)
    m[3:5, :, 0] += 0.15  # sub-pixel scatter on two rows, as the centre of mass beside a grain boundary
    m[6, 6, 1] += 2.0
    f = fit_origin(m, OriginFitParams(model="plane"))
    assert (~f.inliers).sum() == 1 and not f.inliers[6, 6]
    assert "residual" in f.why_outlier(6, 6) and f.why_outlier(0, 0) == ""
    # without the floor, the scatter itself is flagged (the old behaviour)
    monkeypatch.setattr(calibration, "ORIGIN_OUTLIER_MIN_PX", 0.0)
    assert (~fit_origin(m, OriginFitParams(model="plane")).inliers).sum() >= 16
