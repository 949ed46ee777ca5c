"""Array kernels of ptychography, written against an array namespace ``xp``.

Every function takes the array module ``xp`` (numpy today; a GPU module with the
same API, e.g. CuPy, later) and, where it transforms, an FFT module ``fft`` with
scipy.fft's signature (``scipy.fft``; ``cupyx.scipy.fft`` later), so that a GPU
backend is a matter of passing other modules (with its own tests). Nothing here
knows a DataCube; the analysis layer streams the patterns in and merges the
gradients.

Conventions (those of :mod:`fourd_widgets.datasets.phase`):

* The probe ``P`` is a complex ``(K, N1, N2)`` stack of K mutually incoherent
  modes in real space, centred on window pixel ``(N1//2, N2//2)``; the object
  ``O`` is complex ``(M1, M2)`` (or ``exp(iφ)`` for a potential object).
* A probe centred at object pixel ``c`` (float) sees the object window whose
  corner is ``round(c) - N//2``; the sub-pixel rest ``c - floor(c)`` shifts the
  probe in Fourier space.
* Exit waves are transformed with ``norm="ortho"``, so a pattern's total
  intensity equals ``Σ|P|²`` for a unit object, and the measured amplitudes are
  the square roots of the patterns with ``k = 0`` moved to pixel ``(0, 0)``.

Examples
--------
>>> import numpy as np, scipy.fft as sfft
>>> i = np.arange(16) - 8.0
>>> probe = np.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / 4)[None].astype(np.complex64)
>>> corner, frac = window_corners(np.array([[8.0, 9.25]]), (16, 16))
>>> corner.tolist(), frac.tolist()
([[0, 1]], [[0.0, 0.25]])
>>> shifted = shift_probes(probe, frac, np, sfft)          # by a quarter pixel along y
>>> w = np.abs(shifted[0, 0]) ** 2
>>> shifted.shape, round(float((w.sum(0) * np.arange(16)).sum() / w.sum()), 3)
((1, 1, 16, 16), 8.25)
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

__all__ = ["window_corners", "probe_ramps", "shift_probes", "unshift_sum", "object_patches", "add_patches", "fourier_projection", "batch_gradients", "position_steps", "fresnel_propagator", "multislice_gradients",
           "center_probe", "orthogonalize_modes"]


def window_corners(centers: Any, window: tuple[int, int], xp: Any = np) -> tuple[Any, Any]:
    """Integer window corners ``(B, 2)`` and sub-pixel rests ``(B, 2)`` of probe centres ``(B, 2)`` (object px).

    >>> [a.tolist() for a in window_corners(np.array([[10.75, 3.0]]), (4, 6))]
    [[[9, 0]], [[-0.25, 0.0]]]
    """
    c = xp.asarray(centers, dtype=xp.float64)
    base = xp.floor(c + 0.5)  # rests in [-0.5, 0.5)
    half = xp.asarray([window[0] // 2, window[1] // 2])
    return (base - half).astype(xp.int64), c - base


def probe_ramps(frac: Any, window: tuple[int, int], dtype: Any, xp: Any, fft: Any) -> tuple[Any, Any]:
    """Fourier phase ramps ``(B, N1)`` and ``(B, N2)`` that shift a window by each sub-pixel rest ``(B, 2)``."""
    f1 = xp.asarray(fft.fftfreq(window[0])).astype(xp.float64)
    f2 = xp.asarray(fft.fftfreq(window[1])).astype(xp.float64)
    r1 = xp.exp(-2j * math.pi * frac[:, 0:1] * f1[None, :]).astype(dtype)
    r2 = xp.exp(-2j * math.pi * frac[:, 1:2] * f2[None, :]).astype(dtype)
    return r1, r2


def shift_probes(probe: Any, frac: Any, xp: Any, fft: Any, workers: int = 1, ramps: Any = None) -> Any:
    """The probe modes ``(K, N1, N2)`` shifted by each sub-pixel rest ``(B, 2)``: ``(B, K, N1, N2)``.

    A Fourier-space phase ramp, so the shift is exact for a band-limited probe
    and wraps around the window.
    """
    r1, r2 = ramps if ramps is not None else probe_ramps(frac, probe.shape[1:], probe.dtype, xp, fft)
    pk = fft.fft2(probe, workers=workers)
    return fft.ifft2(pk[None] * r1[:, None, :, None] * r2[:, None, None, :], workers=workers)


def unshift_sum(grads: Any, ramps: tuple[Any, Any], xp: Any, fft: Any, workers: int = 1) -> Any:
    """``Σ_b shift(g_b, −rest_b)``: the adjoint of :func:`shift_probes`, summed over positions ``(K, N1, N2)``.

    >>> import scipy.fft as sfft
    >>> g = np.random.default_rng(1).normal(size=(2, 1, 8, 8)).astype(np.complex128)
    >>> frac = np.array([[0.3, -0.2], [0.0, 0.0]])
    >>> r = probe_ramps(frac, (8, 8), np.complex128, np, sfft)
    >>> back = unshift_sum(shift_probes(g[:1, 0], frac[:1], np, sfft, ramps=(r[0][:1], r[1][:1]))
    ...                    + np.zeros((1, 1, 8, 8)), (r[0][:1], r[1][:1]), np, sfft)
    >>> bool(np.allclose(back, g[0]))
    True
    """
    r1, r2 = ramps
    gk = fft.fft2(grads, workers=workers)
    gk *= r1.conj()[:, None, :, None]
    gk *= r2.conj()[:, None, None, :]
    return fft.ifft2(xp.sum(gk, axis=0), workers=workers)


def object_patches(obj: Any, corners: Any, window: tuple[int, int], xp: Any = np) -> Any:
    """The object windows ``(B, N1, N2)`` at integer ``corners`` ``(B, 2)`` (slices, no gather).

    >>> o = np.arange(16.).reshape(4, 4)
    >>> object_patches(o, np.array([[1, 2]]), (2, 2))[0].tolist()
    [[6.0, 7.0], [10.0, 11.0]]
    """
    n1, n2 = window
    out = xp.empty((len(corners), n1, n2), dtype=obj.dtype)
    for b, (i, j) in enumerate(np.asarray(corners).tolist()):
        out[b] = obj[i:i + n1, j:j + n2]
    return out


def add_patches(acc: Any, patches: Any, corners: Any, offset: tuple[int, int] = (0, 0)) -> Any:
    """Add each patch ``(B, N1, N2)`` into ``acc`` at ``corners - offset``, in order (deterministic).

    >>> a = np.zeros((3, 3)); add_patches(a, np.ones((2, 2, 2)), np.array([[0, 0], [1, 1]])).tolist()
    [[1.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 1.0]]
    """
    n1, n2 = patches.shape[-2:]
    for b, (i, j) in enumerate(np.asarray(corners).tolist()):
        i -= offset[0]
        j -= offset[1]
        acc[i:i + n1, j:j + n2] += patches[b]
    return acc


def fourier_projection(exit_waves: Any, amplitudes: Any, xp: Any, fft: Any, workers: int = 1,
                       eps: float = 1e-12) -> tuple[Any, float]:
    """Exit-wave corrections ``(B, K, N1, N2)`` that give each pattern its measured amplitude, and the error.

    Parameters
    ----------
    exit_waves : (B, K, N1, N2) complex array
        ``O · P_k`` in real space, per position and mode.
    amplitudes : (B, N1, N2) float array
        Measured ``√I`` with ``k = 0`` at pixel (0, 0).

    Returns
    -------
    diff : (B, K, N1, N2) complex array
        Projected minus current exit waves (the modes keep their ratios).
    error : float
        ``Σ (√Σ_k|Ψ_k|² − √I)²`` over the batch (the Fourier-amplitude error before the update).
    """
    far = fft.fft2(exit_waves, norm="ortho", workers=workers)
    model = xp.sqrt(xp.sum(far.real ** 2 + far.imag ** 2, axis=1))
    error = float(xp.sum((model - amplitudes) ** 2))
    ratio = amplitudes / xp.maximum(model, eps)
    far *= ratio[:, None].astype(far.real.dtype)
    proj = fft.ifft2(far, norm="ortho", workers=workers)
    proj -= exit_waves
    return proj, error


@numba.njit(cache=True, nogil=True)
def _modulus_numba(far: np.ndarray, amp: np.ndarray, eps: float) -> float:  # pragma: no cover - jitted
    B, K, n1, n2 = far.shape
    err = 0.0
    for b in range(B):
        for i in range(n1):
            for j in range(n2):
                s = 0.0
                for k in range(K):
                    v = far[b, k, i, j]
                    s += v.real * v.real + v.imag * v.imag
                m = math.sqrt(s)
                a = amp[b, i, j]
                err += (m - a) * (m - a)
                r = np.float32(a / max(m, eps))
                for k in range(K):
                    far[b, k, i, j] *= r
    return err


@numba.njit(cache=True, nogil=True)
def _gradients_numba(proj: np.ndarray, patches: np.ndarray, probes: np.ndarray, corners: np.ndarray,
                     num: np.ndarray, den: np.ndarray, probe_den: np.ndarray,
                     probe_gradient: bool) -> None:  # pragma: no cover - jitted
    B, K, n1, n2 = proj.shape
    for b in range(B):
        ci, cj = corners[b, 0], corners[b, 1]
        for i in range(n1):
            for j in range(n2):
                pa = patches[b, i, j]
                g = np.complex64(0)
                w = np.float32(0)
                for k in range(K):
                    pr = probes[b, k, i, j]
                    d = proj[b, k, i, j] - pa * pr
                    g += pr.conjugate() * d
                    w += pr.real * pr.real + pr.imag * pr.imag
                    if probe_gradient:
                        proj[b, k, i, j] = pa.conjugate() * d
                num[ci + i, cj + j] += g
                den[ci + i, cj + j] += w
                probe_den[i, j] += pa.real * pa.real + pa.imag * pa.imag


def batch_gradients(patches: Any, probes: Any, amplitudes: Any, corners: Any, xp: Any, fft: Any,
                    workers: int = 1, probe_gradient: bool = True) -> dict[str, Any]:
    """Fourier-misfit gradients of one batch of positions, summed over the batch's footprint.

    Parameters
    ----------
    patches : (B, N1, N2) complex64 array
        Object windows.
    probes : (B, K, N1, N2) complex64 array
        Shifted probe modes.
    amplitudes : (B, N1, N2) float32 array
        Measured ``√I``, ``k = 0`` at pixel (0, 0).
    corners : (B, 2) int array
        Window corners on the object.
    probe_gradient : bool
        Also return the per-position probe gradients (else ``probe_grad`` is None).

    Returns
    -------
    dict
        ``lo`` (2,) corner of the footprint; ``num`` complex and ``den`` float
        ``(F1, F2)``: ``Σ P* Δ`` and ``Σ |P|²`` over the footprint; ``probe_grad``
        ``(B, K, N1, N2)``: ``O* Δ`` per position (in the shifted frame; see
        :func:`unshift_sum`); ``probe_den`` ``(N1, N2)``: ``Σ |O|²``;
        ``error``: ``Σ (|Ψ| − √I)²``. With numpy the loops are fused (numba);
        other array modules take the same steps array-wise.

    Examples
    --------
    The fused and the array-wise paths agree:

    >>> import scipy.fft as sfft
    >>> rng = np.random.default_rng(0)
    >>> c = lambda *s: (rng.normal(size=s) + 1j * rng.normal(size=s)).astype(np.complex64)
    >>> args = (c(3, 8, 8), c(3, 2, 8, 8), np.abs(rng.normal(size=(3, 8, 8))).astype(np.float32),
    ...         np.array([[0, 0], [2, 1], [1, 3]]))
    >>> fused = batch_gradients(*args, np, sfft)
    >>> plain = batch_gradients(*args, _ArrayWise(np), sfft)
    >>> all(np.allclose(fused[k], plain[k], rtol=1e-4, atol=1e-4) for k in fused)
    True
    """
    B, K, n1, n2 = probes.shape
    corners = np.asarray(corners)
    lo = corners.min(axis=0)
    size = tuple(int(v) for v in corners.max(axis=0) - lo + (n1, n2))
    rel = corners - lo
    exit_waves = patches[:, None] * probes
    far = fft.fft2(exit_waves, norm="ortho", workers=workers, overwrite_x=True)
    if xp is np:  # fused loops: one pass instead of a dozen temporaries
        error = _modulus_numba(far, amplitudes, 1e-12)
        proj = fft.ifft2(far, norm="ortho", workers=workers, overwrite_x=True)
        num = np.zeros(size, np.complex64)
        den = np.zeros(size, np.float32)
        probe_den = np.zeros((n1, n2), np.float32)
        _gradients_numba(proj, patches, probes, rel, num, den, probe_den, probe_gradient)
        return {"lo": lo, "num": num, "den": den, "probe_grad": proj if probe_gradient else None,
                "probe_den": probe_den, "error": float(error)}
    xp = getattr(xp, "xp", xp)
    model = xp.sqrt(xp.sum(far.real ** 2 + far.imag ** 2, axis=1))
    error = float(xp.sum((model - amplitudes) ** 2))
    far *= (amplitudes / xp.maximum(model, 1e-12))[:, None].astype(far.real.dtype)
    diff = fft.ifft2(far, norm="ortho", workers=workers) - patches[:, None] * probes
    num = add_patches(xp.zeros(size, xp.complex64), xp.sum(probes.conj() * diff, axis=1), rel)
    den = add_patches(xp.zeros(size, xp.float32), xp.sum(probes.real ** 2 + probes.imag ** 2, axis=1), rel)
    return {"lo": lo, "num": num, "den": den,
            "probe_grad": patches.conj()[:, None] * diff if probe_gradient else None,
            "probe_den": xp.sum(patches.real ** 2 + patches.imag ** 2, axis=0), "error": error}


def position_steps(probe: Any, probes: Any, ramps: tuple[Any, Any], patches: Any, amplitudes: Any, xp: Any,
                   fft: Any, workers: int = 1) -> Any:
    """Gauss-Newton moves ``(B, 2)`` (object px) of each probe position that best explain its pattern.

    The intensity ``I = Σ_k |F[O S_k]|²`` of shifted probe modes ``S_k`` changes with the
    position ``c`` as ``∂I/∂c_a = 2 Σ_k Re(Ψ_k* F[−O ∂_a S_k])``; the move solves the 2x2
    least-squares problem ``Σ_a ∂I/∂c_a d_a ≈ I_measured − I`` over the pattern. Intensities,
    not exit waves: a probe shift over a flat object changes only the far field's phase,
    which the data do not see (as in py4DSTEM's position correction).

    Parameters
    ----------
    probe : (K, N1, N2) complex array
        Unshifted probe modes.
    probes : (B, K, N1, N2) complex array
        The shifted modes (:func:`shift_probes` with ``ramps``).
    ramps : tuple of (B, N1) and (B, N2) arrays
        The shift ramps of :func:`probe_ramps`.
    patches : (B, N1, N2) complex array
        Object windows.
    amplitudes : (B, N1, N2) float array
        Measured ``√I``, ``k = 0`` at pixel (0, 0).

    Examples
    --------
    A probe over a phase grating, 0.05 px off along x, is moved there:

    >>> import scipy.fft as sfft
    >>> i = np.arange(32) - 16.0
    >>> p = np.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / 2)[None].astype(np.complex128)
    >>> o = np.exp(0.5j * np.sin(2 * np.pi * i / 5)[:, None] * np.ones(32))[None]
    >>> seen = shift_probes(p, np.array([[0.05, 0.0]]), np, sfft)   # where the probe was
    >>> amp = np.abs(sfft.fft2(o[:, None] * seen, norm="ortho"))[:, 0]
    >>> r = probe_ramps(np.zeros((1, 2)), (32, 32), complex, np, sfft)
    >>> guess = shift_probes(p, np.zeros((1, 2)), np, sfft)
    >>> np.round(position_steps(p, guess, r, o, amp, np, sfft), 2).tolist()
    [[0.05, 0.0]]
    """
    K, n1, n2 = probe.shape
    r1, r2 = ramps
    f1 = xp.asarray(fft.fftfreq(n1)).astype(r1.real.dtype)
    f2 = xp.asarray(fft.fftfreq(n2)).astype(r1.real.dtype)
    shifted_k = fft.fft2(probe, workers=workers)[None] * r1[:, None, :, None] * r2[:, None, None, :]
    o = patches[:, None]
    far = fft.fft2(o * probes, norm="ortho", workers=workers)
    d_i = amplitudes ** 2 - xp.sum(far.real ** 2 + far.imag ** 2, axis=1)
    grads = []
    for ramp in ((2j * math.pi * f1)[None, None, :, None], (2j * math.pi * f2)[None, None, None, :]):
        d_far = fft.fft2(-o * fft.ifft2(shifted_k * ramp, workers=workers), norm="ortho", workers=workers)
        grads.append(2 * xp.sum((far.conj() * d_far).real, axis=1))
    ix, iy = grads
    axx = xp.sum(ix * ix, axis=(1, 2))
    ayy = xp.sum(iy * iy, axis=(1, 2))
    axy = xp.sum(ix * iy, axis=(1, 2))
    bx = xp.sum(ix * d_i, axis=(1, 2))
    by = xp.sum(iy * d_i, axis=(1, 2))
    # a pattern blind to one direction (a flat object along it) must not move along it
    ridge = 1e-6 * (axx + ayy) + 1e-300
    axx, ayy = axx + ridge, ayy + ridge
    det = axx * ayy - axy * axy
    return xp.stack([(ayy * bx - axy * by) / det, (axx * by - axy * bx) / det], axis=-1).astype(xp.float64)


def fresnel_propagator(window: tuple[int, int], pixel_A: tuple[float, float], wavelength_A: float,
                       thickness_A: float, xp: Any = np, fft: Any = None) -> Any:
    """Fresnel propagator ``exp(−iπλΔz|k|²)`` ``(N1, N2)`` over ``thickness_A``, in the FFT's layout.

    The sign of :mod:`fourd_widgets.datasets.phase` (a defocus ``C10`` propagates by ``+C10``).

    >>> h = fresnel_propagator((4, 4), (0.5, 0.5), 0.02, 10.0)
    >>> complex(h[0, 0]), round(float(np.angle(h[1, 0])), 6)
    ((1+0j), -0.15708)
    """
    import scipy.fft as sfft

    fft = fft or sfft
    k1 = xp.asarray(fft.fftfreq(window[0], d=pixel_A[0]))[:, None]
    k2 = xp.asarray(fft.fftfreq(window[1], d=pixel_A[1]))[None, :]
    return xp.exp(-1j * math.pi * wavelength_A * thickness_A * (k1 ** 2 + k2 ** 2)).astype(xp.complex64)


def multislice_gradients(patches: Any, probes: Any, amplitudes: Any, corners: Any, propagator: Any, xp: Any,
                         fft: Any, workers: int = 1, probe_gradient: bool = True) -> dict[str, Any]:
    """Fourier-misfit gradients of a multislice object for one batch (array-wise; see :func:`batch_gradients`).

    The exit wave is ``ψ_S`` with ``ψ_1 = O_1 P_k`` and ``ψ_s = O_s F⁻¹[H F[ψ_{s−1}]]``;
    the correction ``Δ`` is carried back through each slice and propagator
    (their adjoints) to give each slice's ``Σ ψ_in* Δ_s`` and the probe's ``O_1* Δ_1``.

    Parameters
    ----------
    patches : (S, B, N1, N2) complex64 array
        Object windows of each slice, beam entrance first.
    propagator : (N1, N2) complex64 array
        :func:`fresnel_propagator` over one slice spacing.

    Returns
    -------
    dict
        As :func:`batch_gradients`, with ``num`` and ``den`` of shape ``(S, F1, F2)``.

    Examples
    --------
    One slice is the single-slice case:

    >>> import scipy.fft as sfft
    >>> rng = np.random.default_rng(0)
    >>> c = lambda *s: (rng.normal(size=s) + 1j * rng.normal(size=s)).astype(np.complex64)
    >>> o, p = c(3, 8, 8), c(3, 1, 8, 8)
    >>> a, corners = np.abs(rng.normal(size=(3, 8, 8))).astype(np.float32), np.array([[0, 0], [2, 1], [1, 3]])
    >>> one = batch_gradients(o, p, a, corners, np, sfft)
    >>> ms = multislice_gradients(o[None], p, a, corners, np.ones((8, 8), np.complex64), np, sfft)
    >>> bool(np.allclose(ms["num"][0], one["num"], atol=1e-4) and np.allclose(ms["probe_grad"], one["probe_grad"], atol=1e-4))
    True
    """
    S = patches.shape[0]
    B, K, n1, n2 = probes.shape
    corners = np.asarray(corners)
    lo = corners.min(axis=0)
    size = tuple(int(v) for v in corners.max(axis=0) - lo + (n1, n2))
    rel = corners - lo
    incident = [probes]
    psi = patches[0][:, None] * probes
    for s in range(1, S):
        inc = fft.ifft2(fft.fft2(psi, workers=workers) * propagator, workers=workers)
        incident.append(inc)
        psi = patches[s][:, None] * inc
    far = fft.fft2(psi, norm="ortho", workers=workers)
    model = xp.sqrt(xp.sum(far.real ** 2 + far.imag ** 2, axis=1))
    error = float(xp.sum((model - amplitudes) ** 2))
    far *= (amplitudes / xp.maximum(model, 1e-12))[:, None].astype(far.real.dtype)
    diff = fft.ifft2(far, norm="ortho", workers=workers) - psi
    num = xp.zeros((S,) + size, xp.complex64)
    den = xp.zeros((S,) + size, xp.float32)
    for s in range(S - 1, -1, -1):
        inc = incident[s]
        add_patches(num[s], xp.sum(inc.conj() * diff, axis=1), rel)
        add_patches(den[s], xp.sum(inc.real ** 2 + inc.imag ** 2, axis=1), rel)
        if s:
            back = fft.fft2(patches[s].conj()[:, None] * diff, workers=workers) * propagator.conj()
            diff = fft.ifft2(back, workers=workers)
    return {"lo": lo, "num": num, "den": den,
            "probe_grad": patches[0].conj()[:, None] * diff if probe_gradient else None,
            "probe_den": xp.sum(patches[0].real ** 2 + patches[0].imag ** 2, axis=0), "error": error}


class _ArrayWise:
    """numpy seen as "another" array module: forces the array-wise path (tests, doctests)."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def __getattr__(self, name: str) -> Any:
        return getattr(self.xp, name)


