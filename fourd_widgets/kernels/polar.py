"""Numba kernels of the polar (q, θ) transform with full pixel splitting, on plain arrays.

Geometry: detector pixel ``(i, j)`` covers ``[i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]``.
A detector point ``p`` (px, relative to the origin) is taken to the undistorted
frame by ``u = M p`` (``M`` = inverse of the ellipse's distortion matrix), where
``q = |u|`` and ``θ = atan2(u_y, u_x)`` in [0, 2π), counter-clockwise from +qx.

Splitting (as pyFAI's "full" splitting): each pixel's outline (its corners,
plus points along the edges for pixels near the origin, where the edges curve
in (q, θ)) is mapped to (q, θ) bin coordinates; the polygon it spans there is
intersected with every bin it touches, and the pixel's intensity is divided
among the bins in proportion to the detector area of each overlap (the (q, θ)
area weighted by q, since dA = q dq dθ; pyFAI uses the unweighted area, which
misplaces up to ±1/(2q) of a pixel near the origin). The areas come from
integrating each edge, clipped to a bin's row, over the bin's column (Green's
theorem), so the fractions of a pixel sum to 1 up to rounding: intensity is
conserved wherever the pixel lies inside the q range. The pixel holding the
origin, whose corners go all the way round, is spread evenly in θ and by
disk area in q.

The result is a sparse table in CSR form by pixel: ``indptr`` (P + 1),
``bins`` (int32, ``bin = it * n_q + iq``, i.e. an (n_theta, n_q) image) and
``weights`` (fraction of the pixel). Masked pixels get no entries.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["build_polar_table", "polar_sums", "bin_totals", "ring_table", "ring_statistics", "shift_table",
           "pixel_gradient_power"]

_TWO_PI = 2.0 * math.pi
#: Most vertices per pixel edge (pixels next to the origin).
_MAX_SUB = 8


@njit(cache=True, nogil=True, inline="always")
def _band(u, ua, va, slope, y0, r0):
    """Integrand ``(r0 + u) * clamp(v(u) - y0, 0, 1)`` of the area-weighted edge integral."""
    return (r0 + u) * min(max(va + slope * (u - ua) - y0, 0.0), 1.0)


@njit(cache=True, nogil=True)
def _polygon_cells(us, vs, n, iu0, iv0, r0, local):
    """Overlap of a closed polygon (``n`` vertices us, vs) with unit cells, weighted by radius, into ``local``.

    ``local[a, b]`` is ``∬ (r0 + u) du dv`` over the polygon within the cell
    ``[iu0 + a, iu0 + a + 1] x [iv0 + b, iv0 + b + 1]`` (up to a common sign), i.e.
    proportional to the detector area there, since ``dA = q dq dθ``. By Green's
    theorem it is the integral along the outline of ``(r0 + u) clamp(v - y0, 0, 1) du``
    over the cell's column; the integrand is piecewise quadratic between the
    points where the edge enters and leaves the row, so Simpson's rule on each
    piece is exact.
    """
    nu, nv = local.shape
    pts = np.empty(4)
    for e in range(n):
        ua, va = us[e], vs[e]
        ub, vb = us[(e + 1) % n], vs[(e + 1) % n]
        if ua == ub:
            continue
        sign = 1.0 if ub > ua else -1.0
        if ub < ua:
            ua, ub = ub, ua
            va, vb = vb, va
        slope = (vb - va) / (ub - ua)
        c0 = max(int(math.floor(ua)) - iu0, 0)
        c1 = min(int(math.floor(ub)) - iu0, nu - 1)
        for c in range(c0, c1 + 1):
            xl = max(ua, iu0 + c)
            xr = min(ub, iu0 + c + 1.0)
            if xr <= xl:
                continue
            for r in range(nv):
                y0 = float(iv0 + r)
                m = 0
                pts[m] = xl
                m += 1
                if slope != 0.0:
                    for yb in (y0, y0 + 1.0):
                        ux = ua + (yb - va) / slope
                        if xl < ux < xr:
                            pts[m] = ux
                            m += 1
                pts[m] = xr
                m += 1
                if m == 4 and pts[1] > pts[2]:
                    pts[1], pts[2] = pts[2], pts[1]
                a = 0.0
                for t in range(m - 1):
                    x0_, x1_ = pts[t], pts[t + 1]
                    a += (x1_ - x0_) / 6.0 * (_band(x0_, ua, va, slope, y0, r0)
                                              + 4.0 * _band(0.5 * (x0_ + x1_), ua, va, slope, y0, r0)
                                              + _band(x1_, ua, va, slope, y0, r0))
                local[c, r] += sign * a


@njit(cache=True, nogil=True)
def build_polar_table(shape_x, shape_y, x0, y0, M, q_min, q_step, n_q, n_theta, mask):
    """Sparse pixel -> (θ, q) bin table with full pixel splitting.

    Parameters
    ----------
    shape_x, shape_y : int
        Detector shape.
    x0, y0 : float
        Origin, detector px.
    M : (2, 2) float64 array
        Undistortion matrix (inverse of the ellipse's distortion matrix).
    q_min, q_step : float
        Lower edge of the first q bin and bin width, px of the undistorted frame.
    n_q, n_theta : int
        Number of radial and angular bins (θ bins start at 0).
    mask : (Qx, Qy) bool array
        True where a pixel is excluded (beam stop, hot pixels).

    Returns
    -------
    indptr : (P + 1,) int64
    bins : (nnz,) int32, ``it * n_q + iq``
    weights : (nnz,) float64, fraction of the pixel in the bin
    """
    P = shape_x * shape_y
    cap = P * 8 + 64
    bins = np.empty(cap, np.int32)
    weights = np.empty(cap, np.float64)
    indptr = np.zeros(P + 1, np.int64)
    dth = _TWO_PI / n_theta
    us = np.empty(4 * _MAX_SUB, np.float64)
    vs = np.empty(4 * _MAX_SUB, np.float64)
    cx = np.array([-0.5, 0.5, 0.5, -0.5, -0.5])
    cy = np.array([-0.5, -0.5, 0.5, 0.5, -0.5])
    nnz = 0
    for i in range(shape_x):
        for j in range(shape_y):
            p = i * shape_y + j
            indptr[p] = nnz
            if mask[i, j]:
                continue
            holds_origin = abs(i - x0) <= 0.5 and abs(j - y0) <= 0.5
            if holds_origin:
                # corners go all the way round: even in θ, by disk area in q
                rmax = 0.0
                for k in range(4):
                    px = i + cx[k] - x0
                    py = j + cy[k] - y0
                    ux = M[0, 0] * px + M[0, 1] * py
                    uy = M[1, 0] * px + M[1, 1] * py
                    rmax = max(rmax, math.sqrt(ux * ux + uy * uy))
                lo = -q_min / q_step
                hi = (rmax - q_min) / q_step
                need = (int(math.floor(hi)) - int(math.floor(lo)) + 1) * n_theta
                if nnz + need > cap:
                    cap = 2 * (nnz + need)
                    bins = _grow_i(bins, cap)
                    weights = _grow_f(weights, cap)
                for iq in range(max(int(math.floor(lo)), 0), min(int(math.floor(hi)), n_q - 1) + 1):
                    ra = max((q_min + iq * q_step), 0.0)
                    rb = min(q_min + (iq + 1) * q_step, rmax)
                    if rb <= ra:
                        continue
                    f = (rb * rb - ra * ra) / (rmax * rmax) / n_theta
                    for it in range(n_theta):
                        bins[nnz] = it * n_q + iq
                        weights[nnz] = f
                        nnz += 1
                continue
            # Near the origin a pixel's image in (q, θ) has strongly curved edges:
            # follow them with more vertices there (straight edges farther out).
            pcx = i - x0
            pcy = j - y0
            rc = math.sqrt((M[0, 0] * pcx + M[0, 1] * pcy) ** 2 + (M[1, 0] * pcx + M[1, 1] * pcy) ** 2)
            n_sub = min(_MAX_SUB, 1 + int(16.0 / max(rc, 1.0)))
            nv_ = 0
            for k in range(4):
                for t in range(n_sub):
                    f = t / n_sub
                    px = i + cx[k] + f * (cx[k + 1] - cx[k]) - x0
                    py = j + cy[k] + f * (cy[k + 1] - cy[k]) - y0
                    ux = M[0, 0] * px + M[0, 1] * py
                    uy = M[1, 0] * px + M[1, 1] * py
                    us[nv_] = (math.sqrt(ux * ux + uy * uy) - q_min) / q_step
                    vs[nv_] = math.atan2(uy, ux) / dth
                    nv_ += 1
            # unwrap θ along the outline
            for k in range(1, nv_):
                while vs[k] - vs[k - 1] > 0.5 * n_theta:
                    vs[k] -= n_theta
                while vs[k] - vs[k - 1] < -0.5 * n_theta:
                    vs[k] += n_theta
            umin = us[0]
            umax = us[0]
            vmin = vs[0]
            vmax = vs[0]
            for k in range(1, nv_):
                umin = min(umin, us[k])
                umax = max(umax, us[k])
                vmin = min(vmin, vs[k])
                vmax = max(vmax, vs[k])
            if umax <= 0.0 or umin >= n_q:
                continue
            iu0 = int(math.floor(umin))
            iv0 = int(math.floor(vmin))
            nu = int(math.floor(umax)) - iu0 + 1
            nv = int(math.floor(vmax)) - iv0 + 1
            local = np.zeros((nu, nv))
            _polygon_cells(us, vs, nv_, iu0, iv0, q_min / q_step, local)
            total = 0.0
            for a in range(nu):
                for b in range(nv):
                    total += local[a, b]
            if total == 0.0:
                continue
            if nnz + nu * nv > cap:
                cap = 2 * (nnz + nu * nv)
                bins = _grow_i(bins, cap)
                weights = _grow_f(weights, cap)
            for a in range(nu):
                iq = iu0 + a
                if iq < 0 or iq >= n_q:
                    continue
                for b in range(nv):
                    w = local[a, b] / total
                    if w <= 1e-12:
                        continue
                    it = (iv0 + b) % n_theta
                    bins[nnz] = it * n_q + iq
                    weights[nnz] = w
                    nnz += 1
    indptr[P] = nnz
    return indptr, bins[:nnz].copy(), weights[:nnz].copy()


@njit(cache=True, nogil=True)
def _grow_i(a, cap):
    out = np.empty(cap, a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(cache=True, nogil=True)
def _grow_f(a, cap):
    out = np.empty(cap, a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(cache=True, nogil=True)
def polar_sums(block, indptr, bins, weights, out):
    """Split every pattern of a block into polar bins.

    Parameters
    ----------
    block : (n, Qx, Qy) array, real dtype
        Patterns (integers are converted on the fly).
    indptr, bins, weights
        A table from :func:`build_polar_table` (or with squared weights, for
        the Poisson variance of each bin).
    out : (n, n_bins) float64 array
        Receives ``sum_p weights[p, b] * pattern[p]``; overwritten.
    """
    n, sx, sy = block.shape
    for m in range(n):
        o = out[m]
        o[:] = 0.0
        for i in range(sx):
            for j in range(sy):
                v = np.float64(block[m, i, j])
                if v == 0.0:
                    continue
                p = i * sy + j
                for k in range(indptr[p], indptr[p + 1]):
                    o[bins[k]] += weights[k] * v


@njit(cache=True, nogil=True)
def bin_totals(bins, weights, n_bins):
    """Sum of weights per bin (the unmasked area of each bin, in detector pixels)."""
    out = np.zeros(n_bins)
    for k in range(bins.shape[0]):
        out[bins[k]] += weights[k]
    return out


@njit(cache=True, nogil=True)
def ring_table(indptr, bins, weights, scale, n_q):
    """Per-pixel weights of each q ring's angular mean: ``U[p, q] = sum_θ w[p, (θ, q)] * scale[(θ, q)]``.

    With ``scale = valid / (area * n_valid_theta[q])`` this gives the weight of
    each pixel in the annular mean of ring ``q`` (used for its Poisson variance).
    Returns a CSR table by pixel (indptr, ring index, weight).
    """
    P = indptr.shape[0] - 1
    out_ptr = np.zeros(P + 1, np.int64)
    cap = bins.shape[0] + 16
    rb = np.empty(cap, np.int32)
    rw = np.empty(cap, np.float64)
    acc = np.zeros(n_q)
    touched = np.empty(n_q, np.int64)
    nnz = 0
    for p in range(P):
        out_ptr[p] = nnz
        nt = 0
        for k in range(indptr[p], indptr[p + 1]):
            b = bins[k]
            iq = b % n_q
            s = scale[b]
            if s == 0.0:
                continue
            if acc[iq] == 0.0:
                touched[nt] = iq
                nt += 1
            acc[iq] += weights[k] * s
        for t in range(nt):
            iq = touched[t]
            rb[nnz] = iq
            rw[nnz] = acc[iq]
            acc[iq] = 0.0
            nnz += 1
    out_ptr[P] = nnz
    return out_ptr, rb[:nnz].copy(), rw[:nnz].copy()


@njit(cache=True, nogil=True)
def ring_statistics(sums, scale, n_q, use, mean, var, s1, s2, count):
    """Annular mean and variance of split patterns, and scan sums of the bin means.

    Parameters
    ----------
    sums : (m, n_theta * n_q) float64 array
        Bin sums from :func:`polar_sums`.
    scale : (n_theta * n_q,) float64 array
        ``1 / area`` on valid bins, 0 on invalid ones.
    n_q : int
    use : (m,) bool array
        Patterns that enter the scan sums.
    mean, var : (m, n_q) float64 arrays
        Receive the mean and (population) variance over θ of the valid bin means
        (NaN where a ring has no valid bin); overwritten.
    s1, s2, count : (n_theta * n_q,) float64 arrays
        Accumulate the bin means, their squares and the number of patterns.
    """
    m, nb = sums.shape
    n_t = nb // n_q
    acc = np.empty(n_q)
    acc2 = np.empty(n_q)
    cnt = np.empty(n_q)
    for i in range(m):
        acc[:] = 0.0
        acc2[:] = 0.0
        cnt[:] = 0.0
        for t in range(n_t):
            base = t * n_q
            for q in range(n_q):
                s = scale[base + q]
                if s == 0.0:
                    continue
                v = sums[i, base + q] * s
                acc[q] += v
                acc2[q] += v * v
                cnt[q] += 1.0
                if use[i]:
                    s1[base + q] += v
                    s2[base + q] += v * v
                    count[base + q] += 1.0
        for q in range(n_q):
            if cnt[q] > 0:
                mu = acc[q] / cnt[q]
                mean[i, q] = mu
                var[i, q] = max(acc2[q] / cnt[q] - mu * mu, 0.0)
            else:
                mean[i, q] = np.nan
                var[i, q] = np.nan


@njit(cache=True, nogil=True)
def shift_table(indptr, bins, weights, v_shape_y, cx, cy, shape_x, shape_y, ix, iy, mask):
    """Detector table for an origin moved by whole pixels, cut from a larger shift-invariant table.

    The splitting depends only on a pixel's offset from the origin, so a table
    built once on a virtual detector ``(v_shape_x, v_shape_y)`` whose origin sits
    at ``(cx + fx, cy + fy)`` serves every origin ``(ix + fx, iy + fy)``:
    detector pixel ``(i, j)`` takes the virtual pixel ``(i - ix + cx, j - iy + cy)``.
    Masked detector pixels get no entries. Returns (indptr, bins, weights).
    """
    v_shape_x = (indptr.shape[0] - 1) // v_shape_y
    P = shape_x * shape_y
    out_ptr = np.zeros(P + 1, np.int64)
    nnz = 0
    for i in range(shape_x):
        vi = i - ix + cx
        for j in range(shape_y):
            vj = j - iy + cy
            if mask[i, j] or vi < 0 or vi >= v_shape_x or vj < 0 or vj >= v_shape_y:
                continue
            v = vi * v_shape_y + vj
            nnz += indptr[v + 1] - indptr[v]
    ob = np.empty(nnz, np.int32)
    ow = np.empty(nnz, np.float64)
    k = 0
    for i in range(shape_x):
        vi = i - ix + cx
        for j in range(shape_y):
            p = i * shape_y + j
            out_ptr[p] = k
            vj = j - iy + cy
            if mask[i, j] or vi < 0 or vi >= v_shape_x or vj < 0 or vj >= v_shape_y:
                continue
            v = vi * v_shape_y + vj
            for e in range(indptr[v], indptr[v + 1]):
                ob[k] = bins[e]
                ow[k] = weights[e]
                k += 1
    out_ptr[P] = k
    return out_ptr, ob, ow



@njit(cache=True, nogil=True)
def pixel_gradient_power(block, indptr, bins, weights, grad, n_q, per_ring, out):
    """Poisson-weighted power of a statistic's gradient, carried back to the pixels.

    With ``G[p] = sum_b weights[p, b] * grad[m, b]`` the derivative of a statistic
    with respect to pixel ``p`` of pattern ``m``, this adds ``sum_p block[m, p] *
    G[p]**2`` to ``out``: the Cramér-Rao variance of the statistic when the pixels
    are independent Poisson counts of means ``block``.

    Parameters
    ----------
    block : (n, Qx, Qy) array
        Expected counts (electrons) per pixel.
    indptr, bins, weights
        A table from :func:`build_polar_table`.
    grad : (n, n_bins) float64 array
        Derivative with respect to each bin *sum* (the bin-mean derivative
        times ``1 / area``).
    n_q : int
    per_ring : bool
        True: one statistic per ring ``q``, whose gradient lives on the bins of
        that ring (``out`` has n_q entries); False: one statistic (``out[0]``).
    out : (n_q,) or (1,) float64 array
        Accumulates.
    """
    n, sx, sy = block.shape
    G = np.zeros(n_q)
    for m in range(n):
        g = grad[m]
        for i in range(sx):
            for j in range(sy):
                lam = np.float64(block[m, i, j])
                if lam == 0.0:
                    continue
                p = i * sy + j
                if per_ring:
                    # a pixel touches a few rings: accumulate, then flush only those
                    for k in range(indptr[p], indptr[p + 1]):
                        b = bins[k]
                        G[b % n_q] += weights[k] * g[b]
                    for k in range(indptr[p], indptr[p + 1]):
                        iq = bins[k] % n_q
                        if G[iq] != 0.0:
                            out[iq] += lam * G[iq] * G[iq]
                            G[iq] = 0.0
                else:
                    t = 0.0
                    for k in range(indptr[p], indptr[p + 1]):
                        t += weights[k] * g[bins[k]]
                    out[0] += lam * t * t
