"""Whole-scan diffraction patterns as engine passes: mean, maximum, and median in detector strips.

These are what :meth:`DataCube.mean_pattern <fourd_widgets.core.DataCube.mean_pattern>`,
``max_pattern`` and ``median_pattern`` run. ``core`` sits below the engine in the
layers, so it cannot import this module; instead the engine registers it with
:func:`fourd_widgets.core.datacube.set_pattern_passes` when it is imported (which
``import fourd_widgets`` always does). Every pattern pass thereby gets threads,
Dask, progress, cancel and partial results.

The mean and maximum are one pass with per-pixel buffers. The median cannot be
merged from chunks: it runs one pass per strip of detector rows, each holding
the selected patterns' strip, ``n x strip_rows x Qy x itemsize`` bytes, within
``memory_budget`` (a strip is at least one detector row, so the budget is
exceeded only when a single row of all selected patterns does not fit).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.datacube import DEFAULT_MEMORY_BUDGET, set_pattern_passes
from ..core.errors import ParameterError, ShapeError
from .job import Buffer, Job
from .run import run_job, run_passes

__all__ = ["MeanPatternJob", "MaxPatternJob", "MedianStripJob", "mean_pattern", "max_pattern",
           "median_pattern", "median_strips"]


def _mask(cube: Any, region: Any) -> np.ndarray | None:
    if region is None:
        return None
    mask = np.asarray(region)
    if mask.shape != cube.scan_shape:
        raise ShapeError(f"a real-space region mask must have the scan shape {cube.scan_shape}, got {mask.shape}")
    return mask.astype(bool)


def _selected(block: np.ndarray, mask: np.ndarray | None, rx: slice, ry: slice) -> np.ndarray:
    """The block's patterns at the positions ``mask`` selects, as (n, qx, qy)."""
    data = block.reshape((-1,) + block.shape[2:])
    return data if mask is None else data[mask[rx, ry].ravel()]


class MeanPatternJob(Job):
    """Sum and count of patterns per detector pixel, optionally leaving non-finite values out."""

    name = "mean pattern"

    def __init__(self, mask: np.ndarray | None = None, ignore_nan: bool = False) -> None:
        self.mask = mask
        self.ignore_nan = ignore_nan

    def _skips(self, dtype: np.dtype) -> bool:
        return self.ignore_nan and dtype.kind in "fc"

    def buffers(self, cube: Any) -> dict[str, Buffer]:
        # per-pixel counts only when pixels can drop out; else one count
        per_pixel = self._skips(cube.dtype)
        count = Buffer("pixel" if per_pixel else "single", dtype=np.int64)
        return {"total": Buffer("pixel"), "count": count}

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> dict[str, Any]:
        data = _selected(block, self.mask, rx, ry)
        if self._skips(block.dtype):
            finite = np.isfinite(data)
            return {"total": np.where(finite, data, 0).sum(axis=0, dtype=np.float64),
                    "count": finite.sum(axis=0)}
        return {"total": data.sum(axis=0, dtype=np.float64), "count": data.shape[0]}

    def finalize(self, acc: dict[str, np.ndarray]) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return acc["total"] / acc["count"]


class MaxPatternJob(Job):
    """Per-pixel maximum of the selected patterns, in the cube's dtype (NaN propagates)."""

    name = "maximum pattern"

    def __init__(self, mask: np.ndarray | None = None) -> None:
        self.mask = mask

    def buffers(self, cube: Any) -> Buffer:
        return Buffer("pixel", dtype=cube.dtype, reduce="max")

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        data = _selected(block, self.mask, rx, ry)
        if not len(data):  # the reduction's neutral value
            return np.full(data.shape[1:], Buffer("pixel", reduce="max").initial(data.dtype), data.dtype)
        return data.max(axis=0)


