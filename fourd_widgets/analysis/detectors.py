"""``fw.detectors``: virtual detector records and the masks they draw.

Every detector is a frozen parameter record (step ``"detector.<shape>"``) with
its geometry plus three common keyword fields:

* ``units``: coordinates in detector pixels (``'px'``) or calibrated
  ``'1/Å'``, ``'1/nm'``, ``'mrad'`` (needs ``calibration.reciprocal_step``);
* ``relative_to_origin``: coordinates measured from the pattern origin
  (``calibration.origin``, else the mean of ``origin_map``) instead of pixel (0, 0);
* ``response``: ``'sum'`` (integrated intensity), ``'com_x'`` / ``'com_y'``
  (centre of mass within the detector, in the detector's units and frame) or
  ``'max'`` (largest pixel within it).

Pixel membership is a pixel-centre test, as in py4DSTEM's ``make_detector``:
pixel ``(i, j)`` has its centre at ``(i, j)``; a circle takes ``d < r``, an
annulus ``inner < d < outer``, a rectangle ``x0 <= i < x1`` and ``y0 <= j < y1``
(half open, so neighbouring rectangles tile), a polygon the centres inside it
(even-odd rule), a point the nearest pixel. Shapes partly or wholly off the
detector simply cover fewer pixels; zero-area shapes cover none.

Examples
--------
>>> from fourd_widgets.core import Calibration
>>> m = detector_mask(Circle((2, 2), 1.5), (5, 5), Calibration())
>>> int(m.sum())
9
>>> Circle.from_dict(Circle((2, 2), 1.5).to_dict()) == Circle((2, 2), 1.5)
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..core.calibration import Calibration
from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param

__all__ = ["Detector", "Point", "Circle", "Annulus", "Rectangle", "Polygon", "Mask",
           "detector_mask", "reference_origin", "pixel_scale"]

Units = Literal["px", "1/Å", "1/nm", "mrad"]
Response = Literal["sum", "com_x", "com_y", "max"]


@dataclass(frozen=True, kw_only=True, eq=False)
class Detector(Params):
    """Common fields of every virtual detector (the base is not a step of its own)."""

    units: Units = param("px", doc="units of the coordinates: 'px' or calibrated '1/Å', '1/nm', 'mrad'")
    relative_to_origin: bool = param(False, doc="coordinates measured from the pattern origin")
    response: Response = param("sum", doc="'sum', 'com_x', 'com_y' (centre of mass) or 'max'")

    def _px_points(self, xy: np.ndarray, cal: Calibration) -> np.ndarray:
        """Coordinates ``(..., 2)`` in this detector's frame -> absolute detector pixels."""
        out = np.asarray(xy, dtype=np.float64) / pixel_scale(self.units, cal)
        if self.relative_to_origin:
            out = out + np.asarray(reference_origin(cal, self.step))
        return out

    def _px_length(self, value: float, cal: Calibration) -> float:
        return float(value) / pixel_scale(self.units, cal)

    def _draw(self, shape: tuple[int, int], cal: Calibration) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Point(Detector):
    """A single pixel: the one nearest to ``(qx, qy)``."""

    step = "detector.point"
    qx: float = param(doc="detector x coordinate")
    qy: float = param(doc="detector y coordinate")

    def _draw(self, shape: tuple[int, int], cal: Calibration) -> np.ndarray:
        # nearest pixel, halves rounded up (floor(x + 0.5))
        x, y = np.floor(self._px_points((self.qx, self.qy), cal) + 0.5).astype(int)
        mask = np.zeros(shape, dtype=bool)
        if 0 <= x < shape[0] and 0 <= y < shape[1]:
            mask[x, y] = True
        return mask


def _dist2(shape: tuple[int, int], c: np.ndarray) -> np.ndarray:
    qx = np.arange(shape[0], dtype=np.float64)[:, None] - c[0]
    qy = np.arange(shape[1], dtype=np.float64)[None, :] - c[1]
    return qx * qx + qy * qy


