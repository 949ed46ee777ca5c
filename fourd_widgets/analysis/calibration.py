"""Detector calibration (py4DSTEM §8): origin and descan, elliptic distortion, pixel size, scan rotation.

Every measurement is a plain function returning numbers or maps, and every
recipe step returns a new :class:`~fourd_widgets.core.calibration.Calibration`
(a results-file container). Later steps of a recipe use the newest calibration
result (:func:`current_calibration`), so ``fw.run`` replays
load → disks → origin → origin_fit → ellipse → pixel_size → qr_rotation → strain.

Conventions
-----------
* Origin: detector pixel (qx, qy) of the undiffracted beam; ``origin_map`` per scan position.
* Ellipse ``(a, b, θ)``: the detector maps a physical vector ``g`` (px) to
  ``D g`` with ``D = R(θ) diag(a, b) R(θ)^T`` about the origin, so a circle of
  radius r appears with semi-axis ``a r`` along θ (counter-clockwise from +qx)
  and ``b r`` across (the simulator's convention). Correction is ``D^-1``.
  A ring fit fixes ``D`` only up to scale; fitted ellipses are normalised to
  ``a b = 1`` (area-preserving) and the scale goes into the pixel size.
* Rotation and flip: a scan-frame vector ``v`` appears on the detector as
  ``R(rotation_deg) S v`` with ``S`` swapping x and y when ``flip``; so
  ``v = S R(-rotation_deg) q`` (:func:`scan_frame_matrix`).

References
----------
.. [1] B. H. Savitzky et al., Microsc. Microanal. 27, 712-743 (2021) (py4DSTEM calibration).
.. [2] D. Padfield, "Masked object registration in the Fourier domain", IEEE Trans.
   Image Process. 21, 2706-2718 (2012) (masked correlation for the Friedel origin).
.. [3] A. Fitzgibbon, M. Pilu and R. B. Fisher, "Direct least square fitting of
   ellipses", IEEE TPAMI 21, 476-480 (1999).
.. [4] I. Lazić, E. G. T. Bosch and S. Lazar, "Phase contrast STEM for thin samples:
   integrated differential phase contrast", Ultramicroscopy 160, 265-280 (2016)
   (CoM as a gradient field: zero curl at the right scan rotation).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import MissingCalibrationError, ParameterError, ShapeError
from ..core.params import Params, param
from .lattice_basis import suggest_basis
from .peak_calibration import (calibrated_peaks, corrected_vectors, distortion_matrix, peaks_in_region,
                               scan_frame_matrix)
from .peaks import PeakTable
from .probe import measure_disk, synthetic_disk
from ..engine.job import Buffer, ImageJob
from ..engine.run import run_job
from .steps import RunContext, current_calibration, deprecated_keyword, own_record, split_engine

__all__ = [
    "EllipseFit",
    "EllipseParams",
    "OriginFit",
    "ORIGIN_OUTLIER_MIN_PX",
    "OriginJob",
    "OriginFitParams",
    "OriginWarning",
    "OriginParams",
    "PixelSizeParams",
    "QRRotation",
    "QRRotationParams",
    "calibrated_peaks",
    "center_of_mass_maps", "moment_weights",
    "centre_of_mass_maps",
    "corrected_vectors",
    "current_calibration",
    "distortion_matrix",
    "fit_ellipse",
    "fit_ellipse_points",
    "fit_origin",
    "measure_origin",
    "measure_pixel_size",
    "measure_qr_rotation",
    "peaks_in_region",
    "pixel_size_from_spacing",
    "reciprocal_length",
    "ring_points",
    "scan_frame_matrix",
    "undistort_cube",
    "undistort_patterns",
]


def undistort_patterns(patterns: np.ndarray, origin: Any, ellipse: Any, order: int = 1) -> np.ndarray:
    """Resample patterns so the elliptic distortion about ``origin`` is removed.

    Parameters
    ----------
    patterns : (..., Qx, Qy) array
    origin : (2,) array
        Centre of the distortion, px.
    ellipse : (a, b, θ_deg)
    order : int
        Spline order of ``scipy.ndimage.map_coordinates`` (1 = bilinear).

    Returns
    -------
    array of the same shape, float32 or float64
        ``out(q) = in(o + D (q - o))``; pixels mapped from outside are 0.
    """
    x = np.asarray(patterns)
    Qx, Qy = x.shape[-2:]
    D = distortion_matrix(ellipse)
    o = np.asarray(origin, float)
    ii, jj = np.meshgrid(np.arange(Qx, dtype=float), np.arange(Qy, dtype=float), indexing="ij")
    src = np.tensordot(D, np.stack([ii - o[0], jj - o[1]]), axes=1) + o[:, None, None]
    flat = x.reshape((-1, Qx, Qy))
    out = np.empty(flat.shape, dtype=np.result_type(flat.dtype, np.float32))
    for n in range(flat.shape[0]):
        out[n] = ndimage.map_coordinates(flat[n], src, order=order, mode="constant", cval=0.0)
    return out.reshape(x.shape)


class _UndistortedArray:
    """Backing array of :func:`undistort_cube`: each block is resampled as it is read."""

    def __init__(self, cube: DataCube, origin: Any, ellipse: Any, order: int) -> None:
        self.cube, self.origin, self.ellipse, self.order = cube, origin, ellipse, order
        self.shape = cube.shape
        self.dtype = np.result_type(cube.dtype, np.float32)
        self.chunks = None

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        # resampling needs whole patterns: read the full detector, cut afterwards
        block = self.cube.read(key[0], key[1])
        return undistort_patterns(block, self.origin, self.ellipse, self.order)[..., key[2], key[3]]


def undistort_cube(cube: DataCube, ellipse: Any = None, order: int = 1) -> DataCube:
    """A lazy cube with the elliptic distortion resampled out of every pattern.

    Parameters
    ----------
    cube : DataCube
        Needs ``calibration.origin`` (the centre of the distortion).
    ellipse : (a, b, θ_deg), optional
        Default: ``cube.calibration.ellipse``.
    order : int
        Spline order (1 = bilinear).

    Returns
    -------
    DataCube
        Same shape, float32 (or float64); nothing is read until a step asks.
        Its calibration has no ellipse, since the distortion is gone. It has no
        file ``source``, so it travels to Dask workers as data.
    """
    cal = cube.calibration
    origin = cal.require("origin", "resampling the ellipse out of the cube")
    if ellipse is None:
        ellipse = cal.require("ellipse", "resampling the ellipse out of the cube")
    arr = _UndistortedArray(cube, origin, tuple(float(v) for v in ellipse), int(order))
    return DataCube(arr, cal.replace(ellipse=None), metadata=cube.metadata)


# --- origin ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class OriginParams(Params):
    """How to measure the origin per scan position (py4DSTEM ``get_origin``, ``get_origin_friedel``)."""

    step = "origin"

    method: Literal["com", "template", "friedel"] = param(
        "com", doc="centre of mass of the central disk, correlation with the probe, or Friedel symmetry "
        "(works with a beam stop)")
    radius: float | None = param(None, units="px", gt=0, doc="central disk radius; None: from the convergence "
                                 "angle, else measured from the mean pattern")
    rscale: float = param(1.2, gt=0, doc="'com': centre of mass within rscale x radius [rscale]")
    iterations: int = param(2, ge=1, le=10, doc="'com': re-centre the disk window this many times")
    mask: np.ndarray | None = param(None, doc="(Qx, Qy) bool, True where the detector is blocked (beam stop)")
    template: np.ndarray | None = param(None, doc="'template': (Qx, Qy) probe image; None: a synthetic disk")
    upsample_factor: int = param(16, ge=1, le=256, doc="'template': DFT upsampling of the correlation peak; "
                                 "'friedel': > 1 refines the peak by a parabola, 1 keeps whole pixels")


def _disk_radius(cube: Any, params: OriginParams) -> float:
    if params.radius is not None:
        return params.radius
    cal = cube.calibration
    if cal.convergence_semiangle_mrad is not None and cal.reciprocal_step is not None and (
            cal.reciprocal_units == "mrad" or cal.energy_eV is not None):
        return float(cal.convergence_semiangle_px)

    return float(measure_disk(cube.mean_pattern())[1])


def _com_origins(block: np.ndarray, radius: float, rscale: float, iterations: int,
                 valid: np.ndarray | None) -> np.ndarray:
    """(n, 2) centre of mass of the disk around each pattern's brightest region."""
    x = np.asarray(block, dtype=np.float64)
    if valid is not None:
        x = x * valid
    _, Qx, Qy = x.shape
    ii = np.arange(Qx, dtype=float)[None, :, None]
    jj = np.arange(Qy, dtype=float)[None, None, :]
    # start: centre of mass of the pixels above half of each (smoothed) pattern's maximum
    sm = ndimage.gaussian_filter(x, (0, 1, 1))
    w = np.where(sm >= 0.5 * sm.max(axis=(1, 2), keepdims=True), x, 0.0)
    c = np.stack([(w * ii).sum((1, 2)), (w * jj).sum((1, 2))], -1) / np.maximum(w.sum((1, 2)), 1e-300)[:, None]
    R2 = (rscale * radius) ** 2
    for _ in range(iterations):
        d2 = (ii - c[:, 0, None, None]) ** 2 + (jj - c[:, 1, None, None]) ** 2
        w = np.where(d2 <= R2, x, 0.0)
        s = w.sum((1, 2))
        c = np.stack([(w * ii).sum((1, 2)), (w * jj).sum((1, 2))], -1) / np.maximum(s, 1e-300)[:, None]
    return c


