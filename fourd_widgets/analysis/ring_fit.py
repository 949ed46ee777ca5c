"""Elliptical amorphous-ring fits per pattern, and the amorphous strain maps they give.

Model (py4DSTEM ``fit_amorphous_ring`` has the same parts), fitted by least
squares to the pixels of an annulus, per pattern or to one image::

    I(p) = b0 + b1 (ρ - 1) + b2 (ρ - 1)² + I_r exp(-(ρ - 1)² / 2 w²),
    d = p - (x0, y0),  ρ = sqrt(dᵀ Q d),  Q = [[A, B], [B, C]]

so the ring's ridge is the ellipse ``dᵀ Q d = 1`` about a free centre. The
background shares the ring's ellipse, as it does when the distortion is the
detector's (projector lenses distort the whole pattern); it is a quadratic in
ρ across the annulus (py4DSTEM's Gaussian background drifts into a flat,
ill-conditioned pair of large terms on real annuli; the quadratic is linear
in its coefficients). ``w`` is relative to the ring's radius.

Strain: a real-space deformation ``F`` takes reciprocal vectors to ``F^-T g``,
so the ring ``|g| = k0`` appears where ``dᵀ F Fᵀ d = k0²``: ``Q ∝ F Fᵀ``. After
undoing the detector's ellipse (``Dᵀ Q D``), ``S = Q_ref^-1/2 Q Q_ref^-1/2`` is
``F Fᵀ`` relative to the reference, and the strain is ``sqrt(S) - I``
(symmetric: a ring holds no rotation).

Examples
--------
>>> x, y = np.meshgrid(np.arange(64) - 31.7, np.arange(64) - 32.2, indexing="ij")
>>> rho = np.sqrt((x / 20.6) ** 2 + (y / 19.4) ** 2)
>>> img = 0.1 + np.exp(-0.5 * ((rho - 1) / 0.08) ** 2)
>>> fit = fit_ring(img, (32, 32), r_inner=10, r_outer=30)
>>> round(fit.a, 3), round(fit.b, 3), round(fit.theta_deg % 180, 2)
(20.6, 19.4, 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np
from scipy.optimize import least_squares

from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.job import ImageJob
from ..engine.run import run_job
from .polar import as_cube, distortion, engine_options, resolve_params
from .polar_results import H5Fields

__all__ = ["RingFitParams", "RingFit", "RingFitMaps", "AmorphousStrain", "fit_ring", "fit_rings",
           "amorphous_strain", "ring_model", "N_COEFS"]

#: x0, y0, A, B, C, I_r, w, b0, b1, b2
N_COEFS = 10


@dataclass(frozen=True, eq=False)
class RingFitParams(Params):
    """Record of per-pattern elliptical ring fits."""

    step = "ring_fit"
    r_inner: float = param(10.0, units="px", ge=0, doc="inner radius of the annulus of fitted pixels")
    r_outer: float = param(40.0, units="px", gt=0, doc="outer radius of the annulus")
    mask: np.ndarray | None = param(None, doc="(Qx, Qy) bool, True where the detector is blocked")
    fit_origin: bool = param(True, doc="fit the ring's centre per pattern (else keep the calibrated origin)")
    max_nfev: int = param(400, ge=10, le=100000, doc="most model evaluations per pattern")
    reference: Literal["median", "region"] = param(
        "median", doc="strain reference: the median ring of the scan, or of reference_region")
    reference_region: np.ndarray | None = param(None, doc="(Rx, Ry) bool: unstrained positions (with 'region')")

    def validate(self) -> None:
        if self.r_outer <= self.r_inner:
            raise ParameterError(f"ring_fit: r_outer ({self.r_outer}) must exceed r_inner ({self.r_inner})",
                                 field="r_outer")
        if self.reference == "region" and self.reference_region is None:
            raise ParameterError("ring_fit: reference='region' needs reference_region", field="reference_region")


def ring_model(c: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The ring model at points (x, y) (see the module docstring)."""
    dx, dy = x - c[0], y - c[1]
    rho = np.sqrt(np.maximum(c[2] * dx * dx + 2 * c[3] * dx * dy + c[4] * dy * dy, 0.0))
    t = rho - 1
    return c[7] + c[8] * t + c[9] * t * t + c[5] * np.exp(-(t * t) / (2 * c[6] ** 2))


