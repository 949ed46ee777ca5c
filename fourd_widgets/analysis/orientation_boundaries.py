"""Grain boundaries: the two grains under the probe taken from the grains around it.

The per-pattern decomposition (:mod:`.orientation_pairs`) finds both grains at a boundary, but fits
each spot with a free intensity, which says little about a small beam tilt: the boundary's own
intensities pull the stronger grain's tilt by most of a degree and the in-plane angles by about half
of one, and now and then the weaker orientation is a wrong one that soaks up the boundary's misfit.
The grains on either side are measured precisely by their single-grain positions. So, as a
microscopist reads a boundary, after the decomposition of every pattern (``decompose=True`` of
:class:`~fourd_widgets.analysis.orientation_raw.OrientationMapRawParams`, with ``boundary_radius_px``
above 0):

1. grains: match 1 of the positions that are one grain's (second weight at most ``CLEAR_WEIGHT``) is
   segmented (:func:`~.orientation_grains.segment_grains`, threshold ``max(min_angle_deg, 1)``); a
   grain's *core* is those of its positions whose eight scan neighbours are all of it;
2. each position's neighbouring grains: the grains with core positions within ``boundary_radius_px``
   (scan pixels), each with the mean orientation of those core positions (local: a bent grain keeps
   its local orientation);
3. the pattern is fitted as the non-negative sum of two neighbouring grains' spots with the pair
   fit's own free-intensity spot model (:func:`~.orientation_pairs.pair_energy`); the best pair
   counts when it passes the decomposition's own tests (``MIN_GAIN`` over the better of the two
   alone, the weaker holding ``MIN_WEIGHT``);
4. it becomes matches 1 and 2 (stronger first, weights as fitted) when it leaves at most
   ``NEAR`` times what the position's own two matches leave. Otherwise, when the position's match 1 is
   one of the neighbouring grains, its second orientation none of them, and its match 1 alone leaves at
   most ``NEAR`` times what its pair leaves, the second is dropped (weights 1, 0: a second grain is not
   invented inside a grain). Otherwise the position keeps its own result.

``NEAR`` is 2 (measured on the abTEM Si files, bench/RESULTS.md): the bicrystal's mixed positions within
1 degree in sum are 74, 77, 80 and 80 of 80 at ``NEAR`` 1.2, 1.5, 2 and 3, and the polycrystal's positions
with a second grain 80, 16, 14 and 0 (grain ids 100 % at each). Where the own weaker orientation is a wrong
one (about 60 degrees off), its spots take up the misfit of the overlapping disks, so the own pair leaves a
little less than the true grains' pair: ``NEAR`` must exceed that ratio. An own second orientation inside
one grain (the other grain's rims at 2-4 % of the probe, or a neighbour split of the one grain) is removed
by the same ratio. A pattern of another grain than its neighbours' leaves many times more under their pair
(``test_orientation_pairs.py``), so a grain of one position is kept. A grain that is never match 1 (one
buried under another along the beam) is no neighbouring grain: where it holds little of the pattern, step 4
drops it.

``boundary_radius_px`` must reach across the band of mixed positions to both grains' cores, which begin
a row or two inside the single-grain positions: on the bicrystal (a mixed band five rows wide) 5 scan
pixels give 74 of the 80 mixed positions within 1 degree in sum, 7 and 8 all 80; the default is 8.

Only positions of one phase are paired (the fit is on that phase's shells). Single patterns matched
alone (the mapper's chosen positions) have no neighbours: the prior needs the whole map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.job import Buffer, Job
from .orientation_grains import segment_grains
from .orientation_pairs import MIN_GAIN, MIN_WEIGHT, RingFit, candidate_spots, describe, pair_energy, ring_fit
from .orientation_plan import OrientationPlan, PhasePlan
from .orientation_results import OrientationMap, misorientation_deg

__all__ = ["GrainCores", "grain_cores", "neighbour_grains", "boundary_fit", "BoundaryJob", "CLEAR_WEIGHT", "NEAR"]

#: A position is one grain's (it defines the grains) when its second weight is at most this.
CLEAR_WEIGHT = 0.2
#: The neighbours' explanation is taken when it leaves at most this many times what the position's own leaves.
NEAR = 2.0

_HALF_TURN = np.diag([-1.0, -1.0, 1.0])
_NAMES = ("matrix", "phase", "correlation", "zone_axis", "in_plane_deg", "reliability", "num_peaks",
          "phase_correlation", "weight")


@dataclass
class GrainCores:
    """Grains of an orientation map's single-grain positions.

    Attributes
    ----------
    labels : (Rx, Ry) int array
        Grain of each core position (-1: not a core position).
    aligned : (Rx, Ry, 3, 3) array
        Match 1 of each core position, turned by its phase's symmetry (and the half-turn about the
        beam) to the variant nearest its grain's first core orientation: a plain mean averages them.
    phase : (Rx, Ry) int array
        Phase of match 1.
    """

    labels: np.ndarray
    aligned: np.ndarray
    phase: np.ndarray


def _symmetry(om: OrientationMap, k: int) -> np.ndarray:
    return np.asarray(om.crystals[k].laue_group.proper_subgroup.to_matrix(), float).reshape(-1, 3, 3)


def grain_cores(om: OrientationMap, threshold_deg: float, clear_weight: float = CLEAR_WEIGHT) -> GrainCores:
    """The grains of the positions that are one grain's, and their core positions.

    Parameters
    ----------
    om : OrientationMap
        Decomposed (``weight`` set); positions without weights count as one grain's.
    threshold_deg : float
        Misorientation between scan neighbours that still joins them (:func:`segment_grains`).
    clear_weight : float
        Largest second weight of a position that is one grain's.

    Examples
    --------
    >>> from fourd_widgets.analysis.crystal import Crystal
    >>> si = Crystal.from_parameters(5.431, 227, [("Si", 0, 0, 0)])
    >>> Rz = lambda t: np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    >>> U = np.stack([Rz(np.radians(0.0 if i < 3 else 10.0)) for i in range(6) for _ in range(3)])
    >>> w = np.array([[1.0, 0.0]] * 18)
    >>> om = OrientationMap(U.reshape(6, 3, 1, 3, 3), np.zeros((6, 3, 1)), np.ones((6, 3, 1)), np.zeros((6, 3, 1, 3)),
    ...                     np.zeros((6, 3, 1)), np.ones((6, 3)), np.ones((6, 3)), np.ones((6, 3, 1)), [si],
    ...                     weight=w[:, :1].reshape(6, 3, 1))
    >>> grain_cores(om, 5.0).labels.tolist()  # rows 0-2 and 3-5 are two grains; cores away from the boundary
    [[0, 0, 0], [0, 0, 0], [-1, -1, -1], [-1, -1, -1], [1, 1, 1], [1, 1, 1]]
    """
    Rx, Ry = om.scan_shape
    second = om.weight[..., 1] if om.num_matches > 1 else np.zeros(om.scan_shape)
    clear = (om.phase[..., 0] >= 0) & ~(np.nan_to_num(second, nan=0.0) > clear_weight)
    masked = OrientationMap(om.matrix[..., :1, :, :], np.where(clear[..., None], om.phase[..., :1], -1),
                            om.correlation[..., :1], om.zone_axis[..., :1, :], om.in_plane_deg[..., :1],
                            om.reliability, om.num_peaks, om.phase_correlation, om.crystals)
    labels = segment_grains(masked, threshold_deg).labels
    # a core position: its eight neighbours (inside the scan) are of its grain
    pad = np.pad(labels, 1, constant_values=-2)
    core = labels >= 0
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            nb = pad[1 + dx:1 + dx + Rx, 1 + dy:1 + dy + Ry]
            core &= (nb == labels) | (nb == -2)
    labels = np.where(core, labels, -1)
    aligned = np.full(om.matrix.shape[:2] + (3, 3), np.nan)
    for g in np.unique(labels[labels >= 0]):
        sel = labels == g
        k = int(om.phase[..., 0][sel][0])
        sym = _symmetry(om, k)
        U = om.matrix[..., 0, :, :][sel]
        ref, out = U[0], np.empty_like(U)
        for start in range(0, len(U), 4096):  # (n, 2 x symmetry, 3, 3) variants: in batches on large scans
            u = U[start:start + 4096]
            variants = np.concatenate([u[:, None] @ sym[None], (_HALF_TURN @ u)[:, None] @ sym[None]], axis=1)
            best = np.argmin(np.linalg.norm(variants - ref, axis=(-1, -2)), axis=1)
            out[start:start + 4096] = variants[np.arange(len(u)), best]
        aligned[sel] = out
    return GrainCores(labels, aligned, om.phase[..., 0].copy())


def _mean_rotation(U: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(U.sum(axis=0))
    R = u @ vt
    if np.linalg.det(R) < 0:  # the nearest proper rotation
        u[:, -1] *= -1
        R = u @ vt
    return R


def neighbour_grains(cores: GrainCores, rx: int, ry: int, radius_px: float) -> list[tuple[int, np.ndarray]]:
    """(phase, orientation) of each grain with core positions within ``radius_px`` of (rx, ry): the mean of
    those core positions' match 1 (local, so that a bent grain keeps its orientation near the boundary)."""
    Rx, Ry = cores.labels.shape
    r = int(math.floor(radius_px))
    x0, x1, y0, y1 = max(rx - r, 0), min(rx + r + 1, Rx), max(ry - r, 0), min(ry + r + 1, Ry)
    lab = cores.labels[x0:x1, y0:y1]
    gx, gy = np.mgrid[x0:x1, y0:y1]
    near = (lab >= 0) & ((gx - rx) ** 2 + (gy - ry) ** 2 <= radius_px ** 2)
    out = []
    for g in np.unique(lab[near]):
        sel = near & (lab == g)
        out.append((int(cores.phase[x0:x1, y0:y1][sel][0]), _mean_rotation(cores.aligned[x0:x1, y0:y1][sel])))
    return out


