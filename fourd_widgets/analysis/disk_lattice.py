"""Lattice-constrained disk positions: every found disk of a pattern on one fitted lattice.

At low dose a disk holds only a few electrons and its centre, estimated on its own,
scatters by a good fraction of a pixel (the Cramér–Rao bound of a (220) disk of the
shared Si sets at 2000 e/probe, ~12 electrons, is 0.31–0.41 px per axis); a weak
disk is sometimes found several pixels off. The disks of one single-crystal pattern
are not independent, though: they all lie on one lattice

    q = o + h g1 + k g2        (detector px, integer h, k)

so fitting ``o, g1, g2`` to all of them together, each disk weighted by its
electrons (the inverse variance of its centre), and reporting every disk at its
fitted site pools the information of all the disks into each one.
:func:`snap_to_lattice` does this:

1. Anchor each pattern at its strongest peak (the zero beam in thin samples; any
   lattice point would do) or at the calibrated origin when a calibration is given.
2. Basis: ``g1, g2`` as given, or suggested from the Bragg vector map of the
   anchor-relative peaks of the whole table
   (:func:`~fourd_widgets.analysis.lattice_basis.suggest_basis`).
3. Index every peak (:func:`~fourd_widgets.analysis.strain.index_peaks`) — first
   with a tolerance of a quarter of the shortest lattice vector, against the
   basis; then twice at ``max_distance``, against each pattern's own fitted
   lattice — and fit after each indexing: weighted least squares with ``o`` free
   per pattern and ``g1, g2`` shared by a Gaussian scan neighbourhood of
   ``scan_sigma`` steps (``0``: per pattern).
4. Each peak indexed within ``max_distance`` of its site is moved to the site
   (two peaks on one site: the one with more intensity stays); the others are
   dropped. ``intensity`` and ``correlation`` are kept.

Patterns that cannot be fitted — no indexed peak of their own, fewer than
``min_disks``, a neighbourhood whose indexed disks do not span two directions
(with ``scan_sigma = 0``: fewer than three non-collinear disks), or an invalid
pattern — keep their free estimates unchanged and lack the
:data:`~fourd_widgets.analysis.peaks.FLAG_LATTICE` bit that marks snapped positions
in ``PeakTable.flags``.

Why per neighbourhood and not per pattern: at 2000 e/probe about 4.6 disks per
pattern are found in the shared Si sets (the zero beam, ~3 of the four (220), one
(400) in three patterns), so a six-parameter fit per pattern is nearly exactly
determined and gains little (median 0.55–0.70 px, as the free estimates). Sharing
``g1, g2`` over a few scan steps while keeping the origin per pattern gives
0.19–0.24 px median at ``scan_sigma = 1`` and 0.12–0.21 px at 2, with no disk
left more than 2 px from the truth (``tests/analysis/test_disks_accuracy.py``).

Examples
--------
>>> from fourd_widgets.analysis.strain import lattice_peaks
>>> t = lattice_peaks((3, 3), (32.0, 32.0), (10.0, 0.0), (0.0, 12.0), (64, 64), edge=4)
>>> noisy = PeakTable(t.scan_shape, t.offsets, t.qx + 0.3 * np.sin(7 * t.qy), t.qy, t.intensity,
...                   t.correlation)
>>> s = snap_to_lattice(noisy, g1=(10, 0), g2=(0, 12), scan_sigma=0)
>>> float(np.abs(s.qx - t.qx).max()) < float(np.abs(noisy.qx - t.qx).max()), bool(s.flags.all())
(True, True)

Notes
-----
The constraint is physically valid when the probe sees one crystal with
homogeneous strain over the probed area (the diffraction pattern of a
homogeneously deformed crystal is a lattice, ``g' = F^-T g``), and it survives the
detector: an affine distortion (elliptic projector distortion, shear, scaling,
rotation) maps a lattice onto a lattice, so fitting in raw detector pixels needs no
calibration. Sharing ``g1, g2`` over ``scan_sigma`` steps adds the assumption that
the strain varies slowly on that scale; strain maps made from the snapped disks are
smoothed accordingly (a linear strain gradient is reproduced without bias inside
the scan, at its edges the neighbourhood is one-sided). It is not valid where the
probe straddles overlapping grains or a boundary (two lattices in one pattern),
for diffraction from several phases, or for non-affine (e.g. barrel) detector
distortion beyond ``max_distance``: there, disks of the minor lattice are dropped
or, when within ``max_distance`` of a site, moved onto it. Snapping never adds a
disk: a lattice site without a found disk stays empty.

References
----------
.. [1] C. Ophus, "Four-Dimensional Scanning Transmission Electron Microscopy
   (4D-STEM): From Scanning Nanodiffraction to Ptychography and Beyond",
   Microsc. Microanal. 25, 563-582 (2019) (lattice fits of Bragg disks).
.. [2] S. M. Kay, *Fundamentals of Statistical Signal Processing: Estimation
   Theory*, Prentice Hall (1993), ch. 3 and 8 (Cramér–Rao bound; weighted least
   squares with inverse-variance weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..core.errors import ParameterError
from ..core.params import Params, param
from .lattice_basis import check_basis, check_optional_basis, index_peaks, suggest_basis, vec2
from .peaks import FLAG_INVALID, FLAG_LATTICE, PeakTable, origin_per_peak
from .steps import own_record

__all__ = ["DiskLatticeParams", "snap_to_lattice"]

@dataclass(frozen=True)
class DiskLatticeParams(Params):
    """Lattice constraint of disk detection (:func:`~fourd_widgets.analysis.disk_lattice.snap_to_lattice`).

    Every found disk of a pattern is indexed on one lattice ``q = o + h g1 + k g2``
    (detector px, the frame of the peak table); ``o`` is fitted per pattern and
    ``g1, g2`` over a Gaussian neighbourhood of ``scan_sigma`` scan steps, weighted
    by the electrons in each disk. Each disk is reported at its fitted site; disks
    farther than ``max_distance`` from every site are dropped. See
    :mod:`fourd_widgets.analysis.disk_lattice` for when the constraint is valid.
    """

    step = "disk_lattice"

    g1: tuple[float, float] | None = param(None, units="px", doc="first lattice vector (x, y) for indexing, "
                                           "detector px; None: suggested from the Bragg vector map")
    g2: tuple[float, float] | None = param(None, units="px", doc="second lattice vector; None: suggested")
    max_distance: float = param(2.0, units="px", gt=0, doc="drop a disk farther than this from its fitted "
                                "lattice site")
    scan_sigma: float = param(1.0, units="scan steps", ge=0, doc="Gaussian width of the scan neighbourhood "
                              "sharing g1, g2 (2-D scans only); 0: one fit per pattern. Strain maps made "
                              "from the snapped disks are smoothed by as much")
    min_disks: int = param(1, ge=1, doc="fewest indexed disks (zero beam included) a pattern needs to be "
                           "snapped; others keep their free estimates")

    def validate(self) -> None:
        check_optional_basis(self.step, self.g1, self.g2)


#: Indexing passes: one coarse (against the basis), then against each pattern's own fit.
_PASSES = 3
#: Coarse indexing tolerance, as a fraction of the shortest lattice vector.
_COARSE = 0.25


def _anchors(peaks: PeakTable, calibration: Any) -> np.ndarray:
    """(n, 2) anchor under each peak: the calibrated origin, else the position's strongest peak."""
    if calibration is not None and (getattr(calibration, "origin_map", None) is not None
                                    or getattr(calibration, "origin", None) is not None):
        return np.stack(origin_per_peak(peaks, calibration, "snapping disks to the lattice"), -1)
    pos = peaks.positions()
    key = np.where(np.isfinite(peaks.intensity), peaks.intensity, -np.inf)
    order = np.lexsort((peaks.correlation, key, pos))  # within a position: weakest ... strongest
    counts = np.diff(peaks.offsets)
    strongest = order[peaks.offsets[1:][counts > 0] - 1]
    per_pos = np.zeros((len(counts), 2))
    per_pos[counts > 0] = np.stack([peaks.qx[strongest], peaks.qy[strongest]], -1)
    return per_pos[pos]


