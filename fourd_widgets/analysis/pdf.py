"""Pair distribution functions from a radial intensity profile (electron PDF, k = 1/d in 1/Å).

Steps (as in py4DSTEM ``calculate_pair_dist_function`` and eRDF practice):

1. background: ``bg(k) = c0 + c1 exp(-k²/2s1²) + c2 exp(-k²/2s2²)`` fitted to
   the profile over the k range (it stands for ``N <f²>`` plus what does not
   scatter coherently), weighted by k so that every period of the oscillation
   counts alike;
2. structure factor ``S(k) = I / bg`` (normalising by the whole background
   never divides by a vanishing term at high k; an incoherent share of it only
   scales S - 1 smoothly, which moves no peak of G);
3. reduced PDF ``G(r) = 8π ∫ k [S(k) - 1] W(k) sin(2π k r) dk``, where ``W``
   tapers the low end over ``k_width`` (sin²), optionally damps
   ``exp(-B k²)`` and applies the Lorch window ``sin(πk/k_max) / (πk/k_max)``;
4. with a number density ρ0: ``g(r) = 1 + G(r) / (4π r ρ0)`` and the RDF
   ``R(r) = 4π r² ρ0 g(r)``. Where no pair can be (``r < r_cut``) G must be
   ``-4π ρ0 r``; what the unmeasured low k and an imperfect background leave
   there is removed by a polynomial correction of S(k) fitted to that
   condition (as PDFgetX3 adjusts its background).

Examples
--------
>>> from fourd_widgets.datasets.debye import si_nanocrystal, debye_intensity
>>> k = np.arange(0.1, 2.5, 0.005)
>>> res = pair_distribution(debye_intensity(si_nanocrystal(20.0), k), k=k, k_min=0.15, r_max=6.0)
>>> bool(abs(res.peaks(2.0, 3.0)[0] - 2.352) < 0.05)
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import find_peaks

from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param
from .polar import resolve_params
from .polar_results import H5Fields

__all__ = ["PDFParams", "PDFResult", "pair_distribution", "background_model"]


@dataclass(frozen=True, eq=False)
class PDFParams(Params):
    """Record of a pair-distribution analysis of a radial profile."""

    step = "pdf"
    k_min: float = param(0.1, units="1/Å", ge=0, doc="lowest k used")
    k_max: float | None = param(None, units="1/Å", gt=0, doc="highest k used; None: the end of the profile")
    k_width: float = param(0.1, units="1/Å", ge=0, doc="width of the taper at k_min (damps the origin)")
    damping: float = param(0.0, units="Å²", ge=0, doc="B of an extra exp(-B k²) damping")
    lorch: bool = param(True, doc="apply the Lorch window (less termination ripple, broader peaks)")
    r_min: float = param(0.0, units="Å", ge=0, doc="first r of G(r)")
    r_max: float = param(20.0, units="Å", gt=0, doc="last r of G(r)")
    r_step: float = param(0.01, units="Å", gt=0, doc="r sampling")
    density: float | None = param(None, units="atoms/Å³", doc="number density for g(r) and the RDF; None: skip")
    r_cut: float | None = param(None, units="Å", gt=0,
                                doc="with density: no pair is closer than this; G(r) is made to follow -4π ρ0 r "
                                    "below it by a smooth correction of S(k)")
    correction_degree: int = param(5, ge=0, le=8, doc="degree of the polynomial correction of S(k) (with r_cut)")

    def validate(self) -> None:
        if self.density is not None and not self.density > 0:
            raise ParameterError(f"pdf.density must be a positive number density in atoms/Å³ (a-Si: about 0.05), "
                                 f"got {self.density:g}; give None to skip g(r)", field="density")
        if self.k_max is not None and self.k_max <= self.k_min + self.k_width:
            raise ParameterError(f"pdf: k_max ({self.k_max:g}) must exceed k_min + k_width "
                                 f"({self.k_min + self.k_width:g}) 1/Å", field="k_max")
        if self.r_cut is not None and self.density is None:
            raise ParameterError("pdf.r_cut needs the density (the low-r baseline is -4π ρ0 r)", field="density")
        if self.r_max <= self.r_min:
            raise ParameterError("pdf: r_max must exceed r_min", field="r_max")


def background_model(c: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``c0 + c1 exp(-k²/2 c2²) + c3 exp(-k²/2 c4²)``."""
    return c[0] + c[1] * np.exp(-k * k / (2 * c[2] ** 2)) + c[3] * np.exp(-k * k / (2 * c[4] ** 2))


