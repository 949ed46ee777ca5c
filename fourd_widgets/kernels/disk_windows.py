"""Numba kernels for the per-disk refinement: window extraction and window peak refinement.

Each found disk is cut out of its pattern in a small ``(S, S)`` window centred
on the disk's pixel, apodised by a radial mask, correlated with the probe
(by batched FFTs in :mod:`fourd_widgets.analysis.disk_refine`) and refined
here on the window correlation's half spectrum with :func:`.disks.dft_refine`.
:func:`edge_windows` weights each window's gradient magnitude for the edge stage
(:func:`fourd_widgets.analysis.disk_refine.refine_disk_edges`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .disks import _dft_refine_ws, _local_dft_ws, dft_workspace

__all__ = ["edge_windows", "extract_windows", "filter_spectra", "refine_windows"]


@njit(cache=True, nogil=True)
def extract_windows(patterns, pidx, qx, qy, mask, out):
    """Cut masked windows around peaks; the window centre ``S // 2`` lands on the peak's nearest pixel.

    Parameters
    ----------
    patterns, pidx, qx, qy
        ``(N, H, W)`` patterns; the pattern index (int64) and position (px) of each peak.
    mask : (S, S) float32 array
        Apodisation, multiplied into each window.
    out : (n, S, S) float32 array
        Receives the windows; pixels off the detector are zero.
    """
    _, H, W = patterns.shape
    S = mask.shape[0]
    h = S // 2
    for k in range(pidx.shape[0]):
        p = pidx[k]
        i0 = int(math.floor(qx[k] + 0.5)) - h
        j0 = int(math.floor(qy[k] + 0.5)) - h
        for a in range(S):
            i = i0 + a
            for b in range(S):
                j = j0 + b
                m = mask[a, b]
                if m != 0.0 and 0 <= i < H and 0 <= j < W:
                    out[k, a, b] = patterns[p, i, j] * m
                else:
                    out[k, a, b] = 0.0


@njit(cache=True, nogil=True, fastmath=True)
def filter_spectra(spec, tconj, gain, power, re, im):
    """Window correlation spectra ``S = P conj(T)``, magnitude raised to ``power``, times ``gain``.

    Parameters
    ----------
    spec : (n, S, S//2 + 1) complex64 array
        ``rfft2`` of the windows.
    tconj : (S, S//2 + 1) complex64 array
        ``conj(rfft2)`` of the masked template.
    gain : (S, S//2 + 1) float32 array
        Fourier filter applied last (e.g. a Gaussian smoothing).
    power : float
        Hybrid correlation power (``|S|^power e^{i arg S}``; 1 leaves ``S`` as is).
    re, im : (n, S, S//2 + 1) float32 arrays
        Receive the real and imaginary parts.
    """
    n, A, B = spec.shape
    e = np.float32(0.5 * (power - 1.0))
    for k in range(n):
        for a in range(A):
            for b in range(B):
                z = spec[k, a, b] * tconj[a, b]
                zr = z.real
                zi = z.imag
                g = gain[a, b]
                if power != 1.0:
                    m2 = zr * zr + zi * zi
                    g = g * np.float32(math.exp(e * math.log(m2))) if m2 > 0.0 else np.float32(0.0)
                re[k, a, b] = zr * g
                im[k, a, b] = zi * g


@njit(cache=True, nogil=True)
def refine_windows(spec_re, spec_im, band, usf, reach, x0, y0, dx, dy, val):
    """Maximum of each window correlation near a start shift, by local DFT upsampling.

    Parameters
    ----------
    spec_re, spec_im : (n, S, S//2 + 1) float32 arrays
        Half spectra of the window correlations (zero shift at index ``(0, 0)``).
    band : int
        Frequency limit of the spectra (see :func:`.disks.local_dft`).
    usf : int
        Upsampling factor.
    reach : int
        When > 0, first take the best pixel within ``reach`` px of zero shift as the
        start (0: start at ``x0, y0``).
    x0, y0 : (n,) float arrays
        Start shifts, px (e.g. the whole-pattern estimate minus the window centre).
    dx, dy, val : (n,) float64 arrays
        Receive the shift of the maximum and the correlation there (NaN when that is
        not positive: no disk in the window).
    """
    n, S, _ = spec_re.shape
    grid = np.empty((2 * reach + 1, 2 * reach + 1))
    ws = dft_workspace(spec_re.shape[2], S, max(3, 2 * reach + 1), max(3, 2 * reach + 1))
    for k in range(n):
        x = x0[k]
        y = y0[k]
        if reach > 0:
            # coarse look on the pixel grid around the start: climb from the best pixel
            _local_dft_ws(spec_re[k], spec_im[k], S, S, band, -reach, -reach, 1.0, 2 * reach + 1, 2 * reach + 1,
                          grid, ws)
            best = np.argmax(grid)
            x = float(best // grid.shape[1] - reach)
            y = float(best % grid.shape[1] - reach)
        x, y, v = _dft_refine_ws(spec_re[k], spec_im[k], S, S, band, x, y, max(usf, 4), ws)
        if v > 0.0:
            dx[k] = x
            dy[k] = y
            val[k] = v
        else:
            dx[k] = np.nan
            dy[k] = np.nan
            val[k] = np.nan


@njit(cache=True, nogil=True, fastmath=True)
def edge_windows(gx, gy, fx, fy, rin, rout, out):
    """Gradient magnitude of each window, tapered about the disk's current sub-pixel centre.

    Parameters
    ----------
    gx, gy : (n, S, S) float32 arrays
        The windows' intensity gradient (window centre ``S // 2`` on the disk's nearest pixel).
    fx, fy : (n,) float64 arrays
        The disk centre's offset from the window centre, px (|f| <= 0.5).
    rin, rout : float
        The weight is 1 within ``rin`` px of the centre, a cosine taper to 0 at ``rout``.
    out : (n, S, S) float32 array
        Receives ``|grad| * taper``; the taper is centred on the disk itself, so a
        centrosymmetric disk gives a centrosymmetric weighted edge map.
    """
    n, S, _ = gx.shape
    h = S // 2
    span = rout - rin
    for k in range(n):
        cx = h + fx[k]
        cy = h + fy[k]
        for a in range(S):
            for b in range(S):
                r = math.sqrt((a - cx) ** 2 + (b - cy) ** 2)
                if r >= rout:
                    out[k, a, b] = 0.0
                    continue
                t = 1.0 if r <= rin else 0.5 + 0.5 * math.cos(math.pi * (r - rin) / span)
                out[k, a, b] = math.sqrt(gx[k, a, b] ** 2 + gy[k, a, b] ** 2) * t
