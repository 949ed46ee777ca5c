"""Where the beam is, and detectors that fit the data: the defaults a tool starts from.

A file opened for the first time has no calibrated origin, and the beam is often
far from the detector centre (a Merlin with the beam at its edge). So before the
full mean pattern has streamed in, :func:`sparse_mean_pattern` averages a few
patterns spread over the scan (64 by default), :func:`find_beam` finds the
bright-field disk in it, and :func:`default_detectors` puts the bright-field
circle on that disk and the annular dark-field detector beyond it, over the
diffracted intensity. :func:`detector_warnings` says when a detector covers no
pixel or runs past the detector's edge, so that a view never shows silent zeros.

Examples
--------
>>> import numpy as np
>>> q = np.hypot(*np.meshgrid(np.arange(64) - 20.0, np.arange(64) - 30.0, indexing="ij"))
>>> pattern = np.where(q <= 6, 100.0, 1.0 / (1 + q))
>>> beam = find_beam(pattern)
>>> [round(float(v), 1) for v in beam.center], round(beam.radius, 1)
([20.0, 30.0], 6.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.calibration import Calibration
from ..core.errors import ShapeError
from .detectors import Annulus, Circle, Detector, detector_mask

__all__ = ["Beam", "sample_positions", "sparse_mean_pattern", "find_beam", "default_detectors",
           "detector_warnings"]


@dataclass(frozen=True)
class Beam:
    """The bright-field disk found in a pattern.

    Attributes
    ----------
    center : (float, float)
        ``(qx, qy)`` of the disk's centroid, in detector pixels.
    radius : float
        Radius of a disk of the same area, in pixels.
    cut : bool
        True when the disk touches the detector's edge (the centre is then less sure).
    contrast : float
        Mean inside the disk over mean outside it (1: no beam to be seen).
    """

    center: tuple[float, float]
    radius: float
    cut: bool
    contrast: float


def sample_positions(scan_shape: tuple[int, int], n: int = 64) -> list[tuple[int, int]]:
    """About ``n`` scan positions on a regular grid spread over the whole scan.

    >>> sample_positions((4, 4), 4)
    [(1, 1), (1, 3), (3, 1), (3, 3)]
    >>> len(sample_positions((1, 1), 64))
    1
    """
    rx, ry = int(scan_shape[0]), int(scan_shape[1])
    if rx * ry <= n:
        return [(i, j) for i in range(rx) for j in range(ry)]
    # a grid of about n points with the scan's aspect ratio, each in the middle of its cell
    nx = max(1, min(rx, round(math.sqrt(n * rx / ry))))
    ny = max(1, min(ry, n // nx))
    xs = [int((k + 0.5) * rx / nx) for k in range(nx)]
    ys = [int((k + 0.5) * ry / ny) for k in range(ny)]
    return [(i, j) for i in xs for j in ys]


def sparse_mean_pattern(cube: Any, n: int = 64) -> np.ndarray:
    """The mean of about ``n`` patterns spread over the scan (reads only those).

    Parameters
    ----------
    cube : DataCube
    n : int
        How many patterns to read.

    Returns
    -------
    (Qx, Qy) float64 ndarray
        Non-finite pixels (dead or masked) are averaged over the patterns where they are finite.
    """
    total = np.zeros(tuple(cube.detector_shape), dtype=np.float64)
    count = np.zeros(total.shape, dtype=np.int64)

    def add(p: np.ndarray) -> None:
        p = np.asarray(p, dtype=np.float64)
        ok = np.isfinite(p)
        total[ok] += p[ok]
        count[...] += ok

    by_row: dict[int, list[int]] = {}
    for rx, ry in sample_positions(cube.scan_shape, n):
        by_row.setdefault(rx, []).append(ry)
    chunks = getattr(cube, "storage_chunks", None)
    # a file stored a scan row (or more) per chunk reads a whole chunk for any one pattern of it:
    # read each sampled row's span once instead of once per pattern
    row_chunks = chunks is not None and len(chunks) == 4 and chunks[1] >= cube.scan_shape[1]
    for rx, ys in by_row.items():
        if row_chunks and len(ys) > 1:
            block = cube.read((rx, rx + 1), (min(ys), max(ys) + 1))
            for ry in ys:
                add(block[0, ry - min(ys)])
        else:
            for ry in ys:
                add(cube.pattern(rx, ry))
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def find_beam(pattern: np.ndarray) -> Beam:
    """The bright-field disk of a (mean) pattern: the bright region around the brightest pixels.

    The pattern is median-filtered over 3 x 3 pixels (so a hot pixel is not taken
    for the beam), thresholded half way between its median and its 99.9th percentile,
    and the connected region of the pattern above that level with the most filtered
    intensity is the disk.

    Parameters
    ----------
    pattern : (Qx, Qy) array

    Returns
    -------
    Beam

    Raises
    ------
    ShapeError
        If ``pattern`` is not 2-D.
    """
    from scipy import ndimage

    p = np.asarray(pattern, dtype=np.float64)
    if p.ndim != 2:
        raise ShapeError(f"find_beam needs one (Qx, Qy) pattern, got shape {p.shape}")
    p = np.where(np.isfinite(p), p, 0.0)
    smooth = ndimage.median_filter(p, 3, mode="nearest") if min(p.shape) >= 3 else p
    low, high = float(np.median(smooth)), float(np.percentile(smooth, 99.9))
    if not high > low:  # flat pattern: no beam to see; say the centre, with no contrast
        c = ((p.shape[0] - 1) / 2, (p.shape[1] - 1) / 2)
        return Beam(c, min(p.shape) / 8, False, 1.0)
    # regions of the pattern itself (the filter would round the disk's edge); the disk is the one
    # richest in filtered intensity, which a lone hot pixel does not have
    labels, n = ndimage.label(p > 0.5 * (low + high))
    if n == 0:
        labels, n = ndimage.label(smooth > 0.5 * (low + high))
    richness = ndimage.sum_labels(smooth, labels, index=np.arange(1, n + 1))
    disk = labels == 1 + int(np.argmax(richness))
    peak = np.unravel_index(int(np.argmax(np.where(disk, smooth, -np.inf))), smooth.shape)
    weights = np.where(disk, p, 0.0)
    w = weights.sum()
    ii, jj = np.indices(p.shape)
    if w > 0:
        center = (float((weights * ii).sum() / w), float((weights * jj).sum() / w))
    else:
        center = (float(peak[0]), float(peak[1]))
    radius = float(math.sqrt(disk.sum() / math.pi))
    cut = bool(disk[0].any() or disk[-1].any() or disk[:, 0].any() or disk[:, -1].any())
    outside = p[~disk].mean() if (~disk).any() else 0.0
    contrast = float(p[disk].mean() / outside) if outside > 0 else float("inf")
    return Beam(center, radius, cut, contrast)


def default_detectors(pattern: np.ndarray, beam: Beam | None = None) -> tuple[Circle, Annulus]:
    """A bright-field circle on the beam and an annular dark-field detector that sees diffracted intensity.

    The circle has the disk's radius. The annulus starts 20 % (and at least
    2 px) beyond the disk's edge and reaches out to the radius that holds 80 %
    of the intensity outside that inner edge, within the detector; it is at
    least 2 px wide. Coordinates are absolute detector pixels.

    Parameters
    ----------
    pattern : (Qx, Qy) array
        A mean pattern (e.g. :func:`sparse_mean_pattern`).
    beam : Beam, optional
        The beam found in it (default: :func:`find_beam` of ``pattern``).

    Returns
    -------
    (Circle, Annulus)
    """
    p = np.asarray(pattern, dtype=np.float64)
    beam = find_beam(p) if beam is None else beam
    cx, cy = beam.center
    r = max(beam.radius, 1.0)
    inner = r + max(0.2 * r, 2.0)
    ii, jj = np.indices(p.shape)
    q = np.hypot(ii - cx, jj - cy)
    # the farthest radius that still has detector pixels in most directions (corners are sparse)
    reach = float(max(cx, p.shape[0] - 1 - cx, cy, p.shape[1] - 1 - cy))
    outside = np.where(np.isfinite(p) & (q >= inner), np.clip(p, 0, None), 0.0)
    total = outside.sum()
    outer = reach
    if total > 0:
        order = np.argsort(q, axis=None)
        cumulative = np.cumsum(outside.ravel()[order])
        k = int(np.searchsorted(cumulative, 0.8 * total))
        outer = float(q.ravel()[order][min(k, order.size - 1)])
    outer = min(max(outer, inner + 2.0), max(reach, inner + 2.0))
    center = (round(cx, 2), round(cy, 2))
    return Circle(center, round(r, 2)), Annulus(center, round(inner, 2), round(outer, 2))


def detector_warnings(detector: Detector, detector_shape: tuple[int, int],
                      calibration: Calibration | None = None) -> list[str]:
    """What is wrong with where a detector sits, in words for the view (empty: nothing).

    Says when the detector covers no pixel (its image is all zeros) and when a
    circle or annulus runs past the detector's edge (part of it integrates nothing).

    >>> detector_warnings(Circle((10.5, 10.5), 0.2), (32, 32))  # between pixel centres
    ['circle covers no pixel of the 32 x 32 detector: its image is all zeros. Make it larger or move it.']
    >>> detector_warnings(Annulus((16, 16), 4, 20), (32, 32))[0][:43]
    'annulus runs past the detector edge by 4.5 '
    """
    import warnings

    shape = (int(detector_shape[0]), int(detector_shape[1]))
    name = type(detector).__name__.lower()
    out: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # detector_mask warns about empty masks; we say it here
        mask = detector_mask(detector, shape, calibration)
    if mask.dtype == bool and not mask.any():
        return [f"{name} covers no pixel of the {shape[0]} x {shape[1]} detector: its image is all "
                "zeros. Make it larger or move it."]
    radius = getattr(detector, "outer", None) or getattr(detector, "radius", None)
    center = getattr(detector, "center", None)
    if radius is not None and center is not None and detector.units == "px" and not detector.relative_to_origin:
        cx, cy = float(center[0]), float(center[1])
        # pixel centres run from 0 to n - 1; a pixel reaches half a pixel beyond its centre
        past = max(float(radius) - (cx + 0.5), float(radius) - (shape[0] - 0.5 - cx),
                   float(radius) - (cy + 0.5), float(radius) - (shape[1] - 0.5 - cy))
        if past > 0.5:
            out.append(f"{name} runs past the detector edge by {past:.1f} px: that part "
                       "integrates nothing.")
    return out