def _model_jacobian(c: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, N_COEFS) derivatives of :func:`ring_model` with respect to its coefficients."""
    dx, dy = x - c[0], y - c[1]
    rho = np.sqrt(np.maximum(c[2] * dx * dx + 2 * c[3] * dx * dy + c[4] * dy * dy, 1e-24))
    t = rho - 1
    g = np.exp(-(t * t) / (2 * c[6] ** 2))
    dI_drho = c[8] + 2 * c[9] * t - c[5] * g * t / c[6] ** 2
    J = np.empty((x.size, N_COEFS))
    J[:, 0] = -dI_drho * (c[2] * dx + c[3] * dy) / rho
    J[:, 1] = -dI_drho * (c[3] * dx + c[4] * dy) / rho
    J[:, 2] = dI_drho * dx * dx / (2 * rho)
    J[:, 3] = dI_drho * dx * dy / rho
    J[:, 4] = dI_drho * dy * dy / (2 * rho)
    J[:, 5] = g
    J[:, 6] = c[5] * g * t * t / c[6] ** 3
    J[:, 7] = 1.0
    J[:, 8] = t
    J[:, 9] = t * t
    return J


@dataclass(frozen=True, eq=False)
class RingFit(H5Fields):
    """One fitted ring: centre (px), semi-axes ``a >= b`` (px) with ``a`` along ``theta_deg``."""

    coefs: np.ndarray
    rms: float

    @property
    def centre(self) -> tuple[float, float]:
        return float(self.coefs[0]), float(self.coefs[1])

    @property
    def quadratic(self) -> np.ndarray:
        A, B, C = self.coefs[2:5]
        return np.array([[A, B], [B, C]])

    def _axes(self) -> tuple[float, float, float]:
        w, v = np.linalg.eigh(self.quadratic)
        return 1 / math.sqrt(w[0]), 1 / math.sqrt(w[1]), math.degrees(math.atan2(v[1, 0], v[0, 0])) % 180.0

    @property
    def a(self) -> float:
        return self._axes()[0]

    @property
    def b(self) -> float:
        return self._axes()[1]

    @property
    def theta_deg(self) -> float:
        return self._axes()[2]

    @property
    def ellipse(self) -> tuple[float, float, float]:
        """Calibration value ``(a / r, b / r, θ)``, ``r = sqrt(a b)`` (for ``Calibration.ellipse``)."""
        a, b, t = self._axes()
        r = math.sqrt(a * b)
        return (a / r, b / r, t)


def _annulus(shape: tuple[int, int], origin: Any, p: RingFitParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    r = np.hypot(x - origin[0], y - origin[1])
    keep = (r >= p.r_inner) & (r <= p.r_outer)
    if p.mask is not None:
        if p.mask.shape != tuple(shape):
            raise ShapeError(f"ring_fit.mask has shape {p.mask.shape}; the detector is {tuple(shape)}")
        keep &= ~p.mask
    if keep.sum() < 4 * N_COEFS:
        raise ParameterError(f"ring_fit: the annulus {p.r_inner:g}-{p.r_outer:g} px holds {int(keep.sum())} "
                             "unmasked pixels; widen it or shrink the mask", field="r_outer")
    return keep, x[keep], y[keep]


def _initial(img: np.ndarray, origin: Any, p: RingFitParams, keep: np.ndarray, x: np.ndarray,
             y: np.ndarray) -> np.ndarray:
    """Starting coefficients from the radial profile in the annulus."""
    v = img[keep].astype(float)
    r = np.hypot(x - origin[0], y - origin[1])
    edges = np.linspace(p.r_inner, p.r_outer, 33)
    idx = np.clip(np.digitize(r, edges) - 1, 0, 31)
    prof = np.bincount(idx, v, 32) / np.maximum(np.bincount(idx, None, 32), 1)
    base = np.linspace(prof[0], prof[-1], 32)  # a straight background under the ring
    i = int(np.argmax(prof - base))
    R = 0.5 * (edges[i] + edges[i + 1])
    height = max(float(prof[i] - base[i]), 1e-12 * max(abs(prof).max(), 1e-300))
    slope = (prof[-1] - prof[0]) / (p.r_outer - p.r_inner) * R  # per unit of ρ
    return np.array([origin[0], origin[1], 1 / R**2, 0.0, 1 / R**2, height, 0.1, float(base[i]), slope, 0.0])


def _fit(v: np.ndarray, x: np.ndarray, y: np.ndarray, c0: np.ndarray, p: RingFitParams) -> tuple[np.ndarray, float]:
    free = np.ones(N_COEFS, bool)
    if not p.fit_origin:
        free[:2] = False
    scale = max(float(np.abs(v).max()), 1e-300)
    vs = v / scale
    c_full = c0.copy()
    c_full[[5, 7, 8, 9]] = c0[[5, 7, 8, 9]] / scale

    def resid(cf: np.ndarray) -> np.ndarray:
        c_full[free] = cf
        return ring_model(c_full, x, y) - vs

    def jac(cf: np.ndarray) -> np.ndarray:
        c_full[free] = cf
        return _model_jacobian(c_full, x, y)[:, free]

    try:
        res = least_squares(resid, c_full[free], jac=jac, method="lm", max_nfev=p.max_nfev, x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return np.full(N_COEFS, np.nan), np.nan
    c = c_full.copy()
    c[free] = res.x
    c[5], c[7], c[8], c[9] = c[5] * scale, c[7] * scale, c[8] * scale, c[9] * scale
    c[6] = abs(c[6])
    if not (c[2] > 0 and c[4] > 0 and c[2] * c[4] > c[3] ** 2):
        return np.full(N_COEFS, np.nan), np.nan
    return c, float(np.sqrt(np.mean(res.fun**2)) * scale)


def fit_ring(image: Any, origin: Any, params: RingFitParams | Mapping | None = None, **overrides: Any) -> RingFit:
    """Fit the elliptical ring (plus background) of one image, e.g. the mean pattern."""
    p = resolve_params(RingFitParams, params, overrides)
    img = np.asarray(image, float)
    if img.ndim != 2:
        raise ShapeError(f"fit_ring needs one 2D image, got shape {img.shape}")
    keep, x, y = _annulus(img.shape, origin, p)
    c, rms = _fit(img[keep], x, y, _initial(img, origin, p, keep, x, y), p)
    if not np.isfinite(c).all():
        raise ParameterError("ring_fit: no ring could be fitted in the annulus; check r_inner, r_outer and the "
                             "origin", field="r_inner")
    return RingFit(c, rms)


class RingFitJob(ImageJob):
    """Per-pattern fits warm-started from the mean pattern's; (Rx, Ry, N_COEFS + 1) with the rms last."""

    name = "ring fits"
    item_shape = (N_COEFS + 1,)

    def __init__(self, p: RingFitParams, start: np.ndarray, shape: tuple[int, int], origins: np.ndarray | None,
                 ref_origin: tuple[float, float]) -> None:
        self.p, self.start, self.origins, self.ref, self.shape = p, start, origins, ref_origin, tuple(shape)
        _annulus(shape, ref_origin, p)  # refuses an annulus without enough pixels
        x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        r = np.hypot(x - ref_origin[0], y - ref_origin[1])
        ring = (r >= p.r_inner) & (r <= p.r_outer)
        self.xi, self.yi = x[ring], y[ring]

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        out = np.empty(block.shape[:2] + self.item_shape)
        for i in range(block.shape[0]):
            for j in range(block.shape[1]):
                c0 = self.start.copy()
                k = np.zeros(2, int)
                if self.origins is not None:
                    o = self.origins[rx.start + i, ry.start + j]
                    c0[:2] = o
                    # the annulus follows the beam by whole pixels, the fit does the rest
                    k = np.round(o - np.asarray(self.ref)).astype(int)
                xs, ys = self.xi + k[0], self.yi + k[1]
                keep = (xs >= 0) & (xs < self.shape[0]) & (ys >= 0) & (ys < self.shape[1])
                xs, ys = xs[keep], ys[keep]
                if self.p.mask is not None:
                    free = ~self.p.mask[xs, ys]
                    xs, ys = xs[free], ys[free]
                v = np.asarray(block[i, j][xs, ys], float)
                c, rms = _fit(v, xs.astype(float), ys.astype(float), c0, self.p)
                out[i, j, :N_COEFS], out[i, j, N_COEFS] = c, rms
        return out


