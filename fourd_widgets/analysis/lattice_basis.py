"""Lattice bases: checks of a pair of basis vectors, the suggested basis of a Bragg vector map, peak indexing.

Shared by disk detection's lattice snap (:mod:`.disk_lattice`), the pixel size
(:mod:`.calibration`) and strain mapping (:mod:`.strain`); vectors are in corrected
detector pixels relative to the origin (:func:`~.peak_calibration.corrected_vectors`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..core.calibration import Calibration
from ..core.errors import MissingCalibrationError, ParameterError, ShapeError
from ..core.registry import record_class
from .peak_calibration import corrected_vectors
from .peaks import PeakTable, bragg_vector_map

__all__ = ["vec2", "check_basis", "check_optional_basis", "LatticeBasis", "corrected_bvm", "suggest_basis",
           "peak_vectors", "index_peaks"]


def vec2(v: Any, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.shape != (2,) or not np.all(np.isfinite(a)):
        raise ParameterError(f"{name} must be two finite numbers (x, y), got {v!r}", field=name)
    return a


def check_basis(g1: np.ndarray, g2: np.ndarray, what: str = "g1 and g2",
                 fields: tuple[str, str] = ("g1", "g2")) -> None:
    """Refuse a zero or (within 5°) collinear basis; the error names ``fields[0]`` or ``fields[1]``."""
    n1, n2 = float(np.hypot(*g1)), float(np.hypot(*g2))
    if n1 == 0 or n2 == 0:
        raise ParameterError(f"{what}: a basis vector has zero length; pick two lattice points away from "
                             "the origin (suggest_basis lists candidates)", field=fields[0] if n1 == 0 else fields[1])
    sin = abs(g1[0] * g2[1] - g1[1] * g2[0]) / (n1 * n2)
    if sin < math.sin(math.radians(5.0)):
        ang = math.degrees(math.asin(min(1.0, sin)))
        raise ParameterError(
            f"{what} are collinear ({ang:.1f}° apart); choose two lattice vectors at least 5° apart, "
            "e.g. the candidates of suggest_basis(...).pick(i, j)", field=fields[1])


def check_optional_basis(step: str, g1: Any, g2: Any, fields: tuple[str, str] = ("g1", "g2"),
                          unset: str = " (then they are suggested)") -> None:
    """A record's pair of optional basis fields: both None, or a valid basis (errors name the field)."""
    if (g1 is None) != (g2 is None):
        raise ParameterError(f"{step}: give both {fields[0]} and {fields[1]}, or neither{unset}",
                             field=fields[1] if g2 is None else fields[0])
    if g1 is not None:
        check_basis(np.asarray(g1, float), np.asarray(g2, float), f"{fields[0]} and {fields[1]}", fields)


@dataclass(frozen=True, eq=False)
class LatticeBasis:
    """A suggested lattice basis and the Bragg-vector-map maxima it was chosen from.

    Attributes
    ----------
    g1, g2 : (2,) arrays
        Basis vectors (x, y) relative to the origin, px of the map.
    origin : (2,) array
        Position of the origin in the map, px.
    candidates : (n, 2) array
        Every maximum relative to the origin, sorted by length (origin excluded).
    intensities : (n,) array
        Map value at each candidate.
    index_g1, index_g2 : int
        Rows of ``candidates`` chosen as g1 and g2.
    """

    g1: np.ndarray
    g2: np.ndarray
    origin: np.ndarray
    candidates: np.ndarray
    intensities: np.ndarray
    index_g1: int
    index_g2: int

    def pick(self, index_g1: int, index_g2: int) -> LatticeBasis:
        """The same candidates with g1, g2 set to rows ``index_g1`` and ``index_g2`` (a user's click)."""
        n = len(self.candidates)
        for name, i in (("index_g1", index_g1), ("index_g2", index_g2)):
            if not 0 <= int(i) < n:
                raise ParameterError(f"{name}={i} is not a candidate; there are {n} (0..{n - 1})", field=name)
        g1, g2 = self.candidates[int(index_g1)].copy(), self.candidates[int(index_g2)].copy()
        check_basis(g1, g2)
        return dataclasses.replace(self, g1=g1, g2=g2, index_g1=int(index_g1), index_g2=int(index_g2))

    def match(self, g1: Any, g2: Any) -> LatticeBasis:
        """The candidates nearest to given vectors (e.g. a reference lattice's) as g1 and g2."""
        a, b = vec2(g1, "g1"), vec2(g2, "g2")
        i1 = int(np.argmin(np.hypot(*(self.candidates - a).T)))
        i2 = int(np.argmin(np.hypot(*(self.candidates - b).T)))
        return self.pick(i1, i2)

    def params(self, step: str = "strain_map", **changes: Any) -> Any:
        """The record of ``step`` (default :class:`~fourd_widgets.analysis.strain.StrainMapParams`)
        with this basis as ``g1, g2``, plus any other field changes."""
        return record_class(step)(g1=tuple(self.g1.tolist()), g2=tuple(self.g2.tolist()), **changes)


