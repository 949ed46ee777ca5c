"""DPC and iDPC: centre-of-mass shifts and their Fourier integration to a phase in radians.

For a thin specimen the centre of mass of each pattern is the phase gradient seen
through the probe intensity: ``k_com = (1/2π) |P|² ⊛ ∇φ`` (``k`` in 1/Å, ``φ`` in rad;
a phase that rises along +x deflects the beam to +kx) [1]_. So the gradient in rad
per scan pixel is ``g = 2π k_com × scan step``, after taking ``k_com`` from the
detector frame to the scan frame with the calibrated rotation and flip
(:func:`~fourd_widgets.analysis.calibration.scan_frame_matrix`).

Integration is one least-squares solve in Fourier space,
``φ̂(q) = (qx ĝx + qy ĝy) / (2πi |q|²)``, on the scan extended by mirror images
(no edge artefacts: the extended gradient field is periodic and consistent), or
taken as periodic, or zero-padded (py4DSTEM's choice). The mirror-extended solve is
computed without building the extension: the mirror images make the transforms
of the ``2Rx x 2Ry`` grid cosine and sine transforms of the scan itself, so four
half-size real transforms give the same phase (to rounding) in less time. Optional Butterworth
high-pass and low-pass filters act on ``φ̂`` [2]_. Iterative integration is
:mod:`.phase_dpc_iterative`.

References
----------
.. [1] I. Lazić, E. G. T. Bosch and S. Lazar, Ultramicroscopy 160, 265-280 (2016).
.. [2] B. H. Savitzky et al., Microsc. Microanal. 27, 712-743 (2021) (py4DSTEM DPC).

Examples
--------
>>> x, y = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")
>>> phi = np.exp(-((x - 15) ** 2 + (y - 17) ** 2) / 20)
>>> g = np.stack(np.gradient(phi), -1)
>>> got = integrate_gradient(g)
>>> bool(np.abs((got - got.mean()) - (phi - phi.mean())).max() < 0.03)  # central differences
True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import scipy.fft as sfft

from ..core.errors import ParameterError
from ..core.params import Params, param
from .aberrations import detector_k
from .calibration import scan_frame_matrix
from .phase_common import bright_field, center_of_mass, read_fields, resolve_rotation, step_engine, write_fields

__all__ = ["DPCParams", "DPCResult", "dpc", "dpc_step", "dpc_from_com", "integrate_gradient", "butterworth", "probe_transfer"]


@dataclass(frozen=True, eq=False)
class DPCParams(Params):
    """Record of a DPC / iDPC reconstruction (centre of mass, rotation, FFT integration, filters)."""

    step = "dpc"

    detector: Literal["all", "bright_field"] = param(
        "all", doc="pixels in the centre of mass: the whole detector, or the bright-field disk only")
    rotation: Literal["calibration", "curl", "manual"] = param(
        "calibration", doc="scan rotation and flip: the calibration's (refused when the CoM curl contradicts it), "
        "measured here by minimising the curl, or rotation_deg and flip below")
    rotation_deg: float = param(0.0, units="deg", doc="'manual': rotation from scan to detector (Calibration sense)")
    flip: bool = param(False, doc="'manual': detector axes swapped relative to the scan")
    rotation_tolerance_deg: float = param(
        10.0, units="deg", gt=0, le=90, doc="'calibration': largest disagreement with the curl minimum accepted")
    boundary: Literal["mirror", "periodic", "zeros"] = param(
        "mirror", doc="how the scan is extended for the FFT: mirror images, periodic, or zero padding")
    padding: float = param(2.0, ge=1, le=4, doc="'zeros': FFT grid this many times the scan")
    q_highpass: float | None = param(None, units="1/Å", gt=0, doc="Butterworth high-pass cut-off; None: none")
    q_lowpass: float | None = param(None, units="1/Å", gt=0, doc="Butterworth low-pass cut-off; None: none")
    butterworth_order: float = param(2.0, gt=0, le=16, doc="order n of the Butterworth filters")
    probe_deconvolution: float | None = param(
        None, gt=0, le=10, doc="Wiener constant ε to undo the probe's blur (iDPC sees |P|² ⊛ φ; its transfer "
        "T(q) is the autocorrelation of the in-focus aperture of the calibrated convergence angle): "
        "φ̂ T / (T² + ε); None: no deconvolution")


@dataclass(frozen=True, eq=False)
class DPCResult:
    """DPC and iDPC images.

    Attributes
    ----------
    phase : (Rx, Ry) array
        iDPC phase, rad, zero mean.
    com : (Rx, Ry, 2) array
        Centre of mass in the scan frame, 1/Å (= ∇φ / 2π under the probe).
    com_detector : (Rx, Ry, 2) array
        Centre of mass in the detector frame from the calibrated origin, px.
    rotation_deg : float
    flip : bool
        The scan rotation and flip used.
    params : DPCParams
    """

    phase: np.ndarray
    com: np.ndarray
    com_detector: np.ndarray
    rotation_deg: float
    flip: bool
    params: DPCParams

    def to_h5(self, group: Any) -> None:
        """Write the images, the rotation used and the record into an HDF5 group (results files)."""
        write_fields(group, self)

    @classmethod
    def from_h5(cls, group: Any) -> "DPCResult":
        """Read a result written by :meth:`to_h5`."""
        return read_fields(cls, group)


def butterworth(q: np.ndarray, q_highpass: float | None, q_lowpass: float | None, order: float) -> np.ndarray:
    """Butterworth filter ``H(q)`` (1 where nothing is cut).

    >>> np.round(butterworth(np.array([0.0, 1.0, 10.0]), 1.0, None, 2), 3).tolist()
    [0.0, 0.5, 1.0]
    """
    h = np.ones_like(q, dtype=float)
    with np.errstate(divide="ignore", over="ignore"):
        if q_highpass is not None:
            r = (q / q_highpass) ** (2 * order)
            h *= r / (1 + r)
        if q_lowpass is not None:
            h *= 1 / (1 + (q / q_lowpass) ** (2 * order))
    return h


def probe_transfer(q: np.ndarray, k_alpha: float) -> np.ndarray:
    """Transfer ``T(q)`` of iDPC for an in-focus probe: the normalised autocorrelation of a disk of radius ``k_alpha``.

    >>> np.round(probe_transfer(np.array([0.0, 1.0, 2.0]), 1.0), 4).tolist()
    [1.0, 0.391, 0.0]
    """
    u = np.clip(np.asarray(q, float) / (2 * k_alpha), 0.0, 1.0)
    return (2 / math.pi) * (np.arccos(u) - u * np.sqrt(1 - u * u))


def _extend(g: np.ndarray, boundary: str, padding: float) -> np.ndarray:
    """The gradient ``(Rx, Ry, 2)`` as components first, ``(2, Nx, Ny)``: as it is ('periodic') or zero-padded."""
    Rx, Ry = g.shape[:2]
    if boundary == "periodic":
        return np.ascontiguousarray(np.moveaxis(g, -1, 0))
    shape = tuple(sfft.next_fast_len(max(n, math.ceil(padding * n)), real=True) for n in (Rx, Ry))
    out = np.zeros((2,) + shape)
    out[:, :Rx, :Ry] = np.moveaxis(g, -1, 0)
    return out


@functools.lru_cache(maxsize=8)
def _mirror_solver(Rx: int, Ry: int) -> tuple[np.ndarray, ...]:
    """``(qx, qy, ax, ay, sign)`` of the mirror-extended ``2Rx x 2Ry`` grid, frequencies ``0..Rx`` and ``0..Ry``.

    ``ax = -qx / (2π |q|²)`` (``qx = -1/2`` at ``Rx``, as ``fftfreq`` gives), ``sign = (-1)^n``; cached by shape.
    """
    qx = np.arange(Rx + 1) / (2.0 * Rx)
    qx[Rx] = -0.5
    qy = np.arange(Ry + 1) / (2.0 * Ry)
    qx, qy = qx[:, None], qy[None, :]
    q2 = qx * qx + qy * qy
    q2[0, 0] = 1.0
    ax = -qx / (2 * math.pi * q2)
    ay = -qy / (2 * math.pi * q2)
    ax[0, 0] = ay[0, 0] = 0.0
    sign = (-1.0) ** np.arange(Rx)
    out = (qx, qy, ax, ay, sign)
    for v in out:
        v.setflags(write=False)
    return out


def _integrate_mirror(g: np.ndarray, transfer: Callable[[np.ndarray, np.ndarray], np.ndarray | None]) -> np.ndarray:
    """The mirror-extended Fourier solve of :func:`integrate_gradient`, by half-size cosine and sine transforms.

    On the ``2Rx``-periodic mirror image a sequence even about ``-1/2`` has the DFT
    ``e^{iπk/2Rx} C(k)`` and an odd one ``-i e^{iπk/2Rx} S(k)``, with ``C`` and ``S`` the
    type-II cosine and sine transforms of the scan's own ``Rx`` samples (``S(k)`` for
    ``k = 1..Rx``). ``∂xφ`` is odd in x and even in y, ``∂yφ`` the reverse, so
    ``φ̂ = e^{iπk/2Rx} e^{iπl/2Ry} R(k, l)`` with the real
    ``R = -(qx S_x C_y[gx] + qy C_x S_y[gy]) / (2π |q|²)``, even in ``k`` and ``l``: the
    inverse is a type-III cosine transform in each axis. One row is not even: the x
    Nyquist frequency, where the FFT solution keeps ``R(Rx, l)`` (``qx = -1/2``); the
    inverse real FFT turns it into ``-(-1)^n`` times a type-III sine transform of that
    row, added here so the result equals the extended FFT's to rounding (the y
    Nyquist column drops out of the real inverse, and does here).

    ``transfer(qx, qy)``: the filters' real factor on the ``(Rx + 1, Ry)`` grid, or None.
    """
    Rx, Ry = g.shape[:2]
    qx, qy, ax, ay, sign = _mirror_solver(Rx, Ry)
    gc = np.moveaxis(g, -1, 0)
    Sx_Cy = sfft.dst(sfft.dct(gc[0], 2, axis=1), 2, axis=0, overwrite_x=True)  # S_x(k + 1) C_y(l)
    Cx_Sy = sfft.dct(sfft.dst(gc[1], 2, axis=1), 2, axis=0, overwrite_x=True)  # C_x(k) S_y(l + 1)
    R = np.zeros((Rx + 1, Ry))  # k = 0..Rx (S_x(0) = 0, C_x(Rx) = 0), l = 0..Ry-1 (C_y(Ry) = 0)
    R[1:] = ax[1:, :Ry] * Sx_Cy
    R[:Rx, 1:] += ay[:Rx, 1:Ry] * Cx_Sy[:, :Ry - 1]
    h = transfer(qx, qy[:, :Ry])
    if h is not None:
        R *= h
    nyquist = np.zeros(Ry)  # R(Rx, l) for l = 1..Ry-1, as a type-III sine transform's input
    nyquist[:Ry - 1] = R[Rx, 1:]
    phi = sfft.dctn(R[:Rx], 3, overwrite_x=True)
    phi -= sign[:, None] * sfft.dst(nyquist, 3, overwrite_x=True)[None, :]
    phi -= phi.mean()
    phi *= 1.0 / (4 * Rx * Ry)
    return phi


@functools.lru_cache(maxsize=8)
def _fourier_solver(Nx: int, Ny: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(qx, qy, ax, ay)`` of an ``Nx x Ny`` grid (rfft2 half plane): ``φ̂ = ax ĝx + ay ĝy``, ``φ̂(0) = 0``.

    ``ax = qx / (2πi |q|²)``; cached by shape (a slider preview solves the same grid again and again).
    """
    qx = sfft.fftfreq(Nx)[:, None]
    qy = sfft.rfftfreq(Ny)[None, :]
    q2 = qx * qx + qy * qy
    q2[0, 0] = 1.0
    ax = qx / (2j * math.pi * q2)
    ay = qy / (2j * math.pi * q2)
    ax[0, 0] = ay[0, 0] = 0.0
    for v in (qx, qy, ax, ay):
        v.setflags(write=False)
    return qx, qy, ax, ay


