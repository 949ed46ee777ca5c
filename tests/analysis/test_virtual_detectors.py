"""Detector records: masks against a pixel-by-pixel reference, units, round trips, refusals."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fourd_widgets.analysis.detectors import (Annulus, Circle, Detector, Mask, Point, Polygon, Rectangle,
                                              detector_mask)
from fourd_widgets.analysis.virtual import VirtualDiffractionParams, VirtualImageParams
from fourd_widgets.core import Calibration
from fourd_widgets.core.errors import MissingCalibrationError, ParameterError, ShapeError
from fourd_widgets.core.params import record_from_dict

from .test_virtual_reference import ref_mask

coord = st.floats(-6, 18, allow_nan=False)
length = st.floats(0, 12, allow_nan=False)
shapes = st.tuples(st.integers(3, 13), st.integers(3, 13))


@st.composite
def detectors(draw):
    """(record, reference kind, geometry) with coordinates partly or wholly off the grid."""
    kind = draw(st.sampled_from(["point", "circle", "annulus", "rectangle", "polygon"]))
    if kind == "point":
        g = {"qx": draw(coord), "qy": draw(coord)}
        return Point(**g), kind, g
    if kind == "circle":
        g = {"center": (draw(coord), draw(coord)), "radius": draw(length)}
        return Circle(**g), kind, g
    if kind == "annulus":
        a, b = sorted((draw(length), draw(length)))
        g = {"center": (draw(coord), draw(coord)), "inner": a, "outer": b}
        return Annulus(**g), kind, g
    if kind == "rectangle":
        g = {"qx_range": tuple(sorted((draw(coord), draw(coord)))),
             "qy_range": tuple(sorted((draw(coord), draw(coord))))}
        return Rectangle(**g), kind, g
    g = {"vertices": draw(st.lists(st.tuples(coord, coord), min_size=0, max_size=6))}
    return Polygon(**g), kind, g


@settings(max_examples=150, deadline=None)
@given(detectors(), shapes)
def test_mask_matches_pixel_centre_reference(det, shape):
    record, kind, geom = det
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = detector_mask(record, shape)
    assert got.shape == shape and got.dtype == bool
    want = ref_mask(kind, geom, shape)
    if kind == "polygon":
        # a pixel centre lying on an edge is a tie that rounding decides (the even-odd
        # rule has no "right" answer there): compare every other pixel
        keep = _off_edges(geom["vertices"], shape)
        got, want = got[keep], want[keep]
    np.testing.assert_array_equal(got, want)


def _off_edges(vertices, shape, tol=1e-9):
    """Pixel centres farther than ``tol`` from every edge of the closed polygon."""
    qx, qy = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    keep = np.ones(shape, bool)
    n = len(vertices)
    for k in range(n if n >= 3 else 0):
        (ax, ay), (bx, by) = vertices[k], vertices[(k + 1) % n]
        dx, dy = bx - ax, by - ay
        L2 = dx * dx + dy * dy
        t = np.clip(((qx - ax) * dx + (qy - ay) * dy) / L2, 0, 1) if L2 > 0 else np.zeros(shape)
        keep &= np.hypot(qx - (ax + t * dx), qy - (ay + t * dy)) > tol
    return keep


def test_calibrated_and_relative_units_match_pixel_geometry():
    cal = Calibration(reciprocal_step=0.02, reciprocal_units="1/Å", energy_eV=200e3, origin=(10.5, 9.0))
    shape = (24, 20)
    px = detector_mask(Circle((13.5, 11.0), 5.0), shape, cal)
    # 5 px = 0.1 1/Å; the centre is (3, 2) px from the origin = (0.06, 0.04) 1/Å
    inv_a = detector_mask(Circle((0.06, 0.04), 0.1, units="1/Å", relative_to_origin=True), shape, cal)
    inv_nm = detector_mask(Circle((0.6, 0.4), 1.0, units="1/nm", relative_to_origin=True), shape, cal)
    np.testing.assert_array_equal(inv_a, px)
    np.testing.assert_array_equal(inv_nm, px)
    mrad_per_px = cal.reciprocal_step_in("mrad")
    mrad = detector_mask(Annulus((3 * mrad_per_px, 2 * mrad_per_px), 2 * mrad_per_px, 5 * mrad_per_px,
                                 units="mrad", relative_to_origin=True), shape, cal)
    np.testing.assert_array_equal(mrad, detector_mask(Annulus((13.5, 11.0), 2, 5), shape, cal))
    rect = detector_mask(Rectangle((-0.04, 0.04), (0.0, 0.1), units="1/Å", relative_to_origin=True), shape, cal)
    np.testing.assert_array_equal(rect, detector_mask(Rectangle((8.5, 12.5), (9, 14)), shape, cal))


def test_relative_to_origin_uses_mean_of_origin_map_when_no_single_origin():
    om = np.zeros((2, 2, 2))
    om[..., 0] = [[4, 6], [4, 6]]
    om[..., 1] = 7
    cal = Calibration(origin_map=om)
    np.testing.assert_array_equal(detector_mask(Point(1, -2, relative_to_origin=True), (12, 12), cal),
                                  detector_mask(Point(6, 5), (12, 12), cal))


def test_missing_calibration_says_what_to_set():
    with pytest.raises(MissingCalibrationError, match="reciprocal_step"):
        detector_mask(Circle((1, 1), 0.1, units="mrad"), (8, 8), Calibration())
    with pytest.raises(MissingCalibrationError, match="origin"):
        detector_mask(Circle((1, 1), 2, relative_to_origin=True), (8, 8), Calibration())


def test_wholly_off_detector_warns_and_gives_zeros_zero_area_does_not_warn():
    with pytest.warns(UserWarning, match="covers no pixel"):
        assert not detector_mask(Circle((100, 100), 3), (8, 8)).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not detector_mask(Circle((4, 4), 0), (8, 8)).any()
        assert not detector_mask(Rectangle((2, 2), (1, 5)), (8, 8)).any()


def test_mask_detector_keeps_values_and_checks_shape():
    w = np.arange(12.0).reshape(3, 4) - 5
    np.testing.assert_array_equal(detector_mask(Mask(w), (3, 4)), w)
    with pytest.raises(ShapeError, match=r"\(3, 4\).*\(4, 4\)"):
        detector_mask(Mask(w), (4, 4))


ALL_DETECTORS = [
    Point(1.5, 2),
    Circle((3, 4), 2.5, response="com_x"),
    Annulus((3, 4), 1, 6, units="1/nm", relative_to_origin=True, response="max"),
    Rectangle((0, 3), (1, 2), response="com_y"),
    Polygon(((0, 0), (5, 1), (2, 6))),
    Mask(np.eye(4, dtype=bool)),
    Mask(np.arange(6, dtype=np.float32).reshape(2, 3)),
    Mask(np.exp(1j * np.arange(4.0)).reshape(2, 2)),
]


@pytest.mark.parametrize("record", ALL_DETECTORS, ids=lambda d: d.step)
def test_detector_round_trip_through_json(record):
    d = json.loads(json.dumps(record.to_dict()))
    back = Detector.from_dict(d)
    assert type(back) is type(record) and back == record
    assert record_from_dict(d) == record


def test_params_round_trip():
    vi = VirtualImageParams(detectors=tuple(ALL_DETECTORS), shift="subpixel")
    back = VirtualImageParams.from_dict(json.loads(json.dumps(vi.to_dict())))
    assert back == vi and [type(d) for d in back.detectors] == [type(d) for d in ALL_DETECTORS]
    for region in (None, np.ones((3, 2), bool), np.linspace(0, 1, 6).reshape(2, 3),
                   Rectangle((0, 2), (1, 3)), Polygon(((0, 0), (3, 0), (0, 3)))):
        vd = VirtualDiffractionParams(method="max", region=region, align=True, subpixel=True)
        back = VirtualDiffractionParams.from_dict(json.loads(json.dumps(vd.to_dict())))
        assert back == vd and type(back.region) is type(vd.region)


@pytest.mark.parametrize("d, message", [
    ({"step": "detector.circle", "center": [1, 2], "radius": 3, "colour": "red"}, "unknown field 'colour'"),
    ({"step": "detector.circle", "center": [1, 2], "radius": -1}, r"radius: -1.0 is out of range; allowed: >= 0"),
    ({"step": "detector.annulus", "center": [1, 2], "inner": 5, "outer": 2}, "inner radius 5.0 is larger than outer"),
    ({"step": "detector.circle", "center": "middle", "radius": 3}, r"center: expected a list"),
    ({"step": "detector.circle", "center": [1, 2], "radius": "big"}, r"radius: expected a number"),
    ({"step": "detector.circle", "center": [1, 2], "radius": 1, "units": "furlong"}, "choose one of 'px'"),
    ({"step": "detector.rectangle", "qx_range": [4, 1], "qy_range": [0, 1]}, "start 4.0 is larger than stop 1.0"),
    ({"step": "detector.point", "qx": 1, "qy": 1, "response": "median"}, "choose one of 'sum', 'com_x'"),
    ({"step": "detector.mask", "mask": [[1, 2]], "units": "mrad"}, "a mask is absolute, in pixels"),
    ({"step": "detector.hexagon"}, "unknown step 'detector.hexagon'"),
])
def test_refusals_name_the_problem(d, message):
    with pytest.raises(ParameterError, match=message):
        Detector.from_dict(d)


def test_params_refusals():
    with pytest.raises(ParameterError, match="at least one detector"):
        VirtualImageParams(detectors=())
    with pytest.raises(ParameterError, match="choose one of 'none', 'integer', 'subpixel'"):
        VirtualImageParams(detectors=(Point(1, 1),), shift="bilinear")
    with pytest.raises(ParameterError, match="align works with method 'mean' or 'max'"):
        VirtualDiffractionParams(method="median", align=True)
    with pytest.raises(ParameterError, match="unknown field 'mask'"):
        VirtualDiffractionParams.from_dict({"step": "virtual_diffraction", "mask": None})
    with pytest.raises(ParameterError, match="scan region is in scan pixels"):
        VirtualDiffractionParams(region=Rectangle((0, 1), (0, 1), units="mrad"))