def _upsampled_peak(spec: np.ndarray, upsample: int) -> tuple[float, float]:
    """Sub-pixel maximum of ``ifft2(spec).real``: the pixel maximum, then a local DFT zoom [1]_."""
    H, W = spec.shape
    corr = sfft.ifft2(spec).real
    i, j = np.unravel_index(int(np.argmax(corr)), (H, W))
    if upsample <= 1:
        return float(i), float(j)
    off = np.arange(-1.0, 1.0 + 1e-9, 1.0 / upsample)
    ex = np.exp(2j * np.pi * np.outer(i + off, sfft.fftfreq(H)))  # (m, H)
    ey = np.exp(2j * np.pi * np.outer(sfft.fftfreq(W), j + off))  # (W, m)
    z = (ex @ spec @ ey).real
    a, b = np.unravel_index(int(np.argmax(z)), z.shape)
    return float(i + off[a]), float(j + off[b])


def _template_origins(block: np.ndarray, template: np.ndarray, upsample: int) -> np.ndarray:
    """(n, 2) position of the strongest cross-correlation peak with a centred template."""
    n, Qx, Qy = block.shape
    t = np.asarray(template, float)
    (tc_x, tc_y) = ndimage.center_of_mass(np.clip(t, 0, None))
    T = np.conj(sfft.fft2(t))
    out = np.empty((n, 2))
    spec = sfft.fft2(np.asarray(block, float), axes=(1, 2))
    for m in range(n):
        di, dj = _upsampled_peak(spec[m] * T, upsample)
        di = (di + Qx / 2) % Qx - Qx / 2
        dj = (dj + Qy / 2) % Qy - Qy / 2
        out[m] = (tc_x + di, tc_y + dj)
    return out


def _friedel_origins(block: np.ndarray, valid: np.ndarray, upsample: int, batch: int = 8) -> np.ndarray:
    """(n, 2) centre of inversion symmetry, by masked normalised cross-correlation with the 180° rotation [2]_."""
    n, Qx, Qy = block.shape
    H, W = 2 * Qx, 2 * Qy  # zero padding: linear, not circular, correlation
    m1 = valid.astype(float)
    m2 = m1[::-1, ::-1]
    fm1, cfm2 = sfft.rfft2(m1, s=(H, W)), np.conj(sfft.rfft2(m2, s=(H, W)))
    overlap = sfft.irfft2(fm1 * cfm2, s=(H, W))
    ov = np.maximum(overlap, 1e-12)
    enough = overlap >= 0.5 * m1.sum()  # the centre of symmetry lies well inside the detector
    out = np.empty((n, 2))

    def corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return sfft.irfft2(a * b, s=(H, W), axes=(-2, -1))

    for s0 in range(0, n, batch):
        f1 = np.asarray(block[s0:s0 + batch], float) * m1
        f2 = f1[:, ::-1, ::-1]
        F1 = sfft.rfft2(f1, s=(H, W), axes=(-2, -1))
        cF2 = np.conj(sfft.rfft2(f2, s=(H, W), axes=(-2, -1)))
        num = corr(F1, cF2)
        s1, s2 = corr(F1, cfm2), corr(fm1, cF2)
        q1 = corr(sfft.rfft2(f1 * f1, s=(H, W), axes=(-2, -1)), cfm2)
        q2 = corr(fm1, np.conj(sfft.rfft2(f2 * f2, s=(H, W), axes=(-2, -1))))
        v1, v2 = q1 - s1**2 / ov, q2 - s2**2 / ov
        for k in range(f1.shape[0]):
            tiny = 1e-6 * max(float(v1[k].max()), float(v2[k].max()), 1e-300)
            good = enough & (v1[k] > tiny) & (v2[k] > tiny)
            ncc = np.full((H, W), -np.inf)
            ncc[good] = (num[k] - s1[k] * s2[k] / ov)[good] / np.sqrt(v1[k][good] * v2[k][good])
            out[s0 + k] = _friedel_peak(ncc, Qx, Qy, upsample > 1)
    return out


class OriginWarning(UserWarning):
    """A measured origin the data cannot support (a beam cut by the detector edge, methods that disagree)."""


def _beam_extent(block: np.ndarray) -> np.ndarray:
    """(n, 4): centre (qx, qy) and radius of each pattern's central beam, and 1 where the edge cuts it.

    The beam is the connected region above half of the (smoothed) maximum that holds the maximum;
    its radius is that of a disk of the same area. It is a cross-check, not a measurement: its centre
    is off by less than the radius even when the detector edge cuts the beam.
    """
    n, Qx, Qy = block.shape
    out = np.full((n, 4), np.nan)
    for k in range(n):
        sm = ndimage.gaussian_filter(np.asarray(block[k], float), 1.0)
        top = float(sm.max())
        if not np.isfinite(top) or top <= 0:
            continue
        lab, _ = ndimage.label(sm >= 0.5 * top)
        beam = lab == lab[np.unravel_index(int(np.argmax(sm)), sm.shape)]
        ii, jj = np.nonzero(beam)
        cut = ii.min() == 0 or jj.min() == 0 or ii.max() == Qx - 1 or jj.max() == Qy - 1
        out[k] = (ii.mean(), jj.mean(), math.sqrt(ii.size / math.pi), float(cut))
    return out


def _positions(where: np.ndarray, limit: int = 6) -> str:
    """'[rx, ry], ...' of the True positions of an (Rx, Ry) mask, the first ``limit`` of them."""
    idx = [f"[{i}, {j}]" for i, j in zip(*np.nonzero(where))]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return ", ".join(idx[:limit]) + more


