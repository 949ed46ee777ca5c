"""Orientation matching of Bragg peaks against an orientation plan (sparse polar correlation, ACOM).

For each scan position the calibrated peaks (1/Å, scan frame) are binned into the plan's radial
shells and in-plane angle bins; the correlation with every zone axis's template at every in-plane
angle is one complex multiply-add per shell and one inverse FFT along the angle. The best zone
axes are then refined from coarse to fine: templates on a finer grid of beam tilts around each,
a parabolic peak in angle, and a least-squares in-plane rotation of the simulated spots onto the
peaks. Several matches per position are kept, at least ``min_angle_deg`` apart (under the
crystal's symmetry), with a reliability ``1 - c2 / c1``.

The pass over the peak table runs through the engine (threads or Dask, progress, cancel, partial
results) with a :class:`PeakSource` standing for the cube.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.calibration import Calibration
from ..core.errors import ParameterError
from ..core.params import Params, param
from ..engine.job import Buffer, Job
from ..engine.run import run_job
from .crystal import excitation_error, shape_function
from .orientation_plan import (OrientationPlan, OrientationPlanParams, PhasePlan, angular_kernel, build_plan,
                               frame_matrices, in_plane_rotation, polar_templates, reciprocal_step_invA)
from .orientation_results import OrientationMap, misorientation_deg
from .peak_calibration import calibrated_peaks, scan_frame_matrix
from .peaks import PeakTable
from .steps import RunContext, current_calibration, own_record, split_engine

__all__ = ["OrientationMapParams", "orientation_map", "orientation_map_step", "match_peaks", "match_details", "MatchJob",
           "PeakSource", "scan_frame_peaks", "plan_for", "PatternSpectrum", "match_spectra", "correlate_templates",
           "fit_in_plane"]


@dataclass(frozen=True)
class OrientationMapParams(Params):
    """Orientation matching of a peak table (py4DSTEM ``match_orientations`` names in brackets)."""

    step = "orientation_map"

    peaks: str = param("find_disks", doc="label of the earlier step whose peak table is matched")
    plan: OrientationPlanParams = param(OrientationPlanParams(), doc="the template library")
    num_matches: int = param(3, ge=1, le=10, doc="matches kept per position [num_matches_return]")
    min_angle_deg: float = param(5.0, units="deg", ge=0, doc="smallest misorientation between two kept matches "
                                 "[min_angle_between_matches_deg]")
    refine: bool = param(True, doc="refine the beam direction on a finer grid and the in-plane angle on the spots")
    min_num_peaks: int = param(3, ge=1, doc="fewest peaks (beside the direct beam) for a match")


# --- peaks in the scan frame ----------------------------------------------------------
def scan_frame_peaks(peaks: PeakTable, calibration: Calibration | None) -> PeakTable:
    """The peak table relative to the origin, in 1/Å, rotated (and flipped) into the scan frame.

    A table in px needs the calibration's origin and reciprocal step (MissingCalibrationError
    otherwise); a calibrated table is converted to 1/Å and turned by the calibration's rotation.
    """
    if peaks.units == "px":
        if calibration is None:
            raise ParameterError("orientation matching of a peak table in detector px needs a calibration with "
                                 "the origin and reciprocal step (cube.calibration)", field="calibration")
        t = calibrated_peaks(peaks, calibration, scan_frame=True)
        f = reciprocal_step_invA(calibration) / float(calibration.reciprocal_step)
        return PeakTable(t.scan_shape, t.offsets, t.qx * f, t.qy * f, t.intensity, t.correlation, t.flags, "1/Å")
    scale = {"1/Å": 1.0, "1/nm": 0.1}.get(peaks.units)
    if scale is None:
        if calibration is None or peaks.units != "mrad":
            raise ParameterError(f"peaks in {peaks.units!r} cannot be matched; give them in px, 1/Å or 1/nm",
                                 field="peaks")
        scale = 1e-3 / calibration.wavelength_A
    q = np.stack([peaks.qx, peaks.qy], -1) * scale
    if calibration is not None:
        q = q @ scan_frame_matrix(calibration.rotation_deg, calibration.flip).T
    return PeakTable(peaks.scan_shape, peaks.offsets, q[:, 0], q[:, 1], peaks.intensity, peaks.correlation,
                     peaks.flags, "1/Å")


class PeakSource:
    """A peak table standing in for a cube in the engine: scan chunks of rows, ``read`` gives their peaks."""

    def __init__(self, table: PeakTable) -> None:
        shape = table.scan_shape if len(table.scan_shape) == 2 else (int(np.prod(table.scan_shape)), 1)
        self.table = table
        self.scan_shape = tuple(int(n) for n in shape)
        self.detector_shape = (1, 1)
        self.in_memory = True

    def chunk_slices(self, chunk_bytes: int | None = None) -> list[tuple[slice, slice]]:
        Rx, Ry = self.scan_shape
        rows = max(1, 64 // max(Ry, 1))  # about 64 positions per chunk: partial maps paint often
        return [(slice(r, min(Rx, r + rows)), slice(0, Ry)) for r in range(0, Rx, rows)]

    def read(self, rx: slice, ry: slice, rows: Any = None) -> dict[str, Any]:
        Ry = self.scan_shape[1]
        out = []
        o = self.table.offsets
        for i in range(rx.start, rx.stop):
            for j in range(ry.start, ry.stop):
                p = i * Ry + j
                s = slice(int(o[p]), int(o[p + 1]))
                out.append((self.table.qx[s], self.table.qy[s], self.table.intensity[s]))
        return {"peaks": out, "shape": (rx.stop - rx.start, ry.stop - ry.start)}


# --- matching one pattern ---------------------------------------------------------------
def _pattern_spectrum(q: np.ndarray, w: np.ndarray, ph: PhasePlan, n_angles: int,
                      kernel_size: float) -> tuple[np.ndarray, float]:
    """rfft along angle of the pattern's (S, n_angles) polar image, and the norm of its smoothed image."""
    r = np.hypot(q[:, 0], q[:, 1])
    sigma = 0.5 * kernel_size
    d = r[:, None] - ph.shells[None]
    rw = np.exp(-0.5 * (d / sigma) ** 2) * (np.abs(d) < 3 * sigma)  # (n, S)
    phi = np.mod(np.arctan2(q[:, 1], q[:, 0]) / (2 * math.pi) * n_angles, n_angles)
    i0 = np.floor(phi).astype(np.int64)
    f = phi - i0
    img = np.zeros((len(ph.shells), n_angles))
    pi, si = np.nonzero(rw)
    ww = w[pi] * rw[pi, si]
    np.add.at(img, (si, i0[pi] % n_angles), ww * (1 - f[pi]))
    np.add.at(img, (si, (i0[pi] + 1) % n_angles), ww * f[pi])
    spec = np.fft.rfft(img, axis=-1)
    smooth = np.fft.irfft(spec * angular_kernel(ph.shells, n_angles, kernel_size), n=n_angles, axis=-1)
    return spec, float(np.linalg.norm(smooth))

