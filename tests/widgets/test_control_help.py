"""Every control of every tool explains itself (a tooltip or a help line), and no label is cut by its width."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.disks import PeakTable
from fourd_widgets.core import Calibration
from fourd_widgets.datasets import sample
from fourd_widgets.widgets.calibration_tool import CalibrationTool
from fourd_widgets.widgets.disk_tuner import DiskTuner
from fourd_widgets.widgets.explorer import Explorer
from fourd_widgets.widgets.help_text import controls, unexplained
from fourd_widgets.widgets.strain_mapper import StrainMapper


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    from fourd_widgets.app.dashboard_ui import Dashboard

    cube, truth = sample("strained_crystal", small=True)
    exact = PeakTable(truth.scan_shape, truth.peak_offsets, truth.peak_qx, truth.peak_qy, truth.peak_intensity,
                      truth.peak_intensity)
    cal = Calibration(origin_map=truth.origin_map, origin=truth.origin)
    data = tmp_path_factory.mktemp("data")
    made = {
        "explorer": Explorer(cube, build_cache=False),
        "disk tuner": DiskTuner(cube),
        "calibration": CalibrationTool(cube, exact),
        "strain": StrainMapper(cube, exact, cal),
        "dashboard": Dashboard(data, output_dir=tmp_path_factory.mktemp("out")),
    }
    yield made
    for tool in made.values():
        tool.close()


# the fewest controls each tool has: a walk that finds fewer has missed part of the tree
FEWEST = {"explorer": 10, "disk tuner": 18, "calibration": 6, "strain": 9, "dashboard": 4}


@pytest.mark.parametrize("name", list(FEWEST))
def test_every_control_has_a_tooltip_or_help_line(tools, name) -> None:
    found = list(controls(tools[name].widget))
    assert len(found) >= FEWEST[name]
    missing = [f"{type(c).__name__}({getattr(c, 'description', '')!r})" for c in unexplained(tools[name].widget)]
    assert missing == [], f"{name}: controls with neither tooltip nor help line: {missing}"


@pytest.mark.parametrize("name, label, words", [
    ("explorer", "response", "centre of mass"),
    ("explorer", "region", "max"),
    ("explorer", "centre on beam", "bright-field disk"),
    ("strain", "frame °", "degrees"),
    ("disk tuner", "corr power", "phase correlation"),
    ("disk tuner", "σ corr", "smoothing"),
    ("disk tuner", "subpixel", "disk model"),
])
def test_the_issue_s_controls_say_what_they_do(tools, name, label, words) -> None:
    [control] = [c for c in controls(tools[name].widget) if getattr(c, "description", "") == label]
    assert words in control.tooltip


@pytest.mark.parametrize("name", ["explorer", "disk tuner", "calibration", "strain"])
def test_labels_take_their_text_s_width(tools, name) -> None:
    # a fixed description width cuts labels ("vacuum r…", "max spaci…"); 'initial' sizes them to the text
    for c in controls(tools[name].widget):
        if getattr(c, "description", "") and hasattr(c.style, "description_width"):
            assert c.style.description_width == "initial", c.description


def test_explorer_shows_detector_warnings_in_view() -> None:
    from fourd_widgets.analysis.detectors import Circle
    from fourd_widgets.core import DataCube

    cube = DataCube(np.ones((3, 3, 16, 16), dtype=np.float32))
    ex = Explorer(cube, [Circle((8, 8), 3), Circle((4.5, 4.5), 0.2)], build_cache=False).wait()
    try:
        assert "d1" in ex.warnings.value and "covers no pixel" in ex.warnings.value
        ex.set_detector(1, Circle((4.5, 4.5), 2))
        ex.wait()
        assert ex.warnings.value == ""
    finally:
        ex.close()


def test_single_pattern_shows_no_real_space_views() -> None:
    from fourd_widgets.core import DataCube

    ex = Explorer(DataCube(np.random.default_rng(0).random((1, 1, 32, 32)).astype(np.float32)), build_cache=True)
    try:
        ex.wait()
        assert ex.single and ex._real_box.layout.display == "none"
        assert "single pattern" in ex.diffraction_view.title
        assert "drag cache" not in ex.status.value
    finally:
        ex.close()
