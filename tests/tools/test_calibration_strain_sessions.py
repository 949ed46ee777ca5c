"""Calibration and strain sessions without a browser: replay equality, recompute policy, messages, cancel."""

from __future__ import annotations

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.calibration import EllipseParams, OriginFitParams
from fourd_widgets.analysis.disks import FindDisksParams, PeakTable, find_disks
from fourd_widgets.analysis.strain import strain_map
from fourd_widgets.core import Calibration
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.datasets import sample
from fourd_widgets.tools.calibration import CalibrationSession
from fourd_widgets.tools.strain import StrainSession


@pytest.fixture(scope="module")
def scene():
    cube, truth = sample("strained_crystal", small=True)
    exact = PeakTable(truth.scan_shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                      truth.peak_intensity)
    return cube, truth, exact


def test_calibration_session_replays_and_refits_without_remeasuring(scene) -> None:
    cube, truth, _ = scene
    peaks = find_disks(cube, FindDisksParams())
    s = CalibrationSession(cube, peaks).wait()
    try:
        measured = s._runner.computed
        s.set_fit(OriginFitParams(model="parabola"))
        s.set_ellipse(EllipseParams(r_inner=20.0, r_outer=55.0))
        assert s._runner.computed == measured          # neither the fit nor the ellipse measures again
        recipe = Recipe(steps=(FindDisksParams(), *s.params.steps), labels=("find_disks", *s.params.labels),
                        calibration=s.params.calibration)
        res = fw.run(recipe, cube)
        assert res["ellipse"].ellipse == s.calibration.ellipse
        np.testing.assert_array_equal(res["ellipse"].origin_map, s.calibration.origin_map)
        # the descan of the simulator is smooth: the parabola follows it to a small fraction of a pixel
        assert np.abs(s.calibration.origin_map - truth.origin_map).max() < 0.01
    finally:
        s.close()


def test_calibration_errors_are_messages(scene) -> None:
    cube, _, _ = scene
    s = CalibrationSession(cube.crop(rx=(0, 2), ry=(0, 2)), origin_fit=OriginFitParams(model="bezier")).wait()
    try:
        assert "at least 9" in s.messages["fit"][0] and "at least 9" in s.error
        assert "peaks=fw.find_disks" in s.messages["ellipse"][0] and s.messages["ellipse"][1] == "info"
        assert not s.ready
    finally:
        s.close()


def test_strain_session_reference_reuses_the_fit(scene) -> None:
    _, truth, exact = scene
    cal = Calibration(origin_map=truth.origin_map, origin=truth.origin)
    s = StrainSession(None, exact, cal).wait()
    try:
        fit = s.fit
        s.set_reference({"kind": "rectangle", "x0": 0, "x1": 1, "y0": 0, "y1": 16})
        s.set_options(frame_deg=30.0)
        s.wait()
        assert s.fit is fit                                # reference and frame: the strain step only
        ref = strain_map(exact, s.strain_params, cal)
        np.testing.assert_array_equal(ref.exx, s.strain.exx)
        s.set_options(max_peak_spacing=3.0)
        s.wait()
        assert s.fit is not fit                            # a fit option: a new lattice fit
    finally:
        s.close()


def test_strain_session_errors_are_messages(scene) -> None:
    _, truth, exact = scene
    cal = Calibration(origin_map=truth.origin_map, origin=truth.origin)
    s = StrainSession(None, exact, cal).wait()
    try:
        shown = s.strain
        s.pick("g2", s.basis.index_g1)
        assert "collinear" in s.messages["basis"][0] and s.strain is shown
        s.set_options(min_num_peaks=500)
        s.wait()
        assert "no position could be fitted" in s.messages["fit"][0] and s.strain is shown
        s.set_options(min_num_peaks=5)
        s.wait()
        assert s.messages["fit"][0] == ""
    finally:
        s.close()


def test_origin_measurement_reports_progress_and_cancels_through_the_engine(scene) -> None:
    """The origin pass gets the tool's progress and cancel as engine options (no cube proxy)."""
    from fourd_widgets.analysis.calibration import OriginParams

    cube, _truth, _ = scene
    peaks = find_disks(cube, FindDisksParams())
    s = CalibrationSession(cube, peaks).wait()
    seen: list = []
    s.listen(lambda event, value: seen.append(value) if event == "progress" else None)
    try:
        s.measure(OriginParams(method="template"))
        s.wait()
        done = [v for v in seen if v is not None and v[1]]
        assert done and done[-1][0] == done[-1][1] >= 1  # in chunks of the pass, all of them done
        assert all(a[0] <= b[0] for a, b in zip(done, done[1:]))  # counts only go up
        s.cancel()  # nothing running: a no-op, the measured origin stays
        assert s.calibration.origin_map is not None
    finally:
        s.close()
