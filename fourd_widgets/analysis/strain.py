"""Lattice vectors, peak indexing, per-position lattice fits and strain maps (py4DSTEM §9).

The pipeline, each piece usable on its own (a widget calls them one by one):

1. :func:`suggest_basis` — local maxima of the origin-centred Bragg vector map;
   the shortest vector is ``g1``, the shortest one not collinear with it ``g2``
   (py4DSTEM ``choose_basis_vectors``), both from one lattice (the reference
   region's, else the one indexing most peaks), so a bicrystal never mixes its
   grains. The candidates are returned too, so a user can click two others
   (:meth:`LatticeBasis.pick`).
2. :func:`index_peaks` — every peak gets the nearest lattice index ``(h, k)``
   of ``h g1 + k g2``; peaks farther than ``max_peak_spacing`` from every lattice
   point stay unindexed.
3. :func:`fit_lattice` — per scan position, a weighted least-squares fit of
   ``q = q0 + h g1 + k g2`` (origin and both vectors: six unknowns), vectorised
   over the whole scan (normal equations accumulated with ``bincount``). The
   peaks are re-indexed with each position's own lattice and fitted again
   (``refine``), so rotated or strongly strained regions index correctly; a
   position the guess cannot index starts from the guess turned to its own
   peaks (a second grain).
   Positions with fewer than ``min_num_peaks`` indexed peaks, or whose indices
   are collinear, are marked failed — never filled.
4. :func:`reference_lattice` — median ``g1, g2`` over a boolean scan region.
5. :func:`strain_from_lattice` — with ``G = [g1 g2]`` (columns) and the
   reference ``G0``, reciprocal vectors follow ``g' = F^-T g``, so
   ``F = (G0 G^-1)^T``. ``F`` is split exactly into ``R(θ) (I + E)`` (2-D polar
   decomposition, ``θ = atan2(F10 - F01, F00 + F11)``), giving ``ε_xx, ε_yy,
   ε_xy`` and the rotation ``θ`` (counter-clockwise, degrees) in the scan frame,
   then the strain tensor is expressed in axes rotated by ``frame_deg``.

Peak coordinates are taken relative to the calibrated origin (``origin_map``
per position when set, else ``origin``) and corrected for the elliptic
distortion (:func:`fourd_widgets.analysis.peak_calibration.corrected_vectors`);
vectors are in corrected detector pixels. The detector-to-scan rotation and
flip of the calibration are applied to the strain only (strain is
dimensionless, so the pixel size does not enter).

py4DSTEM's ``get_strain`` uses the small-strain form ``ε_xx = 1 - β00``; the
exact polar decomposition here agrees with it to first order and matches the
convention of the shared ground truth (``F = R(θ)(I + E)``).

Examples
--------
>>> import numpy as np
>>> g1, g2 = np.array([10.0, 0.0]), np.array([0.0, 12.0])
>>> t = lattice_peaks((2, 2), (32.0, 32.0), g1, g2, (64, 64))
>>> from fourd_widgets.core import Calibration
>>> sm = strain_map(t, StrainMapParams(g1=(10.0, 0.0), g2=(0.0, 12.0)), Calibration(origin=(32, 32)))
>>> float(np.nanmax(np.abs(sm.exx))) < 1e-12, bool(sm.mask.any())
(True, False)

References
----------
.. [1] B. H. Savitzky et al., "py4DSTEM: A Software Package for Four-Dimensional
   Scanning Transmission Electron Microscopy Data Analysis", Microsc. Microanal.
   27, 712-743 (2021), section on strain mapping.
.. [2] C. Ophus, "Four-Dimensional Scanning Transmission Electron Microscopy
   (4D-STEM): From Scanning Nanodiffraction to Ptychography and Beyond",
   Microsc. Microanal. 25, 563-582 (2019).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..core.calibration import Calibration
from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param
from ..core.recipe import Recipe
from ..io.results import Results
from .lattice_basis import (LatticeBasis, check_basis, check_optional_basis, corrected_bvm, index_peaks,
                            peak_vectors, suggest_basis, vec2)
from .peak_calibration import scan_frame_matrix
from .peaks import PeakTable
from .steps import RunContext, current_calibration, own_record

__all__ = [
    "FIT_COLLINEAR",
    "FIT_INVALID_PATTERN",
    "FIT_TOO_FEW_PEAKS",
    "LatticeBasis",
    "LatticeFit",
    "StrainMap",
    "StrainMapParams",
    "check_lattice_and_reference",
    "corrected_bvm",
    "fit_lattice",
    "index_peaks",
    "lattice_peaks",
    "reference_lattice",
    "strain_from_lattice",
    "strain_map",
    "strain_map_from_fit",
    "suggest_basis",
]

#: Failure bit: fewer indexed peaks than ``min_num_peaks``.
FIT_TOO_FEW_PEAKS = 1
#: Failure bit: the indexed peaks do not span two directions (or the fit is singular).
FIT_COLLINEAR = 2
#: Failure bit: the pattern was flagged invalid by disk detection (NaN/inf data).
FIT_INVALID_PATTERN = 4

_STRAIN_NAMES = ("exx", "eyy", "exy", "theta_deg")


# --- parameters ----------------------------------------------------------------------------
def check_lattice_and_reference(record: Any) -> None:
    """Check a strain record's ``g1``/``g2``, its reference vectors and its reference region.

    Shared by every record that maps strain from a lattice (``strain_map``, ``whole_pattern_fit``).
    """
    check_optional_basis(record.step, record.g1, record.g2)
    check_optional_basis(record.step, record.reference_g1, record.reference_g2, ("reference_g1", "reference_g2"),
                         unset="")
    if record.reference_region is not None:
        r = np.asarray(record.reference_region)
        if r.ndim != 2 or r.dtype != bool:
            raise ParameterError(f"{record.step}.reference_region must be an (Rx, Ry) bool mask, got "
                                 f"{r.dtype} of shape {r.shape}", field="reference_region")


@dataclass(frozen=True)
class StrainMapParams(Params):
    """Parameters of lattice fitting and strain mapping (``strain_map``); py4DSTEM names in brackets.

    Vectors are in corrected detector pixels relative to the origin (the frame of
    :func:`suggest_basis`); the reference may come from a scan region, from an
    explicit pair of vectors, or (API only) from another dataset's StrainMap.
    """

    step = "strain_map"

    peaks: str = param("find_disks", doc="label of the earlier step whose peak table is fitted")
    g1: tuple[float, float] | None = param(None, units="px", doc="first basis vector (x, y) for indexing; "
                                           "None: suggested from the Bragg vector map [index_g1]")
    g2: tuple[float, float] | None = param(None, units="px", doc="second basis vector; None: suggested "
                                           "[index_g2]")
    max_peak_spacing: float = param(4.0, units="px", gt=0, doc="largest distance of an indexed peak from "
                                    "its lattice point [max_peak_spacing]")
    min_num_peaks: int = param(5, ge=3, doc="fewest indexed peaks (origin included) for a fit "
                               "[minNumPeaks]")
    weights: Literal["intensity", "uniform", "correlation"] = param(
        "intensity", doc="least-squares weight of each peak (py4DSTEM: intensity); chosen by the figures in "
        "fit_lattice's docstring")
    fit_origin: bool = param(True, doc="fit the lattice origin per position (else it is the calibrated "
                             "origin)")
    refine: bool = param(True, doc="re-index each position with its own fitted lattice and fit again")
    reference_region: np.ndarray | None = param(None, doc="(Rx, Ry) bool mask of unstrained positions; "
                                                "None: all positions [get_reference_g1g2(ROI)]")
    reference_g1: tuple[float, float] | None = param(None, units="px", doc="explicit reference g1 "
                                                     "(overrides the region)")
    reference_g2: tuple[float, float] | None = param(None, units="px", doc="explicit reference g2")
    frame_deg: float = param(0.0, units="deg", doc="x axis of the strain frame, counter-clockwise from "
                             "scan x [coordinate_rotation]")

    def validate(self) -> None:
        check_lattice_and_reference(self)


@dataclass(frozen=True, eq=False)
class LatticeFit:
    """Per-position lattice fit (:func:`fit_lattice`).

    Attributes
    ----------
    g1, g2 : (Rx, Ry, 2) arrays
        Fitted basis vectors, px (NaN where the fit failed).
    origin : (Rx, Ry, 2) array
        Fitted lattice origin relative to the calibrated origin, px.
    num_peaks : (Rx, Ry) int array
        Indexed peaks used by the fit.
    residual_px : (Rx, Ry) array
        Weighted RMS distance of the indexed peaks from the fitted lattice, px.
    failure : (Rx, Ry) uint8 array
        0 for a good fit, else bits :data:`FIT_TOO_FEW_PEAKS`, :data:`FIT_COLLINEAR`,
        :data:`FIT_INVALID_PATTERN`.
    g1_guess, g2_guess : (2,) arrays
        The basis used for the first indexing.
    """

    g1: np.ndarray
    g2: np.ndarray
    origin: np.ndarray
    num_peaks: np.ndarray
    residual_px: np.ndarray
    failure: np.ndarray
    g1_guess: np.ndarray
    g2_guess: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """(Rx, Ry) bool, True where the fit succeeded."""
        return self.failure == 0


def _solve_positions(pos: np.ndarray, h: np.ndarray, k: np.ndarray, v: np.ndarray, w: np.ndarray,
                     npos: int, fit_origin: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted LSQ of ``v = q0 + h g1 + k g2`` per position. Returns (coef (P, 3, 2), ok, cond_ok)."""
    def acc(x: np.ndarray) -> np.ndarray:
        return np.bincount(pos, weights=x, minlength=npos)

    hf, kf = h.astype(np.float64), k.astype(np.float64)
    cols = [np.ones_like(hf), hf, kf] if fit_origin else [hf, kf]
    m = len(cols)
    M = np.empty((npos, m, m))
    for i in range(m):
        for j in range(i, m):
            M[:, i, j] = M[:, j, i] = acc(w * cols[i] * cols[j])
    rhs = np.stack([np.stack([acc(w * c * v[:, 0]), acc(w * c * v[:, 1])], -1) for c in cols], 1)  # (P, m, 2)
    # collinearity: the (h, k) scatter (centred when the origin is free) must span two directions
    Chk = M[:, -2:, -2:].copy()
    if fit_origin:
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = M[:, 0, 1:] / M[:, 0, :1]
            Chk -= M[:, :1, :1] * mean[:, :, None] * mean[:, None, :]
    tr = Chk[:, 0, 0] + Chk[:, 1, 1]
    det = Chk[:, 0, 0] * Chk[:, 1, 1] - Chk[:, 0, 1] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        cond_ok = np.nan_to_num(det / tr**2, nan=0.0) > 1e-6
    coef = np.full((npos, 3, 2), np.nan)
    if cond_ok.any():
        sol = np.linalg.solve(M[cond_ok], rhs[cond_ok])
        if fit_origin:
            coef[cond_ok] = sol
        else:
            coef[cond_ok, 0] = 0.0
            coef[cond_ok, 1:] = sol
    return coef, cond_ok