def _basis(vectors: np.ndarray, peaks: PeakTable, p: DiskLatticeParams) -> tuple[np.ndarray, np.ndarray]:
    if p.g1 is not None:
        return vec2(p.g1, "g1"), vec2(p.g2, "g2")
    rel = PeakTable((len(peaks.offsets) - 1, 1), peaks.offsets, vectors[:, 0], vectors[:, 1], peaks.intensity,
                    peaks.correlation, units="px from the anchor")
    try:
        b = suggest_basis(rel)
    except ParameterError as exc:
        raise ParameterError(f"snap_to_lattice: no lattice found in the Bragg vector map of the peaks ({exc}); "
                             "give g1 and g2 (px) by hand", field="g1") from None
    return b.g1, b.g2


def _solve(pos: np.ndarray, h: np.ndarray, k: np.ndarray, v: np.ndarray, w: np.ndarray,
           scan_shape: tuple[int, ...], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted LSQ of ``v = o_p + h g1 + k g2``: ``o_p`` per position, ``g1, g2`` per neighbourhood.

    With the origin eliminated, each position contributes its weighted (h, k)
    scatter and (h, k)-v covariance about its own weighted means; these moments are
    summed over a Gaussian scan neighbourhood (sigma 0: the position alone) and
    solved for ``g1, g2``; ``o_p`` follows from the position's own means.

    Returns
    -------
    coef : (P, 3, 2) array
        ``o, g1, g2`` per position (NaN where not solvable).
    ok : (P,) bool array
        Solvable: weighted peaks of its own, and an (h, k) scatter spanning two directions.
    """
    npos = int(np.prod(scan_shape))
    hf, kf = h.astype(np.float64), k.astype(np.float64)

    def acc(x: np.ndarray) -> np.ndarray:
        return np.bincount(pos, weights=x, minlength=npos)

    sw, sh, sk = acc(w), acc(w * hf), acc(w * kf)
    sv = np.stack([acc(w * v[:, 0]), acc(w * v[:, 1])], -1)
    inv = np.divide(1.0, sw, out=np.zeros(npos), where=sw > 0)
    mh, mk, mv = sh * inv, sk * inv, sv * inv[:, None]
    # centred moments, stacked to smooth them in one call: hh, hk, kk, hx, hy, kx, ky
    mom = np.stack([acc(w * hf * hf) - sh * mh, acc(w * hf * kf) - sh * mk, acc(w * kf * kf) - sk * mk,
                    acc(w * hf * v[:, 0]) - sh * mv[:, 0], acc(w * hf * v[:, 1]) - sh * mv[:, 1],
                    acc(w * kf * v[:, 0]) - sk * mv[:, 0], acc(w * kf * v[:, 1]) - sk * mv[:, 1]], -1)
    if sigma > 0 and len(scan_shape) == 2:
        # mode='constant': a one-sided neighbourhood at the scan edge (the solution is scale-free)
        mom = ndimage.gaussian_filter(mom.reshape(scan_shape + (7,)), (sigma, sigma, 0),
                                      mode="constant").reshape(npos, 7)
    hh, hk, kk = mom[:, 0], mom[:, 1], mom[:, 2]
    hv, kv = mom[:, 3:5], mom[:, 5:7]
    det = hh * kk - hk ** 2
    tr = hh + kk
    ok = (sw > 0) & (np.divide(det, tr ** 2, out=np.zeros(npos), where=tr > 0) > 1e-6)
    coef = np.full((npos, 3, 2), np.nan)
    d = det[ok, None]
    g1 = (kk[ok, None] * hv[ok] - hk[ok, None] * kv[ok]) / d
    g2 = (hh[ok, None] * kv[ok] - hk[ok, None] * hv[ok]) / d
    coef[ok, 0] = mv[ok] - mh[ok, None] * g1 - mk[ok, None] * g2
    coef[ok, 1], coef[ok, 2] = g1, g2
    return coef, ok


def snap_to_lattice(peaks: PeakTable, params: DiskLatticeParams | None = None, calibration: Any = None,
                    **changes: Any) -> PeakTable:
    """Move every found disk onto its site of the pattern's fitted lattice; drop the ones far from any site.

    Parameters
    ----------
    peaks : PeakTable
        From :func:`~fourd_widgets.analysis.disks.find_disks` (detector px). A 2-D scan
        shape ``(Rx, Ry)`` is a scan grid (``scan_sigma`` applies); any other scan shape
        (e.g. ``(N,)``, a list of patterns) is fitted pattern by pattern.
    params : DiskLatticeParams, optional
        ``g1, g2`` (px, detector frame; None: suggested from the Bragg vector map),
        ``max_distance`` (px), ``scan_sigma`` (scan steps), ``min_disks``.
    calibration : Calibration, optional
        When it holds ``origin`` or ``origin_map``, the origin anchors the first indexing
        instead of each pattern's strongest peak. Nothing else of it is used: the fit is
        made in detector pixels (an affine distortion keeps a lattice a lattice).
    **changes
        Field overrides of ``params``, e.g. ``g1=(23.5, 23.5), g2=(23.5, -23.5)``.

    Returns
    -------
    PeakTable
        Same scan shape, detector px. At snapped positions (``flags & FLAG_LATTICE``)
        ``qx, qy`` are the fitted sites of the disks indexed within ``max_distance``, the
        others dropped; positions that could not be fitted keep their free estimates
        (see the module notes). ``intensity`` and ``correlation`` are those of the found
        disks. A table without peaks is returned as it is.

    Raises
    ------
    ParameterError
        A calibrated table (snap before calibrating), a zero or collinear basis, or no
        lattice found in the Bragg vector map (``field='g1'``: give the basis by hand).

    Examples
    --------
    Six strong disks on the lattice; a weak one 1.5 px off its site (43.5, 44) is moved onto
    the fitted site, a weak maximum 5 px from every site is dropped:

    >>> t = PeakTable((1,), [0, 7], qx=[32.0, 42, 22, 32, 32, 43.5, 37], qy=[32.0, 32, 32, 44, 20, 44, 20],
    ...               intensity=[1000.0, 100, 100, 100, 100, 1, 1], correlation=[1.0] * 7)
    >>> s = snap_to_lattice(t, g1=(10, 0), g2=(0, 12))
    >>> np.round(s.qx, 1).tolist(), np.round(s.qy, 1).tolist(), bool(s.flags[0] & FLAG_LATTICE)
    ([32.0, 42.0, 22.0, 32.0, 32.0, 42.0], [32.0, 32.0, 32.0, 44.0, 20.0, 44.0], True)
    """
    p = own_record(params, DiskLatticeParams, changes, "snap_to_lattice")
    if peaks.units != "px":
        raise ParameterError(f"snap_to_lattice needs a peak table in detector pixels, got units {peaks.units!r}; "
                             "snap first, then calibrate (table.to_calibrated(calibration))", field="peaks")
    if len(peaks) == 0:
        return peaks
    anchor = _anchors(peaks, calibration)
    v = np.stack([peaks.qx, peaks.qy], -1) - anchor
    g1, g2 = _basis(v, peaks, p)
    check_basis(g1, g2, "snap_to_lattice: g1 and g2")
    pos = peaks.positions()
    npos = len(peaks.offsets) - 1
    w = np.where(np.isfinite(peaks.intensity) & (peaks.intensity > 0), peaks.intensity, 0.0)
    shortest = min(float(np.hypot(*g)) for g in (g1, g2, g1 + g2, g1 - g2))
    coef = np.broadcast_to(np.stack([np.zeros(2), g1, g2]), (npos, 3, 2)).copy()
    for it in range(_PASSES):
        tol = max(p.max_distance, _COARSE * shortest) if it == 0 else p.max_distance
        h, k, ok = index_peaks(v, coef[pos, 1], coef[pos, 2], tol, coef[pos, 0])
        ok &= w > 0
        fit, solved = _solve(pos[ok], h[ok], k[ok], v[ok], w[ok], peaks.scan_shape, p.scan_sigma)
        coef[solved] = fit[solved]  # the others keep the previous guess
    h, k, ok = index_peaks(v, coef[pos, 1], coef[pos, 2], p.max_distance, coef[pos, 0])
    count = np.bincount(pos[ok], minlength=npos)
    snapped = solved & (count >= p.min_disks) & ((peaks.flags.reshape(-1) & FLAG_INVALID) == 0)
    site = coef[pos, 0] + h[:, None] * coef[pos, 1] + k[:, None] * coef[pos, 2] + anchor
    on = snapped[pos]
    keep = ~on | ok
    # two peaks indexed to one site: the one with more intensity stays
    idx = np.flatnonzero(on & ok)
    idx = idx[np.lexsort((-w[idx], k[idx], h[idx], pos[idx]))]
    same = (pos[idx][1:] == pos[idx][:-1]) & (h[idx][1:] == h[idx][:-1]) & (k[idx][1:] == k[idx][:-1])
    keep[idx[1:][same]] = False
    q = np.where(on[:, None], site, np.stack([peaks.qx, peaks.qy], -1))[keep]
    counts = np.bincount(pos[keep], minlength=npos)
    flags = peaks.flags.reshape(-1) | np.where(snapped, FLAG_LATTICE, 0).astype(np.uint8)
    return PeakTable(peaks.scan_shape, np.concatenate([[0], np.cumsum(counts)]), q[:, 0], q[:, 1],
                     peaks.intensity[keep], peaks.correlation[keep], flags=flags.reshape(peaks.scan_shape))
