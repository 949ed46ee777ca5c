"""Parallax (tilt-corrected bright field): per-pixel bright-field images, their shifts, an aberration fit, tcBF.

The bright-field image recorded at detector point ``k`` is the in-focus image
shifted by ``d(k) = −∇χ(k) / 2π`` (:func:`~fourd_widgets.analysis.aberrations.parallax_shift`);
for defocus and two-fold astigmatism that is linear in ``k``:
``d = −λ (C10 + C12 M(φ12)) k`` with ``M = [[cos 2φ12, sin 2φ12], [sin 2φ12, −cos 2φ12]]``,
a symmetric matrix, seen in the scan frame through ``T = S R(−θ)`` (the
calibration's :func:`~fourd_widgets.analysis.calibration.scan_frame_matrix`) [1]_, [2]_.

1. One pass gathers the intensity of every bright-field detector pixel (or group
   of ``bin x bin`` pixels) at every position, and the centre of mass.
2. The images within ``fit_fraction`` of the disk radius, normalised and tapered
   at the edges, are aligned by the current model and cross-correlated with their
   mean; the residual shifts (peaks refined by an upsampled DFT [3]_) update the
   model, a few times over.
   Then Newton steps on the six parameters of ``d = c + G k`` maximise the correlation
   of every image with the mean of the others at once, each image and frequency
   weighted by its own precision (no peak picked on a grid).
3. A linear fit ``d = c + G k`` gives ``G = −λ T H``; ``H = T^T (−G/λ)`` must be
   symmetric, which fixes ``θ`` up to 180° in closed form; the branch nearest the
   scan rotation from the calibration (checked against the CoM curl, as DPC does)
   is kept, then ``C10 = tr H / 2`` and ``C12 e^{2iφ12} = (H00 − H11)/2 + i H01``.
   The flip is the calibration's (defocus and astigmatism cannot tell it).
   With ``direct_fit`` (default) C10, C12, φ12 and θ are then fitted to the images
   themselves, every group and every frequency where a scattered disk overlaps the
   unscattered one (:mod:`~fourd_widgets.analysis.parallax_direct`): in the single side
   bands the images carry the aberrations' phase at full contrast, which the shifts
   (double side band, ``2 sin χ(q)``) do not at small defocus.
4. tcBF: every image's samples are placed at ``R − d(k)`` on a grid ``upsample``
   times finer (bilinear splatting with a Gaussian kernel); the CTF correction
   multiplies by ``sign(sin χ(q))`` (phase flipping: a weak phase ``φ`` gives
   bright-field contrast ``2 sin χ(q) φ̂(q)``).

References
----------
.. [1] py4DSTEM 0.14.18, ``process/phase/parallax.py`` (the ``Parallax`` class: per-pixel
   bright-field images, their alignment, aberration fit and tcBF); our code is our own.
.. [2] B. H. Savitzky et al., Microsc. Microanal. 27, 712-743 (2021) (py4DSTEM).
.. [3] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, Opt. Lett. 33, 156-158 (2008).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.fft as sfft

from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.job import ImageJob
from ..engine.run import run_job
from .aberrations import Aberrations, chi, detector_k, parallax_shift
from .calibration import scan_frame_matrix
from .parallax_direct import DirectFit, fit_aberrations_direct, merge_groups
from .phase_common import (bright_field, measure_shifts, read_fields, resolve_rotation, shift_images, splat,
                           step_engine, tukey_window, write_fields)

__all__ = ["ParallaxParams", "ParallaxResult", "ParallaxData", "parallax", "parallax_prepare", "tcbf",
           "fit_parallax_shifts", "measure_shifts", "BrightFieldJob", "parallax_step"]


@dataclass(frozen=True, eq=False)
class ParallaxParams(Params):
    """Record of a parallax (tcBF) reconstruction with its aberration fit."""

    step = "parallax"
    # version 2: joint Newton refinement of the shift field (version 1 stopped at the per-image peaks);
    # version 3: the direct fit to the images (default on). Older records replay as they were made.
    schema_version = 3
    migrations = {1: lambda d: {**d, "joint_steps": 0}, 2: lambda d: {**d, "direct_fit": False}}

    bin: int = param(1, ge=1, le=16, doc="detector pixels grouped bin x bin into one bright-field image")
    edge_margin: float = param(1.0, ge=0, units="px", doc="leave out groups closer than this to the disk edge")
    fit_fraction: float = param(
        0.5, gt=0, le=1, doc="groups within this fraction of the disk radius are cross-correlated and fitted: "
        "nearer the edge only one side band of the object passes and defocus adds its own shift")
    iterations: int = param(4, ge=1, le=10, doc="rounds of reference update, shift measurement and fit")
    upsample_cc: int = param(10, ge=1, le=64, doc="cross-correlation peak refinement, 1/px")
    smooth_px: float | None = param(
        None, ge=0, le=16, units="px", doc="Gaussian low-pass of the cross-correlations; None: 1 / (π q_max step) "
        "with q_max = (1 − fit_fraction) k_alpha, so the fitted images keep only frequencies that pass both "
        "side bands (and less noise)")
    rotation: Literal["calibration", "curl", "manual"] = param(
        "calibration", doc="which scan rotation picks the fit's 180° branch (and gives the flip): as in DPC")
    rotation_deg: float = param(0.0, units="deg", doc="'manual': rotation from scan to detector")
    flip: bool = param(False, doc="'manual': detector axes swapped relative to the scan")
    rotation_tolerance_deg: float = param(10.0, gt=0, le=90, units="deg", doc="as in DPC")
    fit_rotation: bool = param(True, doc="fit the scan rotation from the shifts (else keep the one above)")
    joint_steps: int = param(
        8, ge=0, le=50, doc="then Newton steps on the whole linear shift field (every image and frequency "
        "weighted by its precision); 0: the per-image peaks alone")
    direct_fit: bool = param(
        True, doc="then fit C10, C12, phi12 and the rotation to the images themselves, every group and every "
        "frequency where a scattered disk overlaps the unscattered one (both side bands or one): the shifts "
        "alone see only the double-side-band contrast, which is weak at small defocus")
    upsample: int = param(2, ge=1, le=8, doc="tcBF image grid: this many pixels per scan step")
    kernel_px: float = param(0.5, gt=0, le=4, units="px", doc="Gaussian splatting kernel, upsampled pixels")
    shifts: Literal["fit", "measured", "manual"] = param(
        "fit", doc="tcBF alignment by the fitted model, the measured shifts, or the model of C10, C12 and phi12_deg "
        "below with the record's scan rotation (what PhaseTuner's sliders set)")
    C10: float = param(0.0, units="Å", doc="'manual' shifts: defocus coefficient (Δf = −C10)")
    C12: float = param(0.0, ge=0, units="Å", doc="'manual' shifts: two-fold astigmatism")
    phi12_deg: float = param(0.0, units="deg", doc="'manual' shifts: azimuth of the astigmatism")
    ctf_correction: bool = param(False, doc="flip the tcBF image's Fourier phase where sin χ(q) < 0")


@dataclass(frozen=True, eq=False)
class ParallaxResult:
    """Shifts, fitted aberrations and the tcBF image.

    Attributes
    ----------
    tcbf : (Rx * upsample, Ry * upsample) array
        Tilt-corrected bright-field image (relative contrast), pixel ``tcbf_step_A``.
    tcbf_step_A : float
    k : (N, 2) array
        Detector-frame spatial frequency of each fitted bright-field image, 1/Å.
    shifts : (N, 2) array
        Measured shift of each fitted image, scan pixels (scan frame).
    fitted_shifts : (N, 2) array
        The fitted model at ``k``, scan pixels.
    aberrations : Aberrations
        Fitted C10, C12, φ12 (C30 is not fitted).
    rotation_deg : float
    flip : bool
    residual_px : float
        Rms of measured minus fitted shifts.
    params : ParallaxParams
    """

    tcbf: np.ndarray
    tcbf_step_A: float
    k: np.ndarray
    shifts: np.ndarray
    fitted_shifts: np.ndarray
    aberrations: Aberrations
    rotation_deg: float
    flip: bool
    residual_px: float
    params: ParallaxParams

    def to_h5(self, group: Any) -> None:
        """Write the tcBF image, the shifts, the fitted aberrations and rotation and the record into an HDF5 group."""
        write_fields(group, self)

    @classmethod
    def from_h5(cls, group: Any) -> "ParallaxResult":
        """Read a result written by :meth:`to_h5`."""
        return read_fields(cls, group, objects={"aberrations": Aberrations})


class BrightFieldJob(ImageJob):
    """Summed intensity of each group of detector pixels, then the three CoM moments, per position."""

    name = "bright-field images"

    def __init__(self, order: np.ndarray, starts: np.ndarray, moments: np.ndarray) -> None:
        self.order = order
        self.starts = starts
        self.moments = moments
        self.item_shape = (len(starts) + 3,)
        self.dtype = np.float32

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        flat = block.reshape(block.shape[0] * block.shape[1], -1)
        groups = np.add.reduceat(flat[:, self.order].astype(np.float32, copy=False), self.starts, axis=1)
        mom = flat.astype(np.float64, copy=False) @ self.moments
        return np.concatenate([groups, mom], axis=1).reshape(block.shape[:2] + self.item_shape)


def fit_parallax_shifts(k: np.ndarray, shifts_A: np.ndarray, wavelength_A: float, rotation_deg: float, flip: bool,
                        fit_rotation: bool = True) -> tuple[Aberrations, float, np.ndarray]:
    """Defocus, astigmatism and scan rotation from shifts ``d = c + G k`` (least squares).

    Parameters
    ----------
    k : (N, 2) array
        Detector-frame spatial frequencies, 1/Å.
    shifts_A : (N, 2) array
        Measured image shifts, scan frame, Å.
    wavelength_A : float
    rotation_deg, flip
        The scan rotation whose 180° branch is kept (or which is kept, without
        ``fit_rotation``) and the flip.

    Returns
    -------
    aberrations, rotation_deg, offset (2,) in Å

    Examples
    --------
    >>> from fourd_widgets.analysis.aberrations import parallax_shift
    >>> ab = Aberrations(C10=-200.0, C12=60.0, phi12_deg=20.0)
    >>> k = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    >>> d = parallax_shift(k[:, 0], k[:, 1], 0.02, ab) @ scan_frame_matrix(35.0, False).T
    >>> fit, rot, _ = fit_parallax_shifts(k, d, 0.02, 40.0, False)
    >>> round(fit.C10, 6), round(fit.C12, 6), round(fit.phi12_deg, 6), round(rot, 6)
    (-200.0, 60.0, 20.0, 35.0)
    """
    k = np.asarray(k, float)
    d = np.asarray(shifts_A, float)
    A = np.column_stack([np.ones(len(k)), k[:, 0], k[:, 1]])
    coef, *_ = np.linalg.lstsq(A, d, rcond=None)  # (3, 2): d_j = c_j + G_j0 kx + G_j1 ky
    offset = coef[0]
    G = coef[1:].T
    B = -G / wavelength_A
    C = B[::-1] if flip else B  # S B
    if fit_rotation:
        theta = math.atan2(C[0, 1] - C[1, 0], C[0, 0] + C[1, 1])
        guess = math.radians(rotation_deg)
        if math.cos(theta - guess) < 0:  # the other branch: θ + 180°, C10 → −C10
            theta += math.pi
    else:
        theta = math.radians(rotation_deg)
    c, s = math.cos(theta), math.sin(theta)
    H = np.array([[c, -s], [s, c]]) @ C
    H = 0.5 * (H + H.T)
    C10 = 0.5 * (H[0, 0] + H[1, 1])
    a, b = 0.5 * (H[0, 0] - H[1, 1]), H[0, 1]
    ab = Aberrations(C10=C10, C12=math.hypot(a, b), phi12_deg=0.5 * math.degrees(math.atan2(b, a)))
    rot = (math.degrees(theta) + 180.0) % 360.0 - 180.0
    return ab, rot, offset


def _groups(bf: Any, shape: tuple[int, int], b: int, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel order, group starts and group centres ``k`` (1/Å) of the bright-field groups."""
    kx, ky = detector_k(shape, bf.origin, bf.step_invA)
    ii = np.rint((np.arange(shape[0]) - bf.origin[0]) / b).astype(int)
    jj = np.rint((np.arange(shape[1]) - bf.origin[1]) / b).astype(int)
    gi, gj = np.meshgrid(ii, jj, indexing="ij")
    # a group is used when its farthest pixel lies inside the disk by the margin
    inside = np.hypot(kx, ky) <= (bf.radius_px - margin) * bf.step_invA
    label = (gi - gi.min()) * (gj.max() - gj.min() + 1) + (gj - gj.min())
    full = np.bincount(label.ravel(), minlength=label.max() + 1)
    good = np.bincount(label.ravel(), weights=inside.ravel(), minlength=label.max() + 1)
    keep = (full > 0) & (good == full)
    sel = keep[label].ravel()
    lab = label.ravel()[sel]
    pix = np.flatnonzero(sel)
    order = pix[np.argsort(lab, kind="stable")]
    lab_sorted = np.sort(lab, kind="stable")
    starts = np.flatnonzero(np.r_[True, lab_sorted[1:] != lab_sorted[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    kc = np.stack([np.add.reduceat(kx.ravel()[order], starts), np.add.reduceat(ky.ravel()[order], starts)], -1)
    return order, starts, kc / counts[:, None]


def _group_px(order: np.ndarray, starts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of each (rectangular) group along each detector axis, ``(N, 2)``."""
    if len(starts) == 0:
        return np.zeros((0, 2), int)
    i, j = np.divmod(order, shape[1])
    return np.stack([np.maximum.reduceat(i, starts) - np.minimum.reduceat(i, starts) + 1,
                     np.maximum.reduceat(j, starts) - np.minimum.reduceat(j, starts) + 1], -1)


@dataclass(frozen=True, eq=False)
class ParallaxData:
    """The bright-field images of a cube, cached for repeated fits and tcBF previews.

    Attributes
    ----------
    images : (N, Rx, Ry) array
        Bright-field image of each detector group, divided by its mean, minus 1.
    k : (N, 2) array
        Detector-frame spatial frequency of each group, 1/Å.
    com : (Rx, Ry, 2) array
        Centre of mass from the origin, px (for the rotation check).
    calibration : Calibration
    bin : int
    edge_margin : float
    group_px : (N, 2) int array, optional
        Detector pixels of each group along each axis (None: ``bin`` x ``bin``).
    """

    images: np.ndarray
    k: np.ndarray
    com: np.ndarray
    calibration: Any
    bin: int
    edge_margin: float
    group_px: np.ndarray | None = None


def parallax_prepare(cube: Any, bin: int = 1, edge_margin: float = 1.0, *, progress: Any = None,
                     cancel: Any = None, workers: int | None = None, scheduler: Any = None,
                     chunk_bytes: int | None = None) -> ParallaxData:
    """One pass over ``cube``: the bright-field image of every ``bin x bin`` group, and the centre of mass."""
    cal = cube.calibration
    Qx, Qy = cube.detector_shape
    bf = bright_field(cal, (Qx, Qy), "parallax")
    Rx, Ry = cube.scan_shape
    if min(Rx, Ry) < 4:
        raise ShapeError(f"parallax needs a scan of at least 4x4 positions to measure image shifts (16x16 or more "
                         f"for a reliable fit), got {Rx}x{Ry}")
    order, starts, k = _groups(bf, (Qx, Qy), int(bin), float(edge_margin))
    if len(starts) < 6:
        raise ShapeError(f"parallax: only {len(starts)} bright-field groups fit in the disk; use a smaller bin "
                         "or edge_margin")
    ii = np.arange(Qx, dtype=float)[:, None] * np.ones((1, Qy))
    jj = np.ones((Qx, 1)) * np.arange(Qy, dtype=float)[None, :]
    moments = np.stack([np.ones(Qx * Qy), ii.ravel(), jj.ravel()], -1)
    stack = run_job(cube, BrightFieldJob(order, starts, moments), progress=progress, cancel=cancel,
                    workers=workers, scheduler=scheduler, chunk_bytes=chunk_bytes)
    n = len(starts)
    mom = stack[..., n:].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        com = mom[..., 1:] / mom[..., :1]
    com = com - (np.asarray(cal.origin) if cal.origin is not None else np.nanmean(com.reshape(-1, 2), 0))
    images = np.moveaxis(stack[..., :n], -1, 0).astype(np.float64)
    mean = images.mean(axis=(1, 2), keepdims=True)
    images = images / np.where(mean > 0, mean, 1.0) - 1.0
    return ParallaxData(images=images, k=k, com=com, calibration=cal, bin=int(bin), edge_margin=float(edge_margin),
                        group_px=_group_px(order, starts, (Qx, Qy)))


def tcbf(data: ParallaxData, aberrations: Aberrations, rotation_deg: float, flip: bool = False, *, upsample: int = 2,
         kernel_px: float = 0.5, ctf_correction: bool = False) -> np.ndarray:
    """The tcBF image for given aberrations and scan rotation (a slider's preview: no pass over the data).

    Returns
    -------
    (Rx * upsample, Ry * upsample) array
        Pixel ``scan step / upsample``.
    """
    cal = data.calibration
    lam = cal.wavelength_A
    step_A = cal.real_step_in("Å")
    d = _model(data.k, aberrations, lam, rotation_deg, flip, np.zeros(2)) / step_A
    img = splat(data.images, d, upsample, kernel_px)
    if ctf_correction:
        img = _phase_flip(img, step_A / upsample, lam, aberrations, rotation_deg, flip)
    return img


def parallax(cube: Any, params: ParallaxParams | None = None, *, progress: Any = None, cancel: Any = None,
             workers: int | None = None, scheduler: Any = None, chunk_bytes: int | None = None,
             **overrides: Any) -> ParallaxResult:
    """Tilt-corrected bright field with a fit of defocus, astigmatism and scan rotation.

    Parameters
    ----------
    cube : DataCube or ParallaxData
        Needs energy, convergence semi-angle, detector and scan steps, origin; or the
        cached images of :func:`parallax_prepare` (made with the record's bin and edge_margin).
    params : ParallaxParams, optional
    progress, cancel, workers, scheduler, chunk_bytes
        Engine options (:func:`fourd_widgets.engine.run_job`).
    **overrides
        Field overrides of ``params``.

    Returns
    -------
    ParallaxResult
    """
    p = params if params is not None else ParallaxParams()
    if not isinstance(p, ParallaxParams):
        raise ParameterError(f"params must be ParallaxParams, got {type(p).__name__}", field="params")
    if overrides:
        p = p.replace(**overrides)
    if isinstance(cube, ParallaxData):
        data = cube
        if (data.bin, data.edge_margin) != (p.bin, p.edge_margin):
            raise ParameterError(f"parallax: the cached images were made with bin={data.bin}, edge_margin="
                                 f"{data.edge_margin}, the record asks for bin={p.bin}, edge_margin={p.edge_margin}; "
                                 "prepare them again with parallax_prepare", field="bin")
    else:
        data = parallax_prepare(cube, p.bin, p.edge_margin, progress=progress, cancel=cancel, workers=workers,
                                scheduler=scheduler, chunk_bytes=chunk_bytes)
    cal = data.calibration
    lam = cal.wavelength_A  # the disk's geometry was checked when preparing
    k_alpha = cal.convergence_semiangle_mrad * 1e-3 / lam
    step_A = cal.real_step_in("Å")
    k, images = data.k, data.images
    rot0, flip = resolve_rotation(data.com, cal, p.rotation, p.rotation_deg, p.flip, p.rotation_tolerance_deg,
                                  "parallax")
    fit_set = np.hypot(k[:, 0], k[:, 1]) <= p.fit_fraction * k_alpha
    if fit_set.sum() < 6:
        raise ShapeError(f"parallax: only {int(fit_set.sum())} bright-field groups lie within fit_fraction of the "
                         "disk radius; use a smaller bin or a larger fit_fraction")
    kf, imf = k[fit_set], images[fit_set]
    model = np.zeros((len(kf), 2))
    ab, rot, offset = Aberrations(), rot0, np.zeros(2)
    kr = np.hypot(kf[:, 0], kf[:, 1])
    central = kr <= max(0.25 * k_alpha, np.sort(kr)[min(8, len(kr) - 1)])
    smooth = p.smooth_px
    if smooth is None:
        smooth = 1.0 / (math.pi * max(1.0 - p.fit_fraction, 0.05) * k_alpha * step_A)
    for it in range(p.iterations):
        # measure what is left after aligning by the current model: small shifts, so the taper's pull
        # towards zero shift is small too. The first reference is the mean of the central images, whose
        # shifts are small whatever the defocus (the mean of all would be blurred by all the shifts);
        # each image is left out of its own reference
        aligned = shift_images(imf, model)
        measured = model + measure_shifts(aligned, None, p.upsample_cc, smooth,
                                          members=central if it == 0 else None)
        use = np.ones(len(kf), bool)
        for _round in range(2):  # one round of outlier rejection
            ab, rot, offset = fit_parallax_shifts(kf[use], measured[use] * step_A, lam, rot0, flip, p.fit_rotation)
            model = _model(kf, ab, lam, rot, flip, offset) / step_A
            res = np.linalg.norm(measured - model, axis=1)
            use = res <= max(3 * np.median(res), 0.25)
    if p.joint_steps:
        # the shifts of all images at once, by Newton steps on the six linear parameters (scan px, k in 1/Å)
        model, own = _joint_refine(imf, kf, model, smooth, p.joint_steps)
        ab, rot, offset = fit_parallax_shifts(kf, model * step_A, lam, rot0, flip, p.fit_rotation)
        model = _model(kf, ab, lam, rot, flip, offset) / step_A
        measured = np.where(np.isfinite(own), own, measured)
    if p.direct_fit:
        gpx = data.group_px if data.group_px is not None else np.full((len(k), 2), data.bin)
        dk = cal.reciprocal_step_in("1/Å")
        direct = DirectFit(*merge_groups(images, k, gpx, dk, data.bin), step_A, lam, k_alpha, dk, flip)
        ab, rot = fit_aberrations_direct(direct, ab, rot, p.fit_rotation)
        bare = _model(kf, ab, lam, rot, flip, np.zeros(2)) / step_A
        offset = np.mean(measured - bare, axis=0) * step_A  # a common shift: the model does not see it
        model = bare + offset / step_A
    residual = float(np.sqrt(np.mean(np.sum((measured - model) ** 2, axis=1))))
    if p.shifts == "manual":
        image = tcbf(data, Aberrations(p.C10, p.C12, p.phi12_deg), rot0, flip, upsample=p.upsample,
                     kernel_px=p.kernel_px, ctf_correction=p.ctf_correction)
    else:
        if p.shifts == "fit":
            image = splat(images, _model(k, ab, lam, rot, flip, offset) / step_A, p.upsample, p.kernel_px)
        else:
            image = splat(imf, measured, p.upsample, p.kernel_px)
        if p.ctf_correction:
            image = _phase_flip(image, step_A / p.upsample, lam, ab, rot, flip)
    for a in (image, kf, measured, model):
        a.setflags(write=False)
    return ParallaxResult(tcbf=image, tcbf_step_A=step_A / p.upsample, k=kf, shifts=measured, fitted_shifts=model,
                          aberrations=ab, rotation_deg=rot, flip=flip, residual_px=residual, params=p)


def _joint_refine(images: np.ndarray, k: np.ndarray, model: np.ndarray, smooth_px: float,
                  steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Newton steps on the linear shift field ``d = c + G k`` that maximise the images' agreement.

    With every image aligned by the current model, the correlation of image ``n`` with
    the mean of the others (leave-one-out), ``f_n(δ) = Σ_q w(q) Re[Â_n(q) e^{2πi q·δ} R̂_n*(q)]``,
    has, at ``δ = 0``, the gradient ``g_n`` and curvature ``−K_n`` below (``w`` is the
    cross-correlation low-pass). Summing over images through ``δ_n = J_n Δθ`` gives one
    6x6 system for the change ``Δθ`` of the six linear parameters: every image and every
    frequency weighs by its own precision (``K_n``), no correlation peak is picked on
    a grid, and no image needs a peak that stands out of its noise on its own.

    Returns the refined model shifts ``(N, 2)`` (scan px) and each image's own Newton
    estimate ``model + K_n⁻¹ g_n`` (NaN where ``K_n`` is not positive definite).
    """
    N, Rx, Ry = images.shape
    fx = sfft.fftfreq(Rx)[:, None] * np.ones((1, Ry))
    fy = np.ones((Rx, 1)) * sfft.fftfreq(Ry)[None, :]
    w = np.exp(-2 * np.pi ** 2 * smooth_px ** 2 * (fx * fx + fy * fy))
    win = tukey_window(Rx)[:, None] * tukey_window(Ry)[None, :]
    J = np.zeros((N, 2, 6))
    J[:, 0, 0] = J[:, 1, 1] = 1.0
    J[:, 0, 2], J[:, 0, 3] = k[:, 0], k[:, 1]
    J[:, 1, 4], J[:, 1, 5] = k[:, 0], k[:, 1]
    own = np.full((N, 2), np.nan)
    for _ in range(steps):
        aligned = shift_images(images, model)
        a = (aligned - aligned.mean(axis=(1, 2), keepdims=True)) * win
        A = sfft.fft2(a)
        R = (A.sum(axis=0)[None] - A) / max(N - 1, 1)
        X = w[None] * A * np.conj(R)  # (N, Rx, Ry)
        # d/dδ of Re[X e^{2πi q·δ}] = Re[2πi q X];  d²/dδ² = −4π² q q^T Re[X]
        Xr, Xi = X.real, X.imag
        g = -2 * np.pi * np.stack([(fx * Xi).sum((1, 2)), (fy * Xi).sum((1, 2))], -1)
        c = 4 * np.pi ** 2
        K = np.empty((N, 2, 2))
        K[:, 0, 0] = c * (fx * fx * Xr).sum((1, 2))
        K[:, 0, 1] = K[:, 1, 0] = c * (fx * fy * Xr).sum((1, 2))
        K[:, 1, 1] = c * (fy * fy * Xr).sum((1, 2))
        lhs = np.einsum("nai,nab,nbj->ij", J, K, J)
        rhs = np.einsum("nai,na->i", J, g)
        try:
            delta = np.linalg.solve(lhs, rhs)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(delta)) or np.any(np.linalg.eigvalsh(lhs) <= 0):
            break
        model = model + np.einsum("nai,i->na", J, delta)
        det = K[:, 0, 0] * K[:, 1, 1] - K[:, 0, 1] ** 2
        ok = (det > 0) & (K[:, 0, 0] > 0)
        own = np.full((N, 2), np.nan)
        own[ok] = np.linalg.solve(K[ok], g[ok][..., None])[..., 0]
        own = own + model - np.einsum("nai,i->na", J, delta)  # relative to the model the step started from
        if np.max(np.abs(np.einsum("nai,i->na", J, delta))) < 1e-4:
            break
    return model, own


def _model(k: np.ndarray, ab: Aberrations, lam: float, rot: float, flip: bool, offset: np.ndarray) -> np.ndarray:
    return parallax_shift(k[:, 0], k[:, 1], lam, ab) @ scan_frame_matrix(rot, flip).T + offset


def _phase_flip(image: np.ndarray, step_A: float, lam: float, ab: Aberrations, rot: float, flip: bool) -> np.ndarray:
    """Multiply the image's spectrum by ``sign(sin χ(q))``, ``q`` taken to the detector frame."""
    Mx, My = image.shape
    qx = sfft.fftfreq(Mx, step_A)[:, None] * np.ones((1, My))
    qy = np.ones((Mx, 1)) * sfft.fftfreq(My, step_A)[None, :]
    q_det = np.stack([qx, qy], -1) @ np.linalg.inv(scan_frame_matrix(rot, flip)).T
    s = np.sign(np.sin(chi(q_det[..., 0], q_det[..., 1], lam, ab)))
    s[0, 0] = 1.0
    return sfft.ifft2(sfft.fft2(image) * s).real


def parallax_step(cube: Any, params: ParallaxParams, context: Any) -> ParallaxResult:
    """Recipe adapter: :func:`parallax` with the run's engine options."""
    return parallax(cube, params, **step_engine(context))
