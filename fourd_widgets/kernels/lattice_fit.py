"""Numba kernels of the whole-pattern lattice fit: a Poisson fit of a sum of probe images on a lattice.

The model of one pattern (counts) is

    λ(q) = b + Σ_s A_s P(q - o - h_s g1 - k_s g2)

with ``P`` the probe template (unit sum, sampled on a grid ``up`` times finer than the
detector, read by Catmull-Rom interpolation), one amplitude ``A_s`` per lattice site and a
flat background ``b``. The lattice ``θ = (o_x, o_y, g1_x, g1_y, g2_x, g2_y)`` (px), the
amplitudes and the background are found by Fisher scoring of the Poisson likelihood
(``Δ = F⁻¹ U``, with ``U`` the score and ``F`` the expected Fisher information). The
amplitudes are eliminated by their Schur complement at every step, so each step solves a
7 x 7 system whatever the number of sites. At the end the lattice block of ``F⁻¹`` (the
amplitudes and background as nuisance parameters) is the covariance of ``θ``.

Each site is evaluated in its own window (radius ``half`` px around its centre). Where two
windows overlap the model is still exact; only the Fisher cross terms between the two
sites' parameters are left out (disks that overlap are outside the model's scope).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["fit_pattern", "fit_patterns", "solve_small_system"]

#: A step shorter than this many of its own standard errors ends the fit.
STEP_IN_SIGMA = 0.05
#: Steps with dlᵀ F dl above this are checked against the likelihood (backtracking); shorter ones
#: are in the quadratic region (a check every step costs a model evaluation, ~40 % of the time).
CHECK_ABOVE = 0.05
#: Smallest model value per pixel, in counts (keeps n / λ finite where the model is empty).
LAMBDA_FLOOR = 1e-9


@njit(cache=True, nogil=True, fastmath=True)
def _taps(c, first, half, up, w, dw):
    """Catmull-Rom taps of a site centred at ``c`` for its first window pixel ``first``.

    Every pixel of one site has the same sub-sample offset, so the four weights ``w`` and
    their derivatives ``dw`` (per template sample) are computed once per site; pixel
    ``first + n`` reads template samples ``base + n * up + (0..3)``. Returns ``base``.
    The interpolant is C1, so the likelihood is smooth in the lattice (bilinear would put a
    kink every ``1 / up`` px, the same for all pixels of a disk).
    """
    f = (first - c + half) * up
    i = math.floor(f)
    a = f - i
    a2 = a * a
    a3 = a2 * a
    w[0] = 0.5 * (-a3 + 2 * a2 - a)
    w[1] = 0.5 * (3 * a3 - 5 * a2 + 2)
    w[2] = 0.5 * (-3 * a3 + 4 * a2 + a)
    w[3] = 0.5 * (a3 - a2)
    dw[0] = 0.5 * (-3 * a2 + 4 * a - 1)
    dw[1] = 0.5 * (9 * a2 - 10 * a)
    dw[2] = 0.5 * (-9 * a2 + 8 * a + 1)
    dw[3] = 0.5 * (3 * a2 - 2 * a)
    return int(i) - 1


@njit(cache=True, nogil=True, fastmath=True)
def _sample(t, bi, bj, wx, wy, dwx, dwy, up):
    """Template value and gradient (per px) at one pixel from its taps; zero off the template."""
    m = t.shape[0]
    if bi < 0 or bj < 0 or bi + 3 >= m or bj + 3 >= m:
        return 0.0, 0.0, 0.0
    p = 0.0
    px = 0.0
    py = 0.0
    for a in range(4):
        ra = 0.0
        rb = 0.0
        for b in range(4):
            v = t[bi + a, bj + b]
            ra += wy[b] * v
            rb += dwy[b] * v
        p += wx[a] * ra
        px += dwx[a] * ra
        py += wx[a] * rb
    return p, px * up, py * up


@njit(cache=True, nogil=True)
def _window(c, half, n):
    lo = int(math.ceil(c - half))
    hi = int(math.floor(c + half))
    return max(lo, 0), min(hi, n - 1)


@njit(cache=True, nogil=True)
def solve_small_system(a, b):
    """Solve a small system ``a x = b`` by Gaussian elimination with partial pivoting (on copies); ``(x, ok)``."""
    n = a.shape[0]
    m = a.copy()
    x = b.copy()
    for c in range(n):
        p = c
        for r in range(c + 1, n):
            if abs(m[r, c]) > abs(m[p, c]):
                p = r
        if m[p, c] == 0.0:
            return x, False
        if p != c:
            for k in range(n):
                tmp = m[c, k]
                m[c, k] = m[p, k]
                m[p, k] = tmp
            tmp = x[c]
            x[c] = x[p]
            x[p] = tmp
        for r in range(c + 1, n):
            f = m[r, c] / m[c, c]
            for k in range(c, n):
                m[r, k] -= f * m[c, k]
            x[r] -= f * x[c]
    for c in range(n - 1, -1, -1):
        s = x[c]
        for k in range(c + 1, n):
            s -= m[c, k] * x[k]
        x[c] = s / m[c, c]
    return x, True


@njit(cache=True, nogil=True, fastmath=True)
def _fill_model(lam, t, half, up, hk, theta, amps, bg, P, PX, PY, win, psum, filled):
    """The model image λ at the given parameters (floored at LAMBDA_FLOOR).

    Each site's template values and gradients over its window are kept in ``P, PX, PY``
    (``(S, n, n)``), its window in ``win`` (``i0, i1, j0, j1``) and the template's sum over
    the window in ``psum``, for :func:`_accumulate` and :func:`_loglik`.
    """
    H, W = lam.shape
    S = hk.shape[0]
    wx = np.empty(4)
    wy = np.empty(4)
    dwx = np.empty(4)
    dwy = np.empty(4)
    base = max(bg, LAMBDA_FLOOR)
    if filled[0] == base:  # only the last windows differ from the background: reset those
        for s in range(S):
            for i in range(win[s, 0], win[s, 1] + 1):
                for j in range(win[s, 2], win[s, 3] + 1):
                    lam[i, j] = base
    else:
        for i in range(H):
            for j in range(W):
                lam[i, j] = base
        filled[0] = base
    for s in range(S):
        cx = theta[0] + hk[s, 0] * theta[2] + hk[s, 1] * theta[4]
        cy = theta[1] + hk[s, 0] * theta[3] + hk[s, 1] * theta[5]
        i0, i1 = _window(cx, half, H)
        j0, j1 = _window(cy, half, W)
        win[s, 0] = i0
        win[s, 1] = i1
        win[s, 2] = j0
        win[s, 3] = j1
        bi0 = _taps(cx, i0, half, up, wx, dwx)
        bj0 = _taps(cy, j0, half, up, wy, dwy)
        acc = 0.0
        a = amps[s]
        r2 = half * half
        for i in range(i0, i1 + 1):
            di2 = (i - cx) * (i - cx)
            for j in range(j0, j1 + 1):
                if di2 + (j - cy) * (j - cy) >= r2:  # the template is tapered to zero at radius half
                    P[s, i - i0, j - j0] = 0.0
                    PX[s, i - i0, j - j0] = 0.0
                    PY[s, i - i0, j - j0] = 0.0
                    continue
                p, px, py = _sample(t, bi0 + (i - i0) * up, bj0 + (j - j0) * up, wx, wy, dwx, dwy, up)
                P[s, i - i0, j - j0] = p
                PX[s, i - i0, j - j0] = px
                PY[s, i - i0, j - j0] = py
                lam[i, j] += a * p
                acc += p
        psum[s] = acc
    for s in range(S):  # outside the windows λ is the (floored) background already
        for i in range(win[s, 0], win[s, 1] + 1):
            for j in range(win[s, 2], win[s, 3] + 1):
                if lam[i, j] < LAMBDA_FLOOR:
                    lam[i, j] = LAMBDA_FLOOR


@njit(cache=True, nogil=True)
def _loglik(nz_i, nz_j, nz_n, lam, t, half, up, hk, theta, amps, bg, P, PX, PY, win, psum, filled):
    """Poisson log-likelihood (without ``log n!``): ``Σ n log λ`` over the pixels with counts, minus ``Σ λ``."""
    _fill_model(lam, t, half, up, hk, theta, amps, bg, P, PX, PY, win, psum, filled)
    return _loglik_filled(nz_i, nz_j, nz_n, lam, hk, amps, bg, psum)


@njit(cache=True, nogil=True)
def _loglik_filled(nz_i, nz_j, nz_n, lam, hk, amps, bg, psum):
    """:func:`_loglik` of the model already in ``lam`` (and ``psum``)."""
    H, W = lam.shape
    total = bg * H * W
    for s in range(hk.shape[0]):
        total += amps[s] * psum[s]
    ll = 0.0
    for q in range(nz_n.shape[0]):
        ll += nz_n[q] * math.log(lam[nz_i[q], nz_j[q]])
    return ll - total


@njit(cache=True, nogil=True, fastmath=True)
def _accumulate(counts, lam, t, half, up, hk, theta, amps, bg, L, C, D, UL, UA, fit_background,
                P, PX, PY, win, psum, filled, fill):
    """Score and Fisher blocks at the current parameters (the model is filled first if ``fill``;
    else ``lam, P, PX, PY, win`` must hold the model at these parameters already).

    Per site, the pixel sums are reduced to a few moments of the template and its gradient;
    the lattice derivatives ``dλ/dθ = -A ∇P ⊗ (1, h, k)`` are expanded from them.
    """
    H, W = counts.shape
    S = hk.shape[0]
    if fill:
        _fill_model(lam, t, half, up, hk, theta, amps, bg, P, PX, PY, win, psum, filled)
    L[:, :] = 0.0
    C[:, :] = 0.0
    D[:] = 0.0
    UL[:] = 0.0
    UA[:] = 0.0
    if fit_background:
        for i in range(H):
            for j in range(W):
                v = lam[i, j]
                UL[6] += counts[i, j] / v - 1.0
                L[6, 6] += 1.0 / v
    c = np.empty(3)
    for s in range(S):
        i0 = win[s, 0]
        i1 = win[s, 1]
        j0 = win[s, 2]
        j1 = win[s, 3]
        sxx = sxy = syy = sxp = syp = spp = rx = ry = rp = wxs = wys = wp = 0.0
        for i in range(i0, i1 + 1):
            for j in range(j0, j1 + 1):
                p = P[s, i - i0, j - j0]
                px = PX[s, i - i0, j - j0]
                py = PY[s, i - i0, j - j0]
                if p == 0.0 and px == 0.0 and py == 0.0:
                    continue
                w = 1.0 / lam[i, j]
                r = counts[i, j] * w - 1.0
                wpx = w * px
                wpy = w * py
                sxx += wpx * px
                sxy += wpx * py
                syy += wpy * py
                sxp += wpx * p
                syp += wpy * p
                spp += w * p * p
                rx += r * px
                ry += r * py
                rp += r * p
                wxs += wpx
                wys += wpy
                wp += w * p
        a = amps[s]
        c[0] = 1.0
        c[1] = hk[s, 0]
        c[2] = hk[s, 1]
        # the centre moves the disk: dλ/dc = -A ∇P
        for u in range(3):
            UL[2 * u] -= c[u] * a * rx
            UL[2 * u + 1] -= c[u] * a * ry
            L[2 * u, 6] -= c[u] * a * wxs
            L[2 * u + 1, 6] -= c[u] * a * wys
            C[2 * u, s] -= c[u] * a * sxp
            C[2 * u + 1, s] -= c[u] * a * syp
            for z in range(3):
                f = c[u] * c[z] * a * a
                L[2 * u, 2 * z] += f * sxx
                L[2 * u, 2 * z + 1] += f * sxy
                L[2 * u + 1, 2 * z] += f * sxy
                L[2 * u + 1, 2 * z + 1] += f * syy
        C[6, s] += wp
        D[s] += spp
        UA[s] += rp
    for u in range(6):
        L[6, u] = L[u, 6]


@njit(cache=True, nogil=True)
def _reduced(L, C, D, UL, UA, active):
    """The 7 x 7 system of lattice and background with the free amplitudes eliminated (Schur complement).

    An amplitude held at zero (``active[s]`` False) stays there: it is left out of the elimination,
    so the lattice step does not count on it moving.
    """
    S = D.shape[0]
    R = L.copy()
    V = UL.copy()
    for s in range(S):
        if D[s] <= 0.0 or not active[s]:
            continue
        inv = 1.0 / D[s]
        for u in range(7):
            V[u] -= C[u, s] * UA[s] * inv
            for z in range(7):
                R[u, z] -= C[u, s] * C[z, s] * inv
    return R, V


@njit(cache=True, nogil=True)
def _sum_c(C, s, dl):
    acc = 0.0
    for u in range(7):
        acc += C[u, s] * dl[u]
    return acc


@njit(cache=True, nogil=True)
def fit_pattern(counts, t, half, up, hk, theta, amps, bg, fix_lattice, fit_background, max_iter, tol, max_step, cov):
    """Fit one pattern in place.

    Parameters
    ----------
    counts : (H, W) float64 array
        The pattern, in counts.
    t : (M, M) float64 array
        Template sampled every ``1 / up`` px over ``[-half, half]`` (read by Catmull-Rom interpolation; the
        gradient is the interpolant's own, so the score is the exact gradient of the likelihood).
    half : float
        Half width of the template window, px.
    up : int
        Template samples per px.
    hk : (S, 2) int64 array
        Lattice indices of the sites.
    theta : (6,) float64 array
        Start lattice ``(o_x, o_y, g1_x, g1_y, g2_x, g2_y)`` (origin in detector px); updated.
    amps : (S,) float64 array
        Start amplitudes (counts per site); updated.
    bg : (1,) float64 array
        Start background (counts per px); updated.
    fix_lattice : bool
        Fit amplitudes (and background) only: the nuisance parameters of the Cramér-Rao bound.
    fit_background : bool
        Fit the background too, and profile it out of the covariance; else it is known.
    max_iter : int
    tol : float
        Converged when no site centre moves more than this (px) in a step.
    max_step : float
        Largest move of any site centre in one step, px (longer steps are scaled down).
    cov : (6, 6) float64 array
        Out: covariance of ``theta`` (inverse Fisher information, nuisance parameters profiled out).

    Returns
    -------
    iterations : int
    status : int
        0 converged, 1 not converged within ``max_iter``, 2 singular information.
    loglik : float
        Poisson log-likelihood at the end (without the ``log n!`` term); NaN when the last, converged
        step was too short to be checked against it (the fit does not need it then).
    """
    H, W = counts.shape
    S = hk.shape[0]
    lam = np.empty((H, W))
    L = np.zeros((7, 7))
    C = np.zeros((7, S))
    D = np.zeros(S)
    UL = np.zeros(7)
    UA = np.zeros(S)
    active = np.ones(S, np.bool_)
    th_prev = np.empty(6)
    a_prev = np.empty(S)
    n = int(2 * half) + 2
    P = np.zeros((S, n, n))
    PX = np.zeros((S, n, n))
    PY = np.zeros((S, n, n))
    win = np.zeros((S, 4), np.int64)
    psum = np.zeros(S)
    filled = np.full(1, -1.0)  # the background lam was last filled with (-1: never; not NaN: fastmath)
    nnz = 0
    for i in range(H):
        for j in range(W):
            if counts[i, j] > 0:
                nnz += 1
    nz_i = np.empty(nnz, np.int64)
    nz_j = np.empty(nnz, np.int64)
    nz_n = np.empty(nnz)
    q = 0
    for i in range(H):
        for j in range(W):
            if counts[i, j] > 0:
                nz_i[q] = i
                nz_j[q] = j
                nz_n[q] = counts[i, j]
                q += 1
    # the model in lam, P, PX, PY is filled lazily: ``current`` says it holds the model at the current
    # parameters (then the next information needs no new fill), ``ll_known`` that ll_prev is their likelihood
    ll_prev = 0.0
    ll_known = False
    current = False
    hmax = 0.0
    for s in range(S):
        hmax = max(hmax, 1.0 + abs(hk[s, 0]) + abs(hk[s, 1]))
    status = 1
    it = 0
    floor_a = 1e-6
    while it < max_iter:
        it += 1
        _accumulate(counts, lam, t, half, up, hk, theta, amps, bg[0], L, C, D, UL, UA, fit_background,
                    P, PX, PY, win, psum, filled, not current)
        current = True
        for u in range(6):
            th_prev[u] = theta[u]
        for s in range(S):
            a_prev[s] = amps[s]
        b_prev = bg[0]
        for s in range(S):  # an amplitude at zero that would go negative is held there
            active[s] = not (amps[s] <= 2.0 * floor_a and UA[s] <= 0.0)
        R, V = _reduced(L, C, D, UL, UA, active)
        dl = np.zeros(7)
        ok = True
        if fix_lattice:
            if fit_background and R[6, 6] > 0:
                dl[6] = V[6] / R[6, 6]
        elif fit_background:
            dl, ok = solve_small_system(R, V)
        else:
            d6, ok = solve_small_system(R[:6, :6].copy(), V[:6].copy())
            dl[:6] = d6
        if not ok:
            status = 2
            break
        # longest move of a site centre
        move = 0.0
        for u in range(0, 6, 2):
            move = max(move, math.hypot(dl[u], dl[u + 1]))
        move_all = move * hmax
        scale = 1.0
        if move_all > max_step:
            scale = max_step / move_all
        for u in range(6):
            theta[u] += scale * dl[u]
        for s in range(S):
            if D[s] > 0.0 and active[s]:
                da = (UA[s] - _sum_c(C, s, dl)) / D[s]
                a_new = amps[s] + scale * da
                amps[s] = a_new if a_new > floor_a else floor_a
        b_new = bg[0] + scale * dl[6]
        bg[0] = b_new if b_new > LAMBDA_FLOOR else max(0.2 * bg[0], LAMBDA_FLOOR)
        # backtrack while the likelihood falls (a long scoring step can overshoot and oscillate); a step
        # shorter than sqrt(CHECK_ABOVE) of its own standard error is taken as it is
        f = 1.0
        dec0 = 0.0
        for u in range(6):
            for z in range(6):
                dec0 += dl[u] * R[u, z] * dl[z]
        check = dec0 * scale * scale > CHECK_ABOVE or fit_background
        ll = ll_prev
        if check:
            if not ll_known:  # lam still holds the model before the step (filled for the information)
                ll_prev = _loglik_filled(nz_i, nz_j, nz_n, lam, hk, a_prev, b_prev, psum)
            ll = _loglik(nz_i, nz_j, nz_n, lam, t, half, up, hk, theta, amps, bg[0], P, PX, PY, win, psum, filled)
        ll_known = check
        current = check
        while check and ll < ll_prev and f > 1e-3:
            f *= 0.5
            for u in range(6):
                theta[u] = th_prev[u] + 0.5 * (theta[u] - th_prev[u])
            for s in range(S):
                amps[s] = a_prev[s] + 0.5 * (amps[s] - a_prev[s])
            bg[0] = b_prev + 0.5 * (bg[0] - b_prev)
            ll = _loglik(nz_i, nz_j, nz_n, lam, t, half, up, hk, theta, amps, bg[0], P, PX, PY, win, psum, filled)
        scale *= f
        move_all *= f
        ll_prev = ll
        # converged: no site moves more than tol px, or the step is under 5 % of its own standard
        # error (dlᵀ F dl < 0.05²; at low dose the likelihood has flat ridges along which scoring creeps)
        dec = 0.0
        for u in range(6):
            for z in range(6):
                dec += dl[u] * R[u, z] * dl[z]
        dec *= scale * scale
        if move_all < tol or dec < STEP_IN_SIGMA ** 2:
            status = 0
            break
    if status == 1:  # at convergence the information of the last step's start is kept (it moved < 5 % of σ)
        _accumulate(counts, lam, t, half, up, hk, theta, amps, bg[0], L, C, D, UL, UA, fit_background,
                    P, PX, PY, win, psum, filled, not current)
        current = True
    loglik = ll_prev if ll_known else math.nan
    if current and not ll_known:
        loglik = _loglik_filled(nz_i, nz_j, nz_n, lam, hk, amps, bg[0], psum)
    for s in range(S):
        active[s] = True  # the information counts every amplitude as unknown
    R, V = _reduced(L, C, D, UL, UA, active)
    # profile out the background too (when fitted), then invert the 6 x 6 lattice block
    S6 = np.empty((6, 6))
    for u in range(6):
        for z in range(6):
            S6[u, z] = R[u, z] - (R[u, 6] * R[6, z] / R[6, 6] if fit_background and R[6, 6] > 0 else 0.0)
    for c in range(6):
        e = np.zeros(6)
        e[c] = 1.0
        x, ok = solve_small_system(S6, e)
        if not ok:
            cov[:, :] = np.nan
            return it, 2, loglik
        for u in range(6):
            cov[u, c] = x[u]
    return it, status, loglik


@njit(cache=True, nogil=True, parallel=True)
def fit_patterns(patterns, scale, t, half, up, hk, theta0, amps0, bg0, fit_background, max_iter, tol, max_step,
                 theta, cov, amps, bg, iters, status, loglik):
    """Fit every pattern of a stack from one start (in parallel over patterns); results written into the outputs.

    ``patterns`` (N, H, W) are multiplied by ``scale`` (counts per data unit); a pattern with a
    non-finite value gets status 4 and NaN results.
    """
    N, H, W = patterns.shape
    for n in prange(N):
        counts = np.empty((H, W))
        c6 = np.empty((6, 6))
        th = np.empty(6)
        b = np.empty(1)
        finite = True
        for i in range(H):
            for j in range(W):
                v = patterns[n, i, j]
                if not np.isfinite(v):
                    finite = False
                counts[i, j] = v * scale
        if not finite:
            theta[n, :] = np.nan
            cov[n, :, :] = np.nan
            amps[n, :] = np.nan
            bg[n] = np.nan
            iters[n] = 0
            status[n] = 4
            loglik[n] = np.nan
            continue
        th[:] = theta0
        a = amps0.copy()
        b[0] = bg0
        it, st, ll = fit_pattern(counts, t, half, up, hk, th, a, b, False, fit_background, max_iter, tol, max_step,
                                 c6)
        theta[n, :] = th
        cov[n, :, :] = c6
        amps[n, :] = a
        bg[n] = b[0]
        iters[n] = it
        status[n] = st
        loglik[n] = ll