@dataclass(frozen=True, eq=False)
class Circle(Detector):
    """A disc: pixel centres closer than ``radius`` to ``center``."""

    step = "detector.circle"
    center: tuple[float, float] = param(doc="(qx, qy) of the centre")
    radius: float = param(ge=0, doc="radius, in the detector's units")

    def _draw(self, shape: tuple[int, int], cal: Calibration) -> np.ndarray:
        r = self._px_length(self.radius, cal)
        return _dist2(shape, self._px_points(self.center, cal)) < r * r


@dataclass(frozen=True, eq=False)
class Annulus(Detector):
    """A ring: pixel centres with ``inner < d < outer`` from ``center``."""

    step = "detector.annulus"
    center: tuple[float, float] = param(doc="(qx, qy) of the centre")
    inner: float = param(ge=0, doc="inner radius, in the detector's units")
    outer: float = param(ge=0, doc="outer radius, in the detector's units")

    def validate(self) -> None:
        if self.inner > self.outer:
            raise ParameterError(
                f"{self.step}: inner radius {self.inner} is larger than outer radius {self.outer}; "
                "swap them or make outer >= inner", field="inner")

    def _draw(self, shape: tuple[int, int], cal: Calibration) -> np.ndarray:
        d2 = _dist2(shape, self._px_points(self.center, cal))
        r0, r1 = self._px_length(self.inner, cal), self._px_length(self.outer, cal)
        return (d2 > r0 * r0) & (d2 < r1 * r1)


