"""The orientation mapper's view without a browser: controls reach the session, clicks select, runs paint."""

from __future__ import annotations

import ipywidgets
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.orientation import OrientationMapParams
from fourd_widgets.analysis.orientation_plan import OrientationPlanParams
from fourd_widgets.datasets.crystal import Grain
from fourd_widgets.widgets.help_text import controls, unexplained
from fourd_widgets.widgets.orientation_mapper import OrientationMapper

PLAN = OrientationPlanParams(zone_axis_range="given", zone_axes=((0, 0, 1), (0, 1, 1), (1, 1, 1)))


@pytest.fixture(scope="module")
def tool():
    cube, _ = fw.datasets.simulate((6, 6), (96, 96), grains=[Grain.preset("Si", zone_axis=(0, 1, 1), rotation_deg=-10.0)],
                                   reciprocal_step=0.02, convergence_semiangle_mrad=1.5, seed=4)
    t = OrientationMapper(cube, params=OrientationMapParams(plan=PLAN)).wait()
    yield t
    t.close()


def test_the_selected_pattern_shows_its_indexed_matches(tool):
    assert tool.error == ""
    assert "[0.00 1.00 1.00]" in tool.table.value  # the best match is [011]
    xy, _, _ = tool.pattern_view.marker_points("match0")
    assert len(xy) >= 6  # the (111) and (200)-family spots of [011] inside the detector
    assert len(tool.angle_line.y) == 360 and len(tool.stereo.x) == 3


def test_a_click_on_the_map_selects_a_position_and_run_on_all_paints(tool):
    ov = [dict(o) for o in tool.map_view.overlays]
    ov[0]["x"], ov[0]["y"] = 4, 1
    tool.map_view.overlays = ov
    tool.wait()
    assert tool.session.selected == (4, 1) and "position (4, 1)" in tool.table.value
    tool.run_on_all().wait()
    assert tool.ipf.value[:4] == b"\x89PNG" and "1 grains" in tool.grain_label.value
    assert np.all(tool.map_view.data > 0)
    assert fw.run(tool.params, tool.cube)["orientation_map"] == tool.session.result


def test_controls_change_the_record_and_explain_themselves(tool):
    tool._kernel.value = 0.06
    tool._matches.value = 2
    tool.wait()
    assert tool.session.record.plan.kernel_size == 0.06 and tool.session.record.num_matches == 2
    assert tool.session.plan.params.kernel_size == 0.06
    assert list(unexplained(tool.widget)) == [] and len(list(controls(tool.widget))) >= 9


def test_the_route_buttons_switch_to_raw_patterns(tool):
    tool._route.value = "patterns"
    tool.wait()
    assert tool.session.route == "patterns" and tool.error == ""
    assert "[0.00 1.00 1.00]" in tool.table.value  # the raw patterns match [011] too
    assert [p.step for p in tool.params.steps] == ["orientation_map_raw"]
    tool.session.set_route("peaks").wait()
    assert tool._route.value == "peaks"  # the buttons follow the session


def test_the_raw_route_s_read_and_two_grain_controls(tool):
    read, two = tool.raw_controls["read"], tool.raw_controls["decompose"]
    tool.session.set_route("peaks").wait()
    # the peak route's record has no such fields: hidden and disabled
    assert tool.raw_box.layout.display == "none" and read.disabled and two.disabled
    tool._route.value = "patterns"
    tool.wait()
    assert tool.raw_box.layout.display != "none" and not read.disabled and not two.disabled
    assert read.description == "read" and two.description == "two grains"
    assert {"intensity", "disk_rims"} <= {v for _, v in read.options}  # the record's choices
    two.value = True
    tool.wait()
    assert tool.session.record.decompose is True and tool.error == ""
    assert "<th>weight</th>" in tool.table.value  # each match's share of the fitted spot intensity
    assert tool.params.steps[0].decompose is True
    tool.run_on_all().wait()  # the map's matches at the selected position join the table, with their weights
    assert "run on all, this position" in tool.table.value and tool.table.value.count("<td>map</td>") >= 2
    tool.session.set(read="disk_rims", decompose=False).wait()  # from Python: the controls follow the record
    assert read.value == "disk_rims" and two.value is False and "<th>weight</th>" not in tool.table.value
    for name, ctl in tool.raw_controls.items():  # any number field of the record shown (one line of RAW_CONTROLS)
        if isinstance(ctl, (ipywidgets.BoundedFloatText, ipywidgets.BoundedIntText)):
            ctl.value = ctl.value + 1
            assert getattr(tool.session.record, name) == ctl.value
    assert list(unexplained(tool.widget)) == []
    tool.session.set_route("peaks").wait()
    assert all(c.disabled for c in tool.raw_controls.values()) and tool._route.value == "peaks"
