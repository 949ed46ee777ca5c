"""Probe aberrations: the phase error χ(k), its gradient (the parallax shift) and the probe.

Conventions (the same as abTEM's and Krivanek's polar notation [1]_, [2]_)
--------------------------------------------------------------------------
* The probe in the back focal plane is ``ψ̂(k) = A(k) exp(-i χ(k))``, ``A`` the
  condenser aperture (radius ``α/λ``), ``k`` in 1/Å on the detector frame.
* ``χ(k) = π λ |k|² (C10 + C12 cos 2(φ − φ12)) + (π/2) λ³ |k|⁴ C30``, lengths in Å,
  ``φ`` the azimuth of ``k`` counter-clockwise from +kx.
* Free-space (Fresnel) propagation over a distance ``z`` multiplies ``ψ̂`` by
  ``exp(-i π λ z |k|²)`` (waves ``exp(+i(kz − ωt))``). So a probe with ``C10`` is
  the in-focus probe propagated a distance ``C10`` downstream: the crossover lies
  ``C10`` above the specimen (the lens focuses too strongly: overfocus). The defocus
  is ``Δf = −C10`` as in abTEM and Kirkland, whose ``χ = πλk²(½ Cs λ²k² − Δf)`` calls
  ``Δf > 0`` underfocus (Scherzer's, ``C10 = −√(4/3 Cs λ)`` for ``Cs > 0``).
* By stationary phase, the ray through aperture point ``k`` (angle ``λ k``) meets the
  specimen at ``∇χ(k) / 2π`` from the probe's nominal position; hence the
  bright-field image recorded at detector point ``k`` is the in-focus image shifted
  by ``−∇χ(k) / 2π`` (the parallax shift, :func:`parallax_shift`).

References
----------
.. [1] O. L. Krivanek, N. Dellby and A. R. Lupini, "Towards sub-Å electron beams",
   Ultramicroscopy 78, 1-11 (1999).
.. [2] J. Madsen and T. Susi, "The abTEM code: transmission electron microscopy from
   first principles", Open Research Europe 1, 24 (2021).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..core.errors import ParameterError

__all__ = ["Aberrations", "chi", "parallax_shift", "aperture", "probe_fourier", "detector_k"]


@dataclass(frozen=True)
class Aberrations:
    """Coefficients of the probe's phase error, Krivanek notation, lengths in Å.

    Attributes
    ----------
    C10 : float
        Defocus coefficient (Å); the microscope defocus is ``Δf = −C10``.
    C12 : float
        Two-fold astigmatism magnitude (Å, ≥ 0).
    phi12_deg : float
        Azimuth of the astigmatism (deg, counter-clockwise from +kx; defined mod 180).
    C30 : float
        Spherical aberration (Å).

    Examples
    --------
    >>> Aberrations(C10=-100.0).defocus_A
    100.0
    """

    C10: float = 0.0
    C12: float = 0.0
    phi12_deg: float = 0.0
    C30: float = 0.0

    def __post_init__(self) -> None:
        for name in ("C10", "C12", "phi12_deg", "C30"):
            v = getattr(self, name)
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ParameterError(f"aberration {name} must be a number, got {v!r}", field=name) from None
            if not math.isfinite(v):
                raise ParameterError(f"aberration {name} must be finite, got {v!r}", field=name)
            object.__setattr__(self, name, v)
        if self.C12 < 0:  # a negative magnitude is the same astigmatism turned by 90°
            object.__setattr__(self, "C12", -self.C12)
            object.__setattr__(self, "phi12_deg", self.phi12_deg + 90.0)
        object.__setattr__(self, "phi12_deg", (self.phi12_deg + 90.0) % 180.0 - 90.0)

    @property
    def defocus_A(self) -> float:
        """Microscope defocus ``Δf = −C10`` in Å."""
        return -self.C10

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def detector_k(shape: tuple[int, int], origin: Any, step_invA: float) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequency ``(kx, ky)`` (1/Å) of every detector pixel, from the origin.

    >>> kx, ky = detector_k((4, 4), (2, 2), 0.5)
    >>> float(kx[3, 0]), float(ky[0, 0])
    (0.5, -1.0)
    """
    ox, oy = (float(v) for v in origin)
    kx = (np.arange(shape[0], dtype=float)[:, None] - ox) * step_invA
    ky = (np.arange(shape[1], dtype=float)[None, :] - oy) * step_invA
    return np.broadcast_to(kx, shape), np.broadcast_to(ky, shape)


