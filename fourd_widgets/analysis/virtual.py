"""Virtual images and virtual diffraction patterns (py4DSTEM §4-5), run by the chunked engine.

A virtual image applies every detector of the request in one read of the data:
the detectors (and, for centre-of-mass responses, their coordinate-weighted
copies) form one weight stack, applied per block by a BLAS GEMM for float data
covering much of the detector, otherwise by a numba kernel over the stack's
bounding box that converts integers on the fly.

NaN pixels: a NaN only affects the detectors that include its pixel ('sum' and
the centre of mass become NaN, 'max' becomes NaN); NaN outside a detector does
not touch it. Centre of mass is NaN where a detector receives no intensity.

Precision: float32 and 8/16-bit integer data are summed in float32 within a
pattern (relative error about 1e-6 of the detector's total), wider types in
float64; results are float64 arrays.

Descan (``shift``): with ``calibration.origin_map``, the detectors follow the
beam — at each position they move by ``origin_map - mean(origin_map)``, rounded
('integer') or bilinearly interpolated ('subpixel'); pixels off the detector
count as zero. Centre of mass stays in the detector's frame: relative
coordinates are measured from the moving origin, absolute ones from pixel (0, 0).

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.core import DataCube
>>> from fourd_widgets.analysis.detectors import Circle, Annulus
>>> cube = DataCube(np.ones((3, 4, 9, 9), dtype=np.uint16))
>>> float(virtual_image(cube, Circle((4, 4), 1.5), progress=False)[0, 0])
9.0
>>> virtual_image(cube, [Circle((4, 4), 1.5), Annulus((4, 4), 2, 3)], progress=False).shape
(2, 3, 4)
>>> virtual_diffraction(cube, progress=False).shape
(9, 9)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal, Sequence, Union

import numpy as np

from ..core.calibration import Calibration
from ..core.errors import MissingCalibrationError, ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.job import Buffer, ImageJob, Job
from ..engine.patterns import median_pattern
from ..engine.run import run_job
from ..kernels.simd import BLOCK_PATTERNS, LANES, SIMD_DTYPES, mac_pair_rows, pair_row_spans, simd_available
from ..kernels.virtual import (accumulate_shifted, mac_gemm, mac_ranges, mac_shifted, max_shifted, pair_ranges,
                               split_shift)
from .detectors import (Annulus, Circle, Detector, Mask, Point, Polygon, Rectangle, detector_mask,
                        pixel_scale, reference_origin)
from .steps import RunContext, deprecated_keyword, own_record, split_engine

__all__ = ["VirtualImageParams", "VirtualDiffractionParams", "virtual_image", "virtual_diffraction",
           "virtual_image_from_params", "virtual_diffraction_from_params", "VirtualImageJob",
           "VirtualDiffractionJob", "descan_shifts", "GEMM_MIN_FILL", "GEMM_MIN_COLUMNS",
           "RANGES_MAX_COLUMNS",
           "Point", "Circle", "Annulus", "Rectangle", "Polygon", "Mask", "detector_mask"]

#: Use the GEMM over the whole detector when the detectors' bounding box covers at
#: least this fraction of it; below, the numba kernel over the box reads less.
GEMM_MIN_FILL = 0.5
#: Non-contiguous integer blocks go through the numba kernel (no conversion buffer)
#: below this many weight columns, and through tiled GEMMs from it on.
GEMM_MIN_COLUMNS = 2
#: Contiguous blocks with at most this many weight columns (one per summed
#: detector, two per centre of mass) go through :func:`mac_ranges`: one read of
#: each pattern from memory, the detectors applied from cache. With more columns
#: BLAS's blocked GEMM does fewer passes over the cached patterns.
RANGES_MAX_COLUMNS = 16


@dataclass(frozen=True, eq=False)
class VirtualImageParams(Params):
    """Record of a virtual image: detectors applied in one pass, with optional descan."""

    step = "virtual_image"
    detectors: tuple[Detector, ...] = param(doc="detector records, one image each")
    shift: Literal["none", "integer", "subpixel"] = param(
        "none", doc="follow the beam with calibration.origin_map: 'none', 'integer' or 'subpixel'")

    def validate(self) -> None:
        if not self.detectors:
            raise ParameterError("virtual_image.detectors: give at least one detector", field="detectors")


@dataclass(frozen=True, eq=False)
class VirtualDiffractionParams(Params):
    """Record of a virtual diffraction pattern: mean, max or median over (part of) the scan."""

    step = "virtual_diffraction"
    method: Literal["mean", "max", "median"] = param("mean", doc="how patterns are combined")
    region: Union[np.ndarray, Rectangle, Polygon, None] = param(
        None, doc="scan positions: a bool mask or float weights (Rx, Ry), or a Rectangle/Polygon in scan pixels")
    align: bool = param(False, doc="shift each pattern so its origin (origin_map) sits at the mean origin")
    subpixel: bool = param(False, doc="with align: bilinear sub-pixel shifts instead of whole pixels")

    def validate(self) -> None:
        if self.align and self.method == "median":
            raise ParameterError("virtual_diffraction: align works with method 'mean' or 'max', not 'median'",
                                 field="align")
        if isinstance(self.region, (Rectangle, Polygon)) and (
                self.region.units != "px" or self.region.relative_to_origin):
            raise ParameterError("virtual_diffraction.region: a scan region is in scan pixels; use units='px' "
                                 "and relative_to_origin=False", field="region")
        if isinstance(self.region, np.ndarray) and (self.region.ndim != 2 or self.region.dtype.kind == "c"):
            raise ParameterError(f"virtual_diffraction.region: expected a 2D bool or real (Rx, Ry) array, "
                                 f"got {self.region.dtype} of shape {self.region.shape}", field="region")


def descan_shifts(cal: Calibration, scan_shape: tuple[int, int], step: str) -> np.ndarray:
    """Per-position shift ``origin_map - mean(origin_map)``, shape (Rx, Ry, 2).

    >>> m = np.zeros((1, 2, 2)); m[0, 1] = 2
    >>> descan_shifts(Calibration(origin_map=m), (1, 2), "x")[..., 0].tolist()
    [[-1.0, 1.0]]
    """
    if cal.origin_map is None:
        raise MissingCalibrationError(
            "origin_map", step,
            "Measure the origin per scan position (fw.calibrate origin fitting) and set "
            "cube.calibration = cube.calibration.replace(origin_map=...), or use shift='none'.")
    m = cal.origin_map
    if m.shape[:2] != tuple(scan_shape):
        raise ShapeError(f"origin_map has scan shape {m.shape[:2]} but the cube's is {tuple(scan_shape)}")
    return m - m.reshape(-1, 2).mean(axis=0)


# --- virtual image ------------------------------------------------------------------------
class VirtualImageJob(ImageJob):
    """Applies a weight stack (and maximum supports) to each block; one image per detector.

    Parameters
    ----------
    detectors : sequence of Detector
    detector_shape : (Qx, Qy)
    calibration : Calibration
    shift : {'none', 'integer', 'subpixel'}
    scan_shape : (Rx, Ry), optional
        Checked against ``calibration.origin_map`` when shifting.

    Notes
    -----
    The accumulator (and each partial result handed to ``on_partial``) is the
    live ``(Rx, Ry, k)`` array seen as ``(k, Rx, Ry)``; positions not computed
    yet are NaN. Copy it to keep a snapshot.
    """

    name = "virtual image"

    def __init__(self, detectors: Sequence[Detector], detector_shape: tuple[int, int],
                 calibration: Calibration, shift: str = "none",
                 scan_shape: tuple[int, int] | None = None) -> None:
        cols: list[np.ndarray] = []
        self.plan: list[tuple] = []  # per detector: (response, columns, scale, relative, complex)
        sups: list[np.ndarray] = []
        for d in detectors:
            m = detector_mask(d, detector_shape, calibration)
            if d.response == "max":
                self.plan.append(("max", (len(sups),), 1.0, False, False))
                sups.append(m != 0)
                continue
            w = m.astype(np.complex128 if m.dtype.kind == "c" else np.float64)
            if d.response == "sum":
                if w.dtype.kind == "c":
                    self.plan.append(("sum", (len(cols), len(cols) + 1), 1.0, False, True))
                    cols += [w.real, w.imag]
                else:
                    self.plan.append(("sum", (len(cols),), 1.0, False, False))
                    cols.append(w)
                continue
            axis = 0 if d.response == "com_x" else 1
            scale = pixel_scale(d.units, calibration)
            coord = np.arange(detector_shape[axis], dtype=np.float64)
            if d.relative_to_origin:
                coord = coord - reference_origin(calibration, d.step)[axis]
            coord = (coord[:, None] if axis == 0 else coord[None, :]) * scale
            self.plan.append((d.response, (len(cols), len(cols) + 1), scale, d.relative_to_origin, False))
            cols += [w, w * coord]
        self.weights, self.corner = _bbox_stack(cols, detector_shape)
        # Weights of mixed sign can cancel (signed masks, CoM of them): float32
        # accumulation then loses the result, so those jobs accumulate in float64.
        self.signed = bool((self.weights < 0).any())
        self.support, self.sup_corner = _bbox_stack(sups, detector_shape)
        self.support = self.support.astype(bool)
        self.shift = shift
        self.shifts = None
        if shift != "none":
            if scan_shape is None and calibration.origin_map is not None:
                scan_shape = calibration.origin_map.shape[:2]
            self.shifts = descan_shifts(calibration, scan_shape or (0, 0), "a descan-corrected virtual image")
        Qx, Qy = detector_shape
        bx, by = self.weights.shape[1:]
        # A box covering most of the detector is widened to all of it so float
        # data are multiplied in place, without cutting tiles out of them.
        self.gemm_box = (self.corner, (bx, by))
        if bx * by >= GEMM_MIN_FILL * Qx * Qy:
            self.gemm_box = ((0, 0), (Qx, Qy))
        self.gemm_stack: dict[str, np.ndarray] = {}
        self.flat_weights: dict[str, tuple] = {}
        self._pairs: tuple | None = None
        self.detector_shape = (Qx, Qy)
        self._weights32: np.ndarray | None = None
        self.item_shape = (len(detectors),)
        self.dtype = np.complex128 if any(p[4] for p in self.plan) else np.float64

    def _shift_parts(self, rx: slice, ry: slice, n: tuple[int, int]) -> tuple[np.ndarray, ...]:
        if self.shifts is None:
            z = np.zeros(n, dtype=np.int64)
            return z, z, z.astype(np.float64), z.astype(np.float64)
        return split_shift(self.shifts[rx, ry], self.shift == "subpixel")

    def _columns(self, block: np.ndarray, parts: tuple[np.ndarray, ...]) -> np.ndarray:
        nx, ny = block.shape[:2]
        K = self.weights.shape[0]
        if self.shifts is not None or (block.dtype.kind in "ui" and K < GEMM_MIN_COLUMNS
                                       and not block.flags.c_contiguous):
            out = np.empty((nx, ny, K))
            mac_shifted(block, self._weights_as(block.dtype), *self.corner, *parts, out)
            return out
        # float32 keeps float32 and 8/16-bit data exact enough (relative ~1e-6) at
        # twice the speed; 32/64-bit integers and float64 need float64
        wide = (block.dtype.itemsize > 4 or (block.dtype.kind in "ui" and block.dtype.itemsize == 4)
                or self.signed)
        dt = np.dtype(np.float64 if wide else np.float32)
        if block.flags.c_contiguous and K <= RANGES_MAX_COLUMNS:
            flat = block.reshape(nx * ny, -1)
            out = np.empty((nx * ny, K))
            done = self._tiled_pairs(flat, dt, out)
            if done < len(flat):
                w, groups, lo, hi = self._flat_weights(dt)
                mac_ranges(flat[done:], w, groups, lo, hi, out[done:])
            out = out.reshape(nx, ny, K)
        else:
            stack = self.gemm_stack.get(dt.str)
            if stack is None:  # cast once per dtype, laid out for BLAS
                (x0, y0), (bx, by) = self.gemm_box
                cols = self._flat_weights(dt)[0].reshape((-1,) + self.detector_shape)[:, x0:x0 + bx, y0:y0 + by]
                stack = np.asfortranarray(cols.reshape(len(cols), -1).T)
                self.gemm_stack[dt.str] = stack
            out = mac_gemm(block, stack, *self.gemm_box[0], self.gemm_box[1])
        if block.dtype.kind == "f":
            # 0 * NaN = NaN in a dot product: re-run positions it poisoned with the
            # kernel, which only lets NaN inside a detector through.
            for a, b in np.argwhere(np.isnan(out).any(axis=-1)):
                mac_shifted(block[a:a + 1, b:b + 1], self.weights, *self.corner,
                            *(p[a:a + 1, b:b + 1] for p in parts), out[a:a + 1, b:b + 1])
        return out

    def _tiled_pairs(self, flat: np.ndarray, dt: np.dtype, out: np.ndarray) -> int:
        """Several detectors on float32/8-/16-bit data by :func:`mac_pair_rows`; rows done.

        One detector stays with :func:`mac_ranges` (a single sweep is bound by memory
        already); so do float64 weights, detector rows not a multiple of 8 pixels and a
        numba that cannot compile the SIMD kernel.
        """
        K = out.shape[1]
        n4 = len(flat) - len(flat) % 4
        width = self.detector_shape[1]
        if (K < 2 or dt != np.float32 or flat.dtype not in SIMD_DTYPES or width % LANES or n4 == 0
                or not simd_available()):
            return 0
        if self._pairs is None:  # made once per job
            full, groups, _, _ = self._flat_weights(np.dtype(np.float32))
            pairs = np.zeros((2 * len(groups), full.shape[1]), np.float32)
            for g, (k0, k1) in enumerate(groups):
                pairs[2 * g] = full[k0]
                if k1 >= 0:
                    pairs[2 * g + 1] = full[k1]
            self._pairs = (pairs, groups) + pair_row_spans(pairs, width)
        pairs, groups, *spans = self._pairs
        res = np.empty((n4, pairs.shape[0]))
        mac_pair_rows(flat[:n4], pairs, *spans, res, BLOCK_PATTERNS)
        for g, (k0, k1) in enumerate(groups):
            out[:n4, k0] = res[:, 2 * g]
            if k1 >= 0:
                out[:n4, k1] = res[:, 2 * g + 1]
        return n4

    def _flat_weights(self, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        """Weights over the whole flattened detector in ``dtype``, with their pair ranges."""
        got = self.flat_weights.get(dtype.str)
        if got is None:
            K, bx, by = self.weights.shape
            full = np.zeros((K,) + self.detector_shape, dtype=dtype)
            full[:, self.corner[0]:self.corner[0] + bx, self.corner[1]:self.corner[1] + by] = self.weights
            full = full.reshape(K, -1)
            got = self.flat_weights[dtype.str] = (full,) + pair_ranges(full)
        return got

    def _weights_as(self, dtype: np.dtype) -> np.ndarray:
        """Weights in float32 for small data types (twice the SIMD width), else float64."""
        if (dtype.itemsize <= 2 or dtype == np.float32) and not self.signed:
            if self._weights32 is None:
                self._weights32 = self.weights.astype(np.float32)
            return self._weights32
        return self.weights

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        if block.dtype.kind == "b":
            block = block.view(np.uint8)
        elif block.dtype.kind not in "uif":
            raise ShapeError(f"virtual images need real data; the cube holds {block.dtype}")
        elif block.dtype == np.float16:
            block = block.astype(np.float32)
        nx, ny = block.shape[:2]
        parts = self._shift_parts(rx, ry, (nx, ny))
        cols = self._columns(block, parts) if self.weights.shape[0] else None
        maxima = None
        if self.support.shape[0]:
            maxima = np.empty((nx, ny, self.support.shape[0]))
            ix, iy = split_shift(self.shifts[rx, ry], False)[:2] if self.shifts is not None else parts[:2]
            max_shifted(block, self.support, *self.sup_corner, ix, iy, maxima)
        out = np.empty((nx, ny, len(self.plan)), dtype=self.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            for k, (resp, idx, scale, relative, cplx) in enumerate(self.plan):
                if resp == "max":
                    out[..., k] = maxima[..., idx[0]]
                elif resp == "sum":
                    out[..., k] = cols[..., idx[0]] + 1j * cols[..., idx[1]] if cplx else cols[..., idx[0]]
                else:
                    com = cols[..., idx[1]] / cols[..., idx[0]]
                    if self.shifts is not None and not relative:
                        # weights moved with the beam; absolute coordinates do not
                        com = com + self._applied_shift(rx, ry, 0 if resp == "com_x" else 1) * scale
                    out[..., k] = com
        return out

    def _applied_shift(self, rx: slice, ry: slice, axis: int) -> np.ndarray:
        s = self.shifts[rx, ry, axis]
        return s if self.shift == "subpixel" else np.round(s)

    def finalize(self, acc: np.ndarray) -> np.ndarray:
        return np.moveaxis(acc, -1, 0)


def _bbox_stack(cols: list[np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Stack ``cols`` cut to the bounding box of their joint support, and its corner."""
    rows, columns = np.zeros(shape[0], bool), np.zeros(shape[1], bool)
    for c in cols:  # the box first, so only the box is stacked (no full-detector copy)
        nz = c != 0
        rows |= nz.any(axis=1)
        columns |= nz.any(axis=0)
    if not rows.any():
        return np.zeros((len(cols), 0, 0)), (0, 0)
    x0, x1 = int(rows.argmax()), shape[0] - int(rows[::-1].argmax())
    y0, y1 = int(columns.argmax()), shape[1] - int(columns[::-1].argmax())
    return np.stack([c[x0:x1, y0:y1] for c in cols]), (x0, y0)