def _check_friedel(origin: np.ndarray, beam: np.ndarray) -> None:
    """Warn where Friedel symmetry cannot see the whole beam, or lands farther than a beam radius from it."""
    cut = beam[..., 3] == 1
    if cut.any():
        warnings.warn(OriginWarning(
            f"measure_origin(method='friedel') cannot see the whole beam at {int(cut.sum())} of {cut.size} "
            f"positions ({_positions(cut)}): the detector edge cuts the central beam, and Friedel symmetry needs "
            "the beam and everything around it on the detector. Use method='com' or 'template' there"),
                      stacklevel=3)
    off = np.hypot(*(origin - beam[..., :2]).transpose(2, 0, 1))
    far = np.isfinite(off) & (off > beam[..., 2])
    if far.any():
        first = tuple(int(v) for v in np.argwhere(far)[0])
        warnings.warn(OriginWarning(
            f"measure_origin(method='friedel') disagrees with the central beam by more than its radius at "
            f"{int(far.sum())} of {far.size} positions ({_positions(far)}): at {list(first)} it gives "
            f"({origin[first][0]:.1f}, {origin[first][1]:.1f}) px, the beam is at ({beam[first][0]:.1f}, "
            f"{beam[first][1]:.1f}) px with a radius of {beam[first][2]:.1f} px. Check these patterns, or use "
            "method='com' or 'template'"), stacklevel=3)


