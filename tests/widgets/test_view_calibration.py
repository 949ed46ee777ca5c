"""Views with a calibration draw scale bars and calibrated axes (pixel_size, units), colorbars name their units."""

from __future__ import annotations

import pytest

from fourd_widgets.analysis.disks import PeakTable
from fourd_widgets.core import Calibration
from fourd_widgets.datasets import sample
from fourd_widgets.widgets.calibration_tool import CalibrationTool
from fourd_widgets.widgets.disk_tuner import DiskTuner
from fourd_widgets.widgets.strain_mapper import StrainMapper


@pytest.fixture(scope="module")
def scene():
    cube, truth = sample("strained_crystal", small=True)
    exact = PeakTable(truth.scan_shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                      truth.peak_intensity)
    return cube, exact, Calibration(origin_map=truth.origin_map, origin=truth.origin,
                                    real_step=cube.calibration.real_step,
                                    reciprocal_step=cube.calibration.reciprocal_step)


def test_disk_tuner_strip_kernel_and_bragg_map_have_scale_bars(scene) -> None:
    cube, _, _ = scene
    q = cube.calibration.reciprocal_step
    assert q  # the sample is calibrated: otherwise this test would test nothing
    tuner = DiskTuner(cube)
    try:
        for view in (tuner.kernel_view, tuner.bragg_view, *tuner.strip_views):
            assert view.pixel_size == q and view.units == cube.calibration.reciprocal_units
        assert tuner.count_view.pixel_size == cube.calibration.real_step
        assert tuner.strip_views[0].value_units == "counts"
    finally:
        tuner.close()


def test_calibration_maps_have_scale_bars_and_units(scene) -> None:
    cube, exact, _ = scene
    tool = CalibrationTool(cube, exact)
    try:
        for view in (*tool.origin_views, *tool.residual_views):
            assert view.pixel_size == cube.calibration.real_step and view.value_units == "px"
        assert tool.bvm_view.pixel_size == cube.calibration.reciprocal_step
    finally:
        tool.close()


def test_strain_maps_and_bragg_map_have_scale_bars_and_units(scene) -> None:
    cube, exact, cal = scene
    m = StrainMapper(cube, exact, cal)
    try:
        assert m.bvm_view.pixel_size == cal.reciprocal_step and m.bvm_view.units == cal.reciprocal_units
        units = {n: v.value_units for n, v in m.map_views.items()}
        assert units == {"exx": "%", "eyy": "%", "exy": "%", "theta_deg": "°"}
        assert all(v.pixel_size == cal.real_step for v in m.map_views.values())
    finally:
        m.close()
