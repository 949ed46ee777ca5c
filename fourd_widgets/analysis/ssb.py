"""Single side band (SSB) ptychography of a weak-phase object, with aberration correction.

With ``G(k, Q) = Σ_R I(k, R) exp(−2πi Q·R)`` (the Fourier transform of the data over
the probe positions) and a weak-phase object ``t = 1 + iφ``, the probe
``ψ̂(k) = A(k) exp(−iχ(k))`` gives [1]_, [2]_

    G(k, Q) = i φ̂(Q) [ψ̂*(k) ψ̂(k − Q) − ψ̂(k) ψ̂*(k + Q)].

Where only ``k − Q`` (only ``k + Q``) lies in the aperture besides ``k`` — the two
"trotters" of the double overlap — one term remains, so

    φ̂(Q) = −i e^{−i(χ(k) − χ(k−Q))} G / A²   (first trotter)
          = +i e^{+i(χ(k) − χ(k+Q))} G / A²   (second trotter),

averaged over the trotter pixels; ``A²`` is the mean bright-field intensity per pixel
(``G(k, 0)`` over the number of positions). We solve the two cases together, per ``Q``,
by least squares over all bright-field pixels with the model
``m(k) = a(k) a(k−Q) e^{i(χ(k)−χ(k−Q))} − a(k) a(k+Q) e^{−i(χ(k)−χ(k+Q))}``, ``a`` the
aperture with a one-pixel soft edge: ``φ̂ = −i Σ m* G / (A² Σ |m|²)``. This weights the
thin trotters of low frequencies by their true overlap, and needs no trotter masks.
Frequencies ``Q`` are taken to the detector frame with the calibrated scan rotation and flip.
``φ̂(0)`` is unknown (zero mean phase).

Speed: :func:`ssb_prepare` runs the one pass over the data (the bright-field pixels
and the centre of mass at every position) and the FFT over the scan, and returns
:class:`SSBData`; :func:`ssb` on that cached data is pure arithmetic over
(frequencies x bright-field pixels), fast enough to follow an aberration slider.

References
----------
.. [1] J. M. Rodenburg, B. C. McCallum and P. D. Nellist, Ultramicroscopy 48, 304-314 (1993).
.. [2] T. J. Pennycook et al., Ultramicroscopy 151, 160-167 (2015); H. Yang et al.,
   Ultramicroscopy 151, 232-239 (2015) (SSB with aberration correction; also LiberTEM's
   ptychography40 live SSB).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.fft as sfft

from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.run import run_job
from .aberrations import Aberrations, chi, detector_k
from .calibration import scan_frame_matrix
from .parallax import BrightFieldJob
from .phase_common import bright_field, read_fields, resolve_rotation, step_engine, write_fields

__all__ = ["SSBParams", "SSBData", "SSBResult", "ssb", "ssb_prepare", "ssb_step"]


@dataclass(frozen=True, eq=False)
class SSBParams(Params):
    """Record of an SSB reconstruction: the aberrations to correct and the scan rotation."""

    step = "ssb"

    C10: float = param(0.0, units="Å", doc="defocus coefficient of the probe (Δf = −C10)")
    C12: float = param(0.0, units="Å", ge=0, doc="two-fold astigmatism")
    phi12_deg: float = param(0.0, units="deg", doc="azimuth of the astigmatism")
    C30: float = param(0.0, units="Å", doc="spherical aberration")
    rotation: Literal["calibration", "curl", "manual"] = param("calibration", doc="scan rotation source, as in DPC")
    rotation_deg: float = param(0.0, units="deg", doc="'manual': rotation from scan to detector")
    flip: bool = param(False, doc="'manual': detector axes swapped relative to the scan")
    rotation_tolerance_deg: float = param(10.0, gt=0, le=90, units="deg", doc="as in DPC")
    min_trotter_px: float = param(3.0, gt=0, doc="frequencies whose double overlap holds fewer (weighted) pixels "
                                  "are left out")
    batch: int = param(256, ge=1, doc="frequencies per vectorised batch (memory ~ batch x bright-field pixels)")


@dataclass(frozen=True, eq=False)
class SSBData:
    """What SSB needs from the data, cached for repeated reconstructions.

    Attributes
    ----------
    G : (N, Rx, Ry // 2 + 1) complex array
        ``G(k, Q)`` of the N bright-field pixels (rfft over the scan).
    k : (N, 2) array
        Detector-frame spatial frequency of each pixel, 1/Å.
    intensity : float
        Mean bright-field intensity per pixel and position (``A²``).
    com : (Rx, Ry, 2) array
        Centre of mass from the origin, px (for the rotation check).
    scan_shape : (2,) tuple of int
    calibration : Calibration
    """

    G: np.ndarray
    k: np.ndarray
    intensity: float
    com: np.ndarray
    scan_shape: tuple[int, int]
    calibration: Calibration


@dataclass(frozen=True, eq=False)
class SSBResult:
    """SSB phase.

    Attributes
    ----------
    phase : (Rx, Ry) array
        rad, zero mean.
    spectrum : (Rx, Ry // 2 + 1) complex array
        ``φ̂(Q)`` (rfft over the scan).
    aberrations : Aberrations
    rotation_deg : float
    flip : bool
    params : SSBParams
    """

    phase: np.ndarray
    spectrum: np.ndarray
    aberrations: Aberrations
    rotation_deg: float
    flip: bool
    params: SSBParams

    def to_h5(self, group: Any) -> None:
        """Write the phase, its spectrum, the aberrations, the rotation and the record into an HDF5 group."""
        write_fields(group, self)

    @classmethod
    def from_h5(cls, group: Any) -> "SSBResult":
        """Read a result written by :meth:`to_h5`."""
        return read_fields(cls, group, objects={"aberrations": Aberrations})


def _check_sampling(cal: Calibration, k_alpha: float, scan_shape: tuple[int, int]) -> float:
    step = cal.real_step_in("Å")
    limit = 1.0 / (2.0 * k_alpha)
    if step > limit:
        raise ShapeError(
            f"SSB: the scan step {step:.3g} Å is too coarse for a {cal.convergence_semiangle_mrad:g} mrad probe: "
            f"neighbouring probes (diameter about 1/k_alpha = {1 / k_alpha:.2f} Å) must overlap, so SSB needs steps "
            f"of at most {limit:.2f} Å. Scan with a finer step (or bin the scan less); parallax/tcBF and DPC work "
            "with coarser steps.")
    if min(scan_shape) < 4:
        raise ShapeError(f"SSB needs a scan of at least 4x4 positions, got {scan_shape}")
    return step


def ssb_prepare(cube: DataCube, *, progress: Any = None, cancel: Any = None, workers: int | None = None,
                scheduler: Any = None, chunk_bytes: int | None = None) -> SSBData:
    """One pass over ``cube``: bright-field pixels and centre of mass per position, then ``G(k, Q)``.

    Needs energy, convergence semi-angle, detector and scan steps and the origin;
    refuses a disk that overhangs the detector and a scan too coarse for SSB.
    """
    cal = cube.calibration
    Qx, Qy = cube.detector_shape
    bf = bright_field(cal, (Qx, Qy), "SSB")
    _check_sampling(cal, bf.k_alpha, cube.scan_shape)
    kx, ky = detector_k((Qx, Qy), bf.origin, bf.step_invA)
    inside = np.flatnonzero((np.hypot(kx, ky) <= bf.k_alpha).ravel())
    ii = np.arange(Qx, dtype=float)[:, None] * np.ones((1, Qy))
    jj = np.ones((Qx, 1)) * np.arange(Qy, dtype=float)[None, :]
    moments = np.stack([np.ones(Qx * Qy), ii.ravel(), jj.ravel()], -1)
    stack = run_job(cube, BrightFieldJob(inside, np.arange(len(inside)), moments), progress=progress,
                    cancel=cancel, workers=workers, scheduler=scheduler, chunk_bytes=chunk_bytes)
    n = len(inside)
    mom = stack[..., n:].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        com = mom[..., 1:] / mom[..., :1] - np.asarray(bf.origin)
    G = sfft.rfft2(np.moveaxis(stack[..., :n], -1, 0), axes=(1, 2), workers=workers).astype(np.complex64)
    n_pos = cube.scan_shape[0] * cube.scan_shape[1]
    intensity = float(np.median(G[:, 0, 0].real)) / n_pos
    k = np.stack([kx.ravel()[inside], ky.ravel()[inside]], -1)
    return SSBData(G=G, k=k, intensity=intensity, com=com, scan_shape=tuple(cube.scan_shape), calibration=cal)


def ssb(data: DataCube | SSBData, params: SSBParams | None = None, *, progress: Any = None, cancel: Any = None,
        workers: int | None = None, scheduler: Any = None, chunk_bytes: int | None = None,
        **overrides: Any) -> SSBResult:
    """Weak-phase SSB ptychography with aberration correction.

    Parameters
    ----------
    data : DataCube or SSBData
        A cube (one pass through :func:`ssb_prepare`) or its cached :class:`SSBData`.
    params : SSBParams, optional
    progress, cancel, workers, scheduler, chunk_bytes
        Engine options for the pass over a cube; ``workers`` also sets FFT threads.
    **overrides
        Field overrides of ``params``.

    Returns
    -------
    SSBResult
    """
    p = params if params is not None else SSBParams()
    if not isinstance(p, SSBParams):
        raise ParameterError(f"params must be SSBParams, got {type(p).__name__}", field="params")
    if overrides:
        p = p.replace(**overrides)
    if isinstance(data, DataCube):
        data = ssb_prepare(data, progress=progress, cancel=cancel, workers=workers, scheduler=scheduler,
                           chunk_bytes=chunk_bytes)
    elif not isinstance(data, SSBData):
        raise ParameterError(f"ssb needs a DataCube or SSBData, got {type(data).__name__}", field="data")
    cal = data.calibration
    lam = cal.wavelength_A
    k_alpha = cal.convergence_semiangle_mrad * 1e-3 / lam
    step = _check_sampling(cal, k_alpha, data.scan_shape)
    rot, flip = resolve_rotation(data.com, cal, p.rotation, p.rotation_deg, p.flip, p.rotation_tolerance_deg, "SSB")
    ab = Aberrations(p.C10, p.C12, p.phi12_deg, p.C30)
    Rx, Ry = data.scan_shape
    # scan-frame frequencies (1/Å) of the rfft grid, taken to the detector frame: q_det = (S R(-θ))^T q_scan
    qx = sfft.fftfreq(Rx, step)[:, None] * np.ones((1, Ry // 2 + 1))
    qy = np.ones((Rx, 1)) * sfft.rfftfreq(Ry, step)[None, :]
    q = (np.stack([qx.ravel(), qy.ravel()], -1)) @ scan_frame_matrix(rot, flip)
    k = data.k
    chi_k = chi(k[:, 0], k[:, 1], lam, ab).astype(np.float32)
    dk = cal.reciprocal_step_in("1/Å")
    kx, ky = (k[:, 0].astype(np.float32), k[:, 1].astype(np.float32))

    def amp(ax: np.ndarray, ay: np.ndarray) -> np.ndarray:  # aperture amplitude, one-pixel soft edge
        return np.clip((k_alpha - np.hypot(ax, ay)) / dk + 0.5, 0.0, 1.0)

    a_k = amp(kx, ky)
    G = data.G.reshape(len(k), -1)
    out = np.zeros(len(q), dtype=complex)
    for s in range(1, len(q), p.batch):  # Q = 0 stays 0
        e = min(s + p.batch, len(q))
        Qx = q[s:e, 0, None].astype(np.float32)
        Qy = q[s:e, 1, None].astype(np.float32)
        # model of G(k, Q) / (i φ̂(Q) A²): both side bands, soft aperture edges included (float32: the
        # phases stay well below the 1e-3 rad float32 resolution matters at)
        mx, my = kx - Qx, ky - Qy
        px_, py_ = kx + Qx, ky + Qy
        am = a_k * amp(mx, my)
        ap = a_k * amp(px_, py_)
        dm = chi_k - chi(mx, my, lam, ab).astype(np.float32)
        dp = chi_k - chi(px_, py_, lam, ab).astype(np.float32)
        m_re = am * np.cos(dm) - ap * np.cos(dp)
        m_im = am * np.sin(dm) + ap * np.sin(dp)
        w = np.sum(m_re * m_re + m_im * m_im, axis=1, dtype=np.float64)
        g = G[:, s:e]
        # Σ conj(m) G over pixels
        acc = (np.einsum("qn,nq->q", m_re, g.real) + np.einsum("qn,nq->q", m_im, g.imag)
               + 1j * (np.einsum("qn,nq->q", m_re, g.imag) - np.einsum("qn,nq->q", m_im, g.real)))
        # least squares over the pixels: φ̂ = −i Σ conj(m) G / (A² Σ|m|²)
        ok = w >= p.min_trotter_px
        out[s:e] = np.where(ok, -1j * acc / np.where(ok, w, 1.0) / data.intensity, 0)
    spectrum = out.reshape(Rx, Ry // 2 + 1)
    phase = sfft.irfft2(spectrum, s=(Rx, Ry), workers=workers)
    phase -= phase.mean()
    for a in (phase, spectrum):
        a.setflags(write=False)
    return SSBResult(phase=phase, spectrum=spectrum, aberrations=ab, rotation_deg=rot, flip=flip, params=p)


def ssb_step(cube: Any, params: SSBParams, context: Any) -> SSBResult:
    """Recipe adapter: :func:`ssb` with the run's engine options."""
    return ssb(cube, params, **step_engine(context))