def _near(U: np.ndarray, V: np.ndarray, sym: np.ndarray, angle_deg: float) -> bool:
    return min(float(misorientation_deg(U, V, sym)), float(misorientation_deg(_HALF_TURN @ U, V, sym))) <= angle_deg


def boundary_fit(fit: RingFit, phase: PhasePlan, plan: OrientationPlan, own: np.ndarray, own_weight: np.ndarray,
                 grains: list[np.ndarray], threshold_deg: float, near: float | None = None) -> dict[str, Any] | None:
    """The neighbouring grains' explanation of one pattern, or None to keep the position's own.

    Parameters
    ----------
    fit : RingFit
        The pattern's rings (:func:`~.orientation_pairs.ring_fit`).
    phase : PhasePlan
    plan : OrientationPlan
    own : (K, 3, 3) array
        The position's own matches (match 1 finite).
    own_weight : (K,) array
        Their weights (the second 0: the pattern is one orientation's).
    grains : list of (3, 3) arrays
        Orientations of the neighbouring grains (of this phase).
    threshold_deg : float
        Misorientation within which an orientation is one of the grains.
    near : float, optional
        The neighbours' explanation is taken when it leaves at most ``near`` times what the own one leaves
        (default ``NEAR``).

    Returns
    -------
    dict or None
        ``matrix`` (m, 3, 3) and ``weight`` (m,), m = 2 (the neighbours' pair, stronger first) or 1 (match
        1 alone: the own second orientation dropped).
    """
    nf, total = fit.n_fine, fit.total
    near = NEAR if near is None else float(near)
    if total <= 0:
        return None
    sym = phase.symmetry

    def spots(U: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s, a = candidate_spots(phase, U, plan, nf)
        return s, a, np.ones(len(s), bool)

    def energy(U: np.ndarray, V: np.ndarray | None = None) -> tuple[float, float, float]:
        s1 = spots(U)
        s2 = tuple(x[:0] for x in s1) if V is None else spots(V)
        e, w1, w2 = pair_energy(fit, *s1, *s2)
        return float(e), float(w1), float(w2)

    two = len(own) > 1 and own_weight[1] > 0 and np.isfinite(own[1]).all()
    e_own = energy(own[0], own[1] if two else None)[0]
    left_own = max(total - e_own, 1e-12 * total)
    best: tuple[float, int, int, float, float] | None = None
    alone = [energy(G)[0] for G in grains]
    for i in range(len(grains)):
        for j in range(i + 1, len(grains)):
            if _near(grains[i], grains[j], sym, threshold_deg):  # one grain split by a band of unclear positions
                continue
            e, wi, wj = energy(grains[i], grains[j])
            e1 = max(alone[i], alone[j])
            if (wi + wj <= 0 or min(wi, wj) < MIN_WEIGHT * (wi + wj)
                    or (e - e1) < MIN_GAIN * max(total - e1, 1e-30)):
                continue
            if best is None or e > best[0]:
                best = (e, i, j, wi, wj)
    if best is not None and total - best[0] <= near * left_own:
        e, i, j, wi, wj = best
        order = [(grains[i], wi), (grains[j], wj)]
        order.sort(key=lambda t: -t[1])
        return {"matrix": np.stack([U for U, _ in order]), "weight": np.array([w for _, w in order]) / (wi + wj)}
    # inside a grain: match 1 is one of the neighbouring grains, the second none of them
    if (two and any(_near(own[0], G, sym, threshold_deg) for G in grains)
            and not any(_near(own[1], G, sym, threshold_deg) for G in grains)):
        if total - energy(own[0])[0] <= near * left_own:
            return {"matrix": own[:1].copy(), "weight": np.ones(1)}
    return None


class BoundaryJob(Job):
    """Engine job: the second pass of a decomposed raw-route map (the neighbouring grains' pairs).

    Parameters
    ----------
    first : RawMatchJob
        The first pass's job (its plan, record and polar reader; its buffers and result type).
    om : OrientationMap
        The first pass's map.
    """

    name = "fitting the neighbouring grains at grain boundaries"

    def __init__(self, first: Any, om: OrientationMap) -> None:
        self.first = first
        self.plan, self.params, self.polar = first.plan, first.params, first.polar
        self.om = om
        self.threshold = max(float(self.params.min_angle_deg), 1.0)
        self.cores = grain_cores(om, self.threshold)

    def buffers(self, cube: Any) -> dict[str, Buffer]:
        return self.first.buffers(cube)

    def init(self, cube: Any) -> dict[str, np.ndarray]:
        acc = super().init(cube)
        for name in acc:  # the first pass's map, so that partial maps show it until a chunk is done
            acc[name][...] = getattr(self.om, name)
        return acc

    def finalize(self, acc: dict[str, np.ndarray]) -> OrientationMap:
        return self.first.finalize(acc)

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> dict[str, np.ndarray]:
        om, p = self.om, self.params
        out = {n: np.array(getattr(om, n)[rx, ry]) for n in _NAMES}
        nx, ny = block.shape[:2]
        work = []
        for a in range(nx):
            for b in range(ny):
                i, j = rx.start + a, ry.start + b
                k = int(om.phase[i, j, 0])
                if k < 0:
                    continue
                grains = [U for kk, U in neighbour_grains(self.cores, i, j, p.boundary_radius_px) if kk == k]
                two = om.num_matches > 1 and om.weight[i, j, 1] > 0
                if len(grains) >= 2 or two:
                    work.append((a, b, k, grains))
        if not work:
            return out
        polar = self.polar.polar_block(block, rx, ry)
        n = self.plan.n_angles
        for a, b, k, grains in work:
            _, rings = self.polar.read_pattern(polar[a * ny + b])
            ph = self.plan.phases[k]
            fit = ring_fit(rings[k], ph.shells, n, self.plan.params.kernel_size)
            res = boundary_fit(fit, ph, self.plan, out["matrix"][a, b], out["weight"][a, b], grains, self.threshold)
            if res is not None:
                _adopt(out, a, b, k, res, ph, p.min_angle_deg)
        return out


def _adopt(out: dict[str, np.ndarray], a: int, b: int, k: int, res: dict[str, Any], ph: PhasePlan,
           min_angle_deg: float) -> None:
    """Matches 1 (and 2) of position (a, b) of a block from ``res``; then the own matches at least min_angle from
    them (weight 0). A new match's correlation is that of the own match it replaces (within min_angle), else NaN."""
    sym = ph.symmetry
    old = {n: out[n][a, b].copy() for n in ("matrix", "phase", "correlation")}
    K = len(old["phase"])
    rows = []
    for U, w in zip(res["matrix"], res["weight"]):
        c = float("nan")
        for m in range(K):
            if old["phase"][m] == k and np.isfinite(old["matrix"][m]).all() and _near(old["matrix"][m], U, sym,
                                                                                       min_angle_deg):
                c = float(old["correlation"][m])
                break
        rows.append((U, c, float(w)))
    for m in range(K):
        U = old["matrix"][m]
        if len(rows) >= K or old["phase"][m] != k or not np.isfinite(U).all():
            continue
        if all(not _near(U, V, sym, min_angle_deg - 1e-9) for V, _, _ in rows):
            rows.append((U, float(old["correlation"][m]), 0.0))
    for name, fill in (("matrix", np.nan), ("phase", -1), ("correlation", np.nan), ("zone_axis", np.nan),
                       ("in_plane_deg", np.nan), ("weight", 0.0)):
        out[name][a, b] = fill
    for m, (U, c, w) in enumerate(rows[:K]):
        out["matrix"][a, b, m], out["phase"][a, b, m], out["correlation"][a, b, m] = U, k, c
        out["weight"][a, b, m] = w
        out["zone_axis"][a, b, m], out["in_plane_deg"][a, b, m] = describe(U, ph)
