"""Caches that answer "virtual image for this detector" while a detector is dragged.

:class:`DragCache` (cube fits the memory budget)
    One pass over the cube builds a detector-major prefix-sum cache
    (:mod:`fourd_widgets.kernels.interactive`): ``S[qx, k, :]`` is the running sum
    along detector y of every pattern, a contiguous vector over the scan. A
    detector whose pixels form, per detector row, runs ``[a, b)`` costs two
    vector reads per run, whatever its area: a circle of radius ``r`` reads about
    ``4 r`` planes. Membership is taken from
    :func:`~fourd_widgets.analysis.detectors.detector_mask` (pixel-centre test),
    so the image equals :func:`~fourd_widgets.analysis.virtual.virtual_image`
    exactly for integer data and to rounding for float data.

    Any weight image works the same way (its row differences are the terms), so
    :class:`~fourd_widgets.analysis.detectors.Mask` detectors cost one plane per
    place where a weight changes along a row. Successive queries are
    incremental when that is cheaper: only the terms that changed since the
    previous query are applied to the previous image (painting a few pixels into
    a large mask costs a few planes). Integer data with integer weights stay
    exact; float data are recomputed in full every :data:`FLOAT_INCREMENTAL_LIMIT`
    steps to bound the rounding drift.

:class:`PreviewCache` (cube whose cache exceeds the budget)
    The same cache over a binned copy (detector first, then scan), binned on
    the fly while the cube is streamed once. ``image()`` gives a
    :class:`DragResult` flagged ``is_preview=True`` with its ``binning``;
    ``full()`` computes the exact image through the chunked
    :func:`~fourd_widgets.analysis.virtual.virtual_image` (for the release).

Budget: the cache needs twice the bytes of a 16-bit cube (uint32 prefix sums;
x2 again with ``moments``; float data: 8 bytes a value). A :class:`DragCache`
over budget is refused with an error that names :class:`PreviewCache`;
:func:`interactive_cache` picks the exact cache when it fits, else the preview.
Where the cube lives does not matter: a cube on disk that fits gets the exact
cache (the build reads it once). The worker thread where the newest query wins
is :class:`fourd_widgets.tools.worker.LatestOnly`.

Responses and their cost
------------------------
* ``'sum'``: the run terms on ``S``.
* ``'com_x'``: the same terms weighted by ``qx``, in the same pass.
* ``'com_y'``: with ``moments=True`` the run terms on a second cache
  ``M[qx, k] = sum(q * I[qx, q], q <= k)`` (twice the memory); without it,
  the terms of ``w * qy``, one plane per pixel (exact, but the cost grows with
  the detector's area).
* ``'max'`` and descan (``shift != 'none'``): not served by the cache; computed
  by the chunked reference :func:`~fourd_widgets.analysis.virtual.virtual_image`
  (exact, full-pass speed).

NaN pixels
----------
A prefix sum would carry a NaN along the rest of its row, so the cache stores NaN
as 0 and keeps the NaN positions apart (grouped by detector pixel). An image
pixel is NaN exactly when its detector gives non-zero weight to a pixel that is
NaN in that pattern, as in :func:`~fourd_widgets.analysis.virtual.virtual_image`.

Threads
-------
Building and queries run numba kernels with the GIL released; ``build`` takes
``progress`` and ``cancel`` and is meant for a worker thread. Queries on one
cache are serialised by a lock (the incremental state is shared).

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.core import DataCube
>>> from fourd_widgets.analysis.detectors import Circle
>>> cube = DataCube(np.ones((3, 4, 9, 9), dtype=np.uint16))
>>> cache = DragCache(cube).build(progress=False)
>>> float(cache.image(Circle((4, 4), 1.5))[0, 0])
9.0
>>> preview = PreviewCache(cube, detector_bin=3).build(progress=False)
>>> r = preview.image(Circle((4, 4), 1.5))
>>> r.is_preview, r.binning, r.image.shape
(True, (1, 1, 3, 3), (3, 4))
"""

from __future__ import annotations

