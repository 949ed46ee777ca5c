"""Phase-contrast 4D-STEM data with exact truth: a thin phase object under an aberrated probe.

The object is a transmission function ``t(r) = exp(i φ(r))`` (the phase-object
approximation, one slice), with ``φ`` taken from any image (scaled to a peak
phase) or from a projected potential ``V_z`` (V·Å) as ``φ = σ V_z`` [1]_. At each
probe position ``r_p`` the exit wave ``ψ(r − r_p) t(r)`` is Fourier transformed to
the detector, ``I(k) = |F[ψ(r − r_p) t(r)](k)|²`` with ``F[f](k) = ∫ f(r) exp(−2πi k·r) dr``.

Sign conventions (tested against independent calculations in
``tests/analysis/test_phase_simulator.py``):

* Probe ``ψ̂(k) = A(k) exp(−iχ(k))`` with ``χ`` of
  :mod:`fourd_widgets.analysis.aberrations`: ``χ = π λ |k|² (C10 + C12 cos 2(φ−φ12))
  + (π/2) λ³ |k|⁴ C30``; ``C10`` equals a Fresnel propagation of the in-focus probe by
  ``+C10`` (propagator ``exp(−iπλz|k|²)``), i.e. defocus ``Δf = −C10``.
* A phase that rises along +x deflects the beam towards +kx: the centre of mass is
  ``k_com = ∇φ / 2π`` (seen through the probe), so electrons bend towards the atoms.
* Scan rotation and flip follow :class:`~fourd_widgets.core.calibration.Calibration`:
  the detector axes are the lab (object) axes, and a scan-frame step ``v`` moves the
  probe by ``R(rotation_deg) S v`` on the object (``S`` swaps x and y when ``flip``).
* Detector pixel ``(i, j)`` sits at ``k = ((i − Qx//2) dk, (j − Qy//2) dk)``.
* Partial spatial coherence: a Gaussian source of rms size ``source_size_A`` blurs
  the data over probe positions (incoherent sum of shifted probes).

References
----------
.. [1] E. J. Kirkland, *Advanced Computing in Electron Microscopy*, 2nd ed. (2010),
   ch. 5-6 (σ, projected potential, transmission function).
.. [2] J. Madsen and T. Susi, Open Research Europe 1, 24 (2021) (abTEM's conventions).

Examples
--------
>>> cube, truth = simulate_phase(scan_shape=(4, 4), detector_shape=(32, 32), progress=False)
>>> cube.shape, round(float(cube.array[0, 0].sum()), 3)
((4, 4, 32, 32), 1.0)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ..analysis.aberrations import Aberrations, probe_fourier
from ..core.calibration import Calibration, electron_wavelength_A
from ..core.datacube import DataCube
from ..core.errors import ParameterError, ShapeError
from .crystal import PRESETS

__all__ = ["PhaseTruth", "simulate_phase", "projected_potential", "interaction_constant", "weak_phase_object",
           "amorphous_phase_object"]

_A0 = 0.529177210903  # Bohr radius, Å
_H2_2PI_M0_E = 47.87801  # h² / (2π m0 e), V·Å² (Kirkland eq. 5.15)
_M0C2_EV = 510998.95


@dataclass(frozen=True, eq=False)
class PhaseTruth:
    """Exact truth of a :func:`simulate_phase` scan.

    Attributes
    ----------
    phase_on_scan : (Rx, Ry) array
        Object phase (rad) at each probe position.
    object_phase : (M, N) array
        The (periodic) object phase as given, rad, pixel ``object_pixel_A``, lab axes.
    object_pixel_A : float
    scan_positions_A : (Rx, Ry, 2) array
        Probe positions on the object (lab frame), Å.
    probe : (Qx, Qy) complex array
        Probe on the detector grid, ``A(k) exp(−iχ(k))``, ``Σ|ψ̂|² = 1``.
    probe_real : (Qx, Qy) complex array
        The probe in real space, centred on pixel (Qx//2, Qy//2), pixel ``window_pixel_A``.
    window_pixel_A : (2,) tuple of float
        Real-space pixel of the simulation window, ``1 / (Q dk)``.
    aberrations : Aberrations
    scan_rotation_deg : float
    flip : bool
    energy_eV, wavelength_A, convergence_semiangle_mrad, real_step_A, reciprocal_step_invA : float
    origin : (2,) tuple of float
    source_size_A : float
    dose : float or None
        Electrons per pattern (None: noise-free intensities summing to ≈ 1).
    """

    phase_on_scan: np.ndarray
    object_phase: np.ndarray
    object_pixel_A: float
    scan_positions_A: np.ndarray
    probe: np.ndarray
    probe_real: np.ndarray
    window_pixel_A: tuple[float, float]
    aberrations: Aberrations
    scan_rotation_deg: float
    flip: bool
    energy_eV: float
    wavelength_A: float
    convergence_semiangle_mrad: float
    real_step_A: float
    reciprocal_step_invA: float
    origin: tuple[float, float]
    source_size_A: float
    dose: float | None


def interaction_constant(energy_eV: float) -> float:
    """Relativistic interaction constant σ in rad / (V·Å) [1]_.

    >>> round(interaction_constant(300e3), 7)
    0.0006526
    """
    lam = electron_wavelength_A(energy_eV)
    return 2 * math.pi / (lam * energy_eV) * (_M0C2_EV + energy_eV) / (2 * _M0C2_EV + energy_eV)


def projected_potential(crystal: str = "SrTiO3", cells: Sequence[int] = (4, 4), *, thickness_A: float | None = None,
                        pixels_per_cell: int = 48, debye_waller_A2: float = 0.5) -> tuple[np.ndarray, float]:
    """Projected potential ``V_z`` (V·Å) of a cubic preset crystal seen along [001].

    Screened-Coulomb (Wentzel) atoms, ``f_e(q) = 2 Z a² / (a0 (1 + (2π q a)²))``,
    ``a = 0.885 a0 Z^(-1/3)``, with a Debye-Waller factor ``exp(−B q²/4)``, summed by
    Fourier synthesis over one unit cell: ``V_z = (h²/2π m0 e) / A_cell Σ_g F(g) e^{2πi g·r}``
    per cell thickness, times ``thickness_A / a``.

    Parameters
    ----------
    crystal : str
        A key of :data:`fourd_widgets.datasets.PRESETS`.
    cells : (2,) ints
        Unit cells along x and y.
    thickness_A : float, optional
        Specimen thickness; default one unit cell.
    pixels_per_cell : int
    debye_waller_A2 : float
        B (Å²).

    Returns
    -------
    V : (cells[0] * pixels_per_cell, cells[1] * pixels_per_cell) array
        V·Å, periodic.
    pixel_A : float

    Examples
    --------
    >>> V, px = projected_potential("SrTiO3", (1, 1), pixels_per_cell=32)
    >>> V.shape, round(px, 4), bool(V.argmax() == 0)   # Sr sits at the cell corner
    ((32, 32), 0.122, True)
    """
    if crystal not in PRESETS:
        raise ParameterError(f"unknown crystal {crystal!r}; use one of {', '.join(PRESETS)}", field="crystal")
    a, atoms = PRESETS[crystal]
    m = int(pixels_per_cell)
    if m < 4:
        raise ParameterError(f"pixels_per_cell must be at least 4, got {pixels_per_cell}", field="pixels_per_cell")
    g = sfft.fftfreq(m, a / m)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    q2 = gx * gx + gy * gy
    F = np.zeros((m, m), dtype=complex)
    for Z, x, y, _z in atoms:
        rad = 0.885 * _A0 * Z ** (-1 / 3)
        fe = 2 * Z * rad ** 2 / (_A0 * (1 + (2 * math.pi * rad) ** 2 * q2))
        F += fe * np.exp(-2j * math.pi * (gx * x * a + gy * y * a))
    F *= np.exp(-debye_waller_A2 * q2 / 4)
    cell = sfft.ifft2(F).real * m * m * _H2_2PI_M0_E / (a * a)
    t = a if thickness_A is None else float(thickness_A)
    V = np.tile(cell * (t / a), tuple(int(c) for c in cells))
    return V, a / m


def weak_phase_object(peak_rad: float = 0.3, crystal: str = "SrTiO3", cells: Sequence[int] = (4, 4),
                      pixels_per_cell: int = 48) -> tuple[np.ndarray, float]:
    """A crystal's projected potential scaled to a peak phase (rad above its minimum).

    >>> phi, px = weak_phase_object(0.2, cells=(1, 1), pixels_per_cell=16)
    >>> round(float(phi.max() - phi.min()), 6)
    0.2
    """
    V, px = projected_potential(crystal, cells, pixels_per_cell=pixels_per_cell)
    V = V - V.min()
    return V * (peak_rad / V.max()), px


def amorphous_phase_object(size_A: float = 64.0, pixel_A: float = 0.2, correlation_A: float = 1.0,
                           peak_rad: float = 0.3, seed: int = 0) -> tuple[np.ndarray, float]:
    """A periodic random phase (Gaussian-filtered white noise) like an amorphous film, peak-to-peak ``peak_rad``.

    Non-periodic at the scale of a scan (no lattice), which is what parallax's
    cross-correlations need.

    >>> phi, px = amorphous_phase_object(12.8, 0.2, 1.0, 0.25)
    >>> phi.shape, round(float(np.ptp(phi)), 6)
    ((64, 64), 0.25)
    """
    n = max(4, int(round(size_A / pixel_A)))
    noise = np.random.default_rng(seed).normal(size=(n, n))
    phi = ndimage.gaussian_filter(noise, correlation_A / pixel_A, mode="wrap")
    phi -= phi.min()
    return phi * (peak_rad / phi.max()), size_A / n


def _scan_matrix(rotation_deg: float, flip: bool) -> np.ndarray:
    """``R(rotation) S``: scan-frame step -> lab (object/detector) frame."""
    t = math.radians(rotation_deg)
    R = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return R[:, ::-1].copy() if flip else R


def simulate_phase(
    phase: np.ndarray | None = None,
    object_pixel_A: float | None = None,
    *,
    potential: np.ndarray | None = None,
    scan_shape: Sequence[int] = (32, 32),
    scan_step_A: float = 0.25,
    scan_origin_A: Sequence[float] = (0.0, 0.0),
    detector_shape: Sequence[int] = (96, 96),
    reciprocal_step_mrad: float = 1.0,
    energy_eV: float = 300e3,
    convergence_semiangle_mrad: float = 20.0,
    aberrations: Aberrations | None = None,
    C10: float = 0.0,
    C12: float = 0.0,
    phi12_deg: float = 0.0,
    C30: float = 0.0,
    scan_rotation_deg: float = 0.0,
    flip: bool = False,
    source_size_A: float = 0.0,
    dose: float | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: Any = None,
) -> tuple[DataCube, PhaseTruth]:
    """Simulate a 4D-STEM scan of a thin phase object with an aberrated probe.

    Parameters
    ----------
    phase : (M, N) array, optional
        Object phase in rad, periodic, pixel ``object_pixel_A``, lab axes (x = axis 0).
        Default: :func:`weak_phase_object` (SrTiO3 [001], 0.3 rad).
    object_pixel_A : float, optional
        Pixel of ``phase`` or ``potential`` (required with either).
    potential : (M, N) array, optional
        Projected potential in V·Å instead of ``phase``; ``φ = σ V``.
    scan_shape : (2,) ints
    scan_step_A : float
    scan_origin_A : (2,) floats
        Where scan position (0, 0) lies on the object.
    detector_shape : (2,) ints
        Even numbers; k = 0 at (Qx//2, Qy//2).
    reciprocal_step_mrad, energy_eV, convergence_semiangle_mrad : float
    aberrations : Aberrations, optional
        Or give ``C10, C12, phi12_deg, C30`` (Å, deg).
    scan_rotation_deg, flip
        Scan frame relative to the detector (Calibration convention).
    source_size_A : float
        Rms size of the (Gaussian) effective source: partial spatial coherence.
    dose : float, optional
        Electrons per pattern: Poisson counts; None gives noise-free intensities.
    seed : int
    workers : int, optional
        FFT threads (default all cores).
    progress : ignored
        Accepted for the calling convention.

    Returns
    -------
    cube : DataCube
        float32 (Rx, Ry, Qx, Qy), calibrated (energy, convergence angle, steps,
        origin, rotation and flip).
    truth : PhaseTruth
    """
    if phase is not None and potential is not None:
        raise ParameterError("give the object as phase= or as potential=, not both", field="potential")
    energy = float(energy_eV)
    lam = electron_wavelength_A(energy)
    if phase is None and potential is None:
        obj, px = weak_phase_object(0.3)
    else:
        if object_pixel_A is None or not object_pixel_A > 0:
            raise ParameterError("object_pixel_A (Å) is needed with phase= or potential=", field="object_pixel_A")
        px = float(object_pixel_A)
        obj = np.asarray(phase if phase is not None else potential, dtype=float)
        if potential is not None:
            obj = obj * interaction_constant(energy)
    if obj.ndim != 2 or min(obj.shape) < 2:
        raise ShapeError(f"the object must be a 2-D image, got shape {obj.shape}")
    Qx, Qy = (int(v) for v in detector_shape)
    if Qx % 2 or Qy % 2 or min(Qx, Qy) < 8:
        raise ShapeError(f"detector_shape must be even and at least 8, got {(Qx, Qy)}")
    Rx, Ry = (int(v) for v in scan_shape)
    ab = aberrations if aberrations is not None else Aberrations(C10, C12, phi12_deg, C30)
    dk = reciprocal_step_mrad * 1e-3 / lam
    dxy = np.array([1.0 / (Qx * dk), 1.0 / (Qy * dk)])
    origin = (float(Qx // 2), float(Qy // 2))
    workers = int(workers or os.cpu_count() or 1)

    # probe positions on the object (lab frame)
    ii, jj = np.meshgrid(np.arange(Rx, dtype=float), np.arange(Ry, dtype=float), indexing="ij")
    M = _scan_matrix(scan_rotation_deg, flip)
    pos = np.stack([ii, jj], -1) @ M.T * float(scan_step_A) + np.asarray(scan_origin_A, float)

    # the object resampled on the window grid over the box the probes visit (no seam to wrap)
    half = np.array([Qx // 2, Qy // 2])
    lo = np.floor(pos.reshape(-1, 2).min(0) / dxy).astype(int) - half - 2
    hi = np.ceil(pos.reshape(-1, 2).max(0) / dxy).astype(int) + half + 2
    gx = np.arange(lo[0], hi[0]) * dxy[0] / px
    gy = np.arange(lo[1], hi[1]) * dxy[1] / px
    coeffs = ndimage.spline_filter(obj, order=3, mode="grid-wrap")
    X, Y = np.meshgrid(gx, gy, indexing="ij")
    box_phase = ndimage.map_coordinates(coeffs, [X, Y], order=3, mode="grid-wrap", prefilter=False)
    trans = np.exp(1j * box_phase).astype(np.complex64)
    on_scan = ndimage.map_coordinates(coeffs, [pos[..., 0] / px, pos[..., 1] / px], order=3,
                                      mode="grid-wrap", prefilter=False)

    probe_k = probe_fourier((Qx, Qy), origin, dk, lam, convergence_semiangle_mrad, ab)
    probe_fft = sfft.ifftshift(probe_k).astype(np.complex64)
    fx = sfft.fftfreq(Qx)  # cycles per window pixel
    fy = sfft.fftfreq(Qy)
    u = pos.reshape(-1, 2) / dxy - lo  # probe centre in box pixels
    n = np.floor(u).astype(int)
    frac = u - n
    out = np.empty((Rx * Ry, Qx, Qy), dtype=np.float32)
    ax = np.arange(Qx) - Qx // 2
    ay = np.arange(Qy) - Qy // 2
    batch = max(1, int(2 ** 22 // (Qx * Qy)))
    for s in range(0, Rx * Ry, batch):
        e = min(s + batch, Rx * Ry)
        # probe centred at window pixel (Q//2 + frac): Fourier shift of the probe
        rx_ = np.exp(-2j * np.pi * fx[None, :] * (Qx // 2 + frac[s:e, 0, None])).astype(np.complex64)
        ry_ = np.exp(-2j * np.pi * fy[None, :] * (Qy // 2 + frac[s:e, 1, None])).astype(np.complex64)
        shifted = sfft.ifft2(probe_fft[None] * rx_[:, :, None] * ry_[:, None, :], workers=workers)
        win = trans[(n[s:e, 0, None] + ax)[:, :, None], (n[s:e, 1, None] + ay)[:, None, :]]
        far = sfft.fft2(shifted * win, workers=workers)
        out[s:e] = sfft.fftshift(far.real ** 2 + far.imag ** 2, axes=(1, 2))
    data = out.reshape(Rx, Ry, Qx, Qy)
    if source_size_A > 0:
        sig = float(source_size_A) / float(scan_step_A)
        data = ndimage.gaussian_filter(data, (sig, sig, 0, 0), mode="nearest")
    if dose is not None:
        if not dose > 0:
            raise ParameterError(f"dose must be a positive number of electrons per pattern, got {dose}", field="dose")
        data = np.random.default_rng(seed).poisson(data.astype(np.float64) * float(dose)).astype(np.float32)

    probe_real = sfft.fftshift(sfft.ifft2(sfft.ifftshift(probe_k)))
    cal = Calibration(real_step=float(scan_step_A), real_units="Å", reciprocal_step=float(reciprocal_step_mrad),
                      reciprocal_units="mrad", energy_eV=energy,
                      convergence_semiangle_mrad=float(convergence_semiangle_mrad),
                      origin=origin, rotation_deg=float(scan_rotation_deg), flip=bool(flip))
    truth = PhaseTruth(
        phase_on_scan=on_scan, object_phase=obj, object_pixel_A=px, scan_positions_A=pos,
        probe=probe_k, probe_real=probe_real, window_pixel_A=(float(dxy[0]), float(dxy[1])), aberrations=ab,
        scan_rotation_deg=float(scan_rotation_deg), flip=bool(flip), energy_eV=energy, wavelength_A=lam,
        convergence_semiangle_mrad=float(convergence_semiangle_mrad), real_step_A=float(scan_step_A),
        reciprocal_step_invA=dk, origin=origin, source_size_A=float(source_size_A),
        dose=None if dose is None else float(dose))
    for a in (truth.phase_on_scan, truth.object_phase, truth.scan_positions_A, truth.probe, truth.probe_real):
        a.setflags(write=False)
    return DataCube(data, cal), truth
