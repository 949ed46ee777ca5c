"""CalibrationTool: the 'next outlier' button marks the position on the maps and says why (issue 10)."""

from __future__ import annotations

import numpy as np

import fourd_widgets as fw
from fourd_widgets.widgets.calibration_tool import CalibrationTool


def test_next_outlier_button_marks_the_position_and_explains_it():
    cube, _ = fw.datasets.sample("vacuum_probe", scan_shape=(6, 6), detector_shape=(32, 32))
    a = np.array(cube.to_numpy(), dtype=np.float64)
    a[2, 3] = np.roll(a[2, 3], 5, axis=0)  # the beam jumps 5 px at one position
    tool = CalibrationTool(fw.DataCube(a, cube.calibration))
    try:
        tool.session.wait()
        assert tool._next_outlier.tooltip
        tool._next_outlier.click()
        for view in (*tool.origin_views, *tool.residual_views):
            marks = [o for o in view.overlays if o["id"] == "outlier"]
            assert [(m["x"], m["y"]) for m in marks] == [(2.0, 3.0)]
        assert "outlier 1/1 at (2, 3): residual" in tool.fit_message.value
        assert "disagrees" in tool.fit_message.value
        tool.set_fit(tool.session.fit_params.replace(model="constant"))  # a new fit clears the mark
        assert not any(o["id"] == "outlier" for o in tool.residual_views[0].overlays)
    finally:
        tool.session.close()