def integrate_gradient(gradient: np.ndarray, *, step_A: float = 1.0, boundary: str = "mirror", padding: float = 2.0,
                       q_highpass: float | None = None, q_lowpass: float | None = None, order: float = 2.0,
                       deconvolve: Callable[[np.ndarray], np.ndarray] | None = None, epsilon: float = 0.01,
                       workers: int | None = None) -> np.ndarray:
    """The phase whose gradient best matches ``gradient`` (least squares, Fourier space).

    Parameters
    ----------
    gradient : (Rx, Ry, 2) array
        ``(∂φ/∂x, ∂φ/∂y)`` per scan pixel; non-finite values count as 0.
    step_A : float
        Scan step, for the filter cut-offs in 1/Å.
    boundary : {'mirror', 'periodic', 'zeros'}
    padding : float
        For 'zeros'.
    q_highpass, q_lowpass : float, optional
        Butterworth cut-offs, 1/Å.
    order : float
    deconvolve : callable, optional
        ``T(q)`` of the blur to undo, ``q`` ``(..., 2)`` in 1/Å (scan frame): Wiener
        deconvolution ``φ̂ T / (T² + epsilon)``.
    epsilon : float
    workers : int, optional
        FFT threads.

    Returns
    -------
    (Rx, Ry) array
        Zero-mean phase, in the units of ``gradient`` × pixel.
    """
    g = np.asarray(gradient, dtype=np.float64)
    if not np.isfinite(g).all():
        g = np.nan_to_num(g)

    def transfer(qx: np.ndarray, qy: np.ndarray) -> np.ndarray | None:
        h = None
        if q_highpass is not None or q_lowpass is not None:
            h = butterworth(np.sqrt(qx * qx + qy * qy) / step_A, q_highpass, q_lowpass, order)
        if deconvolve is not None:
            T = deconvolve(np.stack(np.broadcast_arrays(qx / step_A, qy / step_A), -1))
            h = T / (T * T + epsilon) if h is None else h * (T / (T * T + epsilon))
        return h

    if boundary not in ("periodic", "zeros"):  # 'mirror'
        return _integrate_mirror(g, transfer)
    Rx, Ry = g.shape[:2]
    e = _extend(g, boundary, padding)
    Nx, Ny = e.shape[1:]
    qx, qy, ax, ay = _fourier_solver(Nx, Ny)
    f = sfft.rfft2(e, workers=workers)
    spec = f[0] * ax
    spec += f[1] * ay
    h = transfer(qx, qy)
    if h is not None:
        spec *= h
    phi = sfft.irfft2(spec, s=(Nx, Ny), workers=workers)[:Rx, :Ry]
    return phi - phi.mean()