def _band(shells: np.ndarray, n_angles: int, kernel_size: float) -> int:
    """Angular frequencies the templates hold: beyond them the kernel (on the outer shell) is below 1e-6."""
    a = angular_kernel(shells, n_angles, kernel_size)
    keep = np.flatnonzero(np.max(a / a[:, :1], axis=0) > 1e-6)
    return int(keep[-1]) + 1 if len(keep) else a.shape[1]


def _correlate(spec: np.ndarray, pnorm: float, spectra: np.ndarray, norms: np.ndarray, n_angles: int,
               band: int | None = None) -> np.ndarray:
    """(Z, n_angles) normalised correlation of a pattern with templates at every in-plane angle
    (frequencies up to ``band`` only: the kernel has removed the rest from the templates)."""
    m = spectra.shape[2] if band is None else min(band, spectra.shape[2])
    acc = np.zeros((spectra.shape[0], m), np.complex64)
    for s in np.flatnonzero(np.any(spec != 0, axis=1)):  # shells holding peaks only
        acc += np.conj(spectra[:, s, :m]) * spec[s, :m].astype(np.complex64)
    corr = np.fft.irfft(acc, n=n_angles, axis=-1)
    return corr / (np.maximum(norms, 1e-30)[:, None] * max(pnorm, 1e-30))


def _peak_angle(c: np.ndarray, i: int) -> float:
    """Sub-bin position of the maximum ``i`` of a periodic 1-D array (parabola through 3 bins)."""
    n = len(c)
    a, b, d = c[(i - 1) % n], c[i], c[(i + 1) % n]
    den = a - 2 * b + d
    return i + (0.5 * (a - d) / den if den < 0 else 0.0)



