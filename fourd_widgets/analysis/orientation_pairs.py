"""Two orientations under one probe: a pattern decomposed as the sum of two orientations' spots.

Near a grain boundary (or through two grains stacked along the beam) a pattern is, to first order,
the sum of the patterns of two orientations, each weighted by how much of the probe it sees. A
ranking of single templates cannot give both: the second best single template is the best one's
neighbour. Here the single-template correlation only proposes candidates, and they are fitted in
pairs:

1. a candidate orientation is its spots on the plan's shells (where along each ring), each a
   Gaussian along the ring of the plan's kernel with its own non-negative intensity: kinematic
   intensities are not trusted (dynamical scattering, and the boundary itself, change them);
2. the candidates: every other in-plane bin of the best single match's zone axis (a weaker grain
   sharing it need not show in the single correlation), the best angles of the next zone axes, and
   those of the zone axis that best matches what the best candidate leaves (a weaker grain on
   another zone axis);
3. a pair's spots are fitted together by non-negative least squares (overlapping spots share what
   they cover); the stronger is tried among the ``NUM_FIRST`` best single fits, the weaker among all
   candidates at least ``min_angle_deg + SPLIT_MARGIN`` from it (closer pairs split one grain).
   Free intensities say little about a small beam tilt, so a pair of two zone axes is taken over the
   best pair of one only when it explains ``ZONE_GAIN`` of what that one leaves; each of the two is
   then turned about the beam on a tenth of the plan's in-plane step, the other held;
4. the pair is kept when it explains more than the best single candidate (``MIN_GAIN`` of what that
   one leaves, both on the fine grid) and the weaker holds at least ``MIN_WEIGHT`` of the fitted spot
   intensity. Match 1 is the stronger by fitted spot intensity, match 2 the other, with their weights
   (fractions of the fitted spot intensity).

The pattern is read linearly (no intensity power): the sum of two patterns stays a sum. Resolved
disks are a poor fit to spots, and overlapping ones worse: read such patterns as disk rims
(``read="disk_rims"`` of :class:`~fourd_widgets.analysis.orientation_raw.OrientationMapRawParams`),
where every disk, overlapping or not, becomes a spot at its centre. What it gives on the abTEM Si
bicrystal (grains 10 degrees apart about [001], disks overlapping) is in bench/RESULTS.md: pattern by
pattern, the two grains within 1 degree in sum at 25 of 80 mixed positions and within 2 at 39 (median 2.0
degrees): the beam tilt of the two is only as good as the kinematic correlation of the stronger gives it
there, and at a few positions the weaker is a wrong orientation (about 60 degrees off) whose spots take up
the overlapping disks' misfit. The free intensities cannot pin that tilt; the grains' single-grain positions can: a
second pass (:mod:`.orientation_boundaries`) fits each position with the grains around it, with this
module's spot model, and takes them where they explain it nearly as well (then within 1 degree in sum
at all 80). Two grains closer than ``min_angle_deg + SPLIT_MARGIN`` are not told apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .crystal import excitation_error, shape_function
from .orientation_plan import OrientationPlan, PhasePlan, angular_kernel, frame_matrices, in_plane_rotation
from .orientation_results import misorientation_deg

__all__ = ["RingFit", "ring_fit", "candidate_spots", "pair_energy", "spot_intensities", "spot_rings", "decompose",
           "describe", "MIN_GAIN", "MIN_WEIGHT"]

#: A pair is kept when it explains at least this fraction of what the best single candidate leaves.
MIN_GAIN = 0.05
#: ... and its weaker orientation holds at least this fraction of the fitted spot intensity.
MIN_WEIGHT = 0.05
#: Two zone axes rather than one when they explain at least this fraction of what one zone axis's pair leaves.
ZONE_GAIN = 0.2
#: Spots weaker than this fraction of a candidate's strongest (kinematic) are left out of its fit.
SPOT_FLOOR = 0.01
#: Fine angle bins per plan bin for the fit and the refinement.
UPSAMPLE = 10
#: Zone axes (at least min_angle_deg apart) and candidates (zone axis, in-plane angle) fitted in pairs.
NUM_ZONES, NUM_CANDIDATES = 3, 48
#: Zone axes proposed by the correlation of what the best candidate leaves.
NUM_RESIDUAL_ZONES = 1
#: Candidates (best single fits) tried as the stronger of a pair.
NUM_FIRST = 4
#: Two orientations closer than min_angle_deg plus this (deg) are not a pair: the model's spots are narrower
#: than disk rims, and two neighbours on either side of one grain fit its spots better than the grain (measured
#: on the abTEM bicrystal: with 0 such splits at 71 of 176 single-grain positions, with 4 at none).
SPLIT_MARGIN = 4.0

_HALF_TURN = np.diag([-1.0, -1.0, 1.0])


@dataclass
class RingFit:
    """One pattern's rings ready for the fit.

    Attributes
    ----------
    c : (S, n_fine) array
        Dot product of each ring with the spot profile centred at each fine angle bin.
    auto : (S, n_fine) array
        Dot product of two spot profiles on a ring against their angular separation.
    total : float
        Sum of squares of the smoothed rings (what a perfect fit explains).
    profile : (S, n_fine) array
        A spot of each ring before the smoothing (peak 1 at angle 0), on the fine grid: a fitted
        spot of intensity x is ``x`` times it on the rings as read.
    """

    c: np.ndarray
    auto: np.ndarray
    total: float
    profile: np.ndarray

    @property
    def n_fine(self) -> int:
        return int(self.c.shape[1])


def ring_fit(spectrum: np.ndarray, shells: np.ndarray, n_angles: int, kernel_size: float,
             upsample: int = UPSAMPLE) -> RingFit:
    """The :class:`RingFit` of one pattern's rings, from their rfft along the angle (scan frame).

    Parameters
    ----------
    spectrum : (S, n_angles // 2 + 1) complex array
        rfft along the angle of the (S, n_angles) rings (bin i at angle i 360/n_angles degrees).
    shells : (S,) array
        Shell radii, 1/Å: a spot along a ring is a Gaussian of sigma ``kernel_size / 2`` (arc length),
        as in the plan's templates; the rings are smoothed by the same Gaussian before the fit.

    Examples
    --------
    >>> rows = np.zeros((1, 360)); rows[0, 30] = 1.0
    >>> fit = ring_fit(np.fft.rfft(rows, axis=-1), np.array([1.0]), 360, 0.08)
    >>> int(np.argmax(fit.c[0])), fit.auto.shape
    (300, (1, 3600))
    """
    nf = n_angles * upsample
    k = angular_kernel(shells, n_angles, kernel_size)  # FT of the peak-1 Gaussian on the plan's bins
    h = k / k[:, :1]  # the same Gaussian of area 1: the rings are smoothed by it, as for the correlation, so
    # that a spot narrower than the kernel (disk rims, small spots) still has about the model's profile (k h).
    # Wider model spots (1.5 or 2 kernels) remove the pairs that split one grain but merge two grains 10
    # degrees apart (measured on the abTEM bicrystal, bench/RESULTS.md)
    c = np.fft.irfft(spectrum * k * h * h, n=nf, axis=-1) * (nf / n_angles)
    auto = np.fft.irfft(k * k * h * h, n=nf, axis=-1) * (nf / n_angles)
    rows = np.fft.irfft(spectrum * h, n=n_angles, axis=-1)
    return RingFit(c, auto, float(np.sum(rows * rows)), np.fft.irfft(k, n=nf, axis=-1) * (nf / n_angles))


def candidate_spots(phase: PhasePlan, U: np.ndarray, plan: OrientationPlan,
                    n_fine: int) -> tuple[np.ndarray, np.ndarray]:
    """Shell index and fine angle bin (scan frame) of the spots of orientation ``U`` (stronger than ``SPOT_FLOOR``)."""
    p = plan.params
    g = phase.reflections.g @ np.asarray(U, float).T
    radial = np.hypot(g[:, 0], g[:, 1])
    inten = phase.reflections.F2 * shape_function(excitation_error(g, plan.wavelength_A), p.sigma_excitation_error,
                                                  g_radial=radial, precession_angle_deg=p.precession_angle_deg)
    keep = inten > SPOT_FLOOR * inten.max() if len(inten) else np.zeros(0, bool)
    shell = np.argmin(np.abs(phase.reflections.g_norm[keep, None] - phase.shells[None]), axis=1)
    angle = np.mod(np.arctan2(g[keep, 1], g[keep, 0]), 2 * math.pi) * n_fine / (2 * math.pi)
    return shell.astype(np.int64), np.round(angle).astype(np.int64) % n_fine


def pair_energy(fit: RingFit, s1: np.ndarray, a1: np.ndarray, v1: np.ndarray, s2: np.ndarray, a2: np.ndarray,
                v2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What two candidates explain together, with free non-negative spot intensities.

    The spots of both, each a Gaussian along its ring, are fitted to the rings by non-negative least
    squares (overlapping spots share what they cover; an active set of a few rounds).

    Parameters
    ----------
    fit : RingFit
    s1, a1, v1 : (..., m1) arrays
        Shell index, fine angle bin and validity (padding False) of the first candidate's spots.
    s2, a2, v2 : (..., m2) arrays
        The same for the second (broadcast against the first's leading dimensions).

    Returns
    -------
    energy, weight1, weight2 : (...) arrays
        Explained sum of squares, and the summed fitted intensities of each candidate's spots.
        With no valid spots in ``v2`` it is the first candidate's fit alone.

    Examples
    --------
    One ring: spots at 10 and 100 degrees (intensity 1) and at 40 degrees (0.5); the first candidate
    has spots at 10 and 100 degrees, the second one at 40 degrees:

    >>> rows = np.zeros((1, 360)); rows[0, [10, 100]] = 1.0; rows[0, 40] = 0.5
    >>> fit = ring_fit(np.fft.rfft(rows, axis=-1), np.array([1.0]), 360, 0.04)
    >>> one, two = (np.array([[0, 0]]), np.array([[100, 1000]])), (np.array([0]), np.array([400]))
    >>> e, w1, w2 = pair_energy(fit, *one, np.ones((1, 2), bool), *two, np.ones(1, bool))
    >>> bool(e[0] > pair_energy(fit, *one, np.ones((1, 2), bool), *two, np.zeros(1, bool))[0][0])
    True
    >>> round(float(w2[0] / (w1[0] + w2[0])), 2)  # the second holds a fifth of the intensity
    0.2
    """
    lead = np.broadcast_shapes(*(x.shape[:-1] for x in (s1, a1, v1, s2, a2, v2)))
    m1 = s1.shape[-1]
    s, a, v = (np.concatenate([np.broadcast_to(x, lead + x.shape[-1:]), np.broadcast_to(y, lead + y.shape[-1:])], -1)
               for x, y in ((s1, s2), (a1, a2), (v1, v2)))
    x, b = spot_intensities(fit, s, a, v)
    return np.sum(x * b, -1), x[..., :m1].sum(-1), x[..., m1:].sum(-1)


def spot_intensities(fit: RingFit, s: np.ndarray, a: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative least-squares intensities ``x`` (..., m) of spots (shell ``s``, fine bin ``a``, valid ``v``)
    on the rings, and their dot products ``b`` with the rings (``x @ b`` is the explained sum of squares)."""
    nf = fit.n_fine
    b = np.where(v, fit.c[s, a], 0.0)
    d = np.abs(a[..., :, None] - a[..., None, :])
    d = np.minimum(d, nf - d)
    G = np.where((s[..., :, None] == s[..., None, :]) & v[..., :, None] & v[..., None, :],
                 fit.auto[s[..., :, None], d], 0.0)
    eye = np.eye(s.shape[-1], dtype=bool)
    G = G + eye * (1e-6 * fit.auto[s, 0])[..., None]  # two candidates' spots on one spot: split, not singular
    act = v & (b > 0)
    x = np.zeros(b.shape)
    for _ in range(6):  # active set: spots fitted negative leave, the rest are fitted again
        both = act[..., :, None] & act[..., None, :]
        Ga = np.where(both, G, eye)
        x = np.linalg.solve(Ga, np.where(act, b, 0.0)[..., None])[..., 0]
        neg = act & (x < 0)
        if not neg.any():
            break
        act = act & ~neg
    return np.where(act, np.clip(x, 0, None), 0.0), b


def _candidates(corr: np.ndarray, frames: np.ndarray, spectra: np.ndarray,
                n_angles: int) -> tuple[np.ndarray, np.ndarray]:
    """(zone, in-plane bin) candidates, within one period of each template's own rotational symmetry:
    every angle of the first zone (a weaker grain sharing the zone axis need not show in the single
    correlation), and for the others the angles where the correlation is at least half the best (the
    best ``NUM_CANDIDATES``)."""
    zz, kk, cc, keep = [], [], [], []
    floor = 0.5 * float(corr.max())
    for z in range(len(frames)):
        auto = np.fft.irfft(np.sum(np.abs(spectra[z]) ** 2, axis=0), n=n_angles)
        folds = max(1, int(np.sum(auto >= auto[0] * (1 - 1e-6))))  # the template repeats every n / folds bins
        period = n_angles // folds if n_angles % folds == 0 else n_angles
        row = corr[z]
        # every other bin of the first zone: the refinement turns each by up to a bin either side
        k = np.arange(0, period, 2) if z == 0 else np.flatnonzero(row[:period] >= floor)
        zz.append(np.full(len(k), z))
        kk.append(k)
        cc.append(row[k])
        keep.append(np.full(len(k), z == 0))
    z_all, k_all, c_all, must = (np.concatenate(v) for v in (zz, kk, cc, keep))
    order = np.argsort(-(c_all + 2.0 * must), kind="stable")  # the first zone first, then by correlation
    top = order[:max(NUM_CANDIDATES, int(must.sum()))]
    return z_all[top], k_all[top]


def _zones(corr: np.ndarray, phase: PhasePlan, first: np.ndarray | None, min_angle_deg: float) -> list[int]:
    """The best zone axes of the plan at least min_angle apart (and from ``first``, a beam direction)."""
    cos_min = math.cos(math.radians(max(min_angle_deg, 1e-6)))
    taken = [] if first is None else [first]
    zones: list[int] = []
    for z in np.argsort(-corr.max(axis=1), kind="stable"):
        if all(float(phase.directions[z] @ d) < cos_min for d in taken):
            zones.append(int(z))
            taken.append(phase.directions[z])
        if len(taken) == NUM_ZONES:
            break
    return zones



def _padded(spots: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = max(1, max(len(s) for s, _ in spots))
    S = np.zeros((len(spots), m), np.int64)
    A = np.zeros((len(spots), m), np.int64)
    V = np.zeros((len(spots), m), bool)
    for i, (s, a) in enumerate(spots):
        S[i, :len(s)], A[i, :len(s)], V[i, :len(s)] = s, a, True
    return S, A, V


def decompose(corr: np.ndarray, fit: RingFit, phase: PhasePlan, plan: OrientationPlan, min_angle_deg: float,
              best: np.ndarray | None = None, item: object | None = None,
              residual: Callable[[np.ndarray], object] | None = None) -> dict[str, object] | None:
    """The best pair of orientations of one pattern, or None when one orientation explains it as well.

    Parameters
    ----------
    corr : (Z, n_angles) array
        The single-template correlation of the pattern with the phase's templates.
    fit : RingFit
        The pattern's rings (:func:`ring_fit`).
    phase : PhasePlan
    plan : OrientationPlan
    min_angle_deg : float
        Smallest misorientation between the two (half-turn twins about the beam count as equal).
    best : (3, 3) array, optional
        The refined best single match: its beam direction is the first candidate zone axis (the
        spots' free intensities say little about a small tilt; the kinematic correlation does).
    item : PatternSpectrum, optional
        The pattern's spectrum, to correlate with the template of ``best``'s beam direction.
    residual : callable, optional
        ``residual(rows)`` gives the spectrum (a PatternSpectrum, or None) of the pattern less some
        fitted spots' (S, n_angles) rings: the single-template correlation of what the best candidate
        leaves proposes the candidates of a weaker grain on another zone axis.

    Returns
    -------
    dict or None
        ``matrix`` (2, 3, 3) stronger first, ``weight`` (2,), ``correlation`` (2,) single-template
        correlation of each on the plan's angle grid, ``gain`` the fraction of the single fit's
        residual the pair explains.
    """
    from dataclasses import replace

    from .orientation import correlate_templates
    from .orientation_plan import polar_templates

    n, nf, pp = plan.n_angles, fit.n_fine, plan.params
    if fit.total <= 0:
        return None
    zones = _zones(corr, phase, None if best is None else best[2], min_angle_deg)
    frames, spectra, rows = phase.frames[zones], phase.spectra[zones], corr[zones]
    if best is not None and item is not None:
        f0 = frame_matrices(best[2][None])
        s0, n0 = polar_templates(phase.reflections, f0, phase.shells, n, wavelength_A=plan.wavelength_A, p=pp)
        one = replace(phase, spectra=s0, norms=n0)
        c0 = correlate_templates(item, one, n, pp.kernel_size)  # type: ignore[arg-type]
        frames, spectra, rows = np.concatenate([f0, frames]), np.concatenate([s0, spectra]), np.concatenate([c0, rows])
    zs, ks = _candidates(rows, frames, spectra, n)
    U = [in_plane_rotation(k * 2 * math.pi / n) @ frames[z] for z, k in zip(zs, ks)]
    cval = [float(rows[z, k]) for z, k in zip(zs, ks)]
    zone = [int(z) for z in zs]  # candidates of one zone axis turn about the beam only
    spots = [candidate_spots(phase, u, plan, nf) for u in U]
    if residual is not None and U:  # a weaker grain on another zone axis: the candidates of what the best leaves
        S, A, V = _padded(spots)
        i0 = int(np.argmax(pair_energy(fit, S, A, V, S[:, :0], A[:, :0], V[:, :0])[0]))
        x, _ = spot_intensities(fit, S[i0], A[i0], V[i0])
        left = residual(spot_rings((S[i0][V[i0]], A[i0][V[i0]], x[V[i0]]), len(phase.shells), fit))
        if left is not None:
            cr = correlate_templates(left, phase, n, pp.kernel_size)  # type: ignore[arg-type]
            zr = _zones(cr, phase, None, min_angle_deg)[:NUM_RESIDUAL_ZONES]
            z2, k2 = _candidates(cr[zr], phase.frames[zr], phase.spectra[zr], n)
            for z, k in zip(z2, k2):
                U.append(in_plane_rotation(k * 2 * math.pi / n) @ phase.frames[zr[z]])
                cval.append(float(corr[zr[z], k]))
                zone.append(len(frames) + int(zr[z]))
                spots.append(candidate_spots(phase, U[-1], plan, nf))
    if len(U) < 2:
        return None
    U = np.stack(U)
    S, A, V = _padded(spots)
    single, _, _ = pair_energy(fit, S, A, V, S[:, :0], A[:, :0], V[:, :0])
    apart = np.minimum(misorientation_deg(U[:, None], U[None], phase.symmetry),
                       misorientation_deg((_HALF_TURN @ U)[:, None], U[None], phase.symmetry))
    apart = apart >= min_angle_deg + SPLIT_MARGIN
    # the best pair of one zone axis, and of two; free spot intensities say little about a small beam tilt,
    # so two zone axes only when they explain clearly more (MIN_GAIN of what the one-zone pair leaves)
    zone_of = np.array(zone)
    top = {True: (-np.inf, 0, 0), False: (-np.inf, 0, 0)}
    for i in np.argsort(-single, kind="stable")[:NUM_FIRST]:  # the stronger one is among the best singles
        j = np.flatnonzero(apart[i])
        if len(j) == 0:
            continue
        e, _, _ = pair_energy(fit, S[i][None], A[i][None], V[i][None], S[j], A[j], V[j])
        for same in (True, False):
            sel = (zone_of[j] == zone_of[i]) == same
            if sel.any():
                q = int(np.flatnonzero(sel)[np.argmax(e[sel])])
                if e[q] > top[same][0]:
                    top[same] = (float(e[q]), int(i), int(j[q]))
    one, two = top[True], top[False]
    if not (np.isfinite(one[0]) or np.isfinite(two[0])):
        return None
    if np.isfinite(one[0]) and not two[0] - one[0] >= ZONE_GAIN * (fit.total - one[0]):
        two = one
    # the best single candidate turned on the fine grid too (two plan bins either side: the first zone's
    # candidates are every other bin), so that the pair's own refinement does not count as a gain
    i0 = int(np.argmax(single))
    wide = np.arange(-2 * UPSAMPLE, 2 * UPSAMPLE + 1)
    e1 = float(np.max(pair_energy(fit, S[i0][None], (A[i0][None] + wide[:, None]) % nf, V[i0][None],
                                  S[i0][None, :0], A[i0][None, :0], V[i0][None, :0])[0]))
    _, i, j = two
    # each turned about the beam on the fine grid (a plan bin either side), the other held; twice
    shifts = np.arange(-UPSAMPLE, UPSAMPLE + 1)
    si, ai, vi, sj, aj, vj = S[i], A[i], V[i], S[j], A[j], V[j]
    turn = [0, 0]
    for _ in range(2):
        e, _, _ = pair_energy(fit, si[None], (ai[None] + shifts[:, None]) % nf, vi[None], sj[None], aj[None], vj[None])
        t = int(shifts[np.argmax(e)])
        ai, turn[0] = (ai + t) % nf, turn[0] + t
        e, _, _ = pair_energy(fit, sj[None], (aj[None] + shifts[:, None]) % nf, vj[None], si[None], ai[None], vi[None])
        t = int(shifts[np.argmax(e)])
        aj, turn[1] = (aj + t) % nf, turn[1] + t
    e2, w_i, w_j = (float(v) for v in pair_energy(fit, si, ai, vi, sj, aj, vj))
    gain = (e2 - e1) / max(fit.total - e1, 1e-30)
    total_w = w_i + w_j
    if gain < MIN_GAIN or total_w <= 0 or min(w_i, w_j) < MIN_WEIGHT * total_w:
        return None
    mats = [in_plane_rotation(turn[0] * 2 * math.pi / nf) @ U[i],
            in_plane_rotation(turn[1] * 2 * math.pi / nf) @ U[j]]
    x, _ = spot_intensities(fit, np.concatenate([si, sj]), np.concatenate([ai, aj]), np.concatenate([vi, vj]))
    fitted = [(si[vi], ai[vi], x[:len(si)][vi]), (sj[vj], aj[vj], x[len(si):][vj])]
    order = [0, 1] if w_i >= w_j else [1, 0]
    w = np.array([w_i, w_j]) / total_w
    c = np.array([cval[i], cval[j]])
    return {"matrix": np.stack([mats[o] for o in order]), "weight": w[order], "correlation": c[order], "gain": gain,
            "spots": [fitted[o] for o in order]}


def spot_rings(spots: tuple[np.ndarray, np.ndarray, np.ndarray], n_shells: int, fit: RingFit,
               upsample: int = UPSAMPLE) -> np.ndarray:
    """(S, n_angles) rings of fitted spots (shell index, fine bin, intensity), on the plan's angle bins (scan frame)."""
    s, a, x = spots
    nf = fit.n_fine
    n = nf // upsample
    out = np.zeros((n_shells, n))
    prof = fit.profile
    for sh, ang, amp in zip(s, a, x):
        out[sh] += amp * np.roll(prof[sh], int(ang))[::upsample]
    return out



def describe(U: np.ndarray, phase: PhasePlan) -> tuple[np.ndarray, float]:
    """Zone axis [uvw] (largest component 1) and in-plane angle (deg) of an orientation."""
    direction = U[2]
    uvw = direction @ np.linalg.inv(phase.crystal.direct_matrix)
    Rz = U @ frame_matrices(direction[None])[0].T
    return uvw / np.max(np.abs(uvw)), math.degrees(math.atan2(Rz[1, 0], Rz[0, 0]))