@dataclass(frozen=True, eq=False)
class Rectangle(Detector):
    """An axis-aligned box: ``qx_range[0] <= qx < qx_range[1]``, same for y (pixel centres)."""

    step = "detector.rectangle"
    qx_range: tuple[float, float] = param(doc="(start, stop) along detector x")
    qy_range: tuple[float, float] = param(doc="(start, stop) along detector y")

    def validate(self) -> None:
        for name in ("qx_range", "qy_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ParameterError(f"{self.step}.{name}: start {lo} is larger than stop {hi}", field=name)

    def _draw(self, shape: tuple[int, int], cal: Calibration) -> np.ndarray:
        (x0, y0), (x1, y1) = self._px_points(np.array(self.qx_range + self.qy_range).reshape(2, 2).T, cal)
        qx = np.arange(shape[0])[:, None]
        qy = np.arange(shape[1])[None, :]
        return (qx >= x0) & (qx < x1) & (qy >= y0) & (qy < y1)


@dataclass(frozen=True, eq=False)
class Polygon(Detector):
    """A polygon: pixel centres inside it (even-odd rule); fewer than 3 vertices cover nothing."""

    step = "detector.polygon"
    vertices: tuple[tuple[float, float], ...] = param(doc="(qx, qy) of each vertex, in order")

    def _draw(self, shape: tuple[int, int], cal: Calibration) -> np.ndarray:
        mask = np.zeros(shape, dtype=bool)
        if len(self.vertices) < 3:
            return mask
        v = self._px_points(np.array(self.vertices, dtype=np.float64), cal)
        # Only the bounding box is tested: crossing-number over the edges.
        lo = np.clip(np.ceil(v.min(axis=0)).astype(int), 0, shape)
        hi = np.clip(np.floor(v.max(axis=0)).astype(int) + 1, 0, shape)
        if np.any(hi <= lo):
            return mask
        px = np.arange(lo[0], hi[0], dtype=np.float64)[:, None]
        py = np.arange(lo[1], hi[1], dtype=np.float64)[None, :]
        inside = np.zeros((hi[0] - lo[0], hi[1] - lo[1]), dtype=bool)
        for (ax, ay), (bx, by) in zip(v, np.roll(v, -1, axis=0)):
            if ay == by:
                continue
            crosses = (ay > py) != (by > py)
            x_at = ax + (py - ay) * (bx - ax) / (by - ay)
            inside ^= crosses & (px < x_at)
        mask[lo[0]:hi[0], lo[1]:hi[1]] = inside
        return mask


@dataclass(frozen=True, eq=False)
class Mask(Detector):
    """Any weight image of the detector's shape: bool, integer, float or complex.

    Always absolute and in pixels: ``units`` must be 'px' and
    ``relative_to_origin`` False. Complex masks allow only the 'sum' and 'max'
    responses ('max' looks at the pixels where the mask is non-zero).
    """

    step = "detector.mask"
    mask: np.ndarray = param(doc="(Qx, Qy) weights")

    def validate(self) -> None:
        if self.mask.ndim != 2:
            raise ParameterError(f"{self.step}.mask must be 2D (Qx, Qy), got shape {self.mask.shape}",
                                 field="mask")
        if self.units != "px" or self.relative_to_origin:
            raise ParameterError(f"{self.step}: a mask is absolute, in pixels; use units='px' and "
                                 "relative_to_origin=False", field="units")
        if self.mask.dtype.kind == "c" and self.response in ("com_x", "com_y"):
            raise ParameterError(f"{self.step}: a complex mask has no centre of mass; use response "
                                 "'sum' or 'max'", field="response")

    def _draw(self, shape: tuple[int, int], cal: Calibration) -> np.ndarray:
        if self.mask.shape != tuple(shape):
            raise ShapeError(f"{self.step}: mask shape {self.mask.shape} differs from the detector "
                             f"shape {tuple(shape)}")
        return np.array(self.mask)


def pixel_scale(units: str, cal: Calibration) -> float:
    """Size of one detector pixel in ``units`` (1 for 'px').

    >>> round(pixel_scale("1/nm", Calibration(reciprocal_step=0.01)), 6)
    0.1
    """
    return 1.0 if units == "px" else float(cal.reciprocal_step_in(units))


def reference_origin(cal: Calibration, step: str = "a detector relative to the origin") -> tuple[float, float]:
    """The origin detectors are measured from: ``cal.origin``, else the mean of ``origin_map``.

    >>> reference_origin(Calibration(origin=(3, 4)))
    (3.0, 4.0)
    """
    if cal.origin is not None:
        return cal.origin
    if cal.origin_map is not None:
        m = cal.origin_map.reshape(-1, 2).mean(axis=0)
        return float(m[0]), float(m[1])
    return cal.require("origin", step)


def detector_mask(detector: Detector, detector_shape: tuple[int, int],
                  calibration: Calibration | None = None) -> np.ndarray:
    """The detector drawn on a ``(Qx, Qy)`` grid (what a virtual image integrates over).

    Parameters
    ----------
    detector : Detector
        Any detector record.
    detector_shape : (int, int)
        ``(Qx, Qy)``.
    calibration : Calibration, optional
        Needed for calibrated units and ``relative_to_origin``.

    Returns
    -------
    (Qx, Qy) ndarray
        bool for the shapes; the mask's own values for :class:`Mask`.
        A detector wholly off the grid gives all False, with a warning.

    Examples
    --------
    >>> detector_mask(Rectangle((1, 3), (0, 1)), (4, 2)).astype(int).tolist()
    [[0, 0], [1, 0], [1, 0], [0, 0]]
    """
    if not isinstance(detector, Detector):
        raise ParameterError(f"expected a detector record (fw.detectors.Circle, ...), got {type(detector).__name__}")
    shape = (int(detector_shape[0]), int(detector_shape[1]))
    mask = detector._draw(shape, calibration if calibration is not None else Calibration())
    if mask.dtype == bool and not mask.any() and _has_area(detector):
        warnings.warn(f"{detector.step} covers no pixel of the {shape[0]}x{shape[1]} detector; "
                      "its image is all zeros", stacklevel=2)
    return mask


def _has_area(d: Detector) -> bool:
    if isinstance(d, Circle):
        return d.radius > 0
    if isinstance(d, Annulus):
        return d.outer > d.inner
    if isinstance(d, Rectangle):
        return d.qx_range[1] > d.qx_range[0] and d.qy_range[1] > d.qy_range[0]
    if isinstance(d, Polygon):
        return len(d.vertices) >= 3
    return isinstance(d, Point)