def fit_in_plane(U: np.ndarray, q: np.ndarray, w: np.ndarray, ph: PhasePlan, plan: OrientationPlan) -> np.ndarray:
    """Turn U about the beam so its simulated spots land on the peaks (weighted least squares).

    Parameters
    ----------
    U : (3, 3) array
        The orientation (scan frame).
    q : (n, 2) array
        Peaks, 1/Å from the origin, scan frame.
    w : (n,) array
        Their weights. Each peak counts for its nearest spot within half the plan's kernel; with fewer
        than two such peaks U is returned as it is.
    ph : PhasePlan
    plan : OrientationPlan

    Returns
    -------
    (3, 3) array
    """
    p = plan.params
    if len(q) < 2:  # a raw pattern: no peaks to fit
        return U
    for _ in range(3):
        g = ph.reflections.g @ U.T
        inten = ph.reflections.F2 * shape_function(excitation_error(g, plan.wavelength_A), p.sigma_excitation_error,
                                                   g_radial=np.hypot(g[:, 0], g[:, 1]),
                                                   precession_angle_deg=p.precession_angle_deg)
        sel = inten > p.min_spot_weight * inten.max()
        spots = g[sel, :2]
        if len(spots) == 0:
            return U
        d = np.linalg.norm(q[:, None] - spots[None], axis=-1)
        j = np.argmin(d, axis=1)
        ok = d[np.arange(len(q)), j] < 0.5 * p.kernel_size
        if ok.sum() < 2:
            return U
        a, b, ww = spots[j[ok]], q[ok], w[ok]
        t = math.atan2(np.sum(ww * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])), np.sum(ww * np.sum(a * b, axis=1)))
        U = in_plane_rotation(t) @ U
        if abs(t) < 1e-7:
            break
    return U