@dataclass(frozen=True, eq=False)
class RingFitMaps(H5Fields):
    """Per-position ring coefficients ``(Rx, Ry, N_COEFS)`` (see :func:`ring_model`) and fit rms."""

    coefs: np.ndarray
    rms: np.ndarray
    params: RingFitParams

    @property
    def quadratic(self) -> np.ndarray:
        """(Rx, Ry, 2, 2) ``Q`` of each ring."""
        A, B, C = self.coefs[..., 2], self.coefs[..., 3], self.coefs[..., 4]
        return np.stack([np.stack([A, B], -1), np.stack([B, C], -1)], -2)

    @property
    def radius(self) -> np.ndarray:
        """Radius of the circle of equal area, ``sqrt(a b)``, px."""
        Q = self.quadratic
        return np.linalg.det(Q) ** -0.25


def fit_rings(data: Any, params: RingFitParams | Mapping | None = None, *, progress: Any = None,
              cancel: Any = None, workers: int | None = None, scheduler: Any = None, **overrides: Any) -> RingFitMaps:
    """Fit the ring of every pattern (through the engine), starting from the mean pattern's fit."""
    p = resolve_params(RingFitParams, params, overrides)
    cube = as_cube(data)
    cal = cube.calibration
    if cal.origin_map is not None:
        origins = cal.origin_map
        ref = tuple(float(v) for v in origins.reshape(-1, 2).mean(axis=0))
    else:
        origins = None
        ref = cal.require("origin", "amorphous ring fits")
    mean = cube.mean_pattern()
    start = fit_ring(mean, ref, p).coefs
    job = RingFitJob(p, start, cube.detector_shape, origins, ref)
    out = run_job(cube, job, **engine_options(progress, cancel, workers, scheduler))
    return RingFitMaps(out[..., :N_COEFS], out[..., N_COEFS], p)


