"""Orientation matching of raw patterns: polar template matching without peak finding.

For spotty or precession data whose disks are not resolved (or not worth detecting), each pattern
is split into (θ, q) bins about the calibrated origin by the package's polar transform
(:mod:`.polar`: full pixel splitting, per-position origins, the ellipse undone). Then, per pattern:

1. the median over angle is taken off each ring (the diffuse background, amorphous rings and the
   direct beam's tail are round; spots are not);
2. the rings are read onto the plan's radial shells through a Gaussian (the plan's kernel, less
   the disk's own width), as the smaller of the two sides ``r - δ`` and ``r + δ`` averaged over
   ``δ`` up to the disk radius: a disk's radial profile is a plateau as wide as the disk, and only
   a disk centred on the shell covers both sides (resolved disks would otherwise light the
   neighbouring shells too);
3. each shell is smoothed along the angle by the plan's angular kernel, clipped at zero, weighted
   as the templates are (``I^intensity_power |g|^radial_power``) and its mean along the ring
   removed (a floor would favour templates with many weak spots);
4. its FFT along the angle is turned into the scan frame by a phase ramp (the calibrated rotation;
   a flip reverses the angle).

Disks that overlap (two grains under the probe, 10 degrees apart, say) merge into one plateau
per spot pair; ``read="disk_rims"`` reads each pattern instead as where its disk rims are: the
gradient of the square-root intensity gathered on circles of the disk radius, each point voting
with the gradient's component towards the circle's centre (a circular Hough transform, see
:func:`disk_rims`), which peaks at every disk's centre, overlapping or not; each peak is kept at
its radial maximum only. The rims' peaks (:func:`rim_peaks`, sub-pixel) also serve the refinement
as a peak table serves the peak route's: the best match is turned about the beam so that its spots
land on them (the single-template correlation, smoothed by the plan's kernel, is pulled by a second
grain's faint spots 10 degrees away: up to 0.2 degrees on the abTEM bicrystal, 0.09 on the peaks), and
so are the two orientations of a decomposed pair. ``decompose=True`` then fits each pattern as the sum of two orientations'
spots (:mod:`.orientation_pairs`): matches 1 and 2 are the two grains, with their weights
(``OrientationMap.weight``); a second pass then fits each position with the grains around it, measured
at their single-grain positions (``boundary_radius_px``, :mod:`.orientation_boundaries`), and takes them
where they explain the pattern nearly as well. This is the route for patterns of two grains with
overlapping disks (measured on the abTEM Si bicrystal in bench/RESULTS.md, orientation section).

From there the match is the peak route's (:func:`.orientation.match_spectra`): the same plan, one
complex multiply-add per shell and an inverse FFT along the in-plane angle per zone axis,
coarse-to-fine refinement of the best match, several matches per position with a reliability, and
the same :class:`OrientationMap`. Without an explicit ``g_max`` the plan reaches the detector edge
less half a disk (a spot whose centre is on the detector counts here, detected or not).

This is pyxem's route (Cautaerts et al., *Ultramicroscopy* 237 (2022) 113517) on the plan of
py4DSTEM's (Ophus et al., *Microsc. Microanal.* 28 (2022) 390).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..core.calibration import Calibration
from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.job import Buffer
from ..engine.run import run_job
from .crystal import simulate_spots
from .orientation import MatchJob, PatternSpectrum, correlate_templates, fit_in_plane, match_spectra, plan_for
from .orientation_plan import (OrientationPlan, OrientationPlanParams, angular_kernel, detector_g_max,
                               reciprocal_step_invA)
from .orientation_boundaries import BoundaryJob
from .orientation_pairs import decompose as decompose_pair
from .orientation_pairs import describe, ring_fit
from .orientation_results import OrientationMap, misorientation_deg
from .peak_calibration import calibrated_peaks
from .peaks import PeakTable
from .polar import PolarGroups, PolarParams, as_cube, bin_means, split_block
from .steps import RunContext, current_calibration, own_record, split_engine

__all__ = ["OrientationMapRawParams", "orientation_map_raw", "orientation_map_raw_step", "PatternPolar",
           "RawMatchJob", "match_pattern", "match_pattern_details", "disk_radius_px",
           "raw_plan", "disk_rims", "rim_peaks"]

_HALF_TURN = np.diag([-1.0, -1.0, 1.0])
#: Radial half-width of a disk-rims peak, as a fraction of the disk radius: each peak is kept only at its
#: largest value within it along the radius (the rims of a disk's inside would light the neighbouring shells).
RIM_WIDTH = 0.5
#: Rim peaks (the refinement's in-plane fit): local maxima of a disk-rim reading over this many px either side
#: (the disks of two grains 10 degrees apart are 5.8 px apart on the abTEM bicrystal's first ring) ...
RIM_PEAK_SEPARATION_PX = 2
#: ... and above this fraction of the pattern's strongest.
RIM_PEAK_FLOOR = 0.02
#: Patterns per engine chunk by default: partial maps paint every fraction of a second.
_CHUNK_PATTERNS = 64


@dataclass(frozen=True)
class OrientationMapRawParams(Params):
    """Orientation matching of raw patterns (polar template matching; pyxem ``get_orientation`` in brackets)."""

    step = "orientation_map_raw"
    schema_version = 3
    # version 2 added read and decompose (their defaults: as before); version 3 boundary_radius_px, 0 for the
    # records before it (each pattern decomposed alone, as they were)
    migrations = {1: lambda d: dict(d), 2: lambda d: {**d, "boundary_radius_px": 0.0}}

    plan: OrientationPlanParams = param(OrientationPlanParams(), doc="the template library (shared with the "
                                        "peak route)")
    num_matches: int = param(3, ge=1, le=10, doc="matches kept per position [n_best]")
    min_angle_deg: float = param(5.0, units="deg", ge=0, doc="smallest misorientation between two kept matches")
    refine: bool = param(True, doc="refine the beam direction of the best match on a finer grid")
    background: Literal["median", "none"] = param(
        "median", doc="taken off each ring before matching: its median over angle (diffuse background, "
        "amorphous rings, the direct beam's tail), or nothing")
    radial_step_px: float = param(0.5, units="px", gt=0, le=4, doc="radial bin width of the polar transform")
    disk_radius_px: float | None = param(None, units="px", ge=0, doc="radius of the diffracted disks (None: "
                                         "from the calibration's convergence semi-angle; 0 for spots)")
    intensity_power: float | None = param(None, ge=0, doc="the pattern's intensity weight I^power (None: the "
                                          "plan's) [power_intensity_experiment]")
    read: Literal["intensity", "disk_rims"] = param(
        "intensity", doc="what is matched: the intensity, or where the disk rims are (circles of the disk radius "
        "on the gradient: sharp at each disk's centre even where disks of two grains overlap)")
    decompose: bool = param(False, doc="fit each pattern as the sum of two orientations' spots (grain "
                            "boundaries, overlapping grains): matches 1 and 2 are then the two, with their weights "
                            "(4-8x the matching time; grains closer than min_angle_deg + 4 deg count as one)")
    boundary_radius_px: float = param(8.0, units="px", ge=0, doc="with decompose: the grains within this scan "
                                      "distance, measured at their single-grain positions, are fitted as the pair "
                                      "at each position and taken when they explain it nearly as well as its own "
                                      "pair (a second pass; 0: each pattern alone)")

    def validate(self) -> None:
        if self.read == "disk_rims" and self.disk_radius_px == 0:
            raise ParameterError(f"{self.step}: read='disk_rims' needs the disks' radius; set disk_radius_px or "
                                 "leave it None (from the convergence semi-angle)", field="disk_radius_px")


def disk_radius_px(params: OrientationMapRawParams, calibration: Calibration) -> float:
    """The disk radius a record uses: its own, or the calibration's convergence semi-angle in px (0 without)."""
    if params.disk_radius_px is not None:
        return float(params.disk_radius_px)
    alpha = calibration.convergence_semiangle_mrad
    if alpha is None or calibration.energy_eV is None:
        return 0.0
    return float(alpha * 1e-3 / calibration.wavelength_A / reciprocal_step_invA(calibration))