class MedianStripJob(Job):
    """One pass of the median: the selected patterns' detector rows ``rows``, packed (n, rows, Qy).

    ``in_place=True`` lets the median reorder the accumulator instead of copying
    it (half the memory); then call ``finalize`` once only.

    The accumulator holds only the selected positions, in scan order; a chunk's
    positions are consecutive in that order, so each lands at the count of
    selected positions before it.
    """

    name = "median pattern"

    def __init__(self, rows: tuple[int, int], mask: np.ndarray | None, dtype: Any, in_place: bool = False) -> None:
        self.detector_rows = (int(rows[0]), int(rows[1]))
        self.mask = mask
        self.dtype = np.dtype(dtype)
        self.in_place = in_place

    def init(self, cube: Any) -> np.ndarray:
        Rx, Ry = cube.scan_shape
        flat = np.ones(Rx * Ry, bool) if self.mask is None else self.mask.ravel()
        self._before = np.concatenate([[0], np.cumsum(flat)])  # selected positions before flat index i
        self._Ry = Ry
        q0, q1 = self.detector_rows
        return np.empty((int(self._before[-1]), q1 - q0, cube.detector_shape[1]), dtype=self.dtype)

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        return _selected(block, self.mask, rx, ry)

    def merge(self, acc: np.ndarray, partial: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        start = int(self._before[rx.start * self._Ry + ry.start])
        acc[start:start + len(partial)] = partial
        return acc

    def finalize(self, acc: np.ndarray) -> np.ndarray:
        # np.median partitions a copy of the strip unless told it may reorder it:
        # in_place keeps the memory budget but spoils the accumulator, so it is
        # only for a job finalized once (no partial results).
        return np.median(acc, axis=0, overwrite_input=self.in_place)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_before", None)
        return state


def median_strips(cube: Any, n: int, memory_budget: int) -> list[tuple[int, int]]:
    """Detector row ranges so that ``n`` patterns' strip fits ``memory_budget`` bytes.

    >>> from fourd_widgets.core import DataCube
    >>> median_strips(DataCube(np.zeros((2, 2, 5, 4), np.uint16)), 4, 4 * 2 * 4 * 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    if memory_budget is None or memory_budget <= 0:
        raise ParameterError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}",
                             field="memory_budget")
    Qx, Qy = cube.detector_shape
    strip = max(1, min(Qx, int(memory_budget) // max(1, n * Qy * cube.dtype.itemsize)))
    return [(q0, min(Qx, q0 + strip)) for q0 in range(0, Qx, strip)]


def mean_pattern(cube: Any, region: Any = None, ignore_nan: bool = False, **engine_options: Any) -> np.ndarray:
    """Mean pattern (float64) over the scan or a boolean scan mask; see ``DataCube.mean_pattern``."""
    job = MeanPatternJob(_mask(cube, region), ignore_nan)
    if job.mask is not None and not job.mask.any():
        raise ShapeError("the real-space region selects no scan positions")
    return run_job(cube, job, **engine_options)


def max_pattern(cube: Any, region: Any = None, **engine_options: Any) -> np.ndarray:
    """Per-pixel maximum over the scan or a boolean scan mask; see ``DataCube.max_pattern``."""
    mask = _mask(cube, region)
    if mask is not None and not mask.any():
        raise ShapeError("the real-space region selects no scan positions")
    return run_job(cube, MaxPatternJob(mask), **engine_options)


def median_pattern(cube: Any, region: Any = None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                   **engine_options: Any) -> np.ndarray:
    """Exact per-pixel median (float64), one pass over the cube per strip of detector rows.

    Parameters
    ----------
    cube : DataCube
    region : (Rx, Ry) bool array, optional
        Positions to take the median over (default: all).
    memory_budget : int
        Bytes the selected patterns' strip may take (see :func:`median_strips`).
    **engine_options
        ``chunk_bytes``, ``scheduler``, ``workers``, ``progress`` (counts the
        chunks of all passes), ``cancel`` of :func:`~fourd_widgets.engine.run_passes`.
    """
    mask = _mask(cube, region)
    n = int(mask.sum()) if mask is not None else cube.scan_shape[0] * cube.scan_shape[1]
    if n == 0:
        raise ShapeError("the real-space region selects no scan positions")
    strips = median_strips(cube, n, memory_budget)
    on_partial = engine_options.pop("on_partial", None)
    if on_partial is not None:
        raise ParameterError("the median has no partial results (each strip needs all positions)",
                             field="on_partial")
    jobs = [MedianStripJob(rows, mask, cube.dtype, in_place=True) for rows in strips]
    out = np.empty(cube.detector_shape, dtype=np.float64)
    # One strip's finalize at a time: run_passes keeps only the strip medians.
    for (q0, q1), med in zip(strips, run_passes(cube, jobs, name="median pattern", **engine_options)):
        out[q0:q1] = med
    return out


set_pattern_passes(mean_pattern, max_pattern, median_pattern)
