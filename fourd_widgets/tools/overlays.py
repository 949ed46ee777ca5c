"""Overlay shapes drawn on an image view, and their mapping to detector records.

An overlay is a plain JSON dict (what the ``overlays`` trait of
:class:`fourd_widgets.widgets.ImageView` holds), in pixels of the
image it is drawn on. ``x`` is the first array axis (rows on screen: ``qx`` on
a diffraction pattern, ``rx`` on a scan image), ``y`` the second (columns).
Pixel ``(i, j)`` has its centre at ``x = i, y = j``.

====================  =========================================================
kind                  geometry keys
====================  =========================================================
``point``             ``x, y``
``circle``            ``x, y, r``
``annulus``           ``x, y, r_in, r_out``
``rectangle``         ``x0, x1, y0, y1`` (half open: ``x0 <= i < x1``)
``polygon``           ``vertices`` (list of ``[x, y]``)
``lattice``           ``x, y`` (origin), ``ax, ay``, ``bx, by`` (vectors), ``r``
====================  =========================================================

Every overlay also has ``id``, ``kind``, ``color`` and ``editable``.

Examples
--------
>>> from fourd_widgets.analysis.detectors import Circle
>>> ov = overlay_from_detector(Circle((10, 12), 4), "d0", "#ff0000")
>>> ov["x"], ov["y"], ov["r"]
(10.0, 12.0, 4.0)
>>> detector_from_overlay(ov) == Circle((10, 12), 4)
True
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..analysis.detectors import (Annulus, Circle, Detector, Point, Polygon, Rectangle, pixel_scale,
                                  reference_origin)
from ..core.calibration import Calibration

__all__ = ["KINDS", "GEOMETRY", "PALETTE", "make_overlay", "validate_overlay", "move_overlay",
           "calibrated_geometry", "pixel_geometry", "overlay_from_detector", "detector_from_overlay", "region_from_overlay",
           "lattice_centres"]

#: Geometry keys of each overlay kind.
GEOMETRY: dict[str, tuple[str, ...]] = {
    "point": ("x", "y"),
    "circle": ("x", "y", "r"),
    "annulus": ("x", "y", "r_in", "r_out"),
    "rectangle": ("x0", "x1", "y0", "y1"),
    "polygon": ("vertices",),
    "lattice": ("x", "y", "ax", "ay", "bx", "by", "r"),
}
KINDS = tuple(GEOMETRY)
#: Colours given to detectors in order (distinguishable on gray and viridis).
PALETTE = ("#ff4d4d", "#3dd6ff", "#ffd23d", "#66ff66", "#ff66ff", "#ff9933", "#b3b3ff", "#ffffff")
_LENGTHS = {"r", "r_in", "r_out"}


def _num(value: Any, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"overlay {where} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"overlay {where} must be finite, got {value!r}")
    return v


def validate_overlay(ov: Mapping[str, Any]) -> dict[str, Any]:
    """A clean copy of ``ov``: known kind, finite numbers, radii >= 0, ordered ranges.

    Raises
    ------
    ValueError
        Naming the offending key.
    """
    kind = ov.get("kind")
    if kind not in GEOMETRY:
        raise ValueError(f"overlay kind {kind!r} is unknown; choose one of {', '.join(KINDS)}")
    out: dict[str, Any] = {"id": str(ov.get("id") or kind), "kind": kind,
                           "color": str(ov.get("color") or PALETTE[0]),
                           "editable": bool(ov.get("editable", True))}
    if "label" in ov:
        out["label"] = str(ov["label"])
    for key in GEOMETRY[kind]:
        if key not in ov:
            raise ValueError(f"overlay {out['id']!r} ({kind}) needs {key!r}; it has {sorted(ov)}")
        if key == "vertices":
            verts = [[_num(v[0], "vertex x"), _num(v[1], "vertex y")] for v in ov[key]]
            out[key] = verts
            continue
        v = _num(ov[key], key)
        if key in _LENGTHS and v < 0:
            raise ValueError(f"overlay {out['id']!r}: {key} must be >= 0, got {v}")
        out[key] = v
    if kind == "annulus" and out["r_in"] > out["r_out"]:
        out["r_in"], out["r_out"] = out["r_out"], out["r_in"]
    if kind == "rectangle":
        for a, b in (("x0", "x1"), ("y0", "y1")):
            if out[a] > out[b]:
                out[a], out[b] = out[b], out[a]
    return out


def make_overlay(kind: str, id: str | None = None, color: str | None = None, editable: bool = True,
                 **geometry: Any) -> dict[str, Any]:
    """Build and validate an overlay dict.

    >>> make_overlay("rectangle", x0=5, x1=2, y0=0, y1=3)["x0"]
    2.0
    """
    return validate_overlay({"kind": kind, "id": id or kind, "color": color, "editable": editable, **geometry})


def move_overlay(ov: Mapping[str, Any], dx: float, dy: float) -> dict[str, Any]:
    """A copy of ``ov`` translated by ``(dx, dy)`` pixels (what the arrow keys do).

    >>> move_overlay(make_overlay("point", x=1, y=2), 5, 0)["x"]
    6.0
    """
    out = validate_overlay(ov)
    if out["kind"] == "polygon":
        out["vertices"] = [[x + dx, y + dy] for x, y in out["vertices"]]
    elif out["kind"] == "rectangle":
        out.update(x0=out["x0"] + dx, x1=out["x1"] + dx, y0=out["y0"] + dy, y1=out["y1"] + dy)
    else:
        out.update(x=out["x"] + dx, y=out["y"] + dy)
    return out


def calibrated_geometry(ov: Mapping[str, Any], pixel_size: float, origin: tuple[float, float] = (0.0, 0.0)
                        ) -> dict[str, Any]:
    """The geometry of ``ov`` in calibrated units: ``(px - origin) * pixel_size``, lengths ``* pixel_size``.

    >>> calibrated_geometry(make_overlay("circle", x=10, y=20, r=2), 0.5, (10, 10))
    {'x': 0.0, 'y': 5.0, 'r': 1.0}
    """
    out: dict[str, Any] = {}
    ox, oy = origin
    for key in GEOMETRY[ov["kind"]]:
        v = ov[key]
        if key == "vertices":
            out[key] = [[(x - ox) * pixel_size, (y - oy) * pixel_size] for x, y in v]
        elif key in ("x", "x0", "x1"):
            out[key] = (v - ox) * pixel_size
        elif key in ("y", "y0", "y1"):
            out[key] = (v - oy) * pixel_size
        else:  # radii and lattice vectors
            out[key] = v * pixel_size
    return out


def pixel_geometry(ov: Mapping[str, Any], pixel_size: float, origin: tuple[float, float] = (0.0, 0.0)
                   ) -> dict[str, Any]:
    """Inverse of :func:`calibrated_geometry`: an overlay given in calibrated units, back in pixels.

    >>> pixel_geometry({"id": "c", "kind": "circle", "x": 0.0, "y": 5.0, "r": 1.0}, 0.5, (10, 10))["y"]
    20.0
    """
    out = dict(ov)
    ox, oy = origin
    for key in GEOMETRY[ov["kind"]]:
        v = ov[key]
        if key == "vertices":
            out[key] = [[x / pixel_size + ox, y / pixel_size + oy] for x, y in v]
        elif key in ("x", "x0", "x1"):
            out[key] = v / pixel_size + ox
        elif key in ("y", "y0", "y1"):
            out[key] = v / pixel_size + oy
        else:
            out[key] = v / pixel_size
    return validate_overlay(out)


def _frame(det: Detector, cal: Calibration) -> tuple[float, np.ndarray]:
    scale = pixel_scale(det.units, cal)
    origin = np.asarray(reference_origin(cal, det.step) if det.relative_to_origin else (0.0, 0.0), dtype=float)
    return scale, origin


def overlay_from_detector(det: Detector, id: str, color: str, calibration: Calibration | None = None
                          ) -> dict[str, Any]:
    """Draw a detector record as an overlay, in absolute detector pixels.

    Raises
    ------
    ValueError
        For a :class:`~fourd_widgets.analysis.detectors.Mask` (it has no handles).
    """
    cal = calibration or Calibration()
    scale, o = _frame(det, cal)

    def px(p: Any) -> list[float]:
        return (np.asarray(p, dtype=float) / scale + o).tolist()

    if isinstance(det, Point):
        x, y = px((det.qx, det.qy))
        return make_overlay("point", id, color, x=x, y=y)
    if isinstance(det, Circle):
        x, y = px(det.center)
        return make_overlay("circle", id, color, x=x, y=y, r=det.radius / scale)
    if isinstance(det, Annulus):
        x, y = px(det.center)
        return make_overlay("annulus", id, color, x=x, y=y, r_in=det.inner / scale, r_out=det.outer / scale)
    if isinstance(det, Rectangle):
        (x0, y0), (x1, y1) = px((det.qx_range[0], det.qy_range[0])), px((det.qx_range[1], det.qy_range[1]))
        return make_overlay("rectangle", id, color, x0=x0, x1=x1, y0=y0, y1=y1)
    if isinstance(det, Polygon):
        return make_overlay("polygon", id, color, vertices=[px(v) for v in det.vertices])
    raise ValueError(f"{det.step} cannot be drawn as an overlay with handles; use point, circle, annulus, "
                     "rectangle or polygon")


def detector_from_overlay(ov: Mapping[str, Any], response: str = "sum", units: str = "px",
                          relative_to_origin: bool = False, calibration: Calibration | None = None) -> Detector:
    """The detector record an overlay stands for, in the given units and frame.

    Raises
    ------
    ValueError
        For a lattice overlay (it is a picker, not a detector).
    """
    cal = calibration or Calibration()
    ov = validate_overlay(ov)
    probe = Point(0, 0, units=units, relative_to_origin=relative_to_origin)
    scale, o = _frame(probe, cal)

    def rec(x: float, y: float) -> tuple[float, float]:
        return float((x - o[0]) * scale), float((y - o[1]) * scale)

    kw = {"units": units, "relative_to_origin": relative_to_origin, "response": response}
    kind = ov["kind"]
    if kind == "point":
        return Point(*rec(ov["x"], ov["y"]), **kw)
    if kind == "circle":
        return Circle(rec(ov["x"], ov["y"]), ov["r"] * scale, **kw)
    if kind == "annulus":
        return Annulus(rec(ov["x"], ov["y"]), ov["r_in"] * scale, ov["r_out"] * scale, **kw)
    if kind == "rectangle":
        (x0, y0), (x1, y1) = rec(ov["x0"], ov["y0"]), rec(ov["x1"], ov["y1"])
        return Rectangle((x0, x1), (y0, y1), **kw)
    if kind == "polygon":
        return Polygon(tuple(rec(x, y) for x, y in ov["vertices"]), **kw)
    raise ValueError("a lattice overlay is a picker of disks, not a detector")


def region_from_overlay(ov: Mapping[str, Any]) -> Rectangle | Polygon:
    """The scan region a real-space selector stands for (scan pixels, absolute).

    A point selects the one nearest scan position, as a 1x1 rectangle.

    >>> r = region_from_overlay(make_overlay("point", x=2.4, y=6.6))
    >>> r.qx_range, r.qy_range
    ((2.0, 3.0), (7.0, 8.0))
    """
    ov = validate_overlay(ov)
    if ov["kind"] == "point":
        x, y = round(ov["x"]), round(ov["y"])
        return Rectangle((x, x + 1), (y, y + 1))
    if ov["kind"] in ("rectangle", "polygon"):
        return detector_from_overlay(ov)  # type: ignore[return-value]
    raise ValueError(f"a real-space selector is a point, rectangle or polygon, not a {ov['kind']}")


def lattice_centres(ov: Mapping[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """Centres ``origin + i a + j b`` of a lattice overlay that fall on an image of ``shape``, (n, 2).

    >>> lattice_centres(make_overlay("lattice", x=0, y=0, ax=2, ay=0, bx=0, by=3, r=1), (4, 4)).tolist()
    [[0.0, 0.0], [0.0, 3.0], [2.0, 0.0], [2.0, 3.0]]
    """
    ov = validate_overlay(ov)
    a = np.array([ov["ax"], ov["ay"]])
    b = np.array([ov["bx"], ov["by"]])
    o = np.array([ov["x"], ov["y"]])
    if abs(a[0] * b[1] - a[1] * b[0]) < 1e-9:
        return o[None, :] if 0 <= o[0] < shape[0] and 0 <= o[1] < shape[1] else np.zeros((0, 2))
    n = int(np.ceil(2 * max(shape) / max(1e-9, min(np.hypot(*a), np.hypot(*b))))) + 1
    n = min(n, 200)
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    pts = o + i.reshape(-1, 1) * a + j.reshape(-1, 1) * b
    keep = (pts[:, 0] >= -0.5) & (pts[:, 0] < shape[0] - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] < shape[1] - 0.5)
    pts = pts[keep]
    return pts[np.lexsort((pts[:, 1], pts[:, 0]))]