def _as_detectors(detector_or_list: Any) -> tuple[tuple[Detector, ...], bool]:
    if isinstance(detector_or_list, Detector):
        return (detector_or_list,), True
    if isinstance(detector_or_list, (list, tuple)):
        return tuple(detector_or_list), False
    raise ParameterError(
        f"virtual_image takes a VirtualImageParams record, a detector or a list of detectors "
        f"(fw.detectors.Circle, ...) as its params, got {type(detector_or_list).__name__}", field="detectors")


def virtual_image(cube: Any, params: VirtualImageParams | Detector | Sequence[Detector] | None = None,
                  **options: Any) -> np.ndarray:
    """Virtual image(s) of ``cube`` through one or several detectors, in one pass over the data.

    Parameters
    ----------
    cube : DataCube
    params : VirtualImageParams, Detector or sequence of Detector
        The record (then the result is a stack, one image per detector), or the
        detector records themselves (:mod:`fourd_widgets.analysis.detectors`) as a
        shorthand for ``VirtualImageParams(detectors=...)``.
    **options
        Engine options of :func:`fourd_widgets.engine.run_job` (``chunk_bytes``,
        ``scheduler``, ``workers``, ``progress``, ``cancel``, ``on_partial``), and
        record field overrides: ``shift`` ('none', 'integer' or 'subpixel': descan
        correction from ``cube.calibration.origin_map``), ``detectors``.

    Returns
    -------
    (Rx, Ry) array for one detector, (k, Rx, Ry) for a list or a record; float64,
    or complex128 when a complex mask is among them.
    """
    engine, changes = split_engine(options)
    if "detector_or_list" in changes:  # the keyword before the one calling convention
        deprecated_keyword(changes, "detector_or_list", "detectors", "virtual_image")
    single = False
    if params is None or isinstance(params, VirtualImageParams):
        if params is None and "detectors" not in changes:
            raise ParameterError("virtual_image needs detectors: a VirtualImageParams record, a detector or a "
                                 "list of them (fw.detectors.Circle, ...)", field="detectors")
        p = VirtualImageParams(**changes) if params is None else own_record(params, VirtualImageParams, changes,
                                                                            "virtual_image")
    else:
        dets, single = _as_detectors(params)
        p = VirtualImageParams(**{"detectors": dets, **changes})
    out = virtual_image_from_params(cube, p, RunContext(engine=engine))
    return out[0] if single else out