class PatternPolar:
    """Raw patterns -> their spectra on a plan's shells, in the scan frame (one per phase).

    Parameters
    ----------
    plan : OrientationPlan
    params : OrientationMapRawParams
    calibration : Calibration
        Origin (or origin map), reciprocal step, ellipse, rotation and flip.
    scan_shape, detector_shape : (2,) ints
    """

    def __init__(self, plan: OrientationPlan, params: OrientationMapRawParams, calibration: Calibration,
                 scan_shape: tuple[int, int], detector_shape: tuple[int, int]) -> None:
        step = reciprocal_step_invA(calibration)
        sigma = 0.5 * plan.params.kernel_size
        n = plan.n_angles
        self.read = params.read
        self.rim_px = disk_radius_px(params, calibration)
        if self.read == "disk_rims" and self.rim_px <= 0:
            raise ParameterError("read='disk_rims' needs the disks' radius: set disk_radius_px or the calibration's "
                                 "convergence semi-angle", field="disk_radius_px")
        # disk rims are read as sharp spots at the disks' centres (each kept at its radial maximum only)
        rho = 0.0 if self.read == "disk_rims" else self.rim_px * step  # 1/Å
        self.rim_bins = max(1, int(round(RIM_WIDTH * self.rim_px / params.radial_step_px)))
        # radial tolerance: the plan's kernel, less what the disk's own width already gives (at least 1 px)
        sig_r = max(sigma - rho, min(sigma, step))
        deltas = np.arange(0.0, rho + 1e-9, max(step, rho / 16)) if rho > 0 else np.zeros(1)
        polar = PolarParams(q_min=0.0, q_max=(plan.g_max + rho + 3 * sig_r) / step + 1,
                            q_step=params.radial_step_px, n_theta=n)
        self.groups = PolarGroups(polar, calibration, tuple(scan_shape), tuple(detector_shape),
                                  "orientation matching of raw patterns")
        k = self.groups.reference.q * step  # ring radii, 1/Å
        self.background = params.background
        self.power = plan.params.intensity_power if params.intensity_power is None else params.intensity_power
        self.calibration, self.step = calibration, step
        self.g_max, self.radial_power = plan.g_max, plan.params.radial_power
        self.inner = [float(ph.shells[0]) for ph in plan.phases]
        self.weights, self.radial, self.smooth = [], [], []
        for ph in plan.phases:
            # the plan's radial kernel (a Gaussian) about each shell, at r - delta and r + delta for
            # every delta up to the disk radius: (2, D, n_q, S)
            r = ph.shells[None, :] + np.array([-1.0, 1.0])[:, None, None] * deltas[None, :, None]  # (2, D, S)
            d = k[None, None, :, None] - r[:, :, None, :]
            W = np.exp(-0.5 * (d / sig_r) ** 2) * (np.abs(d) < 3 * sig_r)
            self.weights.append(W / np.maximum(W.sum(axis=2, keepdims=True), 1e-30))
            self.radial.append(ph.shells[:, None] ** plan.params.radial_power)
            a = angular_kernel(ph.shells, n, plan.params.kernel_size)
            self.smooth.append(a / a[:, :1])
        # detector angle bins are centred at (i + 1/2) 2pi/n, the plan's at i 2pi/n, in the scan frame:
        # a shift of the angle (rotation) is a phase ramp, a flip a reversal (conjugate spectrum)
        m = np.arange(n // 2 + 1)
        rot = calibration.rotation_deg * n / 360.0
        self.flip = bool(calibration.flip)
        shift = (90.0 * n / 360.0 + rot - 0.5) if self.flip else (rot - 0.5)
        self.ramp = np.exp((-1 if self.flip else 1) * 2j * math.pi * m * shift / n)

    def spectra(self, polar: np.ndarray) -> list[PatternSpectrum | None]:
        """The spectra of one pattern's (n_theta, n_q) polar bin means, one per phase (None: no signal)."""
        return self._spectra(self._rings(polar))

    def read_pattern(self, polar: np.ndarray) -> tuple[list[PatternSpectrum | None], list[np.ndarray]]:
        """The spectra of one pattern's polar bin means, and per phase the rfft along the angle of its
        rings read linearly (no power, no smoothing; scan frame), for the decomposition."""
        rings = self._rings(polar)
        return self._spectra(rings), [self._scan_frame(np.fft.rfft(r, axis=-1)) for r in rings]

    def _scan_frame(self, spec: np.ndarray) -> np.ndarray:
        return (np.conj(spec) if self.flip else spec) * self.ramp

    def _rings(self, polar: np.ndarray) -> list[np.ndarray]:
        """One pattern's (S, n_theta) rings per phase, linear, the background taken off."""
        img = np.asarray(polar, float)
        if self.background == "median":
            img = img - _ring_median(img)[None]
        img = np.nan_to_num(img)  # not clipped yet: the noise left about zero averages out below
        if self.read == "disk_rims":
            from scipy.ndimage import maximum_filter1d

            img = np.where(img >= maximum_filter1d(img, 2 * self.rim_bins + 1, axis=1, mode="nearest"), img, 0.0)
        # a disk's radial profile is a plateau as wide as the disk: the smaller of the two sides at each
        # distance from a shell, averaged, is large only where a disk is centred on the shell (a disk
        # centred on a neighbouring shell covers one side only)
        return [np.minimum(img @ W[0], img @ W[1]).mean(axis=0).T for W in self.weights]

    def scan_frame_spectrum(self, rows: np.ndarray, phase: int) -> PatternSpectrum | None:
        """The spectrum of (S, n_theta) linear rings already in the scan frame (bin i at i 360/n degrees)."""
        return self._spectra([rows], [phase], turn=False)[0]

    def _spectra(self, rings: list[np.ndarray], phases: list[int] | None = None,
                 turn: bool = True) -> list[PatternSpectrum | None]:
        out: list[PatternSpectrum | None] = []
        for rows, k in zip(rings, phases if phases is not None else range(len(rings))):
            radial, smooth = self.radial[k], self.smooth[k]
            # smoothed along the ring by the plan's angular kernel before the intensity power, which
            # would lift the noise (the power of a noisy zero is not small)
            rows = np.clip(np.fft.irfft(np.fft.rfft(rows, axis=-1) * smooth, n=rows.shape[-1], axis=-1), 0.0, None)
            # then weighed as the peak route weighs a peak (I^power |g|^radial_power)
            rows = (rows ** self.power if self.power > 0 else (rows > 0).astype(float)) * radial
            # without its mean along each ring: a floor left by the background would favour templates
            # with many (weak) spots; what counts is where along the ring the intensity is
            rows = rows - rows.mean(axis=1, keepdims=True)
            norm = float(np.linalg.norm(rows))
            if norm == 0:
                out.append(None)
                continue
            spec = np.fft.rfft(rows, axis=-1)
            spec = self._scan_frame(spec) if turn else spec
            out.append(PatternSpectrum(spec, norm, np.zeros((0, 2)), np.zeros(0)))
        return out

    def polar_block(self, block: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        """(n, n_theta, n_q) polar bin means of a (nx, ny, Qx, Qy) block at scan slices (rx, ry)."""
        return self._polar(self._readout(block), rx, ry)

    def read_block(self, block: np.ndarray, rx: slice,
                   ry: slice) -> list[tuple[list[PatternSpectrum | None], list[np.ndarray]]]:
        """:meth:`read_pattern` of every pattern of a (nx, ny, Qx, Qy) block (row-major). Read as disk rims, each
        spectrum also holds the rims' peaks (``q`` in 1/Å, scan frame, ``w`` weighted as the peak route weighs a
        peak): the refinement fits the best match's in-plane angle to them, as on the peak route."""
        ny = block.shape[1]
        flat = self._readout(block)
        out = []
        for idx, img in enumerate(self._polar(flat, rx, ry)):
            items, rings = self.read_pattern(img)
            if self.read == "disk_rims":
                q, w = self.rim_peaks(flat[idx], rx.start + idx // ny, ry.start + idx % ny)
                r = np.hypot(q[:, 0], q[:, 1])
                keep = [(r > 0.5 * s0) & (r <= self.g_max) for s0 in self.inner]  # each phase's shells
                items = [None if it is None else PatternSpectrum(it.spec, it.norm, q[k], w[k])
                         for it, k in zip(items, keep)]
            out.append((items, rings))
        return out

    def rim_peaks(self, rims: np.ndarray, rx: int, ry: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, 2) peaks (1/Å from the origin, scan frame) of one pattern's (Qx, Qy) disk-rim reading at scan
        position (rx, ry), and (n,) their weights ``height^power |q|^radial_power``."""
        px, height = rim_peaks(rims)
        cal = self.calibration
        if cal.origin_map is not None:
            cal = cal.replace(origin=cal.origin_at(rx, ry), origin_map=None)
        table = PeakTable((1, 1), np.array([0, len(px)]), px[:, 0], px[:, 1], height, height, None, units="px")
        t = calibrated_peaks(table, cal, scan_frame=True)
        q = np.stack([t.qx, t.qy], -1) * (self.step / float(cal.reciprocal_step))
        w = (height ** self.power if self.power > 0 else np.ones(len(height))) * np.hypot(q[:, 0], q[:, 1]) ** \
            self.radial_power
        return q, w

    def _readout(self, block: np.ndarray) -> np.ndarray:
        nx, ny = block.shape[:2]
        flat = block.reshape(nx * ny, *block.shape[2:])
        return disk_rims(flat, self.rim_px) if self.read == "disk_rims" else flat

    def _polar(self, flat: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        out = np.empty((len(flat),) + self.groups.reference.area.shape)
        for geo, idx in self.groups.groups(rx, ry):
            out[idx] = bin_means(split_block(flat, geo, idx), geo)
        return out


def disk_rims(patterns: np.ndarray, radius_px: float) -> np.ndarray:
    """Where the disks' centres are: the rims of ``(n, Qx, Qy)`` patterns gathered on circles of the disk radius.

    The rims are the gradient of the square-root intensity (lightly smoothed); each point of a circle
    of the disk radius about a candidate centre votes with the gradient's component towards that
    centre (a circular Hough transform with the gradient's direction: a bright disk's rim points
    inwards). The votes add up at every disk's centre, also where the disks of two grains overlap,
    and cancel elsewhere. Clipped at zero.

    Examples
    --------
    >>> y, x = np.mgrid[:64, :64]
    >>> two = ((np.hypot(x - 28, y - 32) < 8) | (np.hypot(x - 34, y - 32) < 8)).astype(float)
    >>> r = disk_rims(two[None], 8.0)[0]
    >>> sorted(int(i) for i in np.argsort(r[32])[-2:])  # the two centres, 6 px apart, along row 32
    [28, 34]
    """
    from scipy import ndimage as ndi
    from scipy.signal import fftconvolve

    a = np.sqrt(np.clip(np.asarray(patterns, float), 0, None))
    a = ndi.gaussian_filter(a, (0, 0.7, 0.7))
    h = int(math.ceil(radius_px + 3))
    ex, ey = np.mgrid[-h:h + 1, -h:h + 1].astype(float)
    r = np.hypot(ex, ey)
    ring = np.exp(-0.5 * ((r - radius_px) / 0.7) ** 2) / np.maximum(r, 1e-9)
    # Sobel within each pattern: ndi.sobel on the stack would also smooth across neighbouring patterns (axis 0)
    votes = sum(fftconvolve(ndi.correlate1d(ndi.correlate1d(a, [-1.0, 0.0, 1.0], axis), [1.0, 2.0, 1.0], 3 - axis),
                            (e * ring)[None], mode="same", axes=(1, 2))
                for axis, e in ((1, ex), (2, ey)))
    return np.clip(votes, 0, None)


def rim_peaks(rims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel positions (detector px) and heights of the peaks of one pattern's (Qx, Qy) disk-rim reading.

    The local maxima over ``RIM_PEAK_SEPARATION_PX`` either side, above ``RIM_PEAK_FLOOR`` of the strongest, each
    placed by a parabola through three pixels along each axis. The rims are sharp at the disks' centres, so the
    disks of two grains that overlap give two peaks: fitted to these, the in-plane angle of one grain is not
    pulled by the other's spots, as the single-template correlation (smoothed by the plan's kernel) is.

    Examples
    --------
    >>> y, x = np.mgrid[:64, :64]
    >>> disk = (np.hypot(x - 40.3, y - 20.0) < 8).astype(float)
    >>> px, h = rim_peaks(disk_rims(disk[None], 8.0)[0])
    >>> bool(np.all(np.abs(px[np.argmax(h)] - [20.0, 40.3]) < 0.2))  # (row, column), within a fifth of a pixel
    True
    """
    from scipy import ndimage as ndi

    r = np.asarray(rims, float)
    top = float(r.max()) if r.size else 0.0
    if top <= 0:
        return np.zeros((0, 2)), np.zeros(0)
    peak = (r >= ndi.maximum_filter(r, size=2 * RIM_PEAK_SEPARATION_PX + 1, mode="nearest")) & (r > RIM_PEAK_FLOOR * top)
    peak[0], peak[-1], peak[:, 0], peak[:, -1] = False, False, False, False
    i, j = np.nonzero(peak)
    c = r[i, j]

    def offset(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        den = lo - 2 * c + hi
        return np.where(den < 0, 0.5 * (lo - hi) / np.where(den < 0, den, -1.0), 0.0)

    px = np.stack([i + offset(r[i - 1, j], r[i + 1, j]), j + offset(r[i, j - 1], r[i, j + 1])], -1)
    return px, c


def _ring_median(img: np.ndarray) -> np.ndarray:
    """(n_q,) median over angle of each ring of a (n_theta, n_q) polar image, NaN bins left out (0 if all are).

    >>> _ring_median(np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan]])).tolist()
    [2.0, 0.0]
    """
    srt = np.sort(img, axis=0)  # NaN last
    cnt = np.sum(np.isfinite(img), axis=0)
    cols = np.arange(img.shape[1])
    lo, hi = np.maximum(cnt - 1, 0) // 2, np.maximum(cnt, 1) // 2
    med = 0.5 * (srt[lo, cols] + srt[np.minimum(hi, len(srt) - 1), cols])
    return np.where(cnt > 0, med, 0.0)


def _num_spots(result: dict[str, np.ndarray], item: PatternSpectrum | None, plan: OrientationPlan) -> int:
    """Spots of the best match that land on intensity above the background (the raw route's peak count)."""
    k = int(result["phase"][0])
    if k < 0 or item is None:
        return 0
    ph, p = plan.phases[k], plan.params
    spots = simulate_spots(ph.crystal, result["matrix"][0], energy_eV=plan.energy_eV, g_max=plan.g_max,
                           sigma_excitation_error=p.sigma_excitation_error, min_intensity=p.min_spot_weight,
                           precession_angle_deg=p.precession_angle_deg)
    if len(spots.g) == 0:
        return 0
    rows = np.fft.irfft(item.spec, n=plan.n_angles, axis=-1)  # the pattern's shells in the scan frame
    r = np.hypot(spots.g[:, 0], spots.g[:, 1])
    s = np.argmin(np.abs(r[:, None] - ph.shells[None]), axis=1)
    a = np.round(np.mod(np.arctan2(spots.g[:, 1], spots.g[:, 0]), 2 * math.pi) * plan.n_angles / (2 * math.pi))
    v = rows[s, a.astype(np.int64) % plan.n_angles]
    return int(np.sum(v > 0.25 * rows.max()))


class RawMatchJob(MatchJob):
    """Engine job: match every raw pattern of a cube against a plan (polar template matching)."""

    name = "matching orientations of raw patterns"

    def __init__(self, plan: OrientationPlan, params: OrientationMapRawParams, polar: PatternPolar) -> None:
        super().__init__(plan, params)
        self.polar = polar

    def buffers(self, cube: Any) -> dict[str, Buffer]:
        return {**super().buffers(cube), "weight": Buffer("position", (self.params.num_matches,))}

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> dict[str, np.ndarray]:
        nx, ny = block.shape[:2]
        res = [_match(items, rings, self.plan, self.params, self.polar)
               for items, rings in self.polar.read_block(block, rx, ry)]
        return {k: np.stack([r[k] for r in res]).reshape((nx, ny) + res[0][k].shape) for k in res[0]}


def _match(items: list[PatternSpectrum | None], rings: list[np.ndarray], plan: OrientationPlan,
           p: OrientationMapRawParams, polar: PatternPolar) -> dict[str, np.ndarray]:
    out = match_spectra(items, plan, p.num_matches, p.min_angle_deg, p.refine)
    k = int(out["phase"][0])
    out["num_peaks"] = np.array(_num_spots(out, items[k] if k >= 0 else None, plan), np.int64)
    out["weight"] = np.full(p.num_matches, np.nan)
    if p.decompose and k >= 0 and items[k] is not None:
        _decompose(out, items[k], rings[k], k, plan, p, polar)
    return out


def _decompose(out: dict[str, np.ndarray], item: PatternSpectrum, rings: np.ndarray, k: int, plan: OrientationPlan,
               p: OrientationMapRawParams, polar: PatternPolar) -> None:
    """Matches 1 and 2 from the pattern's decomposition into two orientations (in place; weights 1, 0, ... when
    one orientation explains it as well)."""
    ph, n = plan.phases[k], plan.n_angles
    corr = correlate_templates(item, ph, n, plan.params.kernel_size)
    fit = ring_fit(rings, ph.shells, n, plan.params.kernel_size)
    scan_rows = np.fft.irfft(rings, n=n, axis=-1)  # the rings as read, scan frame
    pair = decompose_pair(corr, fit, ph, plan, p.min_angle_deg, best=out["matrix"][0], item=item,
                          residual=lambda other: polar.scan_frame_spectrum(scan_rows - other, k))
    K = p.num_matches
    out["weight"][:] = 0.0
    if pair is None:
        out["weight"][0] = 1.0
        return
    old = {name: out[name].copy() for name in ("matrix", "phase", "correlation")}
    # each turned about the beam onto its spots' rim peaks (the fit's fine grid is a tenth of the plan's step, and
    # its spots are as wide as the plan's kernel; the other grain's peaks are further than half a kernel)
    rows = [(fit_in_plane(U, item.q, item.w, ph, plan), float(c), float(w))
            for U, c, w in zip(pair["matrix"], pair["correlation"], pair["weight"])]
    # the stronger one: the (refined) single-template match of the whole pattern when it is this grain: the
    # weaker one's spots are too weak to pull it, and it has the beam tilt of the kinematic correlation.
    # Refining either on the pattern less the other's fitted spots was measured worse (bench/RESULTS.md)
    if (_near(old["matrix"][0], rows[0][0], ph.symmetry, p.min_angle_deg)
            and not _near(old["matrix"][0], rows[1][0], ph.symmetry, p.min_angle_deg - 1e-9)):
        rows[0] = (old["matrix"][0], float(old["correlation"][0]), rows[0][2])
    for m in range(K):  # then the single-template matches at least min_angle from both
        U = old["matrix"][m]
        if len(rows) >= K or old["phase"][m] != k or not np.isfinite(U).all():
            continue
        d = [min(misorientation_deg(U, V, ph.symmetry), misorientation_deg(_HALF_TURN @ U, V, ph.symmetry))
             for V, _, _ in rows]
        if min(d) >= p.min_angle_deg:
            rows.append((U, float(old["correlation"][m]), 0.0))
    for name, fill in (("matrix", np.nan), ("phase", -1), ("correlation", np.nan), ("zone_axis", np.nan),
                       ("in_plane_deg", np.nan)):
        out[name][...] = fill
    for m, (U, c, w) in enumerate(rows[:K]):
        out["matrix"][m], out["phase"][m], out["correlation"][m], out["weight"][m] = U, k, c, w
        out["zone_axis"][m], out["in_plane_deg"][m] = describe(U, ph)


def _near(U: np.ndarray, V: np.ndarray, sym: np.ndarray, angle_deg: float) -> bool:
    if not (np.isfinite(U).all() and np.isfinite(V).all()):
        return False
    return min(float(misorientation_deg(U, V, sym)), float(misorientation_deg(_HALF_TURN @ U, V, sym))) <= angle_deg


def raw_plan(params: OrientationMapRawParams, calibration: Calibration,
             detector_shape: tuple[int, int]) -> OrientationPlan:
    """The plan of a raw-route record for this beam and detector (built once per process).

    Without ``g_max`` it reaches the detector edge less half a disk: a spot whose centre is on the
    detector counts here, detected or not.
    """
    pp = params.plan
    if pp.g_max is None:
        edge = detector_g_max(calibration.replace(convergence_semiangle_mrad=None), tuple(detector_shape))
        pp = pp.replace(g_max=edge - 0.5 * disk_radius_px(params, calibration) * reciprocal_step_invA(calibration))
    return plan_for(pp, calibration, tuple(detector_shape))


def _plan(p: OrientationMapRawParams, calibration: Calibration, detector_shape: tuple[int, int],
          plan: OrientationPlan | None) -> tuple[OrientationPlan, OrientationMapRawParams]:
    if plan is None:
        return raw_plan(p, calibration, detector_shape), p
    plan.check(calibration, None)
    return plan, p.replace(plan=plan.params)


def orientation_map_raw(cube: Any, params: OrientationMapRawParams | None = None, *,
                        plan: OrientationPlan | None = None, **options: Any) -> OrientationMap:
    """Orientation (and phase) of every scan position from its raw pattern (``fw.orientation_map_raw``).

    Parameters
    ----------
    cube : DataCube
        Calibrated: origin (or origin map), reciprocal step, beam energy; rotation and flip between
        scan and detector when they are not 0.
    params : OrientationMapRawParams, optional
    plan : OrientationPlan or OrientationPlanParams, optional
        A plan built before (:func:`~fourd_widgets.analysis.orientation_plan.build_plan`); without one
        it is built from ``params.plan`` (or this record) for the cube's calibration and detector
        (cached per process).
    **options
        Engine options (progress, cancel, on_partial, workers, scheduler, chunk_bytes) and field overrides.

    Returns
    -------
    OrientationMap
        Orientations in the scan frame; ``num_peaks`` counts the best match's simulated spots that
        land on intensity above the background.

    Raises
    ------
    MissingCalibrationError
        No origin, reciprocal step or beam energy.
    CalibrationError
        A plan built for another beam energy.

    Examples
    --------
    >>> import fourd_widgets as fw
    >>> cube, _ = fw.datasets.simulate((1, 2), (96, 96), reciprocal_step=0.02, convergence_semiangle_mrad=0.5)
    >>> small = OrientationPlanParams(zone_axis_range="fiber", fiber_angle_deg=3.0, zone_axis_step_deg=1.0)
    >>> om = orientation_map_raw(cube, plan=small)
    >>> np.round(om.zone_axis[0, 0, 0], 2).tolist(), bool(abs(om.in_plane_deg[0, 0, 0]) < 0.5)
    ([0.0, 0.0, 1.0], True)
    """
    engine, changes = split_engine(options)
    if isinstance(plan, OrientationPlanParams):  # the record's field, not a built plan
        changes["plan"], plan = plan, None
    elif plan is not None and not isinstance(plan, OrientationPlan):
        raise ParameterError(f"plan= takes an OrientationPlan (build_plan) or OrientationPlanParams, got "
                             f"{type(plan).__name__}", field="plan")
    p = own_record(params, OrientationMapRawParams, changes, "orientation_map_raw")
    cube = as_cube(cube)
    cal = cube.calibration
    built, p = _plan(p, cal, cube.detector_shape, plan)
    polar = PatternPolar(built, p, cal, cube.scan_shape, cube.detector_shape)
    engine.setdefault("chunk_bytes", _CHUNK_PATTERNS * cube.pattern_nbytes)
    engine = {"progress": False, **engine}
    job = RawMatchJob(built, p, polar)
    om = run_job(cube, job, **engine)
    if p.decompose and p.boundary_radius_px > 0:  # the neighbouring grains' pairs (.orientation_boundaries)
        om = run_job(cube, BoundaryJob(job, om), **engine)
    return om


def orientation_map_raw_step(cube: Any, params: OrientationMapRawParams, context: RunContext) -> OrientationMap:
    """Recipe adapter: the orientation map of the cube's raw patterns (with the recipe's calibration)."""
    cal = current_calibration(cube, context)
    if cal is not cube.calibration:
        cube = cube.with_calibration(cal)
    return orientation_map_raw(cube, params, **context.engine)


def match_pattern(image: Any, plan: OrientationPlan, calibration: Calibration,
                  params: OrientationMapRawParams | None = None, position: tuple[int, int] | None = None,
                  polar: PatternPolar | None = None) -> dict[str, np.ndarray]:
    """Match one raw (Qx, Qy) pattern; the dict of :func:`~fourd_widgets.analysis.orientation.match_peaks`.

    ``position`` (rx, ry) picks the origin of a calibration with an origin map; ``polar`` reuses
    a :class:`PatternPolar` built for the plan, record and calibration.
    """
    return _details(image, plan, calibration, params, position, polar, details=False)


def match_pattern_details(image: Any, plan: OrientationPlan, calibration: Calibration,
                          params: OrientationMapRawParams | None = None, position: tuple[int, int] | None = None,
                          polar: PatternPolar | None = None) -> dict[str, Any]:
    """:func:`match_pattern` plus why it matched (the keys of
    :func:`~fourd_widgets.analysis.orientation.match_details`: ``directions``, ``zone_correlation``,
    ``angles_deg``, ``angle_correlation``)."""
    return _details(image, plan, calibration, params, position, polar, details=True)


def _details(image: Any, plan: OrientationPlan, calibration: Calibration, params: OrientationMapRawParams | None,
             position: tuple[int, int] | None, polar: PatternPolar | None, details: bool) -> dict[str, Any]:
    p = params or OrientationMapRawParams(plan=plan.params)
    img = np.asarray(image)
    if img.ndim != 2:
        raise ShapeError(f"match_pattern needs one 2D pattern, got shape {img.shape}")
    if polar is None:
        scan = (1, 1) if calibration.origin_map is None else calibration.origin_map.shape[:2]
        polar = PatternPolar(plan, p, calibration, scan, img.shape)
    if calibration.origin_map is not None and position is None:
        raise ParameterError("the calibration has an origin map: give the pattern's position=(rx, ry)",
                             field="position")
    rx, ry = position or (0, 0)
    items, rings = polar.read_block(img[None, None], slice(rx, rx + 1), slice(ry, ry + 1))[0]
    out: dict[str, Any] = _match(items, rings, plan, p, polar)
    if not details:
        return out
    n = plan.n_angles
    out.update(directions=np.zeros((0, 3)), zone_correlation=np.zeros(0), angles_deg=np.arange(n) * 360.0 / n,
               angle_correlation=np.zeros(0))
    k = int(out["phase"][0])
    if k >= 0 and items[k] is not None:
        corr = correlate_templates(items[k], plan.phases[k], n, plan.params.kernel_size)
        zc = corr.max(axis=1)
        out.update(directions=plan.phases[k].directions, zone_correlation=zc, angle_correlation=corr[int(np.argmax(zc))])
    return out