def _friedel_peak(ncc: np.ndarray, Qx: int, Qy: int, refine: bool) -> tuple[float, float]:
    """Origin from the NCC maximum (parabola-refined): shift s = 2 o - (Q - 1)."""
    H, W = ncc.shape
    i, j = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    di = dj = 0.0
    if refine:
        c = ncc[(i + np.arange(-1, 2))[:, None] % H, (j + np.arange(-1, 2))[None, :] % W]
        if np.all(np.isfinite(c)):
            ddx = c[2, 1] - 2 * c[1, 1] + c[0, 1]
            ddy = c[1, 2] - 2 * c[1, 1] + c[1, 0]
            di = -0.5 * (c[2, 1] - c[0, 1]) / ddx if ddx < 0 else 0.0
            dj = -0.5 * (c[1, 2] - c[1, 0]) / ddy if ddy < 0 else 0.0
    si = ((i + H // 2) % H - H // 2) + di
    sj = ((j + W // 2) % W - W // 2) + dj
    # f2(x) = f1(Q-1-x); f1 symmetric about o  =>  f1(x + s) = f2(x) for s = 2 o - (Q - 1)
    return ((Qx - 1 + si) / 2.0, (Qy - 1 + sj) / 2.0)


def measure_origin(cube: Any, params: OriginParams | None = None, **options: Any) -> np.ndarray:
    """Origin of the central beam at every scan position.

    Parameters
    ----------
    cube : DataCube
    params : OriginParams, optional
    **options
        Engine options of :func:`fourd_widgets.engine.run_job` (``progress``,
        ``cancel``, ``on_partial`` (partial origin maps, NaN where not yet
        measured), ``workers``, ``scheduler``, ``chunk_bytes``), and record
        field overrides.

    Returns
    -------
    (Rx, Ry, 2) float64 array
        ``(qx, qy)`` px; NaN where a pattern is not finite.

    Warns
    -----
    OriginWarning
        ``method='friedel'`` without a mask: where the detector edge cuts the central beam
        (Friedel symmetry cannot see the whole beam; on the real Merlin file it lands at
        (127.5, 191.5) px for a beam at about (104, 25) px), and where the result lies farther
        than the beam's radius from the centre of the beam's half-maximum region. Both name
        the positions. With a mask (a beam stop) the beam is hidden and nothing is checked.

    Examples
    --------
    >>> from fourd_widgets.datasets import sample
    >>> cube, truth = sample("vacuum_probe", scan_shape=(2, 3), detector_shape=(48, 48), reciprocal_step=0.02)
    >>> o = measure_origin(cube)
    >>> bool(np.abs(o - truth.origin_map).max() < 0.05)
    True
    """
    engine, changes = split_engine(options)
    p = own_record(params, OriginParams, changes, "measure_origin")
    Qx, Qy = cube.detector_shape
    valid = None
    if p.mask is not None:
        if p.mask.shape != (Qx, Qy):
            raise ShapeError(f"origin.mask has shape {p.mask.shape}, the detector {(Qx, Qy)}")
        valid = ~np.asarray(p.mask, bool)
    radius = template = None
    if p.method == "com":
        radius = _disk_radius(cube, p)
    elif p.method == "template":
        if p.template is not None:
            template = np.asarray(p.template, float)
            if template.shape != (Qx, Qy):
                raise ShapeError(f"origin.template has shape {template.shape}, the detector {(Qx, Qy)}")
        else:

            template = synthetic_disk((Qx, Qy), _disk_radius(cube, p))
    engine.setdefault("progress", False)
    job = OriginJob(p, valid, radius, template)
    origin = run_job(cube, job, **engine)
    if p.method == "friedel" and job.beam is not None:
        _check_friedel(origin, job.beam)
    return origin


class OriginJob(ImageJob):
    """Origin ``(qx, qy)`` of every pattern of a chunk (:func:`measure_origin` through the engine)."""

    name = "origin"
    item_shape = (2,)

    def __init__(self, params: OriginParams, valid: np.ndarray | None, radius: float | None,
                 template: np.ndarray | None) -> None:
        self.params, self.valid, self.radius, self.template = params, valid, radius, template
        #: 'friedel': (Rx, Ry, 4) centre, radius and edge cut of the central beam, set by finalize
        self.beam: np.ndarray | None = None

    def buffers(self, cube: Any) -> Any:
        if self.params.method != "friedel":
            return super().buffers(cube)
        return {"origin": Buffer("position", (2,)), "beam": Buffer("position", (4,))}

    def finalize(self, acc: Any) -> np.ndarray:
        if not isinstance(acc, dict):
            return acc
        self.beam = acc["beam"]
        return acc["origin"]

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> Any:
        p, valid = self.params, self.valid
        Qx, Qy = block.shape[2:]
        blk = block.reshape((-1, Qx, Qy))
        finite = np.isfinite(blk).all(axis=(1, 2))
        blk = np.where(finite[:, None, None], blk, 0)
        if p.method == "com":
            o = _com_origins(blk, self.radius, p.rscale, p.iterations, valid)
        elif p.method == "template":
            o = _template_origins(blk if valid is None else blk * valid, self.template, p.upsample_factor)
        else:
            o = _friedel_origins(blk, np.ones((Qx, Qy), bool) if valid is None else valid, p.upsample_factor)
            o[~finite] = np.nan
            # the cross-check needs the beam in sight: with a mask (a beam stop) nothing else can see it
            beam = _beam_extent(blk) if valid is None else np.full((blk.shape[0], 4), np.nan)
            beam[~finite] = np.nan
            return {"origin": o.reshape(block.shape[:2] + (2,)), "beam": beam.reshape(block.shape[:2] + (4,))}
        o[~finite] = np.nan
        return o.reshape(block.shape[:2] + (2,))


@dataclass(frozen=True)
class OriginFitParams(Params):
    """Smooth model of the measured origin map (py4DSTEM ``fit_origin``)."""

    step = "origin_fit"

    model: Literal["constant", "plane", "parabola", "bezier"] = param(
        "plane", doc="fit function [fitfunction: 'constant', 'plane', 'parabola', 'bezier_two']")
    robust: bool = param(True, doc="iteratively drop outliers [robust]")
    robust_steps: int = param(3, ge=0, le=20, doc="outlier-rejection rounds [robust_steps]")
    robust_thresh: float = param(3.0, gt=0, doc="drop residuals above this many robust standard deviations "
                                 "(1.4826 x median absolute deviation), and above ORIGIN_OUTLIER_MIN_PX "
                                 "[robust_thresh]")
    mask: np.ndarray | None = param(None, doc="(Rx, Ry) bool: positions to fit (e.g. vacuum); None: all")


#: The robust origin fit never drops a position whose residual is below this (px): sub-pixel scatter of a
#: measured origin is not an outlier. Noise-free data have a tiny MAD, and the relative limit alone
#: (0.02 px on si_001_bicrystal_10deg) flagged 124 of 256 positions for 0.02-0.18 px of centre-of-mass
#: scatter beside the grain boundary; a real descan jump or a bad pattern is pixels off.
ORIGIN_OUTLIER_MIN_PX = 0.5


@dataclass(frozen=True, eq=False)
class OriginFit:
    """A fitted origin map.

    Attributes
    ----------
    fitted : (Rx, Ry, 2) array
        Model origin at every position, px.
    measured : (Rx, Ry, 2) array
    residuals : (Rx, Ry, 2) array
        ``measured - fitted``.
    inliers : (Rx, Ry) bool array
        Positions the final fit used.
    coefficients : (m, 2) array
        Model coefficients for qx and qy.
    model : str
    """

    fitted: np.ndarray
    measured: np.ndarray
    residuals: np.ndarray
    inliers: np.ndarray
    coefficients: np.ndarray
    model: str
    limit_px: float = math.inf

    def why_outlier(self, rx: int, ry: int) -> str:
        """Why position ``(rx, ry)`` is left out of the fit (``''`` for an inlier).

        >>> m = np.dstack([np.full((4, 4), 30.0), np.full((4, 4), 31.0)])
        >>> m[3, 3, 0] += 2.0
        >>> f = fit_origin(m, model="constant")
        >>> f.why_outlier(3, 3)
        'residual 2 px > 0.5 px limit: the origin measured there disagrees with the constant fit'
        """
        if self.inliers[rx, ry]:
            return ""
        m = self.measured[rx, ry]
        if not np.all(np.isfinite(m)):
            return "no origin measured there (invalid pattern): nothing to fit"
        r = float(np.hypot(*self.residuals[rx, ry]))
        if r <= self.limit_px:
            return f"outside the fit mask (residual {r:.3g} px)"
        return (f"residual {r:.3g} px > {self.limit_px:.3g} px limit: the origin measured there disagrees "
                f"with the {self.model} fit")


def _design(model: str, shape: tuple[int, int]) -> np.ndarray:
    """(Rx*Ry, m) basis functions on normalised scan coordinates in [0, 1]."""
    Rx, Ry = shape
    u, v = np.meshgrid(np.arange(Rx) / max(Rx - 1, 1), np.arange(Ry) / max(Ry - 1, 1), indexing="ij")
    u, v = u.ravel(), v.ravel()
    one = np.ones_like(u)
    if model == "constant":
        cols = [one]
    elif model == "plane":
        cols = [one, u, v]
    elif model == "parabola":
        cols = [one, u, v, u * u, u * v, v * v]
    else:  # quadratic tensor-product Bézier surface: Bernstein polynomials of degree 2 in u and v
        bu = [(1 - u) ** 2, 2 * u * (1 - u), u * u]
        bv = [(1 - v) ** 2, 2 * v * (1 - v), v * v]
        cols = [a * b for a in bu for b in bv]
    return np.stack(cols, -1)


def fit_origin(origin_map: np.ndarray, params: OriginFitParams | None = None, **changes: Any) -> OriginFit:
    """Least-squares fit of a smooth model to a measured origin map, with robust outlier rejection.

    Parameters
    ----------
    origin_map : (Rx, Ry, 2) array
        Measured origins (NaN allowed: never fitted).
    params : OriginFitParams, optional

    Returns
    -------
    OriginFit

    Examples
    --------
    >>> rx, ry = np.meshgrid(np.arange(8), np.arange(6), indexing="ij")
    >>> m = np.stack([30 + 0.2 * rx, 31 - 0.1 * ry], -1).astype(float)
    >>> m[3, 3] = 50.0   # an outlier
    >>> f = fit_origin(m)
    >>> bool(np.abs(f.fitted[3, 3] - [30.6, 30.7]).max() < 1e-9), bool(f.inliers[3, 3])
    (True, False)
    """
    p = own_record(params, OriginFitParams, changes, "fit_origin")
    m = np.asarray(origin_map, dtype=np.float64)
    if m.ndim != 3 or m.shape[2] != 2:
        raise ShapeError(f"origin map must have shape (Rx, Ry, 2), got {m.shape}")
    shape = m.shape[:2]
    A = _design(p.model, shape)
    y = m.reshape(-1, 2)
    use = np.isfinite(y).all(1)
    if p.mask is not None:
        if p.mask.shape != shape:
            raise ShapeError(f"origin_fit.mask has shape {p.mask.shape}, the scan {shape}")
        use &= np.asarray(p.mask, bool).ravel()
    need = A.shape[1]
    if use.sum() < need:
        raise ParameterError(f"origin_fit: the {p.model!r} model needs at least {need} measured positions, "
                             f"{int(use.sum())} are usable; measure the origin first or choose a simpler model",
                             field="model")
    limit = math.inf
    for it in range(p.robust_steps + 1 if p.robust else 1):
        coef = np.linalg.lstsq(A[use], y[use], rcond=None)[0]
        if it == (p.robust_steps if p.robust else 0):
            break
        r = np.hypot(*(y - A @ coef).T)
        med = np.median(r[use])
        sigma = 1.4826 * np.median(np.abs(r[use] - med))
        # noise-free or very clean data have a tiny MAD: the floor keeps sub-pixel scatter in the fit
        trial = max(med + p.robust_thresh * max(sigma, 1e-12), ORIGIN_OUTLIER_MIN_PX)
        new = use & (r <= trial)
        if new.sum() < need:
            break
        limit = trial
        if np.array_equal(new, use):
            break
        use = new
    fitted = (A @ coef).reshape(shape + (2,))
    return OriginFit(fitted=fitted, measured=m, residuals=m - fitted, inliers=use.reshape(shape),
                     coefficients=coef, model=p.model, limit_px=float(limit))


# --- ellipse --------------------------------------------------------------------------------
@dataclass(frozen=True)
class EllipseParams(Params):
    """Elliptic distortion from a ring (py4DSTEM ``fit_ellipse_1D``, ``fit_ellipse_amorphous_ring``)."""

    step = "ellipse"

    source: Literal["peaks", "amorphous"] = param(
        "peaks", doc="Bragg peaks of one ring (a family of equal |g|), or an amorphous ring in the mean pattern")
    r_inner: float = param(10.0, units="px", gt=0, doc="inner radius of the annulus holding the ring")
    r_outer: float = param(30.0, units="px", gt=0, doc="outer radius of the annulus")
    peaks: str = param("find_disks", doc="'peaks': label of the earlier step giving the peak table")
    n_angles: int = param(90, ge=8, le=3600, doc="'amorphous': angular sectors in which the ring radius is measured")
    region: np.ndarray | None = param(None, doc="(Rx, Ry) bool: scan positions whose peaks or patterns are used "
                                      "(an unstrained area); None: all")
    mask: np.ndarray | None = param(None, doc="'amorphous': (Qx, Qy) bool, True where the detector is blocked "
                                    "(beam stop); sectors crossing it are skipped")

    def validate(self) -> None:
        if self.r_outer <= self.r_inner:
            raise ParameterError(f"ellipse: r_outer ({self.r_outer}) must exceed r_inner ({self.r_inner})",
                                 field="r_outer")


@dataclass(frozen=True, eq=False)
class EllipseFit:
    """A fitted ellipse about the origin.

    Attributes
    ----------
    a, b : float
        Semi-axes, px (``a >= b``).
    theta_deg : float
        Direction of ``a``, counter-clockwise from +qx, in [0, 180).
    center : (2,) array
        Fitted center relative to the origin (0 when fixed); ``centre`` is the
        deprecated spelling.
    rms_px : float
        RMS radial residual of the points.
    """

    a: float
    b: float
    theta_deg: float
    center: np.ndarray
    rms_px: float

    @property
    def centre(self) -> np.ndarray:
        """Deprecated spelling of :attr:`center` (kept for one release)."""
        warnings.warn("EllipseFit.centre is deprecated, use .center", DeprecationWarning, stacklevel=2)
        return self.center

    @property
    def radius(self) -> float:
        """Radius of the circle of the same area, ``sqrt(a b)``, px."""
        return math.sqrt(self.a * self.b)

    @property
    def ellipse(self) -> tuple[float, float, float]:
        """Normalised calibration value ``(a / r, b / r, θ)`` with ``r = sqrt(a b)``."""
        r = self.radius
        return (self.a / r, self.b / r, self.theta_deg)


def fit_ellipse_points(x: Any, y: Any, weights: Any = None, *, rings: Any = None,
                       fix_center: bool = True, **deprecated: Any) -> EllipseFit:
    """Weighted algebraic least-squares ellipse through points [3]_.

    With ``fix_center`` (``fix_centre=`` is the deprecated spelling) the conic is ``A x² + B x y + C y² = s_j`` about the origin,
    where ``j = rings[i]`` labels concentric rings of one common distortion
    (``s_0 = 1``; the others are fitted), else one ring
    ``A x² + B x y + C y² + D x + E y = 1`` with a free centre. Several rings are
    needed when one ring's points lie along only two directions (the four
    (220) disks of a cubic [001] pattern).

    Raises
    ------
    ParameterError
        Too few points, or points along too few directions to fix the ellipse.

    Examples
    --------
    >>> t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    >>> D = distortion_matrix((1.1, 0.9, 30.0))
    >>> xy = (D @ np.stack([20 * np.cos(t), 20 * np.sin(t)]))
    >>> f = fit_ellipse_points(xy[0], xy[1])
    >>> round(f.a, 6), round(f.b, 6), round(f.theta_deg, 6)
    (22.0, 18.0, 30.0)
    """
    if deprecated:
        deprecated_keyword(deprecated, "fix_centre", "fix_center", "fit_ellipse_points")
        if set(deprecated) - {"fix_center"}:
            raise TypeError(f"fit_ellipse_points() got an unexpected keyword argument {sorted(deprecated)[0]!r}")
        fix_center = bool(deprecated["fix_center"])
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, float).ravel()
    lab = np.zeros(x.size, np.int64) if rings is None else np.asarray(rings, np.int64).ravel()
    nring = int(lab.max()) + 1 if lab.size else 1
    if fix_center:
        cols = [x * x, x * y, y * y] + [-(lab == j).astype(float) for j in range(1, nring)]
        rhs = (lab == 0).astype(float)
    else:
        cols = [x * x, x * y, y * y, x, y]
        rhs = np.ones_like(x)
    if len(x) < len(cols):
        raise ParameterError(f"an ellipse fit needs at least {len(cols)} points, got {len(x)}; widen the annulus "
                             "(r_inner, r_outer) around the ring")
    if fix_center:
        _check_ring_directions(x, y, lab, nring)
    sw = np.sqrt(w)
    M = np.stack(cols, -1) * sw[:, None]
    sv = np.linalg.svd(M / np.maximum(np.linalg.norm(M, axis=0), 1e-300), compute_uv=False)
    if sv[-1] < 1e-6 * sv[0]:
        raise ParameterError(
            "the points in the annulus lie along too few directions to fix an ellipse (a ring of four "
            "symmetric disks gives only two); widen the annulus to include a second ring of disks, or fit an "
            "amorphous ring (source='amorphous')", field="r_outer")
    coef = np.linalg.lstsq(M, rhs * sw, rcond=None)[0]
    A, B, C = coef[:3]
    if fix_center:
        c = np.zeros(2)
        k = 1.0
    else:
        D_, E_ = coef[3:]
        Q = np.array([[A, B / 2], [B / 2, C]])
        c = np.linalg.solve(2 * Q, [-D_, -E_])
        k = 1.0 + c @ Q @ c
    Q = np.array([[A, B / 2], [B / 2, C]]) / k
    evals, evecs = np.linalg.eigh(Q)
    if np.any(evals <= 0):
        raise ParameterError("the points do not lie on an ellipse around the origin; check the origin and the "
                             "annulus (r_inner, r_outer)")
    # smallest eigenvalue = longest axis
    a, b = 1 / math.sqrt(evals[0]), 1 / math.sqrt(evals[1])
    vx, vy = evecs[:, 0]
    theta = math.degrees(math.atan2(vy, vx)) % 180.0
    scale = np.ones(nring) if not fix_center else np.concatenate([[1.0], coef[3:]])
    d = np.stack([x - c[0], y - c[1]], -1)
    r_fit = np.sqrt(scale[lab] / np.maximum(np.einsum("ni,ij,nj->n", d, Q, d), 1e-300)) * np.hypot(d[:, 0], d[:, 1])
    rms = float(np.sqrt(np.average((np.hypot(d[:, 0], d[:, 1]) - r_fit) ** 2, weights=w)))
    return EllipseFit(a=a, b=b, theta_deg=theta, center=c, rms_px=rms)


#: Directions (modulo 180°) closer than this count as one: the same disk seen at many scan positions.
DIRECTION_TOL_DEG = 3.0


def _directions(x: np.ndarray, y: np.ndarray, tol_deg: float = DIRECTION_TOL_DEG) -> list[float]:
    """Distinct directions (degrees modulo 180) of the points: clusters of angles, gaps above ``tol_deg``."""
    ang = np.sort(np.degrees(np.arctan2(y, x)) % 180.0)
    if ang.size == 0:
        return []
    gaps = np.diff(np.concatenate([ang, [ang[0] + 180.0]]))
    cut = np.nonzero(gaps > tol_deg)[0]
    if cut.size == 0:  # one cluster that wraps all round: a single direction only if it is narrow
        return [float(ang[0])] if ang[-1] - ang[0] <= tol_deg else [float(a) for a in ang]
    starts = (cut + 1) % ang.size  # a cluster starts after every gap (circularly)
    return [float(ang[i]) for i in np.sort(starts)]


def _check_ring_directions(x: np.ndarray, y: np.ndarray, lab: np.ndarray, nring: int) -> None:
    """Refuse a centred fit whose rings cannot fix an ellipse, by geometry (issue 12 item 17).

    With the centre known and each ring's radius unknown, a ring along ``d`` distinct directions
    (modulo 180°) gives ``d`` constraints on the shape and costs one for its radius; the shape has
    two (axis ratio and angle), so the sum over rings of ``d - 1`` must be at least 2. A ring of four
    symmetric disks (the {220} of a cubic [001] pattern) has two directions and gives only 1.
    """
    rings = []
    for j in range(nring):
        m = lab == j
        if m.any():
            rings.append((float(np.median(np.hypot(x[m], y[m]))), _directions(x[m], y[m])))
    have = sum(max(len(d) - 1, 0) for _, d in rings)
    if have >= 2:
        return
    told = "; ".join(f"r = {r:.1f} px along {len(d)} direction{'s' * (len(d) != 1)} "
                     f"({', '.join(f'{a:.0f}°' for a in d)})" for r, d in rings) or "none"
    raise ParameterError(
        f"the rings in the annulus lie along too few directions to fix an ellipse: each ring along d directions (modulo 180°) adds d - 1, "
        f"and at least 2 are needed, these add {have} ({told}). Add {2 - have} more: widen the annulus "
        "(r_inner, r_outer) to take in a ring of disks along other directions (a second ring, e.g. the {400} "
        "beside the {220}), or fit an amorphous ring (source='amorphous')", field="r_outer")


def _ring_labels(r: np.ndarray, gap: float = 0.06) -> np.ndarray:
    """Group radii into rings: a new ring starts where sorted radii jump by more than ``gap`` (relative)."""
    order = np.argsort(r)
    rs = r[order]
    jumps = np.concatenate([[0], (np.diff(rs) > gap * rs[1:]).astype(np.int64)])
    lab = np.empty(r.size, np.int64)
    lab[order] = np.cumsum(jumps)
    return lab


def ring_points(image: np.ndarray, origin: Any, r_inner: float, r_outer: float, n_angles: int = 90,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ring radius in each angular sector of an image (e.g. an amorphous ring in the mean pattern).

    The radial profile of each sector (bilinear samples every 0.25 px between
    ``r_inner`` and ``r_outer``, linear background through its ends removed) gives
    the ring radius as its centroid. Returns the points ``(x, y)`` relative to the origin.
    """
    img = np.asarray(image, float)
    o = np.asarray(origin, float)
    r = np.arange(r_inner, r_outer + 1e-9, 0.25)
    phi = (np.arange(n_angles) + 0.5) * 2 * np.pi / n_angles
    sub = np.linspace(-0.5, 0.5, 5)[:, None] * (2 * np.pi / n_angles)  # 5 rays per sector
    ang = phi[None, :] + sub  # (5, n)
    X = o[0] + r[None, None, :] * np.cos(ang)[..., None]
    Y = o[1] + r[None, None, :] * np.sin(ang)[..., None]
    prof = ndimage.map_coordinates(img, [X.ravel(), Y.ravel()], order=1, mode="nearest").reshape(X.shape)
    if mask is not None:
        blocked = ndimage.map_coordinates(np.asarray(mask, float), [X.ravel(), Y.ravel()], order=1,
                                          mode="nearest").reshape(X.shape) > 0.01
        prof = np.where(blocked, np.nan, prof)
    count = np.isfinite(prof).sum(0)
    prof = np.where(count > 0, np.nansum(prof, axis=0) / np.maximum(count, 1), np.nan)  # (n, len(r))
    ok = np.isfinite(prof).all(1)
    base = prof[:, :1] + (prof[:, -1:] - prof[:, :1]) * (r - r[0]) / (r[-1] - r[0])
    s = np.clip(prof - base, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        rad = (s * r).sum(1) / s.sum(1)
    ok &= np.isfinite(rad) & (s.sum(1) > 0)
    return rad[ok] * np.cos(phi[ok]), rad[ok] * np.sin(phi[ok])


def _calibration_first(params: Any, calibration: Any, changes: dict, where: str) -> tuple[Any, Any]:
    """Accept the order before the one convention, ``fn(data, calibration, params)``, for one release."""
    if isinstance(params, Calibration):
        warnings.warn(f"{where}(data, calibration, params) is deprecated; use {where}(data, params, calibration) "
                      "as strain_map does", DeprecationWarning, stacklevel=3)
        params, calibration = (None if isinstance(calibration, Calibration) else calibration), params
    return params, calibration


def fit_ellipse(source: Any, params: EllipseParams | Calibration | None = None,
                calibration: Calibration | None = None, **changes: Any) -> EllipseFit:
    """Elliptic distortion from a ring of Bragg peaks or an amorphous ring.

    Parameters
    ----------
    source : PeakTable or (Qx, Qy) array
        Peaks (``source='peaks'``: every peak in the annulus, origin-relative, is a
        point of a ring, weighted by intensity; rings are told apart by radius) or an
        image such as the median pattern (``source='amorphous'``: ring radius per
        angular sector, with sectors whose radius is an outlier rejected).
    params : EllipseParams, optional
        Default ``EllipseParams()``; ``**changes`` override its fields.
    calibration : Calibration
        Origin (``origin_map`` for peaks, ``origin`` for an image). An existing
        ellipse is ignored (the fit measures the raw distortion). The order
        ``fit_ellipse(source, calibration, params)`` of earlier versions still
        works, with a DeprecationWarning.

    Returns
    -------
    EllipseFit
        Use ``fit.ellipse`` for ``calibration.replace(ellipse=...)``.
    """
    params, calibration = _calibration_first(params, calibration, changes, "fit_ellipse")
    p = own_record(params, EllipseParams, changes, "fit_ellipse")
    if calibration is None:
        raise MissingCalibrationError("origin", "fitting the ellipse", "Pass the calibration (e.g. cube.calibration).")
    raw = calibration.replace(ellipse=None)
    if isinstance(source, PeakTable):
        source = peaks_in_region(source, p.region)
        v = corrected_vectors(source, raw, "the ellipse fit")
        r = np.hypot(v[:, 0], v[:, 1])
        sel = (r >= p.r_inner) & (r <= p.r_outer)
        return fit_ellipse_points(v[sel, 0], v[sel, 1], source.intensity[sel], rings=_ring_labels(r[sel]))
    img = np.asarray(source, float)
    if img.ndim != 2:
        raise ShapeError(f"fit_ellipse needs a PeakTable or a 2-D image, got shape {img.shape}")
    o = raw.origin if raw.origin is not None else (
        None if raw.origin_map is None else tuple(np.nanmean(raw.origin_map.reshape(-1, 2), 0)))
    if o is None:
        raw.require("origin", "the ellipse fit")
    x, y = ring_points(img, o, p.r_inner, p.r_outer, p.n_angles, p.mask)
    keep = np.ones(x.size, bool)
    for _ in range(3):  # sectors spoiled by Bragg disks or edges are outliers of the radial residual
        fit = fit_ellipse_points(x[keep], y[keep])
        Q = distortion_matrix((fit.a, fit.b, fit.theta_deg))
        u = np.linalg.solve(Q, np.stack([x, y]))
        res = np.hypot(*u) - 1.0
        med = np.median(res[keep])
        mad = 1.4826 * np.median(np.abs(res[keep] - med))
        new = np.abs(res - med) <= 3.0 * max(mad, 1e-6)
        if new.sum() < 5 or np.array_equal(new, keep):
            break
        keep = new
    return fit


# --- pixel size -----------------------------------------------------------------------------
def reciprocal_length(hkl: Any, lattice_A: Any, angles_deg: Any = (90.0, 90.0, 90.0)) -> float:
    """|g_hkl| = 1 / d_hkl in 1/Å for a triclinic cell (reciprocal metric tensor).

    >>> round(reciprocal_length((2, 2, 0), (5.431, 5.431, 5.431)), 6)
    0.520793
    """
    a, b, c = (float(v) for v in lattice_A)
    al, be, ga = (math.radians(float(v)) for v in angles_deg)
    G = np.array([[a * a, a * b * math.cos(ga), a * c * math.cos(be)],
                  [a * b * math.cos(ga), b * b, b * c * math.cos(al)],
                  [a * c * math.cos(be), b * c * math.cos(al), c * c]])
    h = np.asarray(hkl, float)
    return float(math.sqrt(h @ np.linalg.inv(G) @ h))


def pixel_size_from_spacing(measured_px: float, d_spacing_A: float) -> float:
    """Detector pixel size in 1/Å from a spacing ``d`` that measures ``measured_px`` on the detector.

    >>> pixel_size_from_spacing(32.0, 2.0)
    0.015625
    """
    if not (measured_px > 0 and d_spacing_A > 0):
        raise ParameterError(f"need a positive measured length and d-spacing, got {measured_px!r} px and "
                             f"{d_spacing_A!r} Å")
    return 1.0 / (float(d_spacing_A) * float(measured_px))


@dataclass(frozen=True)
class PixelSizeParams(Params):
    """Detector pixel size from a known spacing, a known crystal, or a ring (py4DSTEM ``get_Q_pixel_size``)."""

    step = "pixel_size"

    method: Literal["spacing", "lattice", "ring"] = param(
        "lattice", doc="'spacing': |g1| is 1/d_spacing; 'lattice': g1, g2 are the hkl1, hkl2 reflections of a "
        "known cell; 'ring': a peak ring between r_inner and r_outer has spacing d_spacing")
    d_spacing_A: float | None = param(None, units="Å", gt=0, doc="'spacing'/'ring': known d-spacing")
    lattice_A: tuple[float, float, float] = param((5.431, 5.431, 5.431), units="Å", doc="'lattice': a, b, c")
    angles_deg: tuple[float, float, float] = param((90.0, 90.0, 90.0), units="deg", doc="'lattice': α, β, γ")
    hkl1: tuple[int, int, int] = param((2, 2, 0), doc="'lattice': indices of g1")
    hkl2: tuple[int, int, int] = param((2, -2, 0), doc="'lattice': indices of g2")
    zone_axis: tuple[int, int, int] | None = param(None, doc="'lattice': checked to be perpendicular to hkl1, hkl2")
    g1: tuple[float, float] | None = param(None, units="px", doc="measured g1; None: suggested from the peaks")
    g2: tuple[float, float] | None = param(None, units="px", doc="measured g2; None: suggested from the peaks")
    r_inner: float = param(10.0, units="px", gt=0, doc="'ring': annulus holding the ring")
    r_outer: float = param(30.0, units="px", gt=0, doc="'ring': annulus holding the ring")
    peaks: str = param("find_disks", doc="label of the earlier step giving the peak table")
    region: np.ndarray | None = param(None, doc="(Rx, Ry) bool: scan positions whose peaks are used (an "
                                      "unstrained area); None: all")

    def validate(self) -> None:
        if self.method in ("spacing", "ring") and self.d_spacing_A is None:
            raise ParameterError(f"pixel_size: method {self.method!r} needs d_spacing_A, the known spacing in Å",
                                 field="d_spacing_A")
        if self.zone_axis is not None:
            for name, h in (("hkl1", self.hkl1), ("hkl2", self.hkl2)):
                if int(np.dot(h, self.zone_axis)) != 0:
                    raise ParameterError(f"pixel_size: {name}={h} is not in the zone {self.zone_axis} "
                                         "(h·u + k·v + l·w must be 0)", field=name)


def measure_pixel_size(peaks: PeakTable, params: PixelSizeParams | Calibration | None = None,
                       calibration: Calibration | None = None, **changes: Any) -> float:
    """Detector pixel size in 1/Å (ellipse-corrected peaks; set it with ``reciprocal_units='1/Å'``).

    'spacing' and 'lattice' take |g1| (and |g2|) from ``params.g1/g2`` or from
    :func:`~fourd_widgets.analysis.lattice_basis.suggest_basis` on the peaks; 'ring'
    takes the intensity-weighted mean radius of the peaks in the annulus (fit and
    set the ellipse first: the radius is measured after its correction).

    Parameters
    ----------
    peaks : PeakTable
        In detector px.
    params : PixelSizeParams, optional
        Default ``PixelSizeParams()``; ``**changes`` override its fields.
    calibration : Calibration
        Origin and ellipse. The order ``measure_pixel_size(peaks, calibration, params)``
        of earlier versions still works, with a DeprecationWarning.

    Returns
    -------
    float
        Reciprocal step, 1/Å per px.
    """
    params, calibration = _calibration_first(params, calibration, changes, "measure_pixel_size")
    p = own_record(params, PixelSizeParams, changes, "measure_pixel_size")
    if calibration is None:
        raise MissingCalibrationError("origin", "measuring the pixel size",
                                      "Pass the calibration (e.g. cube.calibration).")
    peaks = peaks_in_region(peaks, p.region)
    if p.method == "ring":
        v = corrected_vectors(peaks, calibration, "the pixel size from a ring")
        r = np.hypot(v[:, 0], v[:, 1])
        sel = (r >= p.r_inner) & (r <= p.r_outer)
        if not sel.any():
            raise ParameterError(f"pixel_size: no peak lies between r_inner={p.r_inner} and r_outer={p.r_outer} px "
                                 "from the origin; set the annulus around the ring", field="r_inner")
        return pixel_size_from_spacing(float(np.average(r[sel], weights=peaks.intensity[sel])),
                                       p.d_spacing_A)  # type: ignore[arg-type]
    if p.g1 is not None and p.g2 is not None:
        g1, g2 = np.asarray(p.g1, float), np.asarray(p.g2, float)
    else:
        b = suggest_basis(peaks, calibration)
        g1, g2 = b.g1, b.g2
    if p.method == "spacing":
        return pixel_size_from_spacing(float(np.hypot(*g1)), p.d_spacing_A)  # type: ignore[arg-type]
    k1 = reciprocal_length(p.hkl1, p.lattice_A, p.angles_deg)
    k2 = reciprocal_length(p.hkl2, p.lattice_A, p.angles_deg)
    return float((k1 + k2) / (np.hypot(*g1) + np.hypot(*g2)))


# --- rotation between scan and detector -------------------------------------------------------
@dataclass(frozen=True)
class QRRotationParams(Params):
    """Rotation and flip between scan and detector: set by hand or from CoM curl (py4DSTEM DPC preprocess)."""

    step = "qr_rotation"

    method: Literal["manual", "curl"] = param("curl", doc="'manual': use rotation_deg and flip; 'curl': "
                                              "minimise the curl of the centre-of-mass field")
    rotation_deg: float = param(0.0, units="deg", doc="'manual': rotation from scan to detector, counter-clockwise")
    flip: bool = param(False, doc="'manual': detector axes swapped relative to the scan")
    mask: np.ndarray | None = param(None, doc="(Qx, Qy) bool detector pixels used for the CoM; None: all")


@dataclass(frozen=True, eq=False)
class QRRotation:
    """Measured scan/detector rotation.

    Attributes
    ----------
    rotation_deg : float
        In [-180, 180).
    flip : bool
    curl : dict
        ``{False: rms curl at the best angle, True: ...}`` relative to the rms divergence.
    angles_deg : (360,) array
        Angles scanned for plotting.
    curl_curve : dict
        ``{flip: (360,) rms curl at each angle}``.
    """

    rotation_deg: float
    flip: bool
    curl: dict
    angles_deg: np.ndarray
    curl_curve: dict


def moment_weights(weights: np.ndarray) -> np.ndarray:
    """``(Qx * Qy, 3)`` columns ``w``, ``w qx``, ``w qy`` for a weight mask ``w`` of shape (Qx, Qy)."""
    w = np.asarray(weights, dtype=np.float64)
    Qx, Qy = w.shape
    ii = np.arange(Qx, dtype=np.float64)[:, None] * w
    jj = np.arange(Qy, dtype=np.float64)[None, :] * w
    return np.stack([w, ii, jj], -1).reshape(Qx * Qy, 3)


class CenterOfMassJob(ImageJob):
    """Total, and first moments along qx and qy, of every pattern: one GEMM per block.

    ``stack`` is :func:`moment_weights`; the patterns are multiplied in its dtype
    (float32 halves the memory traffic and is good to about 1e-6 of a pattern's total).
    """

    name = "center of mass"
    item_shape = (3,)

    def __init__(self, stack: np.ndarray) -> None:
        self.stack = stack

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        blk = block.reshape(block.shape[0] * block.shape[1], -1).astype(self.stack.dtype, copy=False)
        return (blk @ self.stack).reshape(block.shape[:2] + (3,))


def center_of_mass_maps(cube: Any, mask: np.ndarray | None = None, **engine: Any) -> tuple[np.ndarray, np.ndarray]:
    """Center of mass ``(com_qx, com_qy)`` of every pattern, px from pixel (0, 0), shape (Rx, Ry) each.

    ``engine`` takes the options of :func:`fourd_widgets.engine.run_job`.
    """
    w = np.ones(tuple(cube.detector_shape)) if mask is None else np.asarray(mask, float)
    engine.setdefault("progress", False)
    out = run_job(cube, CenterOfMassJob(moment_weights(w)), **engine)
    with np.errstate(divide="ignore", invalid="ignore"):
        return out[..., 1] / out[..., 0], out[..., 2] / out[..., 0]


def centre_of_mass_maps(cube: Any, mask: np.ndarray | None = None, **engine: Any) -> tuple[np.ndarray, np.ndarray]:
    """Deprecated spelling of :func:`center_of_mass_maps` (kept for one release)."""
    warnings.warn("centre_of_mass_maps is deprecated, use center_of_mass_maps", DeprecationWarning, stacklevel=2)
    return center_of_mass_maps(cube, mask, **engine)


def _curl_div(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dudx, dudy = np.gradient(u)
    dvdx, dvdy = np.gradient(v)
    return dvdx - dudy, dudx + dvdy


def measure_qr_rotation(data: Any, params: QRRotationParams | None = None, **options: Any) -> QRRotation:
    """Scan/detector rotation and flip that make the center-of-mass field curl-free [4]_.

    The CoM field of a non-magnetic sample is a gradient, ``∝ ∇V``. For each flip,
    the scan-frame field ``S R(-φ) c`` is linear in ``(cos φ, sin φ)``, so its mean
    squared curl is a quadratic form whose smallest eigenvector gives ``φ``
    exactly (mod 180°). The flip with the smaller curl wins. The 180° ambiguity is
    resolved by the divergence: electrons are deflected towards the atoms, where
    ``∇·c ∝ ∇²V`` has sharp negative extrema, so the divergence must be
    negatively skewed.

    Parameters
    ----------
    data : DataCube or pair of (Rx, Ry) arrays
        A cube (its center-of-mass maps are computed through the engine, with
        ``params.mask``), or the center of mass along detector qx and qy
        ``(com_x, com_y)`` (any offset).
    params : QRRotationParams, optional
        ``method='curl'`` (default) measures; ``'manual'`` returns the record's
        ``rotation_deg`` and ``flip``.
    **options
        Engine options of :func:`fourd_widgets.engine.run_job` and record field
        overrides. The older form ``measure_qr_rotation(com_x, com_y)`` still
        works, with a DeprecationWarning.

    Returns
    -------
    QRRotation

    Examples
    --------
    >>> rx, ry = np.meshgrid(np.arange(24.0), np.arange(24.0), indexing="ij")
    >>> V = np.exp(-((rx - 9) ** 2 + (ry - 13) ** 2) / 8) + np.exp(-((rx - 16) ** 2 + (ry - 6) ** 2) / 5)
    >>> gx, gy = np.gradient(V)
    >>> t = np.radians(25.0)
    >>> cx, cy = np.cos(t) * gx - np.sin(t) * gy, np.sin(t) * gx + np.cos(t) * gy
    >>> r = measure_qr_rotation((cx, cy))
    >>> round(r.rotation_deg, 6), r.flip
    (25.0, False)
    """
    if isinstance(params, np.ndarray):
        warnings.warn("measure_qr_rotation(com_x, com_y) is deprecated; use measure_qr_rotation((com_x, com_y)) "
                      "or measure_qr_rotation(cube, params)", DeprecationWarning, stacklevel=2)
        data, params = (data, params), None
    engine, changes = split_engine(options)
    p = own_record(params, QRRotationParams, changes, "measure_qr_rotation")
    if p.method == "manual":
        return QRRotation(rotation_deg=p.rotation_deg, flip=p.flip, curl={}, angles_deg=np.zeros(0), curl_curve={})
    if hasattr(data, "chunk_slices"):
        com_x, com_y = center_of_mass_maps(data, p.mask, **engine)
    else:
        com_x, com_y = data
    cx = np.asarray(com_x, float)
    cy = np.asarray(com_y, float)
    if cx.shape != cy.shape or cx.ndim != 2 or min(cx.shape) < 3:
        raise ShapeError(f"CoM maps must be two (Rx, Ry) arrays with Rx, Ry >= 3, got {cx.shape} and {cy.shape}")
    ok = np.isfinite(cx) & np.isfinite(cy)
    cx = np.where(ok, cx - np.nanmean(cx), 0.0)
    cy = np.where(ok, cy - np.nanmean(cy), 0.0)
    best = None
    curls, curves = {}, {}
    angles = np.arange(-180.0, 180.0, 1.0)
    for flip in (False, True):
        # scan-frame field at angle φ: S (cos φ c + sin φ R(-90) c);  R(-90) (x, y) = (y, -x)
        f0 = (cx, cy)
        f1 = (cy, -cx)
        if flip:
            f0, f1 = f0[::-1], f1[::-1]
        c0, d0 = _curl_div(*f0)
        c1, d1 = _curl_div(*f1)
        inner = ok
        Q = np.array([[np.mean(c0[inner] ** 2), np.mean(c0[inner] * c1[inner])],
                      [np.mean(c0[inner] * c1[inner]), np.mean(c1[inner] ** 2)]])
        evals, evecs = np.linalg.eigh(Q)
        cs = evecs[:, 0]
        div = cs[0] * d0 + cs[1] * d1
        skew = np.mean(div[inner] ** 3)
        if skew > 0:
            cs = -cs
            div = -div
        phi = math.degrees(math.atan2(cs[1], cs[0]))
        rms_div = math.sqrt(max(np.mean(div[inner] ** 2), 1e-300))
        curls[flip] = math.sqrt(max(evals[0], 0.0)) / rms_div
        t = np.radians(angles)
        curves[flip] = np.sqrt(np.maximum(np.cos(t) ** 2 * Q[0, 0] + 2 * np.cos(t) * np.sin(t) * Q[0, 1]
                                          + np.sin(t) ** 2 * Q[1, 1], 0))
        if best is None or curls[flip] < best[2]:
            best = (phi, flip, curls[flip])
    phi, flip, _ = best  # type: ignore[misc]
    phi = (phi + 180.0) % 360.0 - 180.0
    return QRRotation(rotation_deg=phi, flip=flip, curl=curls, angles_deg=angles, curl_curve=curves)


# --- recipe plumbing --------------------------------------------------------------------------
def _peaks_from(context: RunContext, label: str, step: str) -> PeakTable:
    peaks = context.results.get(label)
    if not isinstance(peaks, PeakTable):
        have = ", ".join(context.results) or "none"
        raise ParameterError(f"{step} needs the peak table of an earlier step labelled {label!r} (find_disks); "
                             f"earlier results: {have}. Add a find_disks step first or set peaks= to its label",
                             field="peaks")
    return peaks


def origin_step(cube: Any, params: OriginParams, context: RunContext) -> Calibration:
    cal = current_calibration(cube, context)
    m = measure_origin(cube.with_calibration(cal), params, **context.engine)
    med = np.nanmedian(m.reshape(-1, 2), axis=0)
    return cal.replace(origin_map=m, origin=tuple(med.tolist()))


def origin_fit_step(cube: Any, params: OriginFitParams, context: RunContext) -> Calibration:
    cal = current_calibration(cube, context)
    if cal.origin_map is None:
        raise MissingCalibrationError("origin_map", "the origin fit", "Measure the origin per scan position first "
                                      "(recipe step 'origin' / measure_origin), or set calibration.origin_map.")
    fit = fit_origin(cal.origin_map, params)
    return cal.replace(origin_map=fit.fitted, origin=tuple(fit.fitted.reshape(-1, 2).mean(0).tolist()))


def ellipse_step(cube: Any, params: EllipseParams, context: RunContext) -> Calibration:
    cal = current_calibration(cube, context)
    if params.source == "peaks":
        fit = fit_ellipse(_peaks_from(context, params.peaks, "the ellipse step"), params, cal)
    else:
        # the median over the scan keeps the amorphous ring and drops the Bragg disks of minority grains
        fit = fit_ellipse(cube.median_pattern(region=params.region), params, cal)
    return cal.replace(ellipse=fit.ellipse)


def pixel_size_step(cube: Any, params: PixelSizeParams, context: RunContext) -> Calibration:
    cal = current_calibration(cube, context)
    step = measure_pixel_size(_peaks_from(context, params.peaks, "the pixel_size step"), params, cal)
    return cal.replace(reciprocal_step=step, reciprocal_units="1/Å")


def qr_rotation_step(cube: Any, params: QRRotationParams, context: RunContext) -> Calibration:
    cal = current_calibration(cube, context)
    r = measure_qr_rotation(cube, params, **context.engine)
    return cal.replace(rotation_deg=r.rotation_deg, flip=r.flip)


# the names these adapters had before the step manifest (tests and tools call them)
_origin_step, _origin_fit_step, _ellipse_step = origin_step, origin_fit_step, ellipse_step
_pixel_size_step, _qr_rotation_step = pixel_size_step, qr_rotation_step