@functools.lru_cache(maxsize=1)
def _default_params() -> DPCParams:
    # built once: a record is immutable, and validating one costs about 0.3 ms, a few % of a DPC call
    return DPCParams()


def dpc(cube: Any, params: DPCParams | None = None, *, progress: Any = None, cancel: Any = None,
        workers: int | None = None, scheduler: Any = None, chunk_bytes: int | None = None,
        **overrides: Any) -> DPCResult:
    """DPC (centre-of-mass shifts) and iDPC (their integral, the phase in rad) of a cube.

    Parameters
    ----------
    cube : DataCube
        Needs ``real_step``, ``reciprocal_step``, ``energy_eV`` (for mrad steps) and an
        origin (or origin map: the descan is removed per position); the rotation and
        flip as ``params.rotation`` says; ``convergence_semiangle_mrad`` for the
        bright-field detector.
    params : DPCParams, optional
    progress, cancel, workers, scheduler, chunk_bytes
        Engine options (:func:`fourd_widgets.engine.run_job`); ``workers`` also sets FFT threads.
    **overrides
        Field overrides of ``params``.

    Returns
    -------
    DPCResult
    """
    p = params if params is not None else _default_params()
    if not isinstance(p, DPCParams):
        raise ParameterError(f"params must be DPCParams, got {type(p).__name__}", field="params")
    if overrides:
        p = p.replace(**overrides)
    cal = cube.calibration
    cal.real_step_in("Å")  # a missing scan step is refused before the pass
    dk = cal.reciprocal_step_in("1/Å")
    Qx, Qy = cube.detector_shape
    if p.detector == "bright_field":
        bf = bright_field(cal, (Qx, Qy), "DPC on the bright-field disk")
        kx, ky = detector_k((Qx, Qy), bf.origin, dk)
        weights = (np.hypot(kx, ky) <= bf.k_alpha).astype(float)
    else:
        weights = np.ones((Qx, Qy))
    com_px = center_of_mass(cube, weights, progress=progress, cancel=cancel, workers=workers, scheduler=scheduler,
                            chunk_bytes=chunk_bytes)
    return dpc_from_com(com_px, cal, (Qx, Qy), p, workers=workers)


