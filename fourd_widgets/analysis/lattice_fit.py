"""Whole-pattern lattice fit: strain at low dose, with a standard error at every position.

At a few thousand electrons per probe most Bragg disks hold a handful of electrons: disk
detection misses them or finds noise, and a lattice fitted to the few strong disks that
survive is biased towards them. This step fits the lattice to each whole pattern at once
instead, over every lattice site including the weak ones, with no per-disk detection. The
model of a pattern (in counts) is

    λ(q) = b + Σ_s A_s P(q - o - h_s g1 - k_s g2)

with ``P`` the probe template (unit sum), one amplitude ``A_s`` per site and a flat
background ``b``; origin ``o`` and basis ``g1, g2`` maximise the Poisson likelihood
(Fisher scoring, :mod:`fourd_widgets.kernels.lattice_fit`). Each pattern starts from the
lattice of the mean pattern (itself fitted the same way from its detected disks, or from
the vectors given), so a weak pattern needs no disk of its own.

The inverse Fisher information at the fit, with amplitudes and background profiled out,
is the covariance of ``(o, g1, g2)``; propagated through the strain algebra
(:func:`~fourd_widgets.analysis.strain.strain_from_lattice`) it gives ``σ`` of ``ε_xx,
ε_yy, ε_xy`` and ``θ`` at every position (:class:`StrainSigmaMap`). The strain being a non-linear
function of the vectors, each position's strain has its second-order bias removed
(:func:`strain_bias`, from the same covariance): without that, the mean ε_xx and ε_yy of
noisy positions are high by about the vectors' relative variance. The Cramér-Rao bound of
the same model, with the amplitudes taken from the noise-free pattern, is
:func:`lattice_cramer_rao_bound`: the scatter of any unbiased estimator is at least that.

Optionally the fitted vectors are pooled over a Gaussian scan neighbourhood of
``pool_sigma`` steps (weights over the valid positions; the pooled covariance follows from
the same weights, positions having independent noise).

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.analysis.probe import synthetic_disk, probe_template
>>> from fourd_widgets.core import Calibration, DataCube
>>> probe = synthetic_disk((64, 64), 4.0, (32, 32))
>>> t = probe_template(probe)
>>> g1, g2 = np.array([14.0, 1.0]), np.array([-1.0, 15.0])
>>> pat = lattice_pattern(t, (32.0, 32.0), g1 * 1.01, g2, (64, 64), max_index=2) * 500
>>> cube = DataCube(np.broadcast_to(pat, (2, 2, 64, 64)).copy(), calibration=Calibration(origin=(32, 32)))
>>> sm = whole_pattern_fit(cube, WholePatternFitParams(g1=(14.0, 1.0), g2=(-1.0, 15.0), max_index=2,
...                        reference_g1=(14.0, 1.0), reference_g2=(-1.0, 15.0)), template=t)
>>> bool(abs(sm.exx[0, 0] + 0.0099) < 2e-4), bool(np.all(sm.sigma_exx > 0))
(True, True)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ..core.calibration import Calibration
from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.job import Buffer, Job
from ..engine.run import run_job
from ..kernels import lattice_fit as K
from .disks import FindDisksParams, find_disks_in_patterns
from .lattice_basis import suggest_basis, vec2
from .peak_calibration import distortion_matrix
from .probe import ProbeTemplate, ProbeTemplateParams, fourier_shift, mean_pattern, probe_template
from .steps import own_record, split_engine
from .strain import FIT_COLLINEAR, FIT_INVALID_PATTERN, StrainMap, check_lattice_and_reference, strain_from_lattice

__all__ = [
    "WholePatternFitParams",
    "PatternModel",
    "StrainSigmaMap",
    "LatticeBound",
    "WholePatternFitJob",
    "pattern_model",
    "lattice_sites",
    "lattice_pattern",
    "fit_pattern_lattice",
    "start_lattice",
    "whole_pattern_fit",
    "strain_sigma",
    "strain_bias",
    "limit_sigma",
    "lattice_cramer_rao_bound",
    "FIT_NOT_CONVERGED",
    "FIT_WANDERED",
    "FIT_SIGMA_ABOVE",
]

#: Failure bit: the Fisher scoring did not converge within ``max_iterations``.
FIT_NOT_CONVERGED = 8
#: Failure bit: a first-order site ended farther than one disk radius from where it started.
FIT_WANDERED = 16
#: Failure bit: the largest strain σ exceeds ``max_sigma``.
FIT_SIGMA_ABOVE = 32

#: Px of probe kept beyond the model window when the probe is upsampled (pattern_model).
CROP_MARGIN = 12

_SIGMA_NAMES = ("sigma_exx", "sigma_eyy", "sigma_exy", "sigma_theta_deg")


@dataclass(frozen=True)
class WholePatternFitParams(Params):
    """Parameters of the whole-pattern lattice fit (``whole_pattern_fit``).

    Vectors are in detector px, the origin in absolute detector px. Any of them left None
    comes from the mean pattern (its disks and :func:`~fourd_widgets.analysis.strain.suggest_basis`,
    refined by the same whole-pattern fit).
    """

    step = "whole_pattern_fit"

    template: ProbeTemplateParams = param(ProbeTemplateParams(), doc="how the probe template is made")
    origin: tuple[float, float] | None = param(None, units="px", doc="start zero beam (detector px); None: "
                                               "fitted on the mean pattern")
    g1: tuple[float, float] | None = param(None, units="px", doc="start g1; None: from the mean pattern")
    g2: tuple[float, float] | None = param(None, units="px", doc="start g2; None: from the mean pattern")
    max_index: int = param(6, ge=1, le=40, doc="largest |h|, |k| of the lattice sites in the model (sites "
                           "whose centre is off the detector are left out)")
    window: float = param(3.0, units="px", ge=0.5, le=20, doc="margin beyond the disk radius over which each "
                          "site's probe image is modelled")
    upsample: int = param(8, ge=2, le=32, doc="template samples per detector px (cubic in between)")
    edge_blur: float = param(0.75, units="px", ge=0, le=4, doc="Gaussian blur of the probe's edge in the model "
                             "(a hard edge makes the information jump with the sub-pixel position)")
    counts_per_unit: float = param(1.0, gt=0, doc="electrons per data unit (1 for counted data); the standard "
                                   "errors assume Poisson counts")
    max_iterations: int = param(100, ge=1, le=1000, doc="Fisher-scoring steps per pattern at most")
    tolerance: float = param(1e-4, units="px", gt=0, doc="converged when no site moves more than this in a step")
    max_step: float = param(1.0, units="px", gt=0, doc="largest move of a site in one step")
    pool_sigma: float = param(0.0, ge=0, doc="Gaussian scan neighbourhood (scan steps) over which fitted "
                              "vectors are averaged; 0: none")
    max_sigma: float | None = param(None, gt=0, doc="mask positions whose largest strain σ (ε_xx, ε_yy, "
                                    "ε_xy) exceeds this; None: no limit")
    reference_region: np.ndarray | None = param(None, doc="(Rx, Ry) bool mask of unstrained positions; None: "
                                                "all positions")
    reference_g1: tuple[float, float] | None = param(None, units="px", doc="explicit reference g1")
    reference_g2: tuple[float, float] | None = param(None, units="px", doc="explicit reference g2")
    frame_deg: float = param(0.0, units="deg", doc="x axis of the strain frame, counter-clockwise from scan x")

    def validate(self) -> None:
        check_lattice_and_reference(self)


# --- the model ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PatternModel:
    """The probe template as the fit samples it.

    Attributes
    ----------
    t, gx, gy : (M, M) float64 arrays
        Probe (unit sum, non-negative) and its gradient per px, every ``1 / up`` px over
        ``[-half, half]`` around its centre.
    half : float
        Window half width, px (disk radius + window margin).
    up : int
    radius : float
        The probe's disk radius, px.
    """

    t: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    half: float
    up: int
    radius: float


def pattern_model(template: ProbeTemplate, window: float = 3.0, upsample: int = 8,
                  edge_blur: float = 0.75) -> PatternModel:
    """Sample the probe of ``template`` finely around its centre (Fourier interpolation) with its gradient.

    Parameters
    ----------
    template : ProbeTemplate
    window : float
        Margin beyond the disk radius, px.
    upsample : int
        Samples per px.
    edge_blur : float
        Gaussian blur of the probe, px. A probe with a hard aperture edge makes the Fisher
        information jump by 10x with the sub-pixel position of the disks (pixels on the edge
        where the model is near zero and steep), and the fit seeks those positions; half a
        pixel of blur (about a detector's point spread) keeps the information smooth. The
        default 0.75 px gave the smallest bias on the shared Si sets (noise-free ε_xx of the 1 %
        file relative to the unstrained one: -6e-4 at 0, +3e-4 at 0.5, +1.4e-4 at 0.75 px).

    Returns
    -------
    PatternModel
    """
    probe = np.asarray(template.probe, np.float64)
    H, W = probe.shape
    cx, cy = template.center
    p = fourier_shift(probe, (H // 2 - cx, W // 2 - cy))
    p = np.maximum(p, 0.0)
    p /= p.sum()
    half = float(math.ceil(template.radius + window))
    if 2 * half + 2 > min(H, W):
        raise ShapeError(f"the probe window ({2 * half:.0f} px) does not fit the detector {H}x{W}; lower window")
    # upsample a box around the probe, not the whole detector (a 1024² FFT per map at 128 px and 8x costs
    # more than fitting 100 patterns); CROP_MARGIN px beyond the window keep the blur and the box's
    # periodic wrap away from the samples
    b = min(H // 2, W // 2, int(half) + CROP_MARGIN)
    p = p[H // 2 - b:H // 2 + b, W // 2 - b:W // 2 + b]
    H = W = 2 * b
    # zero-padded spectrum: samples every 1/up px of the band-limited probe
    u = int(upsample)
    kx = np.fft.fftfreq(H)[:, None]
    ky = np.fft.fftfreq(W)[None, :]
    blur = np.exp(-2 * np.pi ** 2 * edge_blur ** 2 * (kx ** 2 + ky ** 2))
    spec = np.fft.fftshift(np.fft.fft2(p) * blur)
    big = np.zeros((H * u, W * u), complex)
    ox, oy = (H * u - H) // 2, (W * u - W) // 2
    big[ox:ox + H, oy:oy + W] = spec
    big = np.fft.ifftshift(big)
    fx = np.fft.fftfreq(H * u, d=1.0 / u)[:, None]  # cycles per detector px
    fy = np.fft.fftfreq(W * u, d=1.0 / u)[None, :]
    scale = u * u
    t = sfft.ifft2(big).real * scale
    gx = sfft.ifft2(big * (2j * np.pi * fx)).real * scale
    gy = sfft.ifft2(big * (2j * np.pi * fy)).real * scale
    m = int(half * u)
    cxu, cyu = (H // 2) * u, (W // 2) * u
    sl = (slice(cxu - m, cxu + m + 1), slice(cyu - m, cyu + m + 1))
    t, gx, gy = (np.ascontiguousarray(a[sl]) for a in (t, gx, gy))
    # taper the tail smoothly to zero at the window edge (product rule for the gradient), so a
    # site moving its window by a pixel changes the model continuously
    x = (np.arange(2 * m + 1) - m) / u
    X, Y = np.meshgrid(x, x, indexing="ij")
    r = np.hypot(X, Y)
    r0, r1 = template.radius + 1.0, half
    z = np.clip((r - r0) / (r1 - r0), 0.0, 1.0)
    w = np.cos(0.5 * np.pi * z) ** 2
    dw = np.where((z > 0) & (z < 1), -np.pi * np.cos(0.5 * np.pi * z) * np.sin(0.5 * np.pi * z) / (r1 - r0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ux, uy = np.where(r > 0, X / r, 0.0), np.where(r > 0, Y / r, 0.0)
    gx, gy = gx * w + t * dw * ux, gy * w + t * dw * uy
    t = t * w
    neg = t < 0  # Gibbs ringing: a model value must not be negative (flat there: zero gradient)
    t[neg] = gx[neg] = gy[neg] = 0.0
    return PatternModel(t, gx, gy, half, u, float(template.radius))


def lattice_sites(origin: Any, g1: Any, g2: Any, detector_shape: tuple[int, int], max_index: int,
                  margin: float = 0.0) -> np.ndarray:
    """``(S, 2)`` int64 indices ``(h, k)`` of the sites whose centre lies on the detector (within ``margin``).

    >>> lattice_sites((32, 32), (20, 0), (0, 20), (64, 64), 3).tolist()
    [[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 0], [0, 1], [1, -1], [1, 0], [1, 1]]
    """
    r = np.arange(-max_index, max_index + 1)
    hh, kk = (a.ravel() for a in np.meshgrid(r, r, indexing="ij"))
    o, a, b = np.asarray(origin, float), np.asarray(g1, float), np.asarray(g2, float)
    c = o + hh[:, None] * a + kk[:, None] * b
    H, W = detector_shape
    inside = ((c[:, 0] >= -margin) & (c[:, 0] <= H - 1 + margin) & (c[:, 1] >= -margin) & (c[:, 1] <= W - 1 + margin))
    return np.ascontiguousarray(np.stack([hh[inside], kk[inside]], 1).astype(np.int64))


def lattice_pattern(template: ProbeTemplate, origin: Any, g1: Any, g2: Any, detector_shape: tuple[int, int], *,
                    amplitudes: Any = None, background: float = 0.0, max_index: int = 6,
                    window: float = 3.0) -> np.ndarray:
    """The model pattern: the probe at every lattice site, as the fit sees it (for tests and previews).

    ``amplitudes`` (S,) follow :func:`lattice_sites`; default 1 per site and 10 at the origin.
    Returns a ``detector_shape`` float64 image.
    """
    model = pattern_model(template, window)
    hk = lattice_sites(origin, g1, g2, detector_shape, max_index)
    amps = (np.where((hk == 0).all(1), 10.0, 1.0) if amplitudes is None else np.asarray(amplitudes, float))
    theta = np.r_[np.asarray(origin, float), np.asarray(g1, float), np.asarray(g2, float)]
    H, W = detector_shape
    out = np.full((H, W), float(background))
    for (h, k), a in zip(hk, amps):
        c = theta[:2] + h * theta[2:4] + k * theta[4:6]
        i = np.arange(max(0, math.ceil(c[0] - model.half)), min(H - 1, math.floor(c[0] + model.half)) + 1)
        j = np.arange(max(0, math.ceil(c[1] - model.half)), min(W - 1, math.floor(c[1] + model.half)) + 1)
        if i.size == 0 or j.size == 0:
            continue
        xs = ((i[:, None] - c[0]) + model.half) * model.up
        ys = ((j[None, :] - c[1]) + model.half) * model.up
        out[np.ix_(i, j)] += a * ndimage.map_coordinates(model.t, [xs + 0 * ys, ys + 0 * xs], order=1, cval=0.0)
    return out


def _initial_amplitudes(pattern: np.ndarray, model: PatternModel, theta: np.ndarray,
                        hk: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-site least-squares amplitude of the template, and the median pixel as background."""
    amps = np.empty(len(hk))
    H, W = pattern.shape
    for n, (h, k) in enumerate(hk):
        c = theta[:2] + h * theta[2:4] + k * theta[4:6]
        ci, cj = int(round(c[0])), int(round(c[1]))
        r = int(model.half)
        i0, i1, j0, j1 = max(ci - r, 0), min(ci + r + 1, H), max(cj - r, 0), min(cj + r + 1, W)
        if i0 >= i1 or j0 >= j1:
            amps[n] = 0.0
            continue
        m = model.up
        tt = model.t[(i0 - ci + r) * m:(i1 - ci + r) * m:m, (j0 - cj + r) * m:(j1 - cj + r) * m:m]
        win = pattern[i0:i1, j0:j1]
        nn = min(tt.shape[0], win.shape[0]), min(tt.shape[1], win.shape[1])
        tt, win = tt[:nn[0], :nn[1]], win[:nn[0], :nn[1]]
        den = float((tt * tt).sum())
        amps[n] = float((tt * win).sum()) / den if den > 0 else 0.0
    bg = float(np.median(pattern))
    return np.maximum(amps, 1e-3 * max(amps.max(), 1e-9)), max(bg, 1e-6 * float(pattern.mean()) + 1e-9)


def _mean_start(counts: np.ndarray, model: PatternModel, theta: np.ndarray, hk: np.ndarray, max_iterations: int,
                tolerance: float, max_step: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Lattice, amplitudes and background of the mean pattern (in counts per pattern), from ``theta``."""
    amps0, bg0 = _initial_amplitudes(counts, model, theta, hk)
    f = _fit_stack(counts[None], 1.0, model, hk, theta, amps0, bg0, max(max_iterations, 50), tolerance, max_step,
                   fit_background=True)
    if f.status[0] != 0:
        return theta, amps0, bg0
    return f.theta[0], f.amps[0], float(f.background[0])


@dataclass
class _Fits:
    theta: np.ndarray      # (N, 6)
    cov: np.ndarray        # (N, 6, 6)
    amps: np.ndarray       # (N, S)
    background: np.ndarray  # (N,)
    iterations: np.ndarray  # (N,)
    status: np.ndarray     # (N,)
    loglik: np.ndarray     # (N,)


def _fit_stack(patterns: np.ndarray, scale: float, model: PatternModel, hk: np.ndarray, theta0: np.ndarray,
               amps0: np.ndarray, bg0: float, max_iterations: int, tolerance: float, max_step: float,
               fit_background: bool = False) -> _Fits:
    """Fit a stack from one start. The background is the start's unless ``fit_background``: at low dose
    most pixels hold no count and a free background runs to zero, which makes the tails of every disk
    look informative (standard errors 2-3x too small on the shared Si sets at 2000 e/probe)."""
    N = patterns.shape[0]
    S = len(hk)
    out = _Fits(np.empty((N, 6)), np.empty((N, 6, 6)), np.empty((N, S)), np.empty(N), np.empty(N, np.int32),
                np.empty(N, np.uint8), np.empty(N))
    pats = patterns if patterns.dtype.isnative else patterns.astype(patterns.dtype.newbyteorder("="))
    if pats.dtype.kind not in "fiu":
        raise ShapeError(f"the whole-pattern fit needs real-valued patterns, got {pats.dtype}")
    K.fit_patterns(np.ascontiguousarray(pats), float(scale), model.t, model.half, model.up, hk,
                   np.asarray(theta0, np.float64), np.asarray(amps0, np.float64), float(bg0), bool(fit_background),
                   int(max_iterations),
                   float(tolerance), float(max_step), out.theta, out.cov, out.amps, out.background, out.iterations,
                   out.status, out.loglik)
    return out


def fit_pattern_lattice(patterns: np.ndarray, template: ProbeTemplate | PatternModel, origin: Any, g1: Any, g2: Any,
                        *, counts_per_unit: float = 1.0, max_index: int = 6, window: float = 3.0,
                        edge_blur: float = 0.75, max_iterations: int = 100, tolerance: float = 1e-4, max_step: float = 1.0) -> dict[str, np.ndarray]:
    """Fit the lattice of a few patterns (e.g. the DiskTuner's chosen positions), each from the same start.

    Parameters
    ----------
    patterns : (N, H, W) or (H, W) array
    template : ProbeTemplate or PatternModel
    origin, g1, g2 : (2,) array-like
        Start lattice, detector px.
    counts_per_unit, max_index, window, max_iterations, tolerance, max_step
        See :class:`WholePatternFitParams`.

    Returns
    -------
    dict
        ``origin, g1, g2`` (N, 2) px, ``cov`` (N, 6, 6), ``sites`` (S, 2) ``(h, k)``, ``centers``
        (N, S, 2) px, ``amplitudes`` (N, S) counts, ``background`` (N,), ``status`` (N,) (0
        converged), ``iterations`` (N,).
    """
    pats = np.asarray(patterns)
    if pats.ndim == 2:
        pats = pats[None]
    if pats.ndim != 3:
        raise ShapeError(f"fit_pattern_lattice takes (N, H, W) patterns, got shape {pats.shape}")
    model = template if isinstance(template, PatternModel) else pattern_model(template, window, 8, edge_blur)
    theta0 = np.r_[vec2(origin, "origin"), vec2(g1, "g1"), vec2(g2, "g2")]
    hk = lattice_sites(theta0[:2], theta0[2:4], theta0[4:], pats.shape[1:], max_index)
    theta0, amps0, bg0 = _mean_start(pats.mean(0) * counts_per_unit, model, theta0, hk, max_iterations, tolerance,
                                     max_step)
    f = _fit_stack(pats, counts_per_unit, model, hk, theta0, amps0, bg0, max_iterations, tolerance, max_step)
    centers = (f.theta[:, None, :2] + hk[None, :, :1] * f.theta[:, None, 2:4] + hk[None, :, 1:] * f.theta[:, None, 4:])
    return {"origin": f.theta[:, :2], "g1": f.theta[:, 2:4], "g2": f.theta[:, 4:], "cov": f.cov, "sites": hk,
            "centers": centers, "amplitudes": f.amps, "background": f.background, "status": f.status,
            "iterations": f.iterations}


# --- the engine job ---------------------------------------------------------------------
class WholePatternFitJob(Job):
    """Engine job: fit every pattern of each block from one start lattice (per-position buffers)."""

    name = "whole_pattern_fit"

    def __init__(self, model: PatternModel, hk: np.ndarray, theta0: np.ndarray, amps0: np.ndarray, bg0: float,
                 p: WholePatternFitParams) -> None:
        self.model, self.hk, self.theta0, self.amps0, self.bg0 = model, hk, theta0, amps0, bg0
        self.scale = p.counts_per_unit
        self.opts = (p.max_iterations, p.tolerance, p.max_step)

    def buffers(self, cube: Any) -> dict[str, Buffer]:
        S = len(self.hk)
        return {"theta": Buffer("position", (6,)), "cov": Buffer("position", (6, 6)),
                "amplitudes": Buffer("position", (S,)), "background": Buffer("position"),
                "iterations": Buffer("position", dtype=np.int32), "status": Buffer("position", dtype=np.uint8)}

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> dict[str, np.ndarray]:
        nx, ny = block.shape[:2]
        f = _fit_stack(block.reshape((nx * ny,) + block.shape[2:]), self.scale, self.model, self.hk, self.theta0,
                       self.amps0, self.bg0, *self.opts)
        return {"theta": f.theta.reshape(nx, ny, 6), "cov": f.cov.reshape(nx, ny, 6, 6),
                "amplitudes": f.amps.reshape(nx, ny, -1), "background": f.background.reshape(nx, ny),
                "iterations": f.iterations.reshape(nx, ny), "status": f.status.reshape(nx, ny)}


# --- results --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class StrainSigmaMap(StrainMap):
    """A :class:`~fourd_widgets.analysis.strain.StrainMap` with a standard error at every position.

    Extra attributes (all NaN where masked)
    ---------------------------------------
    sigma_exx, sigma_eyy, sigma_exy, sigma_theta_deg : (Rx, Ry) arrays
        Standard errors of the maps (Fisher information of the Poisson fit, propagated).
    sigma_g1, sigma_g2 : (Rx, Ry, 2) arrays
        Standard errors of the vector components, px.
    origin : (Rx, Ry, 2) array
        Fitted zero beam, absolute detector px.
    lattice_cov : (Rx, Ry, 6, 6) array
        Covariance of ``(o_x, o_y, g1_x, g1_y, g2_x, g2_y)``, px² (after pooling when pooled).
    sites : (S, 2) int array
        Lattice indices ``(h, k)`` in the model.
    amplitudes : (Rx, Ry, S) array
        Fitted counts per site.
    iterations : (Rx, Ry) int array
    pool_sigma : float
        Scan neighbourhood of the pooling, steps (0: none).

    ``failure`` bits: :data:`~fourd_widgets.analysis.strain.FIT_COLLINEAR` (singular information),
    :data:`~fourd_widgets.analysis.strain.FIT_INVALID_PATTERN`, :data:`FIT_NOT_CONVERGED`,
    :data:`FIT_WANDERED`, :data:`FIT_SIGMA_ABOVE`; ``num_peaks`` counts the sites in the model.
    """

    sigma_exx: np.ndarray | None = None
    sigma_eyy: np.ndarray | None = None
    sigma_exy: np.ndarray | None = None
    sigma_theta_deg: np.ndarray | None = None
    sigma_g1: np.ndarray | None = None
    sigma_g2: np.ndarray | None = None
    origin: np.ndarray | None = None
    lattice_cov: np.ndarray | None = None
    sites: np.ndarray | None = None
    amplitudes: np.ndarray | None = None
    iterations: np.ndarray | None = None
    pool_sigma: float = 0.0

    def sigma(self, name: str) -> np.ndarray:
        """The σ map of ``'exx'``, ``'eyy'``, ``'exy'`` or ``'theta_deg'``."""
        key = f"sigma_{name}"
        if key not in _SIGMA_NAMES:
            raise ParameterError(f"no σ map for {name!r}; maps are exx, eyy, exy, theta_deg", field="name")
        return getattr(self, key)

    def max_strain_sigma(self) -> np.ndarray:
        """(Rx, Ry) largest σ of ``ε_xx, ε_yy, ε_xy`` (NaN where masked)."""
        return np.fmax(np.fmax(self.sigma_exx, self.sigma_eyy), self.sigma_exy)

    def to_h5(self, group: Any) -> None:
        """Write the maps, σ maps and fit details into an HDF5 group."""
        super().to_h5(group)
        for n in _EXTRA:
            group.create_dataset(n, data=getattr(self, n))
        group.attrs["pool_sigma"] = self.pool_sigma

    @classmethod
    def from_h5(cls, group: Any) -> "StrainSigmaMap":
        """Read a map written by :meth:`to_h5`."""
        base = StrainMap.from_h5.__func__(cls, group)  # the StrainMap fields, as this class
        return dataclasses.replace(base, **{n: group[n][()] for n in _EXTRA},
                                   pool_sigma=float(group.attrs["pool_sigma"]))

    def __repr__(self) -> str:
        n = self.mask.size
        s = self.sigma_exx[~self.mask]
        med = float(np.median(s)) if s.size else math.nan
        return (f"StrainSigmaMap(scan_shape={self.mask.shape}, valid={n - int(self.mask.sum())}/{n}, "
                f"median sigma_exx={med:.2e}, pool_sigma={self.pool_sigma})")


_EXTRA = _SIGMA_NAMES + ("sigma_g1", "sigma_g2", "origin", "lattice_cov", "sites", "amplitudes", "iterations")


def strain_sigma(g1: np.ndarray, g2: np.ndarray, cov_g: np.ndarray, g1_ref: Any, g2_ref: Any, *,
                 rotation_deg: float = 0.0, flip: bool = False, frame_deg: float = 0.0,
                 step: float = 1e-4) -> dict[str, np.ndarray]:
    """Standard errors of the strain maps from the covariance of ``(g1, g2)``, by the chain rule.

    Parameters
    ----------
    g1, g2 : (..., 2) arrays
        Fitted vectors.
    cov_g : (..., 4, 4) array
        Covariance of ``(g1_x, g1_y, g2_x, g2_y)``.
    g1_ref, g2_ref : (2,) arrays
        Reference (taken as exact: it is a median over many positions).
    rotation_deg, flip, frame_deg
        As :func:`~fourd_widgets.analysis.strain.strain_from_lattice`.
    step : float
        Central-difference step, px (the strain is smooth in g; 1e-4 px gives ~1e-10 accuracy).

    Returns
    -------
    dict
        ``sigma_exx, sigma_eyy, sigma_exy, sigma_theta_deg``, each of shape ``g1.shape[:-1]``.

    Examples
    --------
    >>> cov = np.diag([0.01, 0.0, 0.0, 0.0])  # σ(g1_x) = 0.1 px on |g1| = 10 px: σ(ε_xx) ≈ 1 %
    >>> s = strain_sigma(np.array([10.0, 0.0]), np.array([0.0, 10.0]), cov, (10, 0), (0, 10))
    >>> round(float(s["sigma_exx"]), 4), round(float(s["sigma_eyy"]), 6)
    (0.01, 0.0)
    """
    G = np.concatenate([np.asarray(g1, float), np.asarray(g2, float)], -1)
    kw = dict(rotation_deg=rotation_deg, flip=flip, frame_deg=frame_deg)
    names = ("exx", "eyy", "exy", "theta_deg")
    J = np.empty(G.shape[:-1] + (4, 4))
    for c in range(4):
        up, dn = G.copy(), G.copy()
        up[..., c] += step
        dn[..., c] -= step
        a = strain_from_lattice(up[..., :2], up[..., 2:], g1_ref, g2_ref, **kw)
        b = strain_from_lattice(dn[..., :2], dn[..., 2:], g1_ref, g2_ref, **kw)
        for r, n in enumerate(names):
            J[..., r, c] = (a[n] - b[n]) / (2 * step)
    V = J @ np.asarray(cov_g, float) @ np.swapaxes(J, -1, -2)
    d = np.sqrt(np.maximum(np.diagonal(V, axis1=-2, axis2=-1), 0.0))
    return {f"sigma_{n}": d[..., r] for r, n in enumerate(names)}


def strain_bias(g1: np.ndarray, g2: np.ndarray, cov_g: np.ndarray, g1_ref: Any, g2_ref: Any, *,
                rotation_deg: float = 0.0, flip: bool = False, frame_deg: float = 0.0,
                step: float = 1e-2) -> dict[str, np.ndarray]:
    """Second-order bias of the strain maps computed from noisy vectors: ``½ Σ_ij ∂²ε/∂g_i∂g_j cov_ij``.

    The strain is a non-linear function of ``(g1, g2)`` (it inverts the basis), so the mean of
    ε over unbiased but noisy vectors is off by this much: about ``+σ²`` in ε_xx and ε_yy for a
    relative scatter σ of the vectors (+1.3e-4 at 2000 e⁻ per probe on the shared Si files,
    where one position scatters by about 1 %). The whole-pattern fit subtracts it from each
    position's strain, with that position's covariance.

    Parameters
    ----------
    g1, g2 : (..., 2) arrays
    cov_g : (..., 4, 4) array
        Covariance of ``(g1_x, g1_y, g2_x, g2_y)``.
    g1_ref, g2_ref, rotation_deg, flip, frame_deg
        As :func:`strain_sigma`.
    step : float
        Finite-difference step of the second derivatives, px (ε is smooth: 0.01 px on 20-40 px vectors
        gives the Hessian to ~1e-7 relative).

    Returns
    -------
    dict
        ``exx, eyy, exy, theta_deg``: the bias, each of shape ``g1.shape[:-1]``.

    Examples
    --------
    >>> cov = np.diag([0.01, 0.0, 0.0, 0.0])  # σ(g1_x) = 0.1 px on |g1| = 10 px: 1 % relative
    >>> b = strain_bias(np.array([10.0, 0.0]), np.array([0.0, 10.0]), cov, (10, 0), (0, 10))
    >>> round(float(b["exx"]), 6), round(float(b["eyy"]), 6)
    (0.0001, 0.0)
    """
    G = np.concatenate([np.asarray(g1, float), np.asarray(g2, float)], -1)
    C = np.asarray(cov_g, float)
    h = step
    # every perturbation of the 4 components at once (one call): 0, ±h e_i, then ±h e_i ± h e_j for i < j
    moves = [np.zeros(4)] + [s * h * np.eye(4)[i] for i in range(4) for s in (1, -1)]
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    moves += [h * (si * np.eye(4)[i] + sj * np.eye(4)[j]) for i, j in pairs for si, sj in ((1, 1), (1, -1), (-1, 1),
                                                                                          (-1, -1))]
    X = G[None] + np.asarray(moves).reshape((len(moves),) + (1,) * (G.ndim - 1) + (4,))
    e = strain_from_lattice(X[..., :2], X[..., 2:], g1_ref, g2_ref, rotation_deg=rotation_deg, flip=flip,
                            frame_deg=frame_deg)
    out = {}
    for n, v in e.items():
        acc = np.zeros(G.shape[:-1])
        for i in range(4):  # ½ H_ii C_ii
            acc += 0.5 * (v[1 + 2 * i] - 2 * v[0] + v[2 + 2 * i]) / h ** 2 * C[..., i, i]
        for k, (i, j) in enumerate(pairs):  # H_ij C_ij for (i, j) and (j, i): ½ · 2
            pp, pm, mp, mm = v[9 + 4 * k:13 + 4 * k]
            acc += (pp - pm - mp + mm) / (4 * h ** 2) * C[..., i, j]
        out[n] = acc
    return out


def _pool(values: np.ndarray, cov: np.ndarray, valid: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-weighted mean over valid positions, and its covariance (independent positions)."""
    r = int(math.ceil(3 * sigma))
    x = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (x[:, None] ** 2 + x[None, :] ** 2) / sigma ** 2)
    w = valid.astype(float)
    den = ndimage.convolve(w, k, mode="constant")
    v = np.where(valid[..., None], values, 0.0)
    c = np.where(valid[..., None, None], cov, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.stack([ndimage.convolve(v[..., i], k, mode="constant") for i in range(v.shape[-1])], -1) / den[..., None]
        cp = np.empty_like(c)
        for i in range(c.shape[-2]):
            for j in range(c.shape[-1]):
                cp[..., i, j] = ndimage.convolve(c[..., i, j], k * k, mode="constant") / den ** 2
    return out, cp


def start_lattice(mean: np.ndarray, template: ProbeTemplate, calibration: Calibration,
                  p: WholePatternFitParams, scale: float, reference: tuple | None = None, *,
                  model: PatternModel | None = None) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """The start of every pattern's fit: the lattice of the mean pattern.

    Vectors not given in ``p`` are the ``reference`` vectors, else come from the mean pattern's detected disks
    (:func:`~fourd_widgets.analysis.strain.suggest_basis`); then the whole-pattern fit
    refines them (given or found) on the mean pattern, with its background. Returns ``(theta0 (6,), amps0 (S,), bg0, hk (S, 2))``.
    ``model`` is the :func:`pattern_model` of ``template`` and ``p`` when the caller has it already.
    """
    if model is None:
        model = pattern_model(template, p.window, p.upsample, p.edge_blur)
    origin = p.origin if p.origin is not None else calibration.origin
    g1, g2 = p.g1, p.g2
    if g1 is None and reference is not None:  # the reference lattice: the same basis as the reference
        g1, g2 = reference
    if origin is None or g1 is None:
        peaks = find_disks_in_patterns(mean[None, None], template, FindDisksParams())
        if origin is None:
            k = int(np.argmax(peaks.intensity))
            origin = (float(peaks.qx[k]), float(peaks.qy[k]))
        if g1 is None:
            basis = suggest_basis(peaks, Calibration(origin=tuple(origin)))
            g1, g2 = basis.g1, basis.g2
    theta = np.r_[vec2(origin, "origin"), vec2(g1, "g1"), vec2(g2, "g2")]
    hk = lattice_sites(theta[:2], theta[2:4], theta[4:], mean.shape, p.max_index)
    if len(hk) < 3:
        raise ParameterError(f"whole_pattern_fit: only {len(hk)} lattice sites lie on the detector; check g1, g2 "
                             "and origin, or raise max_index", field="g1")
    counts = mean * scale
    theta, amps0, bg0 = _mean_start(counts, model, theta, hk, p.max_iterations, p.tolerance, p.max_step)
    hk2 = lattice_sites(theta[:2], theta[2:4], theta[4:], mean.shape, p.max_index)
    if not np.array_equal(hk2, hk):  # the refined lattice puts other sites on the detector
        hk = hk2
        theta, amps0, bg0 = _mean_start(counts, model, theta, hk, p.max_iterations, p.tolerance, p.max_step)
    return theta, amps0, bg0, hk


def whole_pattern_fit(cube: Any, params: WholePatternFitParams | None = None, *,
                      template: ProbeTemplate | np.ndarray | None = None, reference: Any = None,
                      **options: Any) -> StrainSigmaMap:
    """Fit the lattice to every whole pattern (Poisson likelihood) and map strain with its σ (``fw.whole_pattern_fit``).

    Parameters
    ----------
    cube : DataCube
        Data, axes (Rx, Ry, Qx, Qy); counts, or values times ``counts_per_unit``.
    params : WholePatternFitParams, optional
    template : ProbeTemplate or (Qx, Qy) array, optional
        Use this probe instead of making one from ``params.template``.
    reference : StrainMap or (g1, g2), optional
        Reference lattice of another dataset (overrides the params' region and vectors).
    **options
        Engine options (``workers``, ``scheduler``, ``chunk_bytes``, ``progress``, ``cancel``,
        ``on_partial``) and record field overrides.

    Returns
    -------
    StrainSigmaMap
    """
    engine, changes = split_engine(options)
    p = own_record(params, WholePatternFitParams, changes, "whole_pattern_fit")
    if len(cube.scan_shape) != 2:
        raise ShapeError(f"whole_pattern_fit needs a 2-D scan, got scan shape {cube.scan_shape}")
    shared = {k: v for k, v in engine.items() if k in ("workers", "scheduler", "cancel")}
    if template is None:
        template = probe_template(cube, p.template, **shared)
    elif not isinstance(template, ProbeTemplate):
        template = probe_template(np.asarray(template), ProbeTemplateParams(source="vacuum_image"))
    cal = cube.calibration or Calibration()
    mean = mean_pattern(cube, **shared)
    model = pattern_model(template, p.window, p.upsample, p.edge_blur)
    theta0, amps0, bg0, hk = start_lattice(mean, template, cal, p, p.counts_per_unit, _reference_vectors(p, reference),
                                           model=model)
    job = WholePatternFitJob(model, hk, theta0, amps0, bg0, p)
    out = run_job(cube, job, **{"progress": False, **engine})
    return _strain_sigma_map(out, theta0, hk, model.radius, cal, p, reference)


def _reference_vectors(p: WholePatternFitParams, reference: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The explicit reference (argument, then record), or None for the median over the region."""
    if reference is not None:
        if isinstance(reference, StrainMap):
            return np.asarray(reference.g1_ref, float), np.asarray(reference.g2_ref, float)
        try:
            a, b = reference
        except (TypeError, ValueError):
            raise ParameterError("reference must be a StrainMap or a pair (g1, g2)", field="reference") from None
        return vec2(a, "reference g1"), vec2(b, "reference g2")
    if p.reference_g1 is not None:
        return np.asarray(p.reference_g1, float), np.asarray(p.reference_g2, float)
    return None


def _strain_sigma_map(out: dict, theta0: np.ndarray, hk: np.ndarray, radius: float, cal: Calibration,
                      p: WholePatternFitParams, reference: Any) -> StrainSigmaMap:
    theta, cov = out["theta"], out["cov"]
    status = out["status"]
    failure = np.zeros(status.shape, np.uint8)
    failure[status == 1] |= FIT_NOT_CONVERGED
    failure[status == 2] |= FIT_COLLINEAR
    failure[status == 4] |= FIT_INVALID_PATTERN
    drift = np.max([np.hypot(*np.moveaxis(theta[..., i:i + 2] - theta0[i:i + 2], -1, 0)) for i in (0, 2, 4)], 0)
    failure[~(drift <= radius)] |= FIT_WANDERED  # NaN drift too
    diag = np.diagonal(cov, axis1=-2, axis2=-1)
    failure[~np.all(np.isfinite(diag) & (diag > 0), -1)] |= FIT_COLLINEAR
    # ellipse: fit in raw px; strain in corrected px (the same linear map on every vector)
    Dinv = np.linalg.inv(distortion_matrix(cal.ellipse))
    T = np.zeros((6, 6))
    for i in range(3):
        T[2 * i:2 * i + 2, 2 * i:2 * i + 2] = Dinv if i else np.eye(2)
    vec = theta @ T.T
    cov = T @ cov @ T.T
    valid = failure == 0
    if p.pool_sigma > 0:
        vec, cov = _pool(vec, cov, valid, p.pool_sigma)
    g1, g2 = vec[..., 2:4], vec[..., 4:6]
    ref = _reference_vectors(p, reference)
    if ref is not None:
        g1_ref, g2_ref = ref
    else:
        region = valid if p.reference_region is None else (valid & np.asarray(p.reference_region, bool))
        if not region.any():
            raise ParameterError("whole_pattern_fit: the reference region holds no valid fit; choose another "
                                 "region or give reference_g1/reference_g2", field="reference_region")
        g1_ref, g2_ref = np.median(g1[region], 0), np.median(g2[region], 0)
    kw = dict(rotation_deg=cal.rotation_deg, flip=cal.flip, frame_deg=p.frame_deg)
    maps = strain_from_lattice(g1, g2, g1_ref, g2_ref, **kw)
    bias = strain_bias(g1, g2, cov[..., 2:, 2:], g1_ref, g2_ref, **kw)  # mean of ε(noisy g) is not ε(g)
    maps = {k: v - bias[k] for k, v in maps.items()}
    sig = strain_sigma(g1, g2, cov[..., 2:, 2:], g1_ref, g2_ref, **kw)
    mask = failure != 0
    for v in list(maps.values()) + list(sig.values()):
        v[mask] = np.nan
    sd = np.sqrt(np.maximum(np.diagonal(cov, axis1=-2, axis2=-1), 0.0))
    sg1, sg2 = sd[..., 2:4].copy(), sd[..., 4:6].copy()
    sg1[mask] = sg2[mask] = np.nan
    g1m, g2m = g1.copy(), g2.copy()
    g1m[mask] = g2m[mask] = np.nan
    shape = mask.shape
    sm = StrainSigmaMap(**maps, mask=mask, failure=failure, g1=g1m, g2=g2m,
                          num_peaks=np.full(shape, len(hk), np.int64), residual_px=np.full(shape, np.nan),
                          g1_ref=np.asarray(g1_ref, float), g2_ref=np.asarray(g2_ref, float),
                          frame_deg=float(p.frame_deg), reciprocal_step=cal.reciprocal_step,
                          reciprocal_units=cal.reciprocal_units, **sig, sigma_g1=sg1, sigma_g2=sg2,
                          origin=theta[..., :2].copy(), lattice_cov=cov, sites=hk, amplitudes=out["amplitudes"],
                          iterations=out["iterations"].astype(np.int32), pool_sigma=float(p.pool_sigma))
    return limit_sigma(sm, p.max_sigma)


def limit_sigma(sm: StrainSigmaMap, max_sigma: float | None) -> StrainSigmaMap:
    """``sm`` with the positions whose largest strain σ exceeds ``max_sigma`` masked (bit :data:`FIT_SIGMA_ABOVE`).

    Cheap (no refit): what a σ slider calls; ``whole_pattern_fit(..., max_sigma=x)`` equals
    ``limit_sigma(whole_pattern_fit(...), x)``. None returns ``sm`` unchanged.
    """
    if max_sigma is None:
        return sm
    above = ~(sm.max_strain_sigma() <= max_sigma) & ~sm.mask
    if not above.any():
        return sm
    failure = sm.failure.copy()
    failure[above] |= FIT_SIGMA_ABOVE
    mask = sm.mask | above
    changes: dict[str, Any] = {"failure": failure, "mask": mask}
    for n in ("exx", "eyy", "exy", "theta_deg") + _SIGMA_NAMES + ("g1", "g2", "sigma_g1", "sigma_g2"):
        v = getattr(sm, n).copy()
        v[mask] = np.nan
        changes[n] = v
    return dataclasses.replace(sm, **changes)


# --- the bound --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LatticeBound:
    """Cramér-Rao bound of the whole-pattern model at one lattice (:func:`lattice_cramer_rao_bound`).

    Attributes
    ----------
    cov : (6, 6) array
        Smallest covariance of ``(o_x, o_y, g1_x, g1_y, g2_x, g2_y)`` of an unbiased estimator, px².
    sigma : dict
        ``sigma_exx, sigma_eyy, sigma_exy, sigma_theta_deg``: the bound on the strain maps' σ.
    amplitudes : (S,) array
        The nuisance amplitudes fitted to the noise-free pattern (counts).
    sites : (S, 2) int array
    dose : float
        Electrons per pattern.
    """

    cov: np.ndarray
    sigma: dict
    amplitudes: np.ndarray
    sites: np.ndarray
    dose: float

    def __repr__(self) -> str:
        s = ", ".join(f"{k}={v:.3g}" for k, v in self.sigma.items())
        return f"LatticeBound(dose={self.dose:g}, {s})"


def lattice_cramer_rao_bound(pattern: np.ndarray, template: ProbeTemplate, origin: Any, g1: Any, g2: Any,
                             dose: float, *, reference: Any = None, calibration: Calibration | None = None,
                             max_index: int = 6, window: float = 3.0, edge_blur: float = 0.75,
                             frame_deg: float = 0.0) -> LatticeBound:
    """Cramér-Rao bound of the lattice of ``λ = N Σ_s a_s P(q - o - h_s g1 - k_s g2)`` under Poisson noise.

    The amplitudes ``a_s`` (and a flat background) are nuisance parameters, fitted to the
    noise-free ``pattern`` with the lattice held at ``(origin, g1, g2)``; the bound is the
    lattice block of the inverse Fisher information ``Σ_q ∂λ ∂λᵀ / λ`` of that model.

    Parameters
    ----------
    pattern : (H, W) array
        Noise-free pattern, as fractions of the beam (it is multiplied by ``dose``).
    template : ProbeTemplate
    origin, g1, g2 : (2,) array-like
        The true lattice, detector px.
    dose : float
        Electrons per pattern, N.
    reference : (g1, g2), optional
        Reference lattice of the strain (default: ``g1, g2``).
    calibration : Calibration, optional
        Rotation, flip and ellipse (as the strain maps use them).
    max_index, window, edge_blur : int, float, float
        As :class:`WholePatternFitParams` (the bound is that of the model the fit uses).
    frame_deg : float

    Returns
    -------
    LatticeBound
    """
    model = pattern_model(template, window, 8, edge_blur)
    theta = np.r_[vec2(origin, "origin"), vec2(g1, "g1"), vec2(g2, "g2")]
    img = np.asarray(pattern, np.float64)
    hk = lattice_sites(theta[:2], theta[2:4], theta[4:], img.shape, max_index)
    counts = img * float(dose)
    amps, bg = _initial_amplitudes(counts, model, theta, hk)
    cov = np.empty((6, 6))
    b = np.array([bg])
    th = theta.copy()
    # the nuisance amplitudes and background of the noise-free pattern, then the information there
    K.fit_pattern(counts, model.t, model.half, model.up, hk, th, amps, b, True, True, 200, 1e-6, 1.0, cov)
    K.fit_pattern(counts, model.t, model.half, model.up, hk, th, amps, b, True, False, 0, 1e-6, 1.0, cov)
    cal = calibration or Calibration()
    Dinv = np.linalg.inv(distortion_matrix(cal.ellipse))
    T = np.zeros((6, 6))
    for i in range(3):
        T[2 * i:2 * i + 2, 2 * i:2 * i + 2] = Dinv if i else np.eye(2)
    cov = T @ cov @ T.T
    v = T @ theta
    ref = (v[2:4], v[4:]) if reference is None else (vec2(reference[0], "reference g1"), vec2(reference[1], "reference g2"))
    sig = strain_sigma(v[2:4], v[4:], cov[2:, 2:], ref[0], ref[1], rotation_deg=cal.rotation_deg, flip=cal.flip,
                       frame_deg=frame_deg)
    return LatticeBound(cov, {k: float(x) for k, x in sig.items()}, amps, hk, float(dose))