def _refine(ph: PhasePlan, z: int, theta: float, spec: np.ndarray, pnorm: float, plan: OrientationPlan,
            q: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Coarse-to-fine: beam tilts on a grid finer than the plan's around zone axis ``z``, then the spots' angle."""
    p = plan.params
    n = plan.n_angles
    v = ph.directions[z]
    U0 = ph.frames[z]
    step = math.radians(p.zone_axis_step_deg)
    best_dir, best_c, best_t = v, -np.inf, theta
    for scale in (0.5, 0.25, 0.125):  # rounds of +-step/2, /4, /8 around the better one
        e1, e2 = frame_matrices(best_dir[None])[0, :2]
        offs = np.array([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)], float) * step * scale
        dirs = best_dir[None] + offs[:, :1] * e1 + offs[:, 1:] * e2
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        frames = frame_matrices(dirs)
        spectra, norms = polar_templates(ph.reflections, frames, ph.shells, n, wavelength_A=plan.wavelength_A, p=p)
        corr = _correlate(spec, pnorm, spectra, norms, n, _band(ph.shells, n, p.kernel_size))
        k, i = np.unravel_index(int(np.argmax(corr)), corr.shape)
        if corr[k, i] > best_c:
            best_dir, best_c, best_t = dirs[k], float(corr[k, i]), _peak_angle(corr[k], i) * 2 * math.pi / n
    U = in_plane_rotation(best_t) @ frame_matrices(best_dir[None])[0]
    if best_c == -np.inf:
        U = in_plane_rotation(theta) @ U0
    return fit_in_plane(U, q, w, ph, plan), best_c


_HALF_TURN = np.diag([-1.0, -1.0, 1.0])


def _empty_match(K: int, P: int) -> dict[str, np.ndarray]:
    return {"matrix": np.full((K, 3, 3), np.nan), "phase": np.full(K, -1, np.int64),
            "correlation": np.full(K, np.nan), "zone_axis": np.full((K, 3), np.nan),
            "in_plane_deg": np.full(K, np.nan), "reliability": np.array(np.nan),
            "num_peaks": np.array(0, np.int64), "phase_correlation": np.full(P, np.nan)}


def match_peaks(qx: Any, qy: Any, intensity: Any, plan: OrientationPlan,
                params: OrientationMapParams | None = None) -> dict[str, np.ndarray]:
    """Match one pattern's peaks (1/Å, scan frame, relative to the direct beam) against a plan.

    Returns
    -------
    dict
        ``matrix`` (K, 3, 3), ``phase`` (K,), ``correlation`` (K,), ``zone_axis`` (K, 3),
        ``in_plane_deg`` (K,), ``reliability`` (), ``num_peaks`` (), ``phase_correlation`` (P,);
        NaN (phase -1) for matches not found.
    """
    p = params or OrientationMapParams(plan=plan.params)
    q = np.stack([np.asarray(qx, float), np.asarray(qy, float)], -1).reshape(-1, 2)
    inten = np.clip(np.asarray(intensity, float).reshape(-1), 0, None)
    r = np.hypot(q[:, 0], q[:, 1])
    pp = plan.params
    inputs: list[PatternSpectrum | None] = []
    num_peaks = 0
    for ph in plan.phases:
        keep = (r > 0.5 * ph.shells[0]) & (r <= plan.g_max) & np.isfinite(r)
        qk = q[keep]
        num_peaks = max(num_peaks, len(qk))
        if len(qk) < p.min_num_peaks:
            inputs.append(None)
            continue
        w = inten[keep] ** pp.intensity_power * r[keep] ** pp.radial_power
        spec, pnorm = _pattern_spectrum(qk, w, ph, plan.n_angles, pp.kernel_size)
        inputs.append(PatternSpectrum(spec, pnorm, qk, w) if pnorm > 0 else None)
    out = match_spectra(inputs, plan, p.num_matches, p.min_angle_deg, p.refine)
    out["num_peaks"] = np.array(num_peaks, np.int64)
    return out


@dataclass
class PatternSpectrum:
    """One pattern seen by one phase's plan: the rfft along angle of its (S, n_angles) polar image.

    ``q`` (n, 2) and ``w`` (n,) are its peaks (1/Å, scan frame) and their weights, for the in-plane
    fit of the refinement; empty for a raw pattern (the refinement then stays on the correlation).
    """

    spec: np.ndarray
    norm: float
    q: np.ndarray
    w: np.ndarray


def match_spectra(inputs: list[PatternSpectrum | None], plan: OrientationPlan, num_matches: int,
                  min_angle_deg: float, refine: bool) -> dict[str, np.ndarray]:
    """The matches of one pattern from its spectrum per phase (None: the phase cannot match it).

    The K best (zone axis, in-plane angle) on the plan's grid over all phases, at least
    ``min_angle_deg`` apart; the best one refined from coarse to fine, the others' in-plane
    angles fitted. Returns the dict of :func:`match_peaks` (``num_peaks`` 0).
    """
    K, P = num_matches, len(plan.phases)
    out = _empty_match(K, P)
    n = plan.n_angles
    cands = []
    for k, (ph, item) in enumerate(zip(plan.phases, inputs)):
        if item is None:
            continue
        corr = _correlate(item.spec, item.norm, ph.spectra, ph.norms, n, _band(ph.shells, n, plan.params.kernel_size))
        best_i = np.argmax(corr, axis=1)
        best_c = corr[np.arange(len(corr)), best_i]
        out["phase_correlation"][k] = float(best_c.max())
        m = min(len(best_c), max(20 * K, 40))
        top = np.argpartition(-best_c, m - 1)[:m]
        top = top[np.argsort(-best_c[top], kind="stable")]
        theta = np.array([_peak_angle(corr[z], int(best_i[z])) for z in top]) * 2 * math.pi / n
        c_, s_ = np.cos(theta), np.sin(theta)
        Rz = np.zeros((m, 3, 3))
        Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = c_, -s_, s_, c_, 1.0
        U_all = Rz @ ph.frames[top]
        free = np.ones(m, bool)
        picked = 0
        while picked < K and free.any():  # the K best on the plan's grid, min_angle apart (half-turn twins too)
            i = int(np.argmax(free))
            cands.append((float(best_c[top[i]]), k, int(top[i]), float(theta[i]), item, U_all[i]))
            picked += 1
            free[i] = False
            d = np.minimum(misorientation_deg(U_all[i], U_all, ph.symmetry),
                           misorientation_deg(_HALF_TURN @ U_all[i], U_all, ph.symmetry))
            free &= d >= min_angle_deg
    cands.sort(key=lambda c: -c[0])
    coarse = cands[:K]
    chosen: list[tuple[float, int, np.ndarray]] = []
    for m, (c, k, z, theta, item, U) in enumerate(coarse):  # then refined, coarse to fine
        if refine and m == 0:
            U, c_ref = _refine(plan.phases[k], z, theta, item.spec, item.norm, plan, item.q, item.w)
            c = max(c, c_ref)
        elif refine:  # the other matches: their in-plane angle only (they are alternatives, not answers)
            U = fit_in_plane(U, item.q, item.w, plan.phases[k], plan)
        chosen.append((c, k, U))
    second = coarse[1][0] if len(coarse) > 1 else 0.0
    for m, (c, k, U) in enumerate(chosen):
        ph = plan.phases[k]
        direction = U[2]
        uvw = direction @ np.linalg.inv(ph.crystal.direct_matrix)
        Rz = U @ frame_matrices(direction[None])[0].T
        out["matrix"][m] = U
        out["phase"][m] = k
        out["correlation"][m] = c
        out["zone_axis"][m] = uvw / np.max(np.abs(uvw))
        out["in_plane_deg"][m] = math.degrees(math.atan2(Rz[1, 0], Rz[0, 0]))
    if coarse:
        c1 = coarse[0][0]  # both on the plan's grid, so that refinement favours neither
        out["reliability"] = np.array(max(0.0, 1.0 - second / c1) if c1 > 0 else 0.0)
    return out


def correlate_templates(item: PatternSpectrum, phase: PhasePlan, n_angles: int, kernel_size: float) -> np.ndarray:
    """(Z, n_angles) normalised correlation of a pattern with every zone axis's template at every in-plane angle."""
    return _correlate(item.spec, item.norm, phase.spectra, phase.norms, n_angles,
                      _band(phase.shells, n_angles, kernel_size))


# --- the engine pass ---------------------------------------------------------------------
class MatchJob(Job):
    """Engine job: match every position's peaks of a :class:`PeakSource` against a plan."""

    name = "matching orientations"

    def __init__(self, plan: OrientationPlan, params: OrientationMapParams) -> None:
        self.plan = plan
        self.params = params

    def buffers(self, cube: Any) -> dict[str, Buffer]:
        K, P = self.params.num_matches, len(self.plan.phases)
        return {"matrix": Buffer("position", (K, 3, 3)), "phase": Buffer("position", (K,), np.int64, fill=-1),
                "correlation": Buffer("position", (K,)), "zone_axis": Buffer("position", (K, 3)),
                "in_plane_deg": Buffer("position", (K,)), "reliability": Buffer("position"),
                "num_peaks": Buffer("position", (), np.int64, fill=0), "phase_correlation": Buffer("position", (P,))}

    def process(self, block: dict[str, Any], rx: slice, ry: slice) -> dict[str, np.ndarray]:
        nx, ny = block["shape"]
        res = [match_peaks(qx, qy, inten, self.plan, self.params) for qx, qy, inten in block["peaks"]]
        return {k: np.stack([r[k] for r in res]).reshape((nx, ny) + res[0][k].shape) for k in res[0]}

    def finalize(self, acc: dict[str, np.ndarray]) -> OrientationMap:
        return OrientationMap(**{k: v.copy() for k, v in acc.items()},
                              crystals=[ph.crystal for ph in self.plan.phases])


_PLANS: OrderedDict[str, OrientationPlan] = OrderedDict()


def plan_for(params: OrientationPlanParams, calibration: Calibration, detector_shape: tuple[int, int] | None,
             g_max: float | None = None) -> OrientationPlan:
    """The plan of a record for this beam and detector, built once per process (a pure function's cache)."""
    if params.g_max is None and detector_shape is None:
        params = params.replace(g_max=float(g_max) if g_max else None)
    key = json.dumps([params.to_dict(), calibration.energy_eV, calibration.reciprocal_step,
                      calibration.reciprocal_units, calibration.origin, detector_shape], default=str)
    plan = _PLANS.get(key)
    if plan is None:
        plan = build_plan(params, calibration, detector_shape=detector_shape)
        _PLANS[key] = plan
        while len(_PLANS) > 4:
            _PLANS.popitem(last=False)
    return plan


def orientation_map(peaks: PeakTable, params: OrientationMapParams | None = None,
                    calibration: Calibration | None = None, *, plan: OrientationPlan | None = None,
                    detector_shape: tuple[int, int] | None = None, **options: Any) -> OrientationMap:
    """Orientation (and phase) of every scan position from its Bragg peaks (``fw.orientation_map``).

    Parameters
    ----------
    peaks : PeakTable
        From :func:`~fourd_widgets.analysis.disks.find_disks` (detector px: needs ``calibration``) or calibrated.
    params : OrientationMapParams, optional
    calibration : Calibration, optional
        Origin, reciprocal step, beam energy, rotation and flip between scan and detector.
    plan : OrientationPlan, optional
        A plan built before (:func:`build_plan`); without one it is built from ``params.plan``
        (and cached for the process).
    detector_shape : (Qx, Qy), optional
        The detector, for the plan's reach when ``params.plan.g_max`` is None (else the peaks' reach).
    **options
        Engine options (progress, cancel, on_partial, workers, scheduler) and field overrides.

    Returns
    -------
    OrientationMap
        Orientations in the scan frame.

    Raises
    ------
    MissingCalibrationError
        A px table without origin or reciprocal step; no beam energy for the plan.
    CalibrationError
        A plan built for another beam energy or detector reach.
    """
    engine, changes = split_engine(options)
    p = own_record(params, OrientationMapParams, changes, "orientation_map")
    if not isinstance(peaks, PeakTable):
        raise ParameterError(f"orientation_map matches a PeakTable (find_disks), got {type(peaks).__name__}",
                             field="peaks")
    table = scan_frame_peaks(peaks, calibration)
    reach = float(np.max(np.hypot(table.qx, table.qy))) if len(table) else None
    cal = calibration if calibration is not None else Calibration()
    if plan is None:
        plan = plan_for(p.plan, cal, detector_shape, g_max=reach)
    else:
        plan.check(cal, None)
        p = p.replace(plan=plan.params)
    source = PeakSource(table)
    result = run_job(source, MatchJob(plan, p), **{"progress": False, **engine})
    if len(peaks.scan_shape) != 2:
        result = OrientationMap(*(getattr(result, n).reshape(peaks.scan_shape + getattr(result, n).shape[2:])
                                  for n in ("matrix", "phase", "correlation", "zone_axis", "in_plane_deg",
                                            "reliability", "num_peaks", "phase_correlation")),
                                crystals=result.crystals)
    return result


def orientation_map_step(cube: Any, params: OrientationMapParams, context: RunContext) -> OrientationMap:
    """Recipe adapter: the orientation map of the peak table of the step labelled ``params.peaks``."""
    peaks = context.results.get(params.peaks)
    if not isinstance(peaks, PeakTable):
        have = ", ".join(f"{k} ({type(v).__name__})" for k, v in context.results.items()) or "none"
        raise ParameterError(
            f"orientation_map needs the peak table of an earlier step labelled {params.peaks!r} (a find_disks "
            f"step); earlier results: {have}. Add a find_disks step before it or set peaks= to its label",
            field="peaks")
    return orientation_map(peaks, params, current_calibration(cube, context),
                           detector_shape=tuple(cube.detector_shape), **context.engine)


def match_details(qx: Any, qy: Any, intensity: Any, plan: OrientationPlan,
                  params: OrientationMapParams | None = None) -> dict[str, Any]:
    """:func:`match_peaks` plus what shows why the pattern matched: the best phase's correlation
    over its zone axes (best in-plane angle each) and against the in-plane angle at the best zone axis.

    Returns
    -------
    dict
        The keys of :func:`match_peaks`, and ``directions`` (Z, 3) crystal unit vectors,
        ``zone_correlation`` (Z,), ``angles_deg`` (n_angles,), ``angle_correlation`` (n_angles,)
        (empty arrays when nothing matched).
    """
    out: dict[str, Any] = match_peaks(qx, qy, intensity, plan, params)
    n = plan.n_angles
    out.update(directions=np.zeros((0, 3)), zone_correlation=np.zeros(0),
               angles_deg=np.arange(n) * 360.0 / n, angle_correlation=np.zeros(0))
    k = int(out["phase"][0])
    if k < 0:
        return out
    ph, pp = plan.phases[k], plan.params
    q = np.stack([np.asarray(qx, float), np.asarray(qy, float)], -1).reshape(-1, 2)
    r = np.hypot(q[:, 0], q[:, 1])
    keep = (r > 0.5 * ph.shells[0]) & (r <= plan.g_max) & np.isfinite(r)
    w = np.clip(np.asarray(intensity, float).reshape(-1)[keep], 0, None) ** pp.intensity_power * r[keep] ** pp.radial_power
    spec, pnorm = _pattern_spectrum(q[keep], w, ph, n, pp.kernel_size)
    corr = _correlate(spec, pnorm, ph.spectra, ph.norms, n, _band(ph.shells, n, pp.kernel_size))
    zc = corr.max(axis=1)
    out.update(directions=ph.directions, zone_correlation=zc, angle_correlation=corr[int(np.argmax(zc))])
    return out