def _bvm_maxima(bvm: np.ndarray, min_spacing: float, min_relative: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel maxima (n, 2) of a map and their values, strongest first."""
    sm = ndimage.gaussian_filter(bvm, sigma) if sigma > 0 else bvm
    size = 2 * max(1, round(min_spacing)) + 1
    peaks = (sm == ndimage.maximum_filter(sm, size=size, mode="constant")) & (sm > 0)
    ij = np.argwhere(peaks)
    if len(ij) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    vals = sm[ij[:, 0], ij[:, 1]]
    order = np.argsort(-vals, kind="stable")
    ij, vals = ij[order], vals[order]
    ref = vals[1] if len(vals) > 1 else vals[0]  # relative to the strongest non-origin peak
    keep = vals >= min_relative * ref
    ij, vals = ij[keep], vals[keep]
    # sub-pixel: intensity centroid of the unsmoothed map in a 5 x 5 window
    H, W = bvm.shape
    out = np.empty((len(ij), 2))
    for n, (i, j) in enumerate(ij):
        i0, i1, j0, j1 = max(0, i - 2), min(H, i + 3), max(0, j - 2), min(W, j + 3)
        win = np.clip(bvm[i0:i1, j0:j1], 0, None)
        s = win.sum()
        if s > 0:
            ii, jj = np.mgrid[i0:i1, j0:j1]
            out[n] = ((ii * win).sum() / s, (jj * win).sum() / s)
        else:
            out[n] = (i, j)
    return out, vals


def corrected_bvm(peaks: PeakTable, calibration: Calibration | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """Bragg vector map of origin-relative, ellipse-corrected peak vectors (the frame of g1, g2).

    Parameters
    ----------
    peaks : PeakTable
        In detector px (with ``calibration``) or calibrated.
    calibration : Calibration, optional

    Returns
    -------
    bvm : (2 h + 1, 2 h + 1) array
        Intensity-weighted, bilinearly splatted; ``h`` covers the longest vector plus 3 px.
    centre : (float, float)
        Where the origin lies in the map: a click at ``(i, j)`` is the vector ``(i, j) - centre``.

    Examples
    --------
    >>> from fourd_widgets.analysis.strain import lattice_peaks
    >>> from fourd_widgets.core import Calibration
    >>> t = lattice_peaks((1, 1), (20.0, 20.0), (6.0, 0.0), (0.0, 8.0), (41, 41))
    >>> m, c = corrected_bvm(t, Calibration(origin=(20, 20)))
    >>> m.shape, c, float(m[int(c[0]) + 6, int(c[1])])
    ((43, 43), (21.0, 21.0), 1.0)
    """
    vec = peak_vectors(peaks, calibration, "the Bragg vector map")
    half = math.ceil(np.abs(vec).max()) + 3 if len(vec) else 8
    shifted = PeakTable(peaks.scan_shape, peaks.offsets, vec[:, 0] + half, vec[:, 1] + half,
                        peaks.intensity, peaks.correlation, peaks.flags)
    return bragg_vector_map(shifted, (2 * half + 1, 2 * half + 1)), (float(half), float(half))


def suggest_basis(source: np.ndarray | PeakTable, calibration: Calibration | None = None, *,
                  origin: tuple[float, float] | None = None, min_spacing: float = 3.0,
                  min_relative: float = 0.05, sigma: float = 1.0, length_tolerance: float = 0.08,
                  min_angle_deg: float = 15.0, reference_region: np.ndarray | None = None) -> LatticeBasis:
    """Suggest two basis vectors: the shortest non-collinear pair of one lattice's Bragg vector map maxima.

    With a peak table, g1 and g2 come from one lattice: the pair of short maxima that
    indexes the most peaks of the positions in ``reference_region`` (all positions when
    None) decides the lattice, and g1, g2 are chosen among the maxima on it. So on a
    bicrystal both vectors belong to one grain (the reference region's, or the grain
    covering most positions), never one from each.

    Parameters
    ----------
    source : (H, W) array or PeakTable
        A Bragg vector map (detector px; e.g. :func:`~fourd_widgets.analysis.peaks.bragg_vector_map`
        with ``origin=`` so that it is origin-centred), or a peak table, whose
        origin- and ellipse-corrected vectors (needs ``calibration``) are mapped here.
    calibration : Calibration, optional
        Needed for a peak table in pixels (origin, optionally ellipse).
    origin : (x, y), optional
        Where the origin is in a map; default: its strongest maximum (the zero beam).
    min_spacing : float
        Smallest distance between two maxima, px.
    min_relative : float
        Keep maxima at least this fraction of the strongest non-origin maximum.
    sigma : float
        Gaussian smoothing of the map before finding maxima, px.
    length_tolerance : float
        Candidates within this relative length of the shortest are "equally short";
        among them the one closest in angle to +x (then the counter-clockwise one) wins.
    min_angle_deg : float
        g2 must make at least this angle with g1.
    reference_region : (Rx, Ry) bool array, optional
        Positions whose lattice the basis belongs to (a peak table only); e.g. the
        strain reference region.

    Returns
    -------
    LatticeBasis

    Raises
    ------
    ParameterError
        When the map has fewer than two non-collinear maxima besides the origin.

    Examples
    --------
    >>> from fourd_widgets.analysis.strain import lattice_peaks
    >>> from fourd_widgets.core import Calibration
    >>> t = lattice_peaks((1, 1), (20.0, 20.0), (6.0, 0.0), (0.0, 8.0), (41, 41))
    >>> b = suggest_basis(t, Calibration(origin=(20, 20)))
    >>> np.round(b.g1, 2).tolist(), np.round(b.g2, 2).tolist()
    ([6.0, 0.0], [0.0, 8.0])
    """
    vectors = positions = None
    if isinstance(source, PeakTable):
        bvm, origin = corrected_bvm(source, calibration)
        vectors, positions = peak_vectors(source, calibration, "suggest_basis"), source.positions()
        if reference_region is not None:
            region = np.asarray(reference_region, dtype=bool)
            if region.shape != tuple(source.scan_shape):
                raise ShapeError(f"suggest_basis: reference_region has shape {region.shape}, the scan "
                                 f"{tuple(source.scan_shape)}")
            inside = region.reshape(-1)[positions]
            if inside.any():  # an empty region: the most common lattice of the whole scan
                vectors, positions = vectors[inside], positions[inside]
    elif reference_region is not None:
        raise ParameterError("suggest_basis: reference_region needs a peak table (a map has no positions)",
                             field="reference_region")
    else:
        bvm = np.asarray(source, dtype=np.float64)
        if bvm.ndim != 2:
            raise ShapeError(f"suggest_basis needs a 2-D Bragg vector map or a PeakTable, got shape {bvm.shape}")
    pts, vals = _bvm_maxima(bvm, min_spacing, min_relative, sigma)
    if len(pts) == 0:
        raise ParameterError("suggest_basis: the Bragg vector map has no maxima; detect disks first "
                             "(find_disks) or lower min_relative")
    o = pts[0] if origin is None else vec2(origin, "origin")
    rel = pts - o
    length = np.hypot(rel[:, 0], rel[:, 1])
    keep = length > max(min_spacing, 1.0)
    rel, vals, length = rel[keep], vals[keep], length[keep]
    order = np.lexsort((np.abs(np.arctan2(rel[:, 1], rel[:, 0])), length))
    rel, vals, length = rel[order], vals[order], length[order]
    if len(rel) < 2:
        raise ParameterError(f"suggest_basis: found {len(rel)} Bragg vector map maxima besides the origin, need "
                             "at least two non-collinear ones; detect more disks or give g1 and g2 by hand")
    ang = np.degrees(np.arctan2(rel[:, 1], rel[:, 0]))

    def best(candidates: np.ndarray) -> int:
        shortest = length[candidates].min()
        near = candidates[length[candidates] <= shortest * (1 + length_tolerance)]
        # closest to +x; a tie (e.g. +45 and -45) goes to the counter-clockwise one
        key = np.round(np.abs(ang[near]), 3) - 1e-6 * (ang[near] > 0)
        return int(near[np.argmin(key)])

    on = np.ones(len(rel), bool) if vectors is None else _one_lattice(rel, length, vectors, min_spacing, min_angle_deg)
    i1 = best(np.flatnonzero(on))
    sin = np.abs(rel[i1, 0] * rel[:, 1] - rel[i1, 1] * rel[:, 0]) / (length * length[i1])
    ok = np.flatnonzero((sin >= math.sin(math.radians(min_angle_deg))) & on)
    if ok.size == 0:
        raise ParameterError("suggest_basis: every Bragg vector map maximum is collinear with g1; the pattern "
                             "shows a single row of disks. Give g1 and g2 by hand or detect more disks")
    i2 = best(ok)
    return LatticeBasis(g1=rel[i1].copy(), g2=rel[i2].copy(), origin=np.asarray(o, float), candidates=rel,
                        intensities=vals, index_g1=i1, index_g2=i2)


#: Short maxima tried as lattice pairs by :func:`_one_lattice`, and the peaks sampled (speed on big scans).
LATTICE_TRIALS = 12
LATTICE_SAMPLE = 16_384  # peaks enough to tell which lattice is most common, evenly strided over the scan
#: A peak lies on a trial lattice within this fraction of the shortest maximum's length: below half the
#: offset between two grains 10° apart (0.17 |g| at the first ring), above a 2 % strain at the third ring.
LATTICE_TOLERANCE = 0.08


def _one_lattice(rel: np.ndarray, length: np.ndarray, vectors: np.ndarray, min_spacing: float,
                 min_angle_deg: float) -> np.ndarray:
    """Which maxima (rows of ``rel``, sorted by length) lie on the lattice indexing the most peaks.

    Every non-collinear pair of the shortest maxima is a trial lattice; the one that indexes
    the most of the peak ``vectors`` (n, 2) wins (a pair taken from two grains indexes only
    the peaks along its own two rows). Ties go to the earlier (shorter) pair.
    """
    v = vectors[np.hypot(vectors[:, 0], vectors[:, 1]) > max(min_spacing, 1.0)]  # the zero beam fits any lattice
    if len(v) > LATTICE_SAMPLE:
        v = v[:: len(v) // LATTICE_SAMPLE + 1]
    tol = LATTICE_TOLERANCE * float(length[0])
    n = min(len(rel), LATTICE_TRIALS)
    min_sin = math.sin(math.radians(min_angle_deg))
    best_pair, best_score = None, -1
    for i in range(n):
        for j in range(i + 1, n):
            if abs(rel[i, 0] * rel[j, 1] - rel[i, 1] * rel[j, 0]) < min_sin * length[i] * length[j]:
                continue
            score = int(index_peaks(v, rel[i], rel[j], tol)[2].sum())
            if score > best_score:
                best_pair, best_score = (i, j), score
    if best_pair is None or best_score <= 0:
        return np.ones(len(rel), bool)  # nothing to decide by: every maximum stays a candidate
    return index_peaks(rel, rel[best_pair[0]], rel[best_pair[1]], tol)[2]


# --- indexing ---------------------------------------------------------------------------------
def peak_vectors(peaks: PeakTable, calibration: Calibration | None, step: str) -> np.ndarray:
    """(n, 2) origin-relative, ellipse-corrected vectors of every peak."""
    if peaks.units != "px":
        return np.stack([peaks.qx, peaks.qy], -1)
    if calibration is None:
        raise MissingCalibrationError(
            "origin", step, "Pass the calibration (e.g. cube.calibration) holding origin or origin_map, "
            "or measure it with fourd_widgets.analysis.calibration.measure_origin.")
    return corrected_vectors(peaks, calibration, step)


def index_peaks(vectors: np.ndarray, g1: Any, g2: Any, max_peak_spacing: float,
                origin: Any = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest lattice index of each vector.

    Parameters
    ----------
    vectors : (n, 2) array
        Peak vectors relative to the origin.
    g1, g2 : (2,) or (n, 2) arrays
        Basis, one for all peaks or one per peak.
    max_peak_spacing : float
        Largest accepted distance to the lattice point.
    origin : (2,) or (n, 2) array
        Lattice origin (per peak allowed).

    Returns
    -------
    h, k : (n,) int64 arrays
    indexed : (n,) bool array

    Examples
    --------
    >>> h, k, ok = index_peaks(np.array([[10.2, 0.1], [0.0, -11.9], [5.0, 5.0]]), [10, 0], [0, 12], 1.0)
    >>> h.tolist(), k.tolist(), ok.tolist()
    ([1, 0, 0], [0, -1, 0], [True, True, False])
    """
    v = np.asarray(vectors, dtype=np.float64) - np.asarray(origin, dtype=np.float64)
    a = np.broadcast_to(np.asarray(g1, dtype=np.float64), v.shape)
    b = np.broadcast_to(np.asarray(g2, dtype=np.float64), v.shape)
    det = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        hf = (v[:, 0] * b[:, 1] - v[:, 1] * b[:, 0]) / det
        kf = (a[:, 0] * v[:, 1] - a[:, 1] * v[:, 0]) / det
    ok = np.isfinite(hf) & np.isfinite(kf)
    h = np.where(ok, np.rint(np.where(ok, hf, 0)), 0).astype(np.int64)
    k = np.where(ok, np.rint(np.where(ok, kf, 0)), 0).astype(np.int64)
    d = v - h[:, None] * a - k[:, None] * b
    ok &= np.hypot(d[:, 0], d[:, 1]) <= max_peak_spacing
    return h, k, ok
