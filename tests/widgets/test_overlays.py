"""Overlay dicts: validation, moves, calibrated geometry, and the round trip to detector records."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.detectors import Annulus, Circle, Mask, Point, Polygon, Rectangle, detector_mask
from fourd_widgets.core import Calibration
from fourd_widgets.widgets import overlays as o

CAL = Calibration(reciprocal_step=0.02, reciprocal_units="1/Å", origin=(32.0, 30.0))


@pytest.mark.parametrize("det", [
    Point(3, 4), Circle((10.5, 12), 4), Annulus((10, 12), 2, 6), Rectangle((1, 5), (2, 9)),
    Polygon(((1, 1), (1, 8), (6, 4))),
    Circle((0.1, -0.2), 0.08, units="1/Å", relative_to_origin=True, response="com_x"),
    Annulus((0, 0), 5, 9, relative_to_origin=True, response="max"),
])
def test_detector_round_trip_draws_the_same_pixels(det) -> None:
    ov = o.overlay_from_detector(det, "d0", "#ff0000", CAL)
    back = o.detector_from_overlay(ov, det.response, det.units, det.relative_to_origin, CAL)
    assert type(back) is type(det) and back.response == det.response
    np.testing.assert_array_equal(detector_mask(back, (64, 64), CAL), detector_mask(det, (64, 64), CAL))


def test_calibrated_detector_is_drawn_in_pixels() -> None:
    ov = o.overlay_from_detector(Circle((0.1, 0.0), 0.2, units="1/Å", relative_to_origin=True), "c", "#fff", CAL)
    assert ov["x"] == pytest.approx(37.0) and ov["y"] == pytest.approx(30.0) and ov["r"] == pytest.approx(10.0)
    cal = o.calibrated_geometry(ov, 0.02, CAL.origin)
    assert cal == pytest.approx({"x": 0.1, "y": 0.0, "r": 0.2})


def test_mask_and_lattice_are_not_interchangeable() -> None:
    with pytest.raises(ValueError, match="handles"):
        o.overlay_from_detector(Mask(np.ones((4, 4))), "m", "#fff")
    lat = o.make_overlay("lattice", x=1, y=1, ax=4, ay=0, bx=0, by=5, r=1)
    with pytest.raises(ValueError, match="lattice"):
        o.detector_from_overlay(lat)
    assert len(o.lattice_centres(lat, (10, 10))) == 6


@pytest.mark.parametrize("bad, match", [
    ({"kind": "hexagon"}, "unknown"),
    ({"kind": "circle", "x": 1, "y": 2}, "'r'"),
    ({"kind": "circle", "x": 1, "y": 2, "r": -1}, ">= 0"),
    ({"kind": "point", "x": float("nan"), "y": 2}, "finite"),
    ({"kind": "point", "x": "a", "y": 2}, "number"),
])
def test_validation_names_the_problem(bad, match) -> None:
    with pytest.raises(ValueError, match=match):
        o.validate_overlay(bad)


def test_validation_orders_ranges_and_radii() -> None:
    r = o.make_overlay("rectangle", x0=6, x1=2, y0=3, y1=3)
    assert (r["x0"], r["x1"], r["y0"], r["y1"]) == (2, 6, 3, 3)
    a = o.make_overlay("annulus", x=0, y=0, r_in=5, r_out=2)
    assert (a["r_in"], a["r_out"]) == (2, 5)


@pytest.mark.parametrize("kind, geo", [("point", dict(x=1, y=2)), ("rectangle", dict(x0=0, x1=2, y0=1, y1=3)),
                                       ("polygon", dict(vertices=[[0, 0], [1, 0], [0, 1]])),
                                       ("lattice", dict(x=0, y=0, ax=1, ay=0, bx=0, by=1, r=0.2))])
def test_move_translates_every_kind(kind, geo) -> None:
    ov = o.make_overlay(kind, **geo)
    moved = o.move_overlay(ov, 5, -1)
    before = o.calibrated_geometry(ov, 1.0)
    after = o.calibrated_geometry(moved, 1.0)
    if kind == "polygon":
        assert after["vertices"][0] == [5.0, -1.0]
    else:
        key = "x" if "x" in before else "x0"
        assert after[key] == before[key] + 5


def test_region_from_selector() -> None:
    pt = o.region_from_overlay(o.make_overlay("point", x=3.6, y=0.2))
    assert (pt.qx_range, pt.qy_range) == ((4.0, 5.0), (0.0, 1.0))
    assert isinstance(o.region_from_overlay(o.make_overlay("polygon", vertices=[[0, 0], [4, 0], [0, 4]])), Polygon)
    with pytest.raises(ValueError):
        o.region_from_overlay(o.make_overlay("circle", x=0, y=0, r=1))