def fit_lattice(peaks: PeakTable, g1: Any, g2: Any, calibration: Calibration | None = None, *,
                max_peak_spacing: float = 4.0, min_num_peaks: int = 5,
                weights: Literal["intensity", "uniform", "correlation"] = "intensity",
                fit_origin: bool = True, refine: bool = True) -> LatticeFit:
    """Index every peak and fit origin and basis vectors at each scan position.

    Parameters
    ----------
    peaks : PeakTable
        In detector px (then ``calibration`` supplies origin and ellipse) or already
        calibrated (origin-relative vectors, used as they are).
    g1, g2 : (2,) array-like
        Basis guess for indexing, in the frame of the corrected vectors.
    calibration : Calibration, optional
        Needed for a table in px.
    max_peak_spacing, min_num_peaks, weights, fit_origin, refine
        See :class:`StrainMapParams`.

    Returns
    -------
    LatticeFit
        Maps of shape ``peaks.scan_shape`` (must be 2-D).

    Notes
    -----
    The default weighting, ``'intensity'``, was chosen on the shared abTEM Si [001] files with every
    other default (issue 12 item 16; ``tests/analysis/test_strain_weights.py``;
    ``python bench/bench_strain_limits.py --part weights``). Lattice: the largest distance of the median
    fitted ``g1``, ``g2`` from the true vectors, relative to ``|g|``, for each homogeneous file (unstrained
    / ε_xx 1 % / rotated 10°), each row of the gradient file (its own crystal, 16 positions) and each
    grain of the bicrystal (positions with under 5 % of the probe on the other grain); strain: the largest
    error of ``ε_xx, ε_yy, ε_xy`` between any two of the 19 single-crystal lattices (342 ordered pairs),
    and between the three homogeneous files:

    ===============  =====================  =============  ===============  ===================  ============
    weights          lattice: homogeneous   lattice:       bicrystal        strain between two:  between the
                                            gradient rows  grain A / B      max (median)         homogeneous
    ===============  =====================  =============  ===============  ===================  ============
    ``intensity``    0.006 / 0.005 / 0.019  0.051 %        0.100 / 0.068 %  0.073 (0.020) %      0.010 %
    ``correlation``  0.006 / 0.005 / 0.019  0.051 %        0.100 / 0.068 %  0.073 (0.019) %      0.010 %
    ``uniform``      0.006 / 0.008 / 0.013  0.050 %        0.096 / 0.054 %  0.065 (0.019) %      0.007 %
    ===============  =====================  =============  ===============  ===================  ============

    On these noise-free files the weightings differ by a few thousandths of a percent and both meet
    0.02 % on the homogeneous lattices (that is the disk refinement's doing: without
    ``FindDisksParams.probe_fit`` 0.023 / 0.015 / 0.027 %). Under shot noise they do not: intensity
    weights are close to the inverse variance of each disk's position, and on ``si_001_unstrained`` with
    Poisson noise the per-position strain scatters 0.25 % RMS with them against 0.44 % with uniform
    weights (1e5 electrons per pattern; 0.95 against 1.35 % at 1e4), so they are the default. The
    gradient rows and the bicrystal's grains are further off for reasons no weighting reaches, which
    re-simulating the files with their own settings shows to be in the data
    (``bench/bench_strain_resimulated.py``): each crystal is cut to a periodic 64 Å box, and its reading
    changes with the probe's distance to the box's seam (by 0.03 % between the gradient's scanned rows
    and the box centre, 0.2 % at 16 Å); the four frozen-phonon configurations move a row by up to
    0.03 %. At the box centre without phonons every gradient row is within 0.012 %. The bicrystal's
    grains are 32 Å wide, so no position is farther than 16 Å from a boundary.
    """
    g1, g2 = vec2(g1, "g1"), vec2(g2, "g2")
    check_basis(g1, g2)
    if len(peaks.scan_shape) != 2:
        raise ShapeError(f"fit_lattice needs a peak table over a 2-D scan, got scan shape {peaks.scan_shape}")
    shape = peaks.scan_shape
    npos = int(np.prod(shape))
    v = peak_vectors(peaks, calibration, "fitting the lattice")
    pos = peaks.positions()
    w = {"intensity": peaks.intensity, "correlation": peaks.correlation,
         "uniform": np.ones(len(peaks))}[weights]
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    o_peak = np.zeros_like(v)
    a_peak, b_peak = _seed_bases(v, pos, npos, g1, g2, max_peak_spacing, min_num_peaks)
    passes = 2 if refine else 1
    for it in range(passes):
        h, k, ok = index_peaks(v, a_peak, b_peak, max_peak_spacing, o_peak)
        ok &= w > 0
        coef, cond_ok = _solve_positions(pos[ok], h[ok], k[ok], v[ok], w[ok], npos, fit_origin)
        count = np.bincount(pos[ok], minlength=npos)
        good = cond_ok & (count >= min_num_peaks)
        if it + 1 < passes:
            # next pass: each position's own lattice where it fitted, else the guess
            per_peak = np.where(good[pos, None, None], coef[pos], np.stack([o_peak, a_peak, b_peak], 1))
            o_peak, a_peak, b_peak = per_peak[:, 0], per_peak[:, 1], per_peak[:, 2]
    fitted = coef[pos[ok], 0] + h[ok, None] * coef[pos[ok], 1] + k[ok, None] * coef[pos[ok], 2]
    r2 = np.sum((v[ok] - fitted) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = np.sqrt(np.bincount(pos[ok], weights=w[ok] * r2, minlength=npos)
                        / np.bincount(pos[ok], weights=w[ok], minlength=npos))
    failure = np.zeros(npos, np.uint8)
    failure[count < min_num_peaks] |= FIT_TOO_FEW_PEAKS
    failure[~cond_ok] |= FIT_COLLINEAR
    failure[(peaks.flags.reshape(-1) & 1) != 0] |= FIT_INVALID_PATTERN
    bad = failure != 0
    coef[bad] = np.nan
    resid[bad] = np.nan
    return LatticeFit(g1=coef[:, 1].reshape(shape + (2,)), g2=coef[:, 2].reshape(shape + (2,)),
                      origin=coef[:, 0].reshape(shape + (2,)), num_peaks=count.reshape(shape),
                      residual_px=resid.reshape(shape), failure=failure.reshape(shape),
                      g1_guess=g1, g2_guess=g2)


#: Rotated seeds tried where the basis guess indexes too few peaks, and their angular bin (degrees).
SEED_TRIALS = 24
SEED_BIN_DEG = 1.0


def _seed_bases(v: np.ndarray, pos: np.ndarray, npos: int, g1: np.ndarray, g2: np.ndarray,
                max_peak_spacing: float, min_num_peaks: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-peak basis guesses (n, 2): ``g1, g2``, or a rotation of them where they index too few peaks.

    A grain turned away from the guess (a bicrystal's other grain) has its disks off the guessed
    lattice points. The angles of its peaks as long as ``g1`` (within 10 %) give trial rotations;
    each such position takes the trial indexing most of its peaks, the smallest turn on a tie (so
    a square lattice turned by 10° reads 10°, not -80°).
    """
    a = np.broadcast_to(g1, v.shape).copy()
    b = np.broadcast_to(g2, v.shape).copy()
    ok = index_peaks(v, g1, g2, max_peak_spacing)[2]
    count = np.bincount(pos[ok], minlength=npos)
    weak = (count < min_num_peaks)[pos]
    n1 = float(np.hypot(*g1))
    near = weak & (np.abs(np.hypot(v[:, 0], v[:, 1]) - n1) < 0.1 * n1)
    if not near.any():
        return a, b
    phi = (np.degrees(np.arctan2(v[near, 1], v[near, 0]) - math.atan2(g1[1], g1[0])) + 180.0) % 360.0 - 180.0
    hist, edges = np.histogram(phi, bins=round(360 / SEED_BIN_DEG), range=(-180.0, 180.0))
    centre = 0.5 * (edges[:-1] + edges[1:])
    top = np.argsort(-hist, kind="stable")[:SEED_TRIALS]
    trials = centre[top[hist[top] > 0]]
    trials = trials[np.argsort(np.abs(trials), kind="stable")]  # smallest turn first wins ties
    vw, pw = v[weak], pos[weak]
    best = count.copy()
    for deg in trials:
        R = _rot(float(deg))
        ra, rb = R @ g1, R @ g2
        hit = index_peaks(vw, ra, rb, max_peak_spacing)[2]
        c = np.bincount(pw[hit], minlength=npos)
        better = c > best
        if better.any():
            best = np.where(better, c, best)
            sel = better[pos]
            a[sel], b[sel] = ra, rb
    return a, b


def _failure_summary(failure: np.ndarray) -> str:
    parts = []
    for bit, text in ((FIT_TOO_FEW_PEAKS, "too few indexed peaks"), (FIT_COLLINEAR, "collinear peaks"),
                      (FIT_INVALID_PATTERN, "invalid patterns")):
        n = int(np.count_nonzero(failure & bit))
        if n:
            parts.append(f"{n} with {text}")
    return ", ".join(parts) or "none failed"


def reference_lattice(fit: LatticeFit, region: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Median g1, g2 over the valid fits of a scan region (py4DSTEM ``get_reference_g1g2``).

    Parameters
    ----------
    fit : LatticeFit
    region : (Rx, Ry) bool array, optional
        Reference positions; default all.

    Returns
    -------
    g1_ref, g2_ref : (2,) arrays

    Raises
    ------
    ParameterError
        When the region holds no valid fit (the message counts why they failed).
    """
    shape = fit.failure.shape
    if region is None:
        region = np.ones(shape, bool)
    region = np.asarray(region)
    if region.shape != shape or region.dtype != bool:
        raise ParameterError(f"reference_region must be a bool mask of the scan shape {shape}, got "
                             f"{region.dtype} of shape {region.shape}", field="reference_region")
    use = region & fit.valid
    if not use.any():
        n = int(region.sum())
        why = _failure_summary(fit.failure[region]) if n else "the region is empty"
        raise ParameterError(
            f"the reference region ({n} positions) holds no valid lattice fit ({why}); choose a region "
            "over crystal, lower min_num_peaks, raise max_peak_spacing, or give reference_g1/reference_g2",
            field="reference_region")
    return np.median(fit.g1[use], axis=0), np.median(fit.g2[use], axis=0)


# --- strain --------------------------------------------------------------------------------
def _rot(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def strain_from_lattice(g1: np.ndarray, g2: np.ndarray, g1_ref: Any, g2_ref: Any, *,
                        rotation_deg: float = 0.0, flip: bool = False,
                        frame_deg: float = 0.0) -> dict[str, np.ndarray]:
    """Strain and rotation maps from measured and reference reciprocal basis vectors.

    Parameters
    ----------
    g1, g2 : (..., 2) arrays
        Measured vectors in the detector frame (NaN allowed).
    g1_ref, g2_ref : (2,) arrays
        Reference vectors, same frame.
    rotation_deg, flip : float, bool
        Detector-vs-scan rotation and flip (see :func:`~fourd_widgets.analysis.peak_calibration.scan_frame_matrix`).
    frame_deg : float
        Express the strain in axes rotated counter-clockwise by this angle from scan x.

    Returns
    -------
    dict
        ``exx, eyy, exy`` (engineering shear / 2, i.e. tensor component) and
        ``theta_deg`` (lattice rotation, counter-clockwise), each of shape ``g1.shape[:-1]``.

    Examples
    --------
    >>> r = strain_from_lattice(np.array([1 / 1.01, 0.0]), np.array([0.0, 1.0]), [1, 0], [0, 1])
    >>> round(float(r["exx"]), 12), round(float(r["eyy"]), 12), round(float(r["theta_deg"]), 12)
    (0.01, 0.0, 0.0)
    """
    A = scan_frame_matrix(rotation_deg, flip)
    G = np.stack([np.asarray(g1, float), np.asarray(g2, float)], -1)  # (..., 2, 2), columns g1, g2
    G0 = np.stack([vec2(g1_ref, "g1_ref"), vec2(g2_ref, "g2_ref")], -1)
    Gs, G0s = A @ G, A @ G0
    det = Gs[..., 0, 0] * Gs[..., 1, 1] - Gs[..., 0, 1] * Gs[..., 1, 0]
    ok = np.isfinite(det) & (det != 0)
    Ginv = np.full(Gs.shape, np.nan)
    Ginv[ok] = np.linalg.inv(Gs[ok])
    F = np.swapaxes(G0s @ Ginv, -1, -2)  # g = F^-T g0  =>  F = (G0 G^-1)^T
    theta = np.arctan2(F[..., 1, 0] - F[..., 0, 1], F[..., 0, 0] + F[..., 1, 1])
    c, s = np.cos(theta), np.sin(theta)
    U00 = c * F[..., 0, 0] + s * F[..., 1, 0]
    U11 = -s * F[..., 0, 1] + c * F[..., 1, 1]
    U01 = c * F[..., 0, 1] + s * F[..., 1, 1]
    U10 = -s * F[..., 0, 0] + c * F[..., 1, 0]
    E = np.stack([np.stack([U00 - 1, 0.5 * (U01 + U10)], -1), np.stack([0.5 * (U01 + U10), U11 - 1], -1)], -2)
    Rf = _rot(frame_deg)
    Ef = Rf.T @ E @ Rf
    return {"exx": Ef[..., 0, 0], "eyy": Ef[..., 1, 1], "exy": Ef[..., 0, 1], "theta_deg": np.degrees(theta)}


@dataclass(frozen=True, eq=False)
class StrainMap:
    """Strain and rotation maps with the lattice fit behind them (a results-file container).

    Attributes
    ----------
    exx, eyy, exy : (Rx, Ry) float64 arrays
        Strain tensor components in the chosen frame (fractions; NaN where masked).
    theta_deg : (Rx, Ry) float64 array
        Lattice rotation relative to the reference, counter-clockwise, degrees.
    mask : (Rx, Ry) bool array
        True where the fit failed (numpy masked-array convention).
    failure : (Rx, Ry) uint8 array
        Why: :data:`FIT_TOO_FEW_PEAKS`, :data:`FIT_COLLINEAR`, :data:`FIT_INVALID_PATTERN` bits.
    g1, g2 : (Rx, Ry, 2) arrays
        Fitted basis vectors, corrected detector px.
    num_peaks : (Rx, Ry) int array
    residual_px : (Rx, Ry) array
    g1_ref, g2_ref : (2,) arrays
        The reference lattice, px.
    frame_deg : float
        Strain frame angle.
    reciprocal_step : float or None
        Detector pixel size (to express g in ``reciprocal_units``), if calibrated.
    reciprocal_units : str
    """

    exx: np.ndarray
    eyy: np.ndarray
    exy: np.ndarray
    theta_deg: np.ndarray
    mask: np.ndarray
    failure: np.ndarray
    g1: np.ndarray
    g2: np.ndarray
    num_peaks: np.ndarray
    residual_px: np.ndarray
    g1_ref: np.ndarray
    g2_ref: np.ndarray
    frame_deg: float = 0.0
    reciprocal_step: float | None = None
    reciprocal_units: str = "1/Å"

    def masked(self, name: str) -> np.ma.MaskedArray:
        """One map (``'exx'``, ``'eyy'``, ``'exy'``, ``'theta_deg'``) as a numpy masked array."""
        if name not in _STRAIN_NAMES:
            raise ParameterError(f"no strain map {name!r}; maps are {', '.join(_STRAIN_NAMES)}", field="name")
        return np.ma.MaskedArray(getattr(self, name), mask=self.mask)

    def summary(self, region: np.ndarray | None = None) -> dict[str, dict[str, float]]:
        """Mean, median and standard deviation of each map over the valid positions of ``region``."""
        use = ~self.mask if region is None else (~self.mask & np.asarray(region, bool))
        out = {}
        for n in _STRAIN_NAMES:
            v = getattr(self, n)[use]
            out[n] = ({"mean": float(v.mean()), "median": float(np.median(v)), "std": float(v.std()),
                       "count": int(v.size)} if v.size else {"mean": math.nan, "median": math.nan,
                                                              "std": math.nan, "count": 0})
        return out

    def save_tiff(self, prefix: str | os.PathLike) -> list[str]:
        """Write ``<prefix>_exx.tif`` ... ``_theta_deg.tif`` (float32, NaN where masked) and ``_mask.tif``."""
        import tifffile

        written = []
        for n in _STRAIN_NAMES + ("mask",):
            path = f"{os.fspath(prefix)}_{n}.tif"
            data = getattr(self, n)
            tifffile.imwrite(path, data.astype(np.uint8) if n == "mask" else data.astype(np.float32))
            written.append(path)
        return written

    def to_h5(self, group: Any) -> None:
        """Write the maps into an HDF5 group (results files)."""
        for n in _ARRAYS:
            group.create_dataset(n, data=getattr(self, n))
        group.attrs["frame_deg"] = self.frame_deg
        group.attrs["reciprocal_units"] = self.reciprocal_units
        if self.reciprocal_step is not None:
            group.attrs["reciprocal_step"] = self.reciprocal_step

    @classmethod
    def from_h5(cls, group: Any) -> "StrainMap":
        """Read maps written by :meth:`to_h5`."""
        step = group.attrs.get("reciprocal_step")
        return cls(**{n: group[n][()] for n in _ARRAYS}, frame_deg=float(group.attrs["frame_deg"]),
                   reciprocal_step=None if step is None else float(step),
                   reciprocal_units=str(group.attrs["reciprocal_units"]))

    def save_hdf5(self, path: str | os.PathLike, recipe: Any = None) -> str:
        """Write this map to an HDF5 results file (atomically), with the recipe that made it if given."""
        return Results({"strain_map": self}, recipe or Recipe()).save(path)

    @classmethod
    def load_hdf5(cls, path: str | os.PathLike) -> StrainMap:
        """Read the map of a file written by :meth:`save_hdf5` (or any results file holding one)."""
        found = [v for v in Results.load(path).values() if isinstance(v, StrainMap)]
        if not found:
            raise ParameterError(f"{os.fspath(path)} holds no strain map", field="path")
        return found[0]

    def __repr__(self) -> str:
        n = self.mask.size
        return f"StrainMap(scan_shape={self.mask.shape}, valid={n - int(self.mask.sum())}/{n}, frame_deg={self.frame_deg})"


_ARRAYS = ("exx", "eyy", "exy", "theta_deg", "mask", "failure", "g1", "g2", "num_peaks", "residual_px",
           "g1_ref", "g2_ref")


def strain_map(peaks: PeakTable, params: StrainMapParams | None = None, calibration: Calibration | None = None,
               *, reference: StrainMap | LatticeFit | tuple | None = None, **changes: Any) -> StrainMap:
    """Fit the lattice at every position and map strain and rotation (``fw.strain_map``).

    Parameters
    ----------
    peaks : PeakTable
        From :func:`~fourd_widgets.analysis.disks.find_disks` (detector px) or calibrated.
    params : StrainMapParams, optional
        Defaults: basis suggested from the peaks, reference = median of all fits.
    calibration : Calibration, optional
        Origin (or origin_map), optional ellipse, rotation and flip; needed for a table in px.
    reference : StrainMap, LatticeFit or (g1, g2), optional
        Reference lattice from another dataset (overrides the params' region and vectors);
        its vectors are also used for indexing when ``params.g1`` is not set.
    **changes
        Field overrides of ``params``.

    Returns
    -------
    StrainMap
        Failed positions are NaN in every map and True in ``mask``.

    Raises
    ------
    MissingCalibrationError
        A table in px without a calibration holding the origin.
    ParameterError
        Missing/collinear basis, reference region without valid fits, too few peaks anywhere.
    """
    p = own_record(params, StrainMapParams, changes, "strain_map")
    ref_vecs = None
    if reference is not None:
        if isinstance(reference, StrainMap):
            ref_vecs = (reference.g1_ref, reference.g2_ref)
        elif isinstance(reference, LatticeFit):
            ref_vecs = reference_lattice(reference)
        else:
            try:
                a, b = reference
            except (TypeError, ValueError):
                raise ParameterError("reference must be a StrainMap, a LatticeFit or a pair (g1, g2)",
                                     field="reference") from None
            ref_vecs = (vec2(a, "reference g1"), vec2(b, "reference g2"))
            check_basis(*ref_vecs, what="reference g1 and g2")
    if len(peaks) == 0:
        raise ParameterError("strain_map: the peak table is empty; detect disks first (find_disks) with lower "
                             "thresholds", field="peaks")
    if ref_vecs is None and p.reference_g1 is not None:
        ref_vecs = (np.asarray(p.reference_g1, float), np.asarray(p.reference_g2, float))
    if p.g1 is not None:
        g1, g2 = np.asarray(p.g1, float), np.asarray(p.g2, float)
    else:
        region = p.reference_region
        if region is not None and np.shape(region) != tuple(peaks.scan_shape):
            region = None  # strain_map_from_fit names the wrong shape
        basis = suggest_basis(peaks, calibration, reference_region=region)  # one lattice: the reference's
        if ref_vecs is not None:  # the same lattice vectors as the reference, as this data shows them
            basis = basis.match(*ref_vecs)
        g1, g2 = basis.g1, basis.g2
    fit = fit_lattice(peaks, g1, g2, calibration, max_peak_spacing=p.max_peak_spacing,
                      min_num_peaks=p.min_num_peaks, weights=p.weights, fit_origin=p.fit_origin, refine=p.refine)
    if not fit.valid.any():
        raise ParameterError(
            f"strain_map: no position could be fitted ({_failure_summary(fit.failure)}; at most "
            f"{int(fit.num_peaks.max())} peaks indexed, {p.min_num_peaks} needed). Check g1/g2 against the "
            "Bragg vector map, raise max_peak_spacing or lower min_num_peaks", field="min_num_peaks")
    units = peaks.units if peaks.units != "px" else None
    return strain_map_from_fit(fit, calibration, reference=ref_vecs, reference_region=p.reference_region,
                               frame_deg=p.frame_deg, units=units)


def strain_map_from_fit(fit: LatticeFit, calibration: Calibration | None = None, *,
                        reference: tuple | None = None, reference_region: np.ndarray | None = None,
                        frame_deg: float = 0.0, units: str | None = None) -> StrainMap:
    """Strain maps from an existing lattice fit: the cheap last step, for a widget's reference region or frame.

    Parameters
    ----------
    fit : LatticeFit
        From :func:`fit_lattice`.
    calibration : Calibration, optional
        Rotation and flip between scan and detector, pixel size (for ``StrainMap.reciprocal_step``).
    reference : (g1, g2), optional
        Explicit reference vectors; else the median over ``reference_region`` (all positions for None).
    reference_region : (Rx, Ry) bool array, optional
    frame_deg : float
        Strain frame angle, counter-clockwise from scan x.
    units : str, optional
        Units of the vectors when the fit was made on a calibrated table (then no pixel size applies).

    Returns
    -------
    StrainMap

    Examples
    --------
    >>> t = lattice_peaks((2, 2), (32.0, 32.0), (10.0, 0.0), (0.0, 12.0), (64, 64))
    >>> fit = fit_lattice(t, (10, 0), (0, 12), Calibration(origin=(32, 32)))
    >>> sm = strain_map_from_fit(fit, reference=((10 * 1.02, 0.0), (0.0, 12.0)))  # this lattice is 2 % larger
    >>> round(float(sm.exx[0, 0]), 12)
    0.02
    """
    if reference is not None:
        g1_ref, g2_ref = vec2(reference[0], "reference g1"), vec2(reference[1], "reference g2")
        check_basis(g1_ref, g2_ref, "reference g1 and g2")
    else:
        g1_ref, g2_ref = reference_lattice(fit, reference_region)
    cal = calibration or Calibration()
    maps = strain_from_lattice(fit.g1, fit.g2, g1_ref, g2_ref, rotation_deg=cal.rotation_deg, flip=cal.flip,
                               frame_deg=frame_deg)
    mask = ~fit.valid
    for v in maps.values():
        v[mask] = np.nan
    step = cal.reciprocal_step if units is None else None
    return StrainMap(**maps, mask=mask, failure=fit.failure, g1=fit.g1, g2=fit.g2, num_peaks=fit.num_peaks,
                     residual_px=fit.residual_px, g1_ref=g1_ref, g2_ref=g2_ref, frame_deg=float(frame_deg),
                     reciprocal_step=step, reciprocal_units=cal.reciprocal_units if units is None else units)


def lattice_peaks(scan_shape: tuple[int, int], origin: Any, g1: Any, g2: Any, detector_shape: tuple[int, int], *,
                  edge: float = 0.0, hk_max: int = 10, intensity: Any = None) -> PeakTable:
    """A peak table of ideal lattice points ``origin + h g1 + k g2`` on the detector.

    For overlays of a chosen lattice, and for tests on exact (ground-truth) peak positions.

    Parameters
    ----------
    scan_shape : (Rx, Ry)
    origin : (2,) or (Rx, Ry, 2) array
        Zero beam, detector px.
    g1, g2 : (2,) or (Rx, Ry, 2) arrays
        Basis vectors (px, detector frame including any distortion).
    detector_shape : (Qx, Qy)
    edge : float
        Keep points at least this far inside the detector.
    hk_max : int
        Largest |h|, |k| considered.
    intensity : callable, optional
        ``f(h, k) -> weights``; default 1 for every point, 10 for the origin.

    Returns
    -------
    PeakTable
        In detector px; position p holds its points in (h, k) order, origin first.
    """
    shape = tuple(int(n) for n in scan_shape)
    P = int(np.prod(shape))
    o = np.broadcast_to(np.asarray(origin, float), shape + (2,)).reshape(P, 2)
    a = np.broadcast_to(np.asarray(g1, float), shape + (2,)).reshape(P, 2)
    b = np.broadcast_to(np.asarray(g2, float), shape + (2,)).reshape(P, 2)
    r = np.arange(-hk_max, hk_max + 1)
    hh, kk = (x.ravel() for x in np.meshgrid(r, r, indexing="ij"))
    first = np.argsort((hh != 0) | (kk != 0), kind="stable")  # origin first
    hh, kk = hh[first], kk[first]
    q = o[:, None] + hh[None, :, None] * a[:, None] + kk[None, :, None] * b[:, None]  # (P, n, 2)
    Qx, Qy = detector_shape
    inside = ((q[..., 0] >= edge) & (q[..., 0] <= Qx - 1 - edge) & (q[..., 1] >= edge) & (q[..., 1] <= Qy - 1 - edge))
    w = (np.where((hh == 0) & (kk == 0), 10.0, 1.0) if intensity is None
         else np.asarray(intensity(hh, kk), float) * np.ones_like(hh, float))
    counts = inside.sum(1)
    pi, ni = np.nonzero(inside)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return PeakTable(shape, offsets, q[pi, ni, 0], q[pi, ni, 1], w[ni], w[ni])


# --- recipe step -----------------------------------------------------------------------------
def strain_map_step(cube: Any, params: StrainMapParams, context: RunContext) -> StrainMap:
    """Recipe adapter: the strain map of the peak table of the step labelled ``params.peaks``."""
    peaks = context.results.get(params.peaks)
    if not isinstance(peaks, PeakTable):
        have = ", ".join(f"{k} ({type(v).__name__})" for k, v in context.results.items()) or "none"
        raise ParameterError(
            f"strain_map needs the peak table of an earlier step labelled {params.peaks!r} (a find_disks "
            f"step); earlier results: {have}. Add a find_disks step before it or set peaks= to its label",
            field="peaks")
    return strain_map(peaks, params, current_calibration(cube, context))


_step = strain_map_step  # its name before the step manifest