import math
import mmap
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.calibration import Calibration
from ..core.datacube import DEFAULT_CHUNK_BYTES, DataCube
from ..core.errors import CancelledError, ParameterError, ShapeError
from ..engine.progress import make_progress
from ..kernels.interactive import (
    apply_terms,
    apply_terms_serial,
    bin_block,
    prefix_block,
)
from .detectors import Detector, detector_mask, pixel_scale, reference_origin

__all__ = [
    "FLOAT_INCREMENTAL_LIMIT",
    "PARALLEL_MIN_READS",
    "DragCache",
    "DragResult",
    "PreviewCache",
    "default_budget",
    "interactive_cache",
]

#: Consecutive incremental updates allowed on float data before a full recompute.
FLOAT_INCREMENTAL_LIMIT = 16
#: Cache values a query must read before it runs on all numba threads. Below,
#: waking the thread pool costs more than it saves: on the 2-core benchmark
#: machine (shared with other jobs) the serial kernel won for every shape of the
#: drag (up to ~240 planes, 60 M values), so only mask queries with thousands
#: of terms go parallel.
PARALLEL_MIN_READS = 2**27
_BUDGET_FRACTION = 0.5
_POPULATE_STEP = 2**26


def default_budget() -> int:
    """Default cache budget: half of the memory available now (``psutil``).

    >>> default_budget() > 0
    True
    """
    import psutil

    return int(psutil.virtual_memory().available * _BUDGET_FRACTION)


def _as_cube(cube: Any) -> DataCube:
    if isinstance(cube, DataCube):
        return cube
    return DataCube(cube)


