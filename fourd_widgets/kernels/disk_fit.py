"""Numba kernel of the per-disk probe fit (:mod:`fourd_widgets.analysis.disk_probe_fit`).

Each disk's window is fitted by ``(a0 + a1 u + a2 v) |S_c A|^2 + b``, ``S_c`` the
separable sinc interpolation that moves the recorded disk amplitude ``A`` to
``c``: the four linear coefficients by their normal equations, then one
Gauss-Newton step on ``c``, a few times over.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .lattice_fit import solve_small_system

__all__ = ["fit_probe_windows"]


@njit(cache=True, nogil=True)
def _sinc_rows(base, n_out, n_in, out, slope):
    """``out[a, i] = sinc(base + a - i)`` and ``slope`` its derivative, from one sine and cosine: moving the
    argument by a whole pixel only flips their sign."""
    sb, cb = math.sin(math.pi * base), math.cos(math.pi * base)
    for a in range(n_out):
        for i in range(n_in):
            x = base + a - i
            if abs(x) < 1e-8:
                out[a, i], slope[a, i] = 1.0, 0.0
                continue
            sgn = 1.0 - 2.0 * ((a + i) & 1)
            v = sgn * sb / (math.pi * x)
            out[a, i] = v
            slope[a, i] = (sgn * cb - v) / x


@njit(cache=True, nogil=True)
def fit_probe_windows(patterns, pidx, qx, qy, amp, mx, my, radius, window, iterations, max_move, max_residual,
                      outx, outy, misfit, residual):
    """Fit each disk with the sinc-shifted recorded disk; see the module docstring.

    Parameters
    ----------
    patterns : (N, H, W) float32 array
    pidx : (n,) int64 array
    qx, qy : (n,) float64 arrays
        Starting centres (finite), px.
    amp : (m, k) float64 array
        Recorded disk amplitude; ``mx`` (m,), ``my`` (k,) its rows' and columns' offsets from its centre.
    radius, window : float
        Disk radius (px); the fit uses pixels within ``window * radius`` of the start.
    iterations : int
    max_move : float
        A disk moved farther than this (px) keeps its start.
    max_residual : float
        A window whose pixel noise (from the steps between neighbours inside the disk), or a fit whose whole
        residual, exceeds this fraction of the window's RMS is given up at once (its start kept; on noisy
        data the window correlation is as good and the fit's time is saved).
    outx, outy : (n,) float64 arrays
        Receive the centres.
    misfit : (n,) float64 array
        Receives the RMS of the residual's structured part (its covariance with its 4-neighbours, so not
        white pixel noise) over the RMS of the window (NaN where the start is kept).
    residual : (n,) float64 array
        Receives the whole residual's RMS over the window's RMS (noise included; NaN likewise).
    """
    _, H, W = patterns.shape
    m, k = amp.shape
    h = int(math.ceil(window * radius)) + 1
    S = 2 * h + 1
    y = np.empty((S, S))
    msk = np.zeros((S, S), np.bool_)
    kx = np.empty((S, m))
    dkx = np.empty((S, m))
    ky = np.empty((S, k))
    dky = np.empty((S, k))
    T = np.empty((m, S))
    Td = np.empty((m, S))
    M = np.empty((S, S))
    FX = np.empty((S, S))
    FY = np.empty((S, S))
    F = np.empty((S, S))
    R = np.zeros((S, S))
    U = np.empty((S, S))  # each window pixel's offset from the start, in disk radii
    V = np.empty((S, S))
    G = np.empty((4, 4))
    rhs = np.empty(4)
    col = np.empty(4)
    for d in range(pidx.shape[0]):
        p = pidx[d]
        x0, y0 = qx[d], qy[d]
        outx[d], outy[d] = x0, y0
        misfit[d] = np.nan
        residual[d] = np.nan
        ix, iy = int(math.floor(x0 + 0.5)), int(math.floor(y0 + 0.5))
        scale = 0.0
        for a in range(S):
            for b in range(S):
                X, Y = ix - h + a, iy - h + b
                U[a, b], V[a, b] = (X - x0) / radius, (Y - y0) / radius
                inside = 0 <= X < H and 0 <= Y < W and U[a, b] ** 2 + V[a, b] ** 2 <= window * window
                msk[a, b] = inside
                y[a, b] = patterns[p, X, Y] if inside else 0.0
                if inside and abs(y[a, b]) > scale:
                    scale = abs(y[a, b])
        if scale <= 0.0:
            continue
        # pixel noise from the steps between neighbours inside the disk, where the disk itself is smooth:
        # with more noise than max_residual allows the fit is not tried at all
        ssq = 0.0
        npix = 0
        dsq = 0.0
        nd = 0
        inner = max(radius - 1.5, 0.0) / radius
        for a in range(S):
            for b in range(S):
                if not msk[a, b]:
                    continue
                ssq += y[a, b] * y[a, b]
                npix += 1
                if (b + 1 < S and msk[a, b + 1] and U[a, b] ** 2 + V[a, b] ** 2 <= inner * inner
                        and U[a, b + 1] ** 2 + V[a, b + 1] ** 2 <= inner * inner):
                    dsq += (y[a, b + 1] - y[a, b]) ** 2
                    nd += 1
        if nd == 0 or math.sqrt(dsq / (2.0 * nd)) > max_residual * math.sqrt(ssq / npix):
            continue
        cx, cy = x0, y0
        ok = True
        last = np.nan
        for _ in range(iterations):
            # mx, my step by one pixel, so sinc(ix - h + a - cx - mx[i]) = sinc(base + a - i)
            _sinc_rows(ix - h - cx - mx[0], S, m, kx, dkx)
            _sinc_rows(iy - h - cy - my[0], S, k, ky, dky)
            for i in range(m):
                for b in range(S):
                    s0 = 0.0
                    s1 = 0.0
                    for j in range(k):
                        s0 += amp[i, j] * ky[b, j]
                        s1 += amp[i, j] * dky[b, j]
                    T[i, b] = s0
                    Td[i, b] = s1
            G[:, :] = 0.0
            rhs[:] = 0.0
            for a in range(S):
                for b in range(S):
                    if not msk[a, b]:
                        continue
                    f = 0.0
                    fx = 0.0
                    fy = 0.0
                    for i in range(m):
                        f += kx[a, i] * T[i, b]
                        fx -= dkx[a, i] * T[i, b]
                        fy -= kx[a, i] * Td[i, b]
                    F[a, b] = f
                    FX[a, b] = fx
                    FY[a, b] = fy
                    M[a, b] = f * f
                    u, v = U[a, b], V[a, b]
                    col[0], col[1], col[2], col[3] = M[a, b], M[a, b] * u, M[a, b] * v, 1.0
                    for i in range(4):
                        rhs[i] += col[i] * y[a, b]
                        for j in range(4):
                            G[i, j] += col[i] * col[j]
            for i in range(4):
                G[i, i] += 1e-12
            beta, solved = solve_small_system(G, rhs)
            if not solved:
                ok = False
                break
            rss = 0.0
            tss = 0.0
            a11 = 0.0
            a22 = 0.0
            a12 = 0.0
            b1 = 0.0
            b2 = 0.0
            for a in range(S):
                for b in range(S):
                    if not msk[a, b]:
                        continue
                    u, v = U[a, b], V[a, b]
                    gain = beta[0] + beta[1] * u + beta[2] * v
                    res = y[a, b] - gain * M[a, b] - beta[3]
                    R[a, b] = res
                    rss += res * res
                    tss += y[a, b] * y[a, b]
                    jx = 2.0 * F[a, b] * FX[a, b] * gain
                    jy = 2.0 * F[a, b] * FY[a, b] * gain
                    a11 += jx * jx
                    a22 += jy * jy
                    a12 += jx * jy
                    b1 += jx * res
                    b2 += jy * res
            last = math.sqrt(rss / tss) if tss > 0 else np.inf
            if last > max_residual:
                ok = False
                break
            det = a11 * a22 - a12 * a12
            if not det > 0.0:
                ok = False
                break
            sx = (a22 * b1 - a12 * b2) / det
            sy = (a11 * b2 - a12 * b1) / det
            step = math.sqrt(sx * sx + sy * sy)
            if step > 0.25:  # the fit starts close: a long step is cut back
                sx *= 0.25 / step
                sy *= 0.25 / step
            cx += sx
            cy += sy
            if step < 1e-4:
                break
        if ok and math.isfinite(cx) and math.isfinite(cy) and math.hypot(cx - x0, cy - y0) <= max_move:
            outx[d], outy[d] = cx, cy
            # the residual's covariance with its neighbours: what the model leaves that is smoother than
            # pixel noise (another disk's edge, interference), which white noise does not add to
            lag = 0.0
            pairs = 0
            for a in range(S):
                for b in range(S):
                    if not msk[a, b]:
                        continue
                    if a + 1 < S and msk[a + 1, b]:
                        lag += R[a, b] * R[a + 1, b]
                        pairs += 1
                    if b + 1 < S and msk[a, b + 1]:
                        lag += R[a, b] * R[a, b + 1]
                        pairs += 1
            structured = lag / pairs * npix if pairs > 0 else 0.0  # npix: the window's pixels, counted above
            misfit[d] = math.sqrt(max(structured, 0.0) / tss) if tss > 0 else np.nan
            residual[d] = last