def dpc_from_com(com_px: np.ndarray, cal: Any, detector_shape: tuple[int, int], params: DPCParams, *,
                 workers: int | None = None) -> DPCResult:
    """DPC and iDPC from a measured centre of mass (no pass over the data: what a slider preview runs).

    Parameters
    ----------
    com_px : (Rx, Ry, 2) array
        Centre of mass from the calibrated origin, detector px (:attr:`DPCResult.com_detector`).
    cal : Calibration
    detector_shape : (2,) tuple of int
    params : DPCParams
        Its ``detector`` field must be the one ``com_px`` was measured with.
    workers : int, optional
        FFT threads.

    Returns
    -------
    DPCResult
    """
    p = params
    step_A = cal.real_step_in("Å")
    dk = cal.reciprocal_step_in("1/Å")
    com_px = np.array(com_px, dtype=np.float64)
    rot, flip = resolve_rotation(com_px, cal, p.rotation, p.rotation_deg, p.flip, p.rotation_tolerance_deg, "DPC")
    com = com_px @ scan_frame_matrix(rot, flip).T * dk
    deconvolve = None
    if p.probe_deconvolution is not None:
        bf = bright_field(cal, detector_shape, "DPC's probe deconvolution")

        def deconvolve(q: np.ndarray) -> np.ndarray:
            return probe_transfer(np.hypot(q[..., 0], q[..., 1]), bf.k_alpha)
    phase = integrate_gradient(2 * math.pi * step_A * com, step_A=step_A, boundary=p.boundary, padding=p.padding,
                               q_highpass=p.q_highpass, q_lowpass=p.q_lowpass, order=p.butterworth_order,
                               deconvolve=deconvolve, epsilon=p.probe_deconvolution or 0.0, workers=workers)
    for a in (phase, com, com_px):
        a.setflags(write=False)
    return DPCResult(phase=phase, com=com, com_detector=com_px, rotation_deg=rot, flip=flip, params=p)


def dpc_step(cube: Any, params: DPCParams, context: Any) -> DPCResult:
    """Recipe adapter: :func:`dpc` with the run's engine options."""
    return dpc(cube, params, **step_engine(context))