def _prefix_dtype(dtype: np.dtype, Qy: int, moments: bool, max_value: float | None) -> np.dtype:
    """Narrowest dtype holding every prefix (and moment) sum of a row exactly."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(np.float64)
    if dtype.kind == "b":
        top, signed = 1, False
    elif dtype.kind in "ui":
        info = np.iinfo(dtype)
        top = max(abs(int(info.min)), int(info.max))
        signed = dtype.kind == "i"
    else:
        raise ShapeError(f"virtual images need real data; the cube holds {dtype}")
    if max_value is not None:
        top = min(top, math.ceil(abs(max_value)))
    bound = top * (max(Qy, Qy * (Qy - 1) // 2) if moments else Qy)  # largest prefix or moment
    if bound < 2**31 or (not signed and bound < 2**32):
        return np.dtype(np.int32 if signed else np.uint32)
    # int64 rows are exact up to 2**63; sums of 64-bit data beyond that wrap (documented).
    return np.dtype(np.int64)


def _layout(cube: DataCube, sr: int, sq: int) -> tuple[tuple[int, int, int, int], np.dtype, float | None]:
    """Cached shape, dtype of a binned block and the largest value it can hold.

    Binning sums ``sr x sr`` scan positions and ``sq x sq`` pixels (remainders
    trimmed) into float64 for float data, else the narrowest of uint32/int32/int64.
    """
    Rx, Ry, Qx, Qy = cube.shape
    shape = (Rx // sr, Ry // sr, Qx // sq, Qy // sq)
    if min(shape) < 1:
        raise ShapeError(f"binning scan by {sr} and detector by {sq} leaves nothing of a {cube.shape} cube")
    dtype = np.dtype(cube.dtype)
    factor = sr * sr * sq * sq
    if dtype.kind == "f":
        return shape, (dtype if factor == 1 and dtype != np.float16 else np.dtype(np.float64)), None
    if dtype.kind == "b":
        top, signed = factor, False
        plain = np.dtype(np.uint8)
    elif dtype.kind in "ui":
        info = np.iinfo(dtype)
        top, signed = max(abs(int(info.min)), int(info.max)) * factor, dtype.kind == "i"
        plain = dtype
    else:
        raise ShapeError(f"virtual images need real data; the cube holds {dtype}")
    if factor == 1:
        return shape, plain, float(top)
    if top < 2**31 or (not signed and top < 2**32):
        return shape, np.dtype(np.int32 if signed else np.uint32), float(top)
    return shape, np.dtype(np.int64), float(top)


def _cache_bytes(cube: DataCube, sr: int, sq: int, moments: bool) -> int:
    shape, block_dtype, top = _layout(cube, sr, sq)
    Rx, Ry, Qx, Qy = shape
    return (2 if moments else 1) * Qx * Qy * Rx * Ry * _prefix_dtype(block_dtype, Qy, moments, top).itemsize


def _alloc(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised array, on transparent huge pages where the OS offers them.

    The cache is written once and then read plane by plane; 2 MiB pages make the
    first touch several times cheaper and spare the TLB during queries. Where the
    kernel offers ``MADV_POPULATE_WRITE`` (Linux 5.14+) the pages are faulted in
    up front, 64 MiB per call so the GIL is not held for long, which is several
    times faster than faulting them one by one from the build kernel.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes >= _POPULATE_STEP and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            buf.madvise(mmap.MADV_HUGEPAGE)
        except (OSError, ValueError):
            return np.empty(shape, dtype=dtype)
        populate = getattr(mmap, "MADV_POPULATE_WRITE", 23 if sys.platform.startswith("linux") else None)
        try:
            for start in range(0, nbytes if populate else 0, _POPULATE_STEP):
                buf.madvise(populate, start, min(_POPULATE_STEP, nbytes - start))
        except (OSError, ValueError):
            pass  # older kernels: pages fault in as the build writes them
        return np.frombuffer(buf, dtype=dtype).reshape(shape)
    return np.empty(shape, dtype=dtype)


def _row_diff(w: np.ndarray) -> np.ndarray:
    """``D[qx, k] = w[qx, k] - w[qx, k + 1]`` with ``w[qx, Qy] = 0``: the terms of ``w`` on ``S``."""
    d = np.array(w, dtype=np.float64)
    d[:, :-1] -= w[:, 1:]
    return d


@dataclass(frozen=True)
class DragResult:
    """One virtual image from an interactive cache.

    Attributes
    ----------
    image : ndarray
        ``(Rx // bx, Ry // by)`` float64 (complex128 for a complex mask). For a
        preview, ``'sum'`` is scaled to one full-resolution scan position
        (mean over each scan bin), so its contrast matches the exact image.
    is_preview : bool
        True when computed from binned data (an approximation).
    binning : (int, int, int, int)
        Binning factors ``(scan x, scan y, detector x, detector y)``; all 1 when exact.
    scan_shape : (int, int)
        Scan shape of the full-resolution cube.
    """

    image: np.ndarray
    is_preview: bool
    binning: tuple[int, int, int, int]
    scan_shape: tuple[int, int]

    def expanded(self) -> np.ndarray:
        """The image on the full scan grid: each binned pixel repeated, trimmed edges NaN.

        >>> r = DragResult(np.arange(2.0).reshape(1, 2), True, (2, 2, 1, 1), (3, 4))
        >>> r.expanded().tolist()[0], bool(np.isnan(r.expanded()[2, 0]))
        ([0.0, 0.0, 1.0, 1.0], True)
        """
        bx, by = self.binning[:2]
        if (bx, by) == (1, 1):
            return self.image
        big = np.repeat(np.repeat(self.image, bx, axis=0), by, axis=1)
        out = np.full(self.scan_shape, np.nan, dtype=big.dtype)
        out[:big.shape[0], :big.shape[1]] = big
        return out


class _Channel:
    """Incremental state of one group of outputs: last coefficients and last sums."""

    __slots__ = ("coef", "out", "steps")

    def __init__(self, coef: np.ndarray, out: np.ndarray) -> None:
        self.coef = coef
        self.out = out
        self.steps = 0


class _PrefixCache:
    """Storage and queries shared by :class:`DragCache` and :class:`PreviewCache`.

    Holds the prefix sums of ``cube`` binned by ``binning = (scan, detector)``
    (``(1, 1)``: the data as they are); ``shape`` is the cached (binned) shape.
    """

    def __init__(self, cube: DataCube, binning: tuple[int, int], moments: bool, chunk_bytes: int | None) -> None:
        self.cube = cube
        self.binning = binning
        self.moments = bool(moments)
        self.chunk_bytes = chunk_bytes
        self.shape, self._block_dtype, max_value = _layout(cube, *binning)
        self._dtype = _prefix_dtype(self._block_dtype, self.shape[3], self.moments, max_value)
        self._S: np.ndarray | None = None
        self._M: np.ndarray | None = None
        self._clear_nans()
        self._state: dict[str, _Channel] = {}
        self._lock = threading.RLock()

    @property
    def built(self) -> bool:
        """True once :meth:`build` has finished."""
        return self._S is not None

    @property
    def nbytes(self) -> int:
        """Memory held by the cache now (0 before :meth:`build`)."""
        if self._S is None:
            return 0
        arrays = (self._S, self._M, self._nan_ptr, self._nan_pos, self._nan_pix)
        return sum(a.nbytes for a in arrays if a is not None)

    # --- build ----------------------------------------------------------------------------
    def build(self, progress: Any = None, cancel: threading.Event | None = None) -> DragCache:
        """Read the cube once and fill the cache (idempotent; thread-safe).

        Parameters
        ----------
        progress : None, bool or callable(done, total), optional
            As in :func:`fourd_widgets.engine.run_job` (``False``: silent).
        cancel : threading.Event, optional
            Checked between blocks; when set, the partial cache is dropped and
            :class:`~fourd_widgets.errors.CancelledError` raised.

        Returns
        -------
        DragCache
            ``self``, for chaining.
        """
        with self._lock:
            if self.built:
                return self
            self._fill(progress, cancel)
        return self

    def _fill(self, progress: Any, cancel: threading.Event | None) -> None:
        Rx, Ry, Qx, Qy = self.shape
        sr, sq = self.binning
        S = _alloc((Qx, Qy, Rx * Ry), self._dtype)
        M = _alloc(S.shape, self._dtype) if self.moments else S[:1, :1, :1]
        slices = self._slices()
        report = make_progress(progress, len(slices), "drag cache" if sr * sq == 1 else "preview cache")
        pix: list[np.ndarray] = []
        pos: list[np.ndarray] = []
        try:
            for i, (rx, ry) in enumerate(slices):
                if cancel is not None and cancel.is_set():
                    raise CancelledError("building the interactive cache was cancelled; nothing was kept")
                block = self.cube.read(rx, ry)
                if block.dtype.kind == "b":
                    block = block.view(np.uint8)
                elif block.dtype == np.float16:
                    block = block.astype(np.float32)
                if sr * sq > 1:
                    binned = np.empty((block.shape[0] // sr, Ry, Qx, Qy), self._block_dtype)
                    bin_block(block, sr, sq, binned)
                    block = binned
                block = np.ascontiguousarray(block).reshape(-1, Qx, Qy)
                n0 = rx.start // sr * Ry + ry.start
                prefix_block(block, S, M, n0, self.moments)
                if block.dtype.kind == "f":
                    flat = np.flatnonzero(np.isnan(block))
                    if flat.size:
                        pix.append(flat % (Qx * Qy))
                        pos.append(n0 + flat // (Qx * Qy))
                report.update(i + 1)
        finally:
            report.close()
        self._clear_nans()
        self._store_nans(pix, pos, Qx * Qy)
        self._S, self._M = S, (M if self.moments else None)

    def _slices(self) -> list[tuple[slice, slice]]:
        """Source blocks to read: the cube's own chunking, or whole groups of ``sr`` scan rows."""
        sr, _ = self.binning
        if self.binning == (1, 1):
            return self.cube.chunk_slices(self.chunk_bytes)
        Rx, Ry = self.shape[:2]
        group = sr * Ry * sr * self.cube.pattern_nbytes  # one binned scan row
        rows = max(1, int(self.chunk_bytes or DEFAULT_CHUNK_BYTES) // group)
        return [(slice(r * sr, min(Rx, r + rows) * sr), slice(0, Ry * sr)) for r in range(0, Rx, rows)]

    def _clear_nans(self) -> None:
        self._nan_ptr = np.zeros(0, np.int64)  # CSR over detector pixels -> scan positions
        self._nan_pos = np.zeros(0, np.int64)
        self._nan_pix = np.zeros(0, np.int64)  # pixels that are NaN somewhere

    def _store_nans(self, pix: list[np.ndarray], pos: list[np.ndarray], npix: int) -> None:
        if not pix:
            return
        p = np.concatenate(pix)
        n = np.concatenate(pos)
        order = np.argsort(p, kind="stable")
        p, n = p[order], n[order]
        self._nan_ptr = np.searchsorted(p, np.arange(npix + 1)).astype(np.int64)
        self._nan_pos = n
        self._nan_pix = np.unique(p)

    def release(self) -> None:
        """Drop the cache (memory is freed; :meth:`build` can fill it again)."""
        with self._lock:
            self._S = self._M = None
            self._state.clear()
            self._clear_nans()

    # --- queries --------------------------------------------------------------------------
    def _finish(self, w: np.ndarray, det: Detector, cal: Calibration,
                affine: tuple[float, float], shape: tuple[int, int]) -> np.ndarray:
        """Response of weights ``w`` (on this cache's grid) in the detector's units and frame.

        ``affine = (a, b)`` maps this grid's pixel index to full-resolution pixels
        (``a * q + b``; ``(1, 0)`` unless the cache holds binned data).
        """
        if w.dtype.kind == "c":
            return (self.weighted(w.real, "sum")[0] + 1j * self.weighted(w.imag, "sum")[0]).reshape(shape)
        sums = self.weighted(np.asarray(w, dtype=np.float64), det.response)
        if det.response == "sum":
            return sums[0].reshape(shape)
        axis = 0 if det.response == "com_x" else 1
        origin = reference_origin(cal, det.step)[axis] if det.relative_to_origin else 0.0
        a, b = affine
        scale = pixel_scale(det.units, cal)
        with np.errstate(invalid="ignore", divide="ignore"):
            com = (a * sums[1] + (b - origin) * sums[0]) * scale / sums[0]
        return com.reshape(shape)

    def weighted(self, w: np.ndarray, response: str = "sum") -> list[np.ndarray]:
        """Raw sums over the flattened scan for real weights ``w`` on this cache's grid.

        Parameters
        ----------
        w : (Qx, Qy) real array
        response : {'sum', 'com_x', 'com_y'}

        Returns
        -------
        list of (Rx*Ry,) float64 arrays
            ``[sum(w I)]`` for 'sum'; ``[sum(w I), sum(w q I)]`` for a centre of
            mass (``q`` the pixel index along its axis). NaN where ``w`` is
            non-zero on a NaN pixel of that pattern.
        """
        if response not in ("sum", "com_x", "com_y"):
            raise ParameterError(f"the drag cache serves 'sum', 'com_x' and 'com_y', not {response!r}",
                                 field="response")
        Qx, Qy = self.shape[2:]
        if w.shape != (Qx, Qy):
            raise ShapeError(f"weights of shape {w.shape} do not match the detector {(Qx, Qy)}")
        with self._lock:
            if not self.built:
                self._fill(False, None)
            d = _row_diff(w)
            if response == "sum":
                out = list(self._apply("S:sum", self._S, d[None]))
            elif response == "com_x":
                qx = np.arange(Qx, dtype=np.float64)[:, None]
                out = list(self._apply("S:com_x", self._S, np.stack([d, d * qx])))
            elif self._M is not None:
                out = [self._apply("S:sum", self._S, d[None])[0], self._apply("M:com_y", self._M, d[None])[0]]
            else:
                qy = np.arange(Qy, dtype=np.float64)[None, :]
                out = list(self._apply("S:com_y", self._S, np.stack([d, _row_diff(w * qy)])))
            bad = self._nan_hits(w)
        if bad.size:
            for o in out:
                o[bad] = np.nan
        return out

    def _apply(self, key: str, cache: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """Sums of the coefficient images ``coef`` (C, Qx, Qy) on ``cache``, incrementally if cheaper."""
        prev = self._state.get(key)
        full_terms = np.count_nonzero(coef.any(axis=0))
        exact = cache.dtype.kind != "f" and bool(np.all(coef == np.round(coef)))
        if prev is not None and prev.coef.shape == coef.shape and (exact or prev.steps < FLOAT_INCREMENTAL_LIMIT):
            delta = coef - prev.coef
            if np.count_nonzero(delta.any(axis=0)) < full_terms:
                out = prev.out + _terms(cache, delta)
                prev.coef, prev.out = coef, out
                prev.steps += 1
                return out.copy()
        out = _terms(cache, coef)
        self._state[key] = _Channel(coef, out)
        return out.copy()

    def _nan_hits(self, w: np.ndarray) -> np.ndarray:
        """Flat scan indices where ``w`` weighs a NaN pixel."""
        if not self._nan_pix.size:
            return self._nan_pos
        hit = self._nan_pix[w.ravel()[self._nan_pix] != 0]
        if not hit.size:
            return self._nan_pos[:0]
        return np.concatenate([self._nan_pos[self._nan_ptr[p]:self._nan_ptr[p + 1]] for p in hit])


class DragCache(_PrefixCache):
    """Detector-major prefix-sum cache of a cube: any detector's image in a few planes.

    Parameters
    ----------
    cube : DataCube or (Rx, Ry, Qx, Qy) array
        Any backing (memory, memory map, HDF5, ...); it is read once by :meth:`build`.
    budget_bytes : int, optional
        Memory the cache may use; default :func:`default_budget`. A cube whose
        cache (:meth:`required_bytes`) exceeds it is refused with a
        :class:`~fourd_widgets.errors.ParameterError` that points to
        :class:`PreviewCache` / :func:`interactive_cache`.
    moments : bool
        Also cache the first moment along detector y (twice the memory) so that
        ``'com_y'`` costs as little as ``'sum'``.
    chunk_bytes : int, optional
        Size of the blocks :meth:`build` streams (default of :meth:`DataCube.chunk_slices`).

    Notes
    -----
    Cache size: ``Qx * Qy * Rx * Ry`` values (x2 with ``moments``) of uint32 for
    8/16-bit unsigned data, int32 for 8/16-bit signed, int64 for wider integers,
    float64 for float data. The benchmark cube (256x256 scan of 128x128 uint16,
    2 GiB) needs 4 GiB.
    """

    def __init__(self, cube: Any, *, budget_bytes: int | None = None, moments: bool = False,
                 chunk_bytes: int | None = None) -> None:
        cube = _as_cube(cube)
        need = self.required_bytes(cube, moments=moments)
        budget = default_budget() if budget_bytes is None else int(budget_bytes)
        if need > budget:
            raise ParameterError(
                f"a drag cache of this {cube.shape} {cube.dtype} cube needs {need / 2**30:.2f} GiB, "
                f"more than the budget of {budget / 2**30:.2f} GiB; use PreviewCache (binned preview while "
                "dragging) or interactive_cache(cube, budget_bytes), which chooses", field="budget_bytes")
        super().__init__(cube, (1, 1), moments, chunk_bytes)
        self.budget_bytes = budget

    @staticmethod
    def required_bytes(cube: Any, *, moments: bool = False) -> int:
        """Bytes the cache of ``cube`` takes (NaN positions of float data come on top).

        >>> DragCache.required_bytes(np.zeros((256, 256, 128, 128), np.uint16)) / 2**30
        4.0
        """
        return _cache_bytes(_as_cube(cube), 1, 1, moments)

    @classmethod
    def fits(cls, cube: Any, budget_bytes: int | None = None, *, moments: bool = False) -> bool:
        """Whether the cache of ``cube`` fits ``budget_bytes`` (default :func:`default_budget`).

        >>> DragCache.fits(np.zeros((4, 4, 8, 8), np.uint16), 4096)
        True
        """
        budget = default_budget() if budget_bytes is None else int(budget_bytes)
        return cls.required_bytes(cube, moments=moments) <= budget

    def image(self, detector: Detector, calibration: Calibration | None = None, *,
              shift: str = "none") -> np.ndarray:
        """The exact virtual image of one detector, ``(Rx, Ry)`` float64.

        Parameters
        ----------
        detector : Detector
            Any record of :mod:`fourd_widgets.analysis.detectors`.
        calibration : Calibration, optional
            Default: the cube's.
        shift : {'none', 'integer', 'subpixel'}
            Descan correction; anything but 'none' goes through the reference path.

        Returns
        -------
        (Rx, Ry) ndarray
            Equal to ``fw.virtual_image(cube, detector)``; complex128 for a complex mask.
        """
        cal = self.cube.calibration if calibration is None else calibration
        if shift != "none" or detector.response == "max":
            return _reference(self.cube, detector, cal, shift)
        w = detector_mask(detector, self.cube.detector_shape, cal)
        return self._finish(w, detector, cal, (1.0, 0.0), self.cube.scan_shape)

    def query(self, detector: Detector, calibration: Calibration | None = None) -> DragResult:
        """:meth:`image` wrapped as a :class:`DragResult` (never a preview)."""
        return DragResult(self.image(detector, calibration), False, (1, 1, 1, 1), self.cube.scan_shape)

    full = query


def _terms(cache: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``sum(coef[c] * cache)`` over the detector for every scan position: (C, N)."""
    qx, k = np.nonzero(coef.any(axis=0))
    out = np.empty((coef.shape[0], cache.shape[2]))
    if qx.size == 0:
        out[:] = 0.0
        return out
    c = np.ascontiguousarray(coef[:, qx, k])
    kernel = apply_terms if qx.size * cache.shape[2] >= PARALLEL_MIN_READS else apply_terms_serial
    kernel(cache, qx.astype(np.int64), k.astype(np.int64), c, out)
    return out


def _reference(cube: DataCube, detector: Detector, cal: Calibration, shift: str, **engine: Any) -> np.ndarray:
    """The exact image through the chunked engine (``fw.virtual_image``)."""
    from .virtual import virtual_image

    if cal is not cube.calibration:
        cube = cube.with_calibration(cal)
    engine.setdefault("progress", False)
    return virtual_image(cube, detector, shift=shift, **engine)


class PreviewCache:
    """A :class:`DragCache` over a binned copy of the cube: fast approximate images while dragging.

    Parameters
    ----------
    cube : DataCube or array
        Any size and backing; read once (streamed) by :meth:`build`.
    budget_bytes : int, optional
        Memory the binned cache may use (default :func:`default_budget`).
    scan_bin, detector_bin : int, optional
        Binning factors; chosen from the budget when not given: the smallest
        scan binning for which a detector binning of 1, 2 or 4 fits, with the
        smallest such detector binning.
    moments : bool
        As in :class:`DragCache`.
    chunk_bytes : int, optional
        Block size for streaming the cube.

    Notes
    -----
    The preview integrates the full-resolution detector mask averaged over each
    detector bin (pixels that are partly covered count by their covered
    fraction; remainder rows trimmed by the binning are not seen) and divides
    ``'sum'`` by the scan bin area. Centres of mass use bin centres. ``'max'``
    and descan have no preview: :meth:`image` computes them exactly (slow).
    """

    def __init__(self, cube: Any, *, budget_bytes: int | None = None, scan_bin: int | None = None,
                 detector_bin: int | None = None, moments: bool = False, chunk_bytes: int | None = None) -> None:
        self.cube = _as_cube(cube)
        budget = default_budget() if budget_bytes is None else int(budget_bytes)
        sr, sq = _choose_binning(self.cube, budget, moments, scan_bin, detector_bin)
        self.binning = (sr, sr, sq, sq)
        self._cache = _PrefixCache(self.cube, (sr, sq), moments, chunk_bytes)

    @property
    def built(self) -> bool:
        """True once :meth:`build` has finished."""
        return self._cache.built

    @property
    def nbytes(self) -> int:
        """Memory held by the binned cache."""
        return self._cache.nbytes

    def build(self, progress: Any = None, cancel: threading.Event | None = None) -> PreviewCache:
        """Stream the cube once and fill the binned cache (see :meth:`DragCache.build`)."""
        self._cache.build(progress, cancel)
        return self

    def release(self) -> None:
        """Drop the binned cache."""
        self._cache.release()

    def image(self, detector: Detector, calibration: Calibration | None = None) -> DragResult:
        """The preview image (``is_preview=True``) from the binned cache.

        ``'max'`` responses are computed exactly instead (``is_preview=False``).
        """
        cal = self.cube.calibration if calibration is None else calibration
        if detector.response == "max":
            return self.full(detector, cal)
        sr, _, sq, _ = self.binning
        Qx, Qy = self.cube.detector_shape
        w = detector_mask(detector, (Qx, Qy), cal)
        nx, ny = Qx // sq, Qy // sq
        wb = w[:nx * sq, :ny * sq].reshape(nx, sq, ny, sq).mean(axis=(1, 3))
        img = self._cache._finish(wb, detector, cal, (float(sq), (sq - 1) / 2.0), self._cache.shape[:2])
        if detector.response == "sum" and sr > 1:
            img = img / (sr * sr)
        return DragResult(img, True, self.binning, self.cube.scan_shape)

    query = image

    def full(self, detector: Detector, calibration: Calibration | None = None, *, shift: str = "none",
             **engine_options: Any) -> DragResult:
        """The exact image through the chunked :func:`~fourd_widgets.analysis.virtual.virtual_image`.

        ``engine_options`` (``progress``, ``cancel``, ``on_partial``, ``workers``, ...)
        go to :func:`fourd_widgets.engine.run_job`; run it in a worker thread.
        """
        cal = self.cube.calibration if calibration is None else calibration
        img = _reference(self.cube, detector, cal, shift, **engine_options)
        return DragResult(img, False, (1, 1, 1, 1), self.cube.scan_shape)


def _choose_binning(cube: DataCube, budget: int, moments: bool, scan_bin: int | None,
                    detector_bin: int | None) -> tuple[int, int]:
    Rx, Ry, Qx, Qy = cube.shape
    scans = [scan_bin] if scan_bin else range(1, max(Rx, Ry) + 1)
    dets = [detector_bin] if detector_bin else [f for f in (1, 2, 4) if f <= min(Qx, Qy)]
    for sr in scans:
        for sq in dets:
            if sr > min(Rx, Ry) or sq > min(Qx, Qy):
                continue
            if _cache_bytes(cube, sr, sq, moments) <= budget:
                return sr, sq
    raise ParameterError(f"no binning of the {cube.shape} cube fits a preview cache in {budget} bytes; "
                         "raise budget_bytes or give scan_bin/detector_bin", field="budget_bytes")


def interactive_cache(cube: Any, budget_bytes: int | None = None, *, moments: bool = False,
                      **options: Any) -> DragCache | PreviewCache:
    """The exact :class:`DragCache` when it fits ``budget_bytes``, else a :class:`PreviewCache`.

    Neither is built yet: call ``.build(progress=..., cancel=...)`` in a worker thread.

    >>> c = interactive_cache(np.zeros((8, 8, 16, 16), np.uint16), budget_bytes=2**20)
    >>> type(c).__name__
    'DragCache'
    >>> type(interactive_cache(np.zeros((8, 8, 16, 16), np.uint16), budget_bytes=2**14)).__name__
    'PreviewCache'
    """
    cube = _as_cube(cube)
    budget = default_budget() if budget_bytes is None else int(budget_bytes)
    if DragCache.fits(cube, budget, moments=moments):
        return DragCache(cube, budget_bytes=budget, moments=moments, **options)
    return PreviewCache(cube, budget_bytes=budget, moments=moments, **options)