@dataclass(frozen=True, eq=False)
class PDFResult(H5Fields):
    """Structure factor and pair distribution functions.

    Attributes
    ----------
    k, intensity, background, S, F : (n_k,) arrays
        k (1/Å) in the range used, the profile, fitted background, S(k) and the
        windowed reduced structure function ``k [S - 1] W``.
    r, G : (n_r,) arrays
        r (Å) and the reduced PDF.
    g, rdf : (n_r,) arrays or None
        Pair distribution function and radial distribution function (with a density).
    coefs : (5,) array
        Background coefficients.
    """

    k: np.ndarray
    intensity: np.ndarray
    background: np.ndarray
    S: np.ndarray
    F: np.ndarray
    r: np.ndarray
    G: np.ndarray
    g: np.ndarray | None
    rdf: np.ndarray | None
    coefs: np.ndarray
    params: PDFParams

    def peaks(self, r_lo: float = 0.0, r_hi: float = np.inf, prominence: float = 0.1) -> np.ndarray:
        """Positions (Å) of the maxima of G(r) in [r_lo, r_hi], refined by a parabola.

        Only maxima standing out by ``prominence`` x max |G| in the range count
        (termination and background ripples are smaller).
        """
        inside = (self.r >= r_lo) & (self.r <= r_hi)
        top = float(np.abs(self.G[inside]).max()) if inside.any() else 0.0
        i, _ = find_peaks(self.G, prominence=prominence * top)
        i = i[(self.r[i] >= r_lo) & (self.r[i] <= r_hi) & (i > 0) & (i < self.G.size - 1)]
        a, b, c = self.G[i - 1], self.G[i], self.G[i + 1]
        return self.r[i] + 0.5 * (a - c) / (a - 2 * b + c) * (self.r[1] - self.r[0])


def _fit_background(k: np.ndarray, I: np.ndarray) -> np.ndarray:
    scale = max(float(np.abs(I).max()), 1e-300)
    y = I / scale
    c0 = np.array([max(y[-1] * 0.5, 0.0), y[0], 0.3 * k[-1], 0.1 * y[0], 1.0 * k[-1]])

    def resid(c: np.ndarray) -> np.ndarray:
        return (background_model(c, k) - y) * k  # weight by k: every period of sin(2πkr) counts alike

    lo = np.array([0, 0, 1e-3, 0, 1e-3])
    res = least_squares(resid, c0, bounds=(lo, np.inf), max_nfev=4000)
    c = res.x
    c[[0, 1, 3]] *= scale
    return c