@dataclass(frozen=True, eq=False)
class AmorphousStrain(H5Fields):
    """Strain maps from ring shapes: ``exx, eyy, exy`` (Rx, Ry), relative to the reference ring."""

    exx: np.ndarray
    eyy: np.ndarray
    exy: np.ndarray
    reference: np.ndarray


def _sym_power(S: np.ndarray, power: float) -> np.ndarray:
    w, v = np.linalg.eigh(S)
    return (v * w[..., None, :] ** power) @ np.swapaxes(v, -1, -2)


def amorphous_strain(fits: RingFitMaps, ellipse: Any = None) -> AmorphousStrain:
    """Strain maps from per-pattern ring fits (see the module docstring).

    Parameters
    ----------
    fits : RingFitMaps
    ellipse : (a, b, θ_deg), optional
        The detector's elliptic distortion (``Calibration.ellipse``), undone first.
    """
    Q = fits.quadratic
    ok = np.isfinite(Q).all(axis=(-1, -2))
    if ellipse is not None:
        from ..core.calibration import Calibration

        D = distortion(Calibration(ellipse=tuple(ellipse)), True)
        Q = D.T @ Q @ D
    p = fits.params
    sel = ok if p.reference == "median" else ok & np.asarray(p.reference_region, bool)
    if not sel.any():
        raise ParameterError("amorphous_strain: no fitted ring in the reference positions", field="reference_region")
    Qr = np.median(Q[sel], axis=0)
    half = _sym_power(Qr, -0.5)
    S = half @ np.where(ok[..., None, None], Q, np.eye(2)) @ half
    eps = _sym_power(S, 0.5) - np.eye(2)
    eps[~ok] = np.nan
    return AmorphousStrain(eps[..., 0, 0], eps[..., 1, 1], eps[..., 0, 1], Qr)
