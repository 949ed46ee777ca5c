"""CalibrationTool state: the calibration shown equals a headless replay of ``tool.params``; bad input gives messages."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.calibration import EllipseParams, OriginFitParams, OriginParams
from fourd_widgets.analysis.disks import FindDisksParams, find_disks
from fourd_widgets.analysis.run import run
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.datasets import sample
from fourd_widgets.widgets.calibration_tool import CalibrationTool

DISKS = FindDisksParams()


@pytest.fixture(scope="module")
def scene():
    cube, truth = sample("strained_crystal", small=True)
    return cube, truth, find_disks(cube, DISKS)


@pytest.fixture
def make():
    made: list[CalibrationTool] = []

    def factory(*args, **kw) -> CalibrationTool:
        tool = CalibrationTool(*args, **kw).wait()
        made.append(tool)
        return tool

    yield factory
    for tool in made:
        tool.close()


def test_origin_maps_fit_and_residuals(scene, make) -> None:
    cube, truth, peaks = scene
    tool = make(cube, peaks)
    assert tool.ready
    measured = tool.calibration.origin_map
    # the descan of the simulator is linear: a robust plane reproduces it to a small fraction of a pixel
    assert np.abs(measured - truth.origin_map).max() < 0.01
    shown = [v.data for v in tool.origin_views]
    np.testing.assert_array_equal(shown[0], tool.origin_fit.measured[..., 0])
    np.testing.assert_array_equal(shown[1], tool.origin_fit.measured[..., 1])
    np.testing.assert_array_equal(tool.residual_views[0].data, tool.origin_fit.residuals[..., 0])
    # residual views use the diverging colormap on limits symmetric about zero
    assert tool.residual_views[0].colormap == "rdbu"
    assert tool.residual_views[0].vmin == -tool.residual_views[0].vmax
    assert "rms residual" in tool.fit_message.value


def test_model_chooser_changes_params_and_fit(scene, make) -> None:
    cube, _, peaks = scene
    tool = make(cube, peaks)
    tool._model.value = "parabola"      # what the dropdown does
    assert tool.params.steps[1].model == "parabola"
    assert tool.origin_fit.model == "parabola" and tool.origin_fit.coefficients.shape == (6, 2)
    tool.set_fit(OriginFitParams(model="constant", robust=False))
    assert tool._model.value == "constant" and not tool._robust.value
    assert np.ptp(tool.calibration.origin_map[..., 0]) == 0.0   # one origin everywhere


def test_ellipse_on_the_bragg_vector_map(scene, make) -> None:
    cube, _, peaks = scene
    tool = make(cube, peaks)
    assert tool.calibration.ellipse is None and len(tool.params.steps) == 2
    ring = tool.bvm_view.overlay("ring")
    assert ring["kind"] == "annulus" and ring["r_in"] < ring["r_out"]
    tool._fit_ellipse_btn.click()
    a, b, th = tool.calibration.ellipse
    assert a * b == pytest.approx(1.0) and abs(a / b - 1) < 0.02     # the sample has no distortion to speak of
    poly = tool.bvm_view.overlay("ellipse")
    assert poly["kind"] == "polygon" and not poly["editable"]
    # the drawn ellipse has the fitted radius about the map centre
    r = np.hypot(*(np.asarray(poly["vertices"]) - tool._bvm_centre).T)
    assert np.allclose(r.mean(), tool.ellipse_fit.radius, rtol=0.01)
    # dragging the annulus's handle (as the browser does, then release) refits with the new ring
    tool.bvm_view.set_overlay({**ring, "r_out": ring["r_out"] - 3})
    assert tool.params.steps[2].r_outer == pytest.approx(ring["r_out"] - 3)


def test_params_replay_and_round_trip(scene, make) -> None:
    cube, _, peaks = scene
    tool = make(cube, peaks, origin=OriginParams(method="com"), origin_fit=OriginFitParams(model="parabola"),
                ellipse=EllipseParams(r_inner=20.0, r_outer=55.0))
    recipe = Recipe(steps=(DISKS, *tool.params.steps), labels=("find_disks", *tool.params.labels),
                    calibration=tool.params.calibration)
    res = run(Recipe.from_json(recipe.to_json()), cube)
    assert res["ellipse"].ellipse == tool.calibration.ellipse
    np.testing.assert_array_equal(res["ellipse"].origin_map, tool.calibration.origin_map)
    again = CalibrationTool.from_params(cube, tool.params.to_json(), peaks).wait()
    try:
        assert again.params.to_json() == tool.params.to_json()
        assert again.calibration.ellipse == tool.calibration.ellipse
    finally:
        again.close()


def test_bad_input_gives_messages_not_tracebacks(scene, make) -> None:
    cube, _, peaks = scene
    no_peaks = make(cube)
    assert no_peaks.bvm_view is None and "peaks=fw.find_disks" in no_peaks.ellipse_message.value
    tool = make(cube, peaks)
    # a ring around no peak at all: the fit says what to widen
    tool.set_ellipse(EllipseParams(r_inner=1.0, r_outer=2.0))
    assert "⚠" in tool.ellipse_message.value and "annulus" in tool.ellipse_message.value
    assert tool.calibration.ellipse is None
    # a model with more terms than positions to fit
    tiny = make(cube.crop(rx=(0, 2), ry=(0, 2)), origin_fit=OriginFitParams(model="bezier"))
    assert "⚠" in tiny.fit_message.value and "at least 9" in tiny.fit_message.value


def test_rejects_wrong_types(scene) -> None:
    cube, _, peaks = scene
    with pytest.raises(TypeError, match="DataCube"):
        CalibrationTool(np.zeros((2, 2, 4, 4)))
    with pytest.raises(TypeError, match="PeakTable"):
        CalibrationTool(cube, peaks=[1, 2])