def chi(kx: Any, ky: Any, wavelength_A: float, ab: Aberrations) -> np.ndarray:
    """Phase error ``χ(k)`` in rad (see the module conventions).

    >>> round(float(chi(1.0, 0.0, 0.02, Aberrations(C10=100.0))), 6)  # π λ k² C10
    6.283185
    """
    kx = np.asarray(kx, dtype=float)
    ky = np.asarray(ky, dtype=float)
    lam = float(wavelength_A)
    t = math.radians(2 * ab.phi12_deg)
    k2 = kx * kx + ky * ky
    # |k|² cos 2(φ − φ12) = (kx² − ky²) cos 2φ12 + 2 kx ky sin 2φ12
    astig = (kx * kx - ky * ky) * math.cos(t) + 2 * kx * ky * math.sin(t)
    return math.pi * lam * (ab.C10 * k2 + ab.C12 * astig) + 0.5 * math.pi * lam ** 3 * ab.C30 * k2 * k2


def parallax_shift(kx: Any, ky: Any, wavelength_A: float, ab: Aberrations) -> np.ndarray:
    """Shift (Å, detector frame) of the bright-field image at detector point ``k``: ``−∇χ(k) / 2π``.

    Returns an array ``(..., 2)``.

    >>> np.round(parallax_shift(1.0, 0.0, 0.02, Aberrations(C10=100.0)), 6).tolist()
    [-2.0, -0.0]
    """
    kx = np.asarray(kx, dtype=float)
    ky = np.asarray(ky, dtype=float)
    lam = float(wavelength_A)
    t = math.radians(2 * ab.phi12_deg)
    c, s = math.cos(t), math.sin(t)
    k2 = kx * kx + ky * ky
    gx = lam * (ab.C10 * kx + ab.C12 * (c * kx + s * ky)) + lam ** 3 * ab.C30 * k2 * kx
    gy = lam * (ab.C10 * ky + ab.C12 * (s * kx - c * ky)) + lam ** 3 * ab.C30 * k2 * ky
    return -np.stack([gx, gy], axis=-1)


def aperture(kx: Any, ky: Any, k_alpha: float, step_invA: float) -> np.ndarray:
    """Condenser aperture ``A(k)``: 1 inside ``|k| < k_alpha``, with a one-pixel linear edge (anti-aliased).

    >>> aperture(np.array([0.0, 1.0, 2.0]), 0.0, 1.0, 0.5).tolist()
    [1.0, 0.5, 0.0]
    """
    k = np.hypot(np.asarray(kx, float), np.asarray(ky, float))
    return np.clip((k_alpha - k) / step_invA + 0.5, 0.0, 1.0)


def probe_fourier(shape: tuple[int, int], origin: Any, step_invA: float, wavelength_A: float,
                  convergence_semiangle_mrad: float, ab: Aberrations) -> np.ndarray:
    """The probe ``A(k) exp(-iχ(k))`` on the detector grid, normalised to ``Σ|ψ̂|² = 1``.

    Parameters
    ----------
    shape : (2,) tuple of int
        Detector shape (Qx, Qy).
    origin : (2,) tuple of float
        Pixel of k = 0.
    step_invA : float
        Detector pixel, 1/Å.
    wavelength_A, convergence_semiangle_mrad : float
    ab : Aberrations

    Returns
    -------
    (Qx, Qy) complex128 array
    """
    kx, ky = detector_k(shape, origin, step_invA)
    k_alpha = convergence_semiangle_mrad * 1e-3 / wavelength_A
    a = aperture(kx, ky, k_alpha, step_invA)
    psi = a * np.exp(-1j * chi(kx, ky, wavelength_A, ab))
    return psi / math.sqrt(float(np.sum(a * a)))