def pair_distribution(profile: Any, params: PDFParams | Mapping | None = None, *, k: Any = None,
                      **overrides: Any) -> PDFResult:
    """PDF analysis of a radial profile.

    Parameters
    ----------
    profile : (n,) array, or RadialStatistics
        Mean intensity per k bin; a ``RadialStatistics`` gives its mean profile.
    params : PDFParams, optional
    k : (n,) array, optional
        The profile's k axis in 1/Å (taken from a ``RadialStatistics``, which needs a
        reciprocal calibration).
    **overrides
        Fields of :class:`PDFParams`.
    """
    if params is not None and not isinstance(params, (Params, Mapping)):
        # The first form took the k axis second; kept for one release.
        warnings.warn("pair_distribution(profile, k, ...) is deprecated: use "
                      "pair_distribution(profile, params, k=k)", DeprecationWarning, stacklevel=2)
        k, params = params, None
    p = resolve_params(PDFParams, params, overrides)
    if hasattr(profile, "mean_profile") and hasattr(profile, "annular_mean"):
        if profile.k is None or profile.units != "1/Å":
            raise ParameterError("pair_distribution needs the profile in 1/Å: set the cube's calibration "
                                 "reciprocal_step with reciprocal_units='1/Å'", field="k")
        k = profile.k
        profile = profile.mean_profile()
    I = np.asarray(profile, float)
    if k is None:
        raise ParameterError("pair_distribution: give the k axis (1/Å) of the profile", field="k")
    k = np.asarray(k, float)
    if I.shape != k.shape or I.ndim != 1:
        raise ShapeError(f"profile {I.shape} and k {k.shape} must be 1D of equal length")
    ok = np.isfinite(I)
    if not ok.any():
        raise ParameterError("pair_distribution: the profile holds no finite value (is the whole detector "
                             "masked?)", field="profile")
    k_end = float(k[ok].max())
    k_max = k_end if p.k_max is None else p.k_max
    if k_max > k_end + 1e-9 or p.k_min < float(k[ok].min()) - (k[1] - k[0]):
        raise ParameterError(f"pdf: the k range {p.k_min:g}-{k_max:g} 1/Å lies outside the measured profile "
                             f"({float(k[ok].min()):.3g}-{k_end:.3g} 1/Å); choose a range inside the detector",
                             field="k_max")
    use = ok & (k >= p.k_min) & (k <= k_max)
    if use.sum() < 10:
        raise ParameterError(f"pdf: only {int(use.sum())} valid points between k_min and k_max; the mask may hide "
                             "the rings there, or widen the range", field="k_min")
    kk, II = k[use], I[use]
    c = _fit_background(kk, II)
    bg = background_model(c, kk)
    with np.errstate(divide="ignore", invalid="ignore"):
        S = II / bg
    W = np.ones_like(kk)
    if p.k_width > 0:
        t = np.clip((kk - p.k_min) / p.k_width, 0, 1)
        W *= np.sin(0.5 * np.pi * t) ** 2
    if p.damping > 0:
        W *= np.exp(-p.damping * kk * kk)
    if p.lorch:
        W *= np.sinc(kk / k_max)  # numpy's sinc(x) = sin(πx)/(πx)
    F = kk * (S - 1) * W
    r = np.arange(p.r_min, p.r_max + 0.5 * p.r_step, p.r_step)
    T = 8 * np.pi * np.sin(2 * np.pi * np.outer(r, kk)) * np.gradient(kk)[None, :]
    G = T @ F
    if p.r_cut is not None:
        low = (r > 0) & (r < p.r_cut)
        if low.sum() <= p.correction_degree + 1:
            raise ParameterError(f"pdf: r_cut ({p.r_cut:g} Å) leaves too few r samples below it; lower r_min or "
                                 "r_step", field="r_cut")
        # the correction also spans the unmeasured k < k_min, where it restores what the
        # missing forward scattering contributes to the low-r baseline
        step = float(np.median(np.diff(kk)))
        k0 = np.arange(step, kk[0] - 0.5 * step, step)
        ke = np.concatenate([k0, kk])
        Te = 8 * np.pi * np.sin(2 * np.pi * np.outer(r, ke)) * np.gradient(ke)[None, :]
        lorch = np.sinc(ke / k_max) if p.lorch else np.ones_like(ke)
        basis = np.stack([ke * lorch * (ke / k_max) ** j for j in range(p.correction_degree + 1)], axis=1)
        Fe = np.concatenate([np.zeros_like(k0), F])
        Ge = Te @ Fe
        coef = np.linalg.lstsq(Te[low] @ basis, Ge[low] + 4 * np.pi * p.density * r[low], rcond=None)[0]
        corr = basis @ coef
        G = Ge - Te @ corr
        mine = corr[k0.size:]
        with np.errstate(divide="ignore", invalid="ignore"):
            S = S - np.where(kk * W != 0, mine / (kk * W), 0.0)
        F = F - mine
    g = rdf = None
    if p.density is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(r > 0, 1 + G / (4 * np.pi * r * p.density), 0.0)
        rdf = 4 * np.pi * r * r * p.density * g
    return PDFResult(kk, II, bg, S, F, r, G, g, rdf, c, p)