def virtual_image_from_params(cube: Any, params: VirtualImageParams, context: RunContext) -> np.ndarray:
    """The registered ``virtual_image`` step: a (k, Rx, Ry) stack, one image per detector."""
    job = VirtualImageJob(params.detectors, cube.detector_shape, cube.calibration, params.shift, cube.scan_shape)
    return run_job(cube, job, **context.engine)


# --- virtual diffraction --------------------------------------------------------------------
class VirtualDiffractionJob(Job):
    """Weighted mean or maximum of (aligned) patterns.

    Buffers: ``total`` per detector pixel (summed, or maximum for 'max'),
    ``weight`` and ``count`` single values (summed); the base class merges them.
    """

    name = "virtual diffraction"

    def __init__(self, method: str, weights: np.ndarray, shifts: np.ndarray | None, subpixel: bool) -> None:
        self.method = method
        self.weights = weights
        self.shifts = shifts
        self.subpixel = subpixel

    def buffers(self, cube: Any) -> dict[str, Buffer]:
        # np.maximum propagates NaN, as np.max over the patterns would
        return {"total": Buffer("pixel", reduce="max" if self.method == "max" else "sum"),
                "weight": Buffer("single"), "count": Buffer("single", dtype=np.int64)}

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> dict[str, Any]:
        if block.dtype.kind == "b":
            block = block.view(np.uint8)
        elif block.dtype == np.float16:
            block = block.astype(np.float32)
        w = np.ascontiguousarray(self.weights[rx, ry])
        if self.shifts is None:
            z = np.zeros(w.shape, dtype=np.int64)
            parts = (z, z, z.astype(np.float64), z.astype(np.float64))
        else:
            parts = split_shift(self.shifts[rx, ry], self.subpixel)
        total = np.full(block.shape[2:], -np.inf if self.method == "max" else 0.0)
        count = accumulate_shifted(block, w, *parts, total, self.method == "max")
        # a chunk without selected positions leaves total at the reduction's start: a no-op merge
        return {"total": total, "weight": float(w.sum()), "count": int(count)}

    def finalize(self, acc: dict) -> np.ndarray:
        total, wsum, count = acc["total"], float(acc["weight"]), int(acc["count"])
        if self.method == "max":
            return np.where(np.isneginf(total), 0.0, total) if count else np.zeros_like(total)
        return total / wsum if wsum else np.zeros_like(total)