def center_probe(probe: Any, xp: Any, fft: Any) -> Any:
    """Shift all modes so the total intensity's centre of mass sits at ``(N1//2, N2//2)``.

    Fixes the drift that the object/probe shift ambiguity otherwise allows.
    """
    K, n1, n2 = probe.shape
    w = xp.sum(probe.real ** 2 + probe.imag ** 2, axis=0)
    total = float(xp.sum(w))
    if not total > 0:
        return probe
    i = xp.arange(n1, dtype=xp.float64)
    j = xp.arange(n2, dtype=xp.float64)
    c1 = float(xp.sum(w.sum(axis=1) * i)) / total
    c2 = float(xp.sum(w.sum(axis=0) * j)) / total
    d = xp.asarray([[n1 // 2 - c1, n2 // 2 - c2]])
    return shift_probes(probe, d, xp, fft)[0]


def orthogonalize_modes(probe: Any, xp: Any) -> Any:
    """Mutually orthogonal modes spanning the same mixed state, strongest first (SVD of the mode stack).

    >>> p = np.stack([np.ones((2, 2)), 2 * np.ones((2, 2))]).astype(np.complex128)
    >>> q = orthogonalize_modes(p, np)
    >>> [round(float(np.sum(abs(m) ** 2)), 6) for m in q]
    [20.0, 0.0]
    """
    K = probe.shape[0]
    if K == 1:
        return probe
    flat = probe.reshape(K, -1)
    u, s, vh = xp.linalg.svd(flat, full_matrices=False)
    return (s[:, None] * vh).reshape(probe.shape).astype(probe.dtype)
