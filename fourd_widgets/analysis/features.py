"""Feature vectors per scan position for classification: one record, one engine pass.

A :class:`FeatureParams` record says how each pattern becomes a vector:

* ``'patterns'``: the pattern itself, cropped, masked, binned and scaled
  (``'log'`` or ``'sqrt'``), optionally aligned on the calibrated origin
  (``calibration.origin_map``: each pattern is shifted by whole pixels so its
  origin sits at the mean origin);
* ``'radial'``: the radial profile (mean intensity per pixel in rings around the
  calibrated origin), through the polar module's tables;
* ``'virtual'``: a stack of virtual images (one value per detector);
* ``'bragg'``: Bragg-vector occupancy from a :class:`~fourd_widgets.analysis.peaks.PeakTable`
  on a Bragg-vector-map grid (or at lattice sites);
* ``'array'``: any ``(Rx, Ry, n)`` array the user gives.

Every pass over the cube goes through :func:`fourd_widgets.engine.run_job`, so
features stream from a cube that does not fit in memory; the result is a small
``(Rx, Ry, n)`` float32 array.

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.core import DataCube
>>> cube = DataCube(np.ones((2, 3, 8, 8), dtype=np.uint16))
>>> f = compute_features(cube, FeatureParams(bin=4), progress=False)
>>> f.values.shape, f.pattern_shape, float(f.values[0, 0, 0])
((2, 3, 4), (2, 2), 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..core.datacube import DataCube
from ..core.errors import MissingCalibrationError, ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.job import ImageJob
from ..engine.run import run_job
from ..kernels.binning import accumulator_dtype, bin_block, bin_block_sum
from .detectors import Detector
from .peaks import PeakTable
from .polar import PolarGroups, PolarParams, bin_means, split_block
from .steps import own_record, split_engine
from .virtual import virtual_image

__all__ = ["FeatureParams", "Features", "PatternFeatureJob", "RadialFeatureJob", "compute_features",
           "bragg_features", "scale_values"]


@dataclass(frozen=True, eq=False)
class FeatureParams(Params):
    """Record of the features: which kind, and how patterns are cropped, binned and scaled."""

    step = "features"
    kind: Literal["patterns", "radial", "virtual", "bragg", "array"] = param(
        "patterns", doc="patterns, radial profiles, virtual images, Bragg-vector occupancy or a given array")
    bin: int = param(4, ge=1, le=64, doc="patterns: detector binning factor")
    crop: tuple[int, int, int, int] | None = param(
        None, units="px", doc="patterns: detector window (qx0, qx1, qy0, qy1), before binning")
    mask: np.ndarray | None = param(None, doc="patterns: (Qx, Qy) bool, True where pixels are left out")
    align: bool = param(False, doc="patterns: shift each pattern by whole pixels onto the mean origin "
                                   "(needs calibration.origin_map)")
    scaling: Literal["none", "log", "sqrt"] = param("none", doc="applied to every value: none, log or sqrt")
    log_offset: float = param(1.0, gt=0, doc="log scaling: log(1 + x / log_offset)")
    q_step: float = param(2.0, units="px", gt=0, doc="radial: ring width")
    q_max: float | None = param(None, units="px", gt=0, doc="radial: outer radius (None: inside the detector)")
    detectors: tuple[Detector, ...] = param((), doc="virtual: the detectors, one feature each")
    bragg_bin: float = param(4.0, units="px", gt=0, doc="bragg: grid cell of the Bragg-vector map")
    sites: np.ndarray | None = param(None, units="px", doc="bragg: (m, 2) lattice sites relative to the origin; "
                                                           "None: the grid")
    site_radius: float = param(2.0, units="px", gt=0, doc="bragg: a peak within this radius occupies a site")
    values: np.ndarray | None = param(None, doc="array: the (Rx, Ry, n) feature array itself")

    def validate(self) -> None:
        if self.crop is not None and (self.crop[1] <= self.crop[0] or self.crop[3] <= self.crop[2]):
            raise ParameterError(f"features.crop: {self.crop} is empty; give (qx0, qx1, qy0, qy1) with "
                                 "qx1 > qx0 and qy1 > qy0", field="crop")
        if self.mask is not None and (self.mask.ndim != 2 or self.mask.dtype != np.bool_):
            raise ParameterError(f"features.mask: expected a 2D bool array, got {self.mask.dtype} "
                                 f"of shape {self.mask.shape}", field="mask")
        if self.kind == "virtual" and not self.detectors:
            raise ParameterError("features: kind 'virtual' needs detectors", field="detectors")
        if self.kind == "array" and (self.values is None or self.values.ndim not in (2, 3)):
            raise ParameterError("features: kind 'array' needs values of shape (Rx, Ry, n)", field="values")
        if self.sites is not None and (self.sites.ndim != 2 or self.sites.shape[1] != 2):
            raise ParameterError(f"features.sites: expected (m, 2), got shape {self.sites.shape}", field="sites")


@dataclass(frozen=True, eq=False)
class Features:
    """Feature vectors of every scan position.

    Attributes
    ----------
    values : (Rx, Ry, n) float32 array
    pattern_shape : (h, w) or None
        For pattern and grid features, how a vector is drawn as an image
        (loadings shown as diffraction patterns).
    axis : (n,) array or None
        Radial features: ring centres in px.
    """

    values: np.ndarray
    pattern_shape: tuple[int, int] | None = None
    axis: np.ndarray | None = None

    def as_images(self, vectors: np.ndarray) -> np.ndarray:
        """``(k, n)`` vectors as ``(k, h, w)`` images (or ``(k, 1, n)`` without a pattern shape)."""
        v = np.asarray(vectors)
        if self.pattern_shape is None:
            return v.reshape(v.shape[0], 1, v.shape[-1])
        return v.reshape(v.shape[0], *self.pattern_shape)


def scale_values(x: np.ndarray, scaling: str, log_offset: float = 1.0) -> np.ndarray:
    """``x`` with 'log' (log1p(x / offset)) or 'sqrt' scaling; negatives are clipped to zero first.

    >>> scale_values(np.array([0.0, 4.0]), "sqrt").tolist()
    [0.0, 2.0]
    """
    if scaling == "none":
        return x
    x = np.maximum(x, 0)
    return np.log1p(x / log_offset) if scaling == "log" else np.sqrt(x)


def _scale_in_place(x: np.ndarray, scaling: str, log_offset: float) -> np.ndarray:
    """:func:`scale_values` of a float32 array, written over it (no copy of the block's features)."""
    if scaling != "none":
        np.maximum(x, 0, out=x)
        if scaling == "log":
            np.divide(x, np.float32(log_offset), out=x)
            np.log1p(x, out=x)
        else:
            np.sqrt(x, out=x)
    return x


def _window(p: FeatureParams, det: tuple[int, int]) -> tuple[int, int, int, int]:
    qx0, qx1, qy0, qy1 = p.crop if p.crop is not None else (0, det[0], 0, det[1])
    if qx0 < 0 or qy0 < 0 or qx1 > det[0] or qy1 > det[1]:
        raise ShapeError(f"features.crop {p.crop} does not fit the detector {det}")
    b = p.bin
    h, w = (qx1 - qx0) // b, (qy1 - qy0) // b
    if h < 1 or w < 1:
        raise ParameterError(f"features: bin {b} leaves no pixel of the {qx1 - qx0}x{qy1 - qy0} window; "
                             "bin less or crop more", field="bin")
    return qx0, qx0 + h * b, qy0, qy0 + w * b


class PatternFeatureJob(ImageJob):
    """Cropped, masked, binned, scaled patterns (optionally aligned on the origin), flattened."""

    name = "pattern features"
    dtype = np.float32

    def __init__(self, p: FeatureParams, detector_shape: tuple[int, int], shifts: np.ndarray | None) -> None:
        self.p = p
        self.window = _window(p, detector_shape)
        qx0, qx1, qy0, qy1 = self.window
        self.shape = ((qx1 - qx0) // p.bin, (qy1 - qy0) // p.bin)
        self.item_shape = (self.shape[0] * self.shape[1],)
        self.keep = None if p.mask is None else ~p.mask
        self.shifts = shifts  # (Rx, Ry, 2) whole-pixel shifts, or None

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        p, (qx0, qx1, qy0, qy1) = self.p, self.window
        nx, ny = block.shape[:2]
        if self.shifts is None and block.dtype.kind in "uif":
            # one read of the block: crop, mask and bin fused (the plain numpy route costs ~4 passes)
            out = np.empty((nx, ny, self.shape[0] * self.shape[1]), np.float32)
            if self.keep is None:  # sums in exact integers for counts: no float copy of a pattern
                line = np.empty(qy1 - qy0, accumulator_dtype(block.dtype, p.bin))
                bin_block_sum(block, qx0, qy0, self.shape[0], self.shape[1], p.bin, line, out)
            else:
                keep = self.keep[qx0:qx1, qy0:qy1].astype(np.float32)
                bin_block(block, qx0, qy0, self.shape[0], self.shape[1], p.bin, keep, out)
            return _scale_in_place(out, p.scaling, p.log_offset)
        if self.shifts is None:
            x = np.array(block[:, :, qx0:qx1, qy0:qy1], dtype=np.float32)
            keep = None if self.keep is None else self.keep[qx0:qx1, qy0:qy1]
        else:
            x = np.zeros((nx, ny, qx1 - qx0, qy1 - qy0), np.float32)
            sh = self.shifts[rx, ry]
            for i in range(nx):
                for j in range(ny):
                    x[i, j] = _shifted(block[i, j], int(sh[i, j, 0]), int(sh[i, j, 1]), self.window)
            keep = None if self.keep is None else self.keep[qx0:qx1, qy0:qy1]
        if keep is not None:
            x *= keep
        b = p.bin
        x = x.reshape(nx, ny, self.shape[0], b, self.shape[1], b).mean(axis=(3, 5), dtype=np.float32)
        x = scale_values(x, p.scaling, p.log_offset)
        return x.reshape(nx, ny, -1).astype(np.float32, copy=False)


def _shifted(pattern: np.ndarray, sx: int, sy: int, window: tuple[int, int, int, int]) -> np.ndarray:
    """``pattern[window + shift]``, zero outside the detector (the origin moves to the mean origin)."""
    qx0, qx1, qy0, qy1 = window
    out = np.zeros((qx1 - qx0, qy1 - qy0), np.float32)
    H, W = pattern.shape
    a0, a1 = max(qx0 + sx, 0), min(qx1 + sx, H)
    b0, b1 = max(qy0 + sy, 0), min(qy1 + sy, W)
    if a1 > a0 and b1 > b0:
        out[a0 - qx0 - sx:a1 - qx0 - sx, b0 - qy0 - sy:b1 - qy0 - sy] = pattern[a0:a1, b0:b1]
    return out


class RadialFeatureJob(ImageJob):
    """Radial profile of every pattern: polar bin sums over all angles divided by their area."""

    name = "radial features"
    dtype = np.float32

    def __init__(self, groups: PolarGroups, scaling: str, log_offset: float) -> None:
        self.g = groups
        self.item_shape = (groups.reference.q.size,)
        self.scaling, self.log_offset = scaling, log_offset

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        nx, ny = block.shape[:2]
        flat = block.reshape(nx * ny, *block.shape[2:])
        out = np.empty((nx * ny, self.item_shape[0]), np.float32)
        for geo, idx in self.g.groups(rx, ry):
            sums = split_block(flat, geo, idx)
            area = np.where(geo.valid, geo.area, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                prof = (sums * (area > 0)).sum(axis=1) / area.sum(axis=0)
            out[idx] = np.nan_to_num(prof, nan=0.0)
        return scale_values(out, self.scaling, self.log_offset).reshape(nx, ny, -1)


def bragg_features(peaks: PeakTable, p: FeatureParams, detector_shape: tuple[int, int], origin: Any) -> Features:
    """Bragg-vector occupancy per position: peak intensity per grid cell (or per lattice site).

    Parameters
    ----------
    peaks : PeakTable
        In detector pixels.
    p : FeatureParams
        ``bragg_bin``, ``sites``, ``site_radius``, ``scaling``.
    detector_shape : (Qx, Qy)
    origin : (2,) or (Rx, Ry, 2) array
        The beam origin, px; peaks are taken relative to it.

    Returns
    -------
    Features
        ``(Rx, Ry, cells)`` values; grid features carry their grid shape.
    """
    if peaks.units != "px":
        raise ParameterError("features: Bragg occupancy needs a peak table in detector pixels", field="peaks")
    if len(peaks.scan_shape) != 2:
        raise ShapeError(f"features: the peak table has scan shape {peaks.scan_shape}; expected (Rx, Ry)")
    n = int(np.prod(peaks.scan_shape))
    pos = np.repeat(np.arange(n), np.diff(np.asarray(peaks.offsets)))
    o = np.asarray(origin, dtype=float)
    ox = o[..., 0].reshape(-1)[pos] if o.ndim == 3 else np.full(pos.size, o[0])
    oy = o[..., 1].reshape(-1)[pos] if o.ndim == 3 else np.full(pos.size, o[1])
    dx, dy = np.asarray(peaks.qx) - ox, np.asarray(peaks.qy) - oy
    w = np.asarray(peaks.intensity, dtype=float)
    if p.sites is not None:
        d2 = (dx[:, None] - p.sites[None, :, 0]) ** 2 + (dy[:, None] - p.sites[None, :, 1]) ** 2
        out = np.zeros((n, p.sites.shape[0]))
        hit = d2 <= p.site_radius ** 2
        np.add.at(out, (np.repeat(pos, hit.sum(axis=1)), np.nonzero(hit)[1]), np.repeat(w, hit.sum(axis=1)))
        shape = None
    else:
        gh = int(np.ceil(detector_shape[0] / p.bragg_bin))
        gw = int(np.ceil(detector_shape[1] / p.bragg_bin))
        cx = np.floor((dx + detector_shape[0] / 2) / p.bragg_bin).astype(int)
        cy = np.floor((dy + detector_shape[1] / 2) / p.bragg_bin).astype(int)
        ok = (cx >= 0) & (cx < gh) & (cy >= 0) & (cy < gw)
        out = np.zeros((n, gh * gw))
        np.add.at(out, (pos[ok], cx[ok] * gw + cy[ok]), w[ok])
        shape = (gh, gw)
    vals = scale_values(out, p.scaling, p.log_offset).astype(np.float32)
    return Features(vals.reshape(*peaks.scan_shape, -1), shape)


def compute_features(cube: Any, params: FeatureParams | None = None, *, peaks: PeakTable | None = None,
                     **options: Any) -> Features:
    """Feature vectors of every scan position, in one engine pass over the cube.

    Parameters
    ----------
    cube : DataCube
    params : FeatureParams, optional
    peaks : PeakTable, optional
        Needed for ``kind='bragg'``.
    **options
        Engine options (``progress``, ``cancel``, ``workers``, ``scheduler``,
        ``chunk_bytes``, ``on_partial``) and :class:`FeatureParams` field overrides.

    Returns
    -------
    Features
    """
    engine, changes = split_engine(options)
    p = own_record(params, FeatureParams, changes, "compute_features")
    engine = {"progress": False, **engine}
    cal = cube.calibration if isinstance(cube, DataCube) else None
    if p.kind == "array":
        v = np.asarray(p.values, dtype=np.float32)
        v = v[..., None] if v.ndim == 2 else v
        if cube is not None and tuple(v.shape[:2]) != tuple(cube.scan_shape):
            raise ShapeError(f"features: the given values have scan shape {v.shape[:2]}, the cube "
                             f"{tuple(cube.scan_shape)}")
        return Features(scale_values(v, p.scaling, p.log_offset).astype(np.float32))
    if p.kind == "bragg":
        if peaks is None:
            raise ParameterError("features: kind 'bragg' needs a peak table (peaks=..., or a find_disks step "
                                 "before it in the recipe)", field="peaks")
        origin = _origin(cal, "Bragg-vector features")
        return bragg_features(peaks, p, cube.detector_shape, origin)
    if p.kind == "virtual":
        stack = virtual_image(cube, list(p.detectors), **engine)
        stack = stack[None] if stack.ndim == 2 else stack
        v = scale_values(np.moveaxis(stack, 0, -1), p.scaling, p.log_offset)
        return Features(np.ascontiguousarray(v, dtype=np.float32))
    if p.kind == "radial":
        pp = PolarParams(q_step=p.q_step, q_max=p.q_max, n_theta=8, mask=p.mask)
        groups = PolarGroups(pp, cal, cube.scan_shape, cube.detector_shape, "radial features")
        v = run_job(cube, RadialFeatureJob(groups, p.scaling, p.log_offset), **engine)
        return Features(v, None, groups.reference.q.copy())
    shifts = None
    if p.align:
        if cal is None or cal.origin_map is None:
            raise MissingCalibrationError("origin_map", "aligned pattern features",
                                          "Fit the origin per position first, or use align=False.")
        m = cal.origin_map
        shifts = np.rint(m - m.reshape(-1, 2).mean(axis=0)).astype(np.int64)
    job = PatternFeatureJob(p, cube.detector_shape, shifts)
    v = run_job(cube, job, **engine)
    return Features(v, job.shape)


def _origin(cal: Any, step: str) -> Any:
    if cal is not None and cal.origin_map is not None:
        return cal.origin_map
    if cal is None or cal.origin is None:
        raise MissingCalibrationError("origin", step, "Set cube.calibration = cube.calibration.replace("
                                      "origin=(qx, qy)) or measure it (fw.analysis.measure_origin).")
    return cal.origin