def _region_weights(region: Any, scan_shape: tuple[int, int]) -> np.ndarray:
    if region is None:
        return np.ones(scan_shape)
    if isinstance(region, (Rectangle, Polygon)):
        return detector_mask(region, scan_shape).astype(np.float64)
    w = np.asarray(region)
    if w.shape != tuple(scan_shape):
        raise ShapeError(f"virtual_diffraction.region must have the scan shape {tuple(scan_shape)}, got {w.shape}")
    return w.astype(np.float64)


def virtual_diffraction(cube: Any, params: VirtualDiffractionParams | None = None, *args: Any,
                        **options: Any) -> np.ndarray:
    """Mean, maximum or median diffraction pattern over the scan or a region of it.

    Parameters
    ----------
    cube : DataCube
    params : VirtualDiffractionParams, optional
        Default ``VirtualDiffractionParams()`` (the mean over the scan).
    **options
        Engine options of :func:`fourd_widgets.engine.run_job` (the median runs
        :func:`fourd_widgets.engine.median_pattern`, one pass per detector strip
        within :data:`~fourd_widgets.core.datacube.DEFAULT_MEMORY_BUDGET`), and
        record field overrides:

        * ``method`` ('mean', 'max', 'median');
        * ``region``: None, an (Rx, Ry) bool mask of positions, float weights
          (weighted mean; for max and median the non-zero positions), or a
          Rectangle/Polygon in scan pixels (pixel-centre test);
        * ``align``: shift each pattern so its origin (``calibration.origin_map``)
          lands on the mean origin first (mean and max only); pixels shifted in
          from outside the detector count as zero;
        * ``subpixel``: with ``align``, bilinear sub-pixel shifts.

        The older positional form ``virtual_diffraction(cube, method, region, align)``
        still works, with a DeprecationWarning.

    Returns
    -------
    (Qx, Qy) float64 array
    """
    engine, changes = split_engine(options)
    if isinstance(params, str) or args:
        warnings.warn("virtual_diffraction(cube, method, region, align) is deprecated; use "
                      "virtual_diffraction(cube, method=..., region=..., align=...) or pass a "
                      "VirtualDiffractionParams", DeprecationWarning, stacklevel=2)
        for name, value in zip(("method", "region", "align"), (params, *args)):
            if name in changes:
                raise TypeError(f"virtual_diffraction() got multiple values for argument {name!r}")
            changes[name] = value
        params = None
    p = own_record(params, VirtualDiffractionParams, changes, "virtual_diffraction")
    return virtual_diffraction_from_params(cube, p, RunContext(engine=engine))


def virtual_diffraction_from_params(cube: Any, params: VirtualDiffractionParams, context: RunContext) -> np.ndarray:
    """The registered ``virtual_diffraction`` step."""
    weights = _region_weights(params.region, cube.scan_shape)
    if params.method != "mean":
        weights = (weights != 0).astype(np.float64)
    if not weights.any():
        raise ShapeError("virtual_diffraction: the region selects no scan position")
    if params.method == "median":
        # several passes (detector strips) on the engine, with the same options;
        # a median has no partial results to paint
        engine = {k: v for k, v in context.engine.items() if k != "on_partial"}
        return median_pattern(cube, weights != 0, **engine)
    shifts = None
    if params.align:
        # reading each pattern at q + (origin - mean) puts its origin on the mean
        shifts = descan_shifts(cube.calibration, cube.scan_shape, "aligned virtual diffraction")
    job = VirtualDiffractionJob(params.method, weights, shifts, params.subpixel)
    return run_job(cube, job, **context.engine)

