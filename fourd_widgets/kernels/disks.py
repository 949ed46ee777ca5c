"""Numba kernels for Bragg disk detection, on plain arrays.

Correlation maps are ``(N, H, W)`` float32 arrays (one per pattern), their
spectra the matching ``(N, H, W//2 + 1)`` complex64 half spectra of
``scipy.fft.rfft2``. Peaks are reported in detector pixels: ``qx`` along axis 0
(rows), ``qy`` along axis 1, pixel ``(i, j)`` at ``(i, j)``.

The kernels know nothing of DataCube or parameter records; they are called by
:mod:`fourd_widgets.analysis.disks`.

References
----------
.. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel
   image registration algorithms", Opt. Lett. 33, 156-158 (2008).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "local_maxima",
    "select_peaks",
    "parabola_offsets",
    "local_dft",
    "dft_refine",
    "detect_batch",
    "disk_sums",
    "disk_sums_at",
    "copy_finite",
    "splat_bilinear",
    "radial_median_subtract",
]

# 'reassoc' lets LLVM vectorise the DFT sums; NaN checks stay valid ('nnan' is not set).
_FAST = {"reassoc", "contract"}

# Refinement modes understood by detect_batch.
MODE_NONE = 0
MODE_PARABOLA = 1
MODE_DFT = 2


@njit(cache=True, nogil=True)
def local_maxima(corr, edge, xs, ys, vs):
    """8-neighbour local maxima of one map, away from the edge.

    Parameters
    ----------
    corr : (H, W) float array
        Map to search.
    edge : float
        Maxima closer than this to the border (``x < edge`` or
        ``x > H - 1 - edge``, same for ``y``) are dropped. The outermost pixel
        ring is always skipped.
    xs, ys : (H*W,) int64 arrays
        Receive the row and column of each maximum.
    vs : (H*W,) float64 array
        Receives the map value there.

    Returns
    -------
    int
        Number of maxima written, in raster order.

    Notes
    -----
    A pixel is a maximum when it is strictly greater than its neighbours
    above/left and greater than or equal to those below/right, so a flat
    plateau of two equal pixels gives one maximum, not zero or two. Only
    positive values count.
    """
    H, W = corr.shape
    x0 = max(1, int(math.ceil(edge)))
    x1 = min(H - 2, int(math.floor(H - 1 - edge)))
    y0 = max(1, int(math.ceil(edge)))
    y1 = min(W - 2, int(math.floor(W - 1 - edge)))
    n = 0
    for i in range(x0, x1 + 1):
        for j in range(y0, y1 + 1):
            v = corr[i, j]
            if not v > 0.0:
                continue
            if (v > corr[i - 1, j - 1] and v > corr[i - 1, j] and v > corr[i - 1, j + 1]
                    and v > corr[i, j - 1] and v >= corr[i, j + 1]
                    and v >= corr[i + 1, j - 1] and v >= corr[i + 1, j] and v >= corr[i + 1, j + 1]):
                xs[n] = i
                ys[n] = j
                vs[n] = v
                n += 1
    return n


@njit(cache=True, nogil=True)
def select_peaks(xs, ys, vs, n, min_abs, min_spacing, min_rel, rel_to, max_num, keep):
    """Apply the peak filters in py4DSTEM's order; return the kept indices, strongest first.

    Parameters
    ----------
    xs, ys, vs : arrays
        Candidate maxima from :func:`local_maxima` (first ``n`` entries used).
    n : int
        Number of candidates.
    min_abs : float
        Drop candidates with value below this.
    min_spacing : float
        Greedy suppression: a candidate closer than this (px) to a stronger
        kept one is dropped.
    min_rel : float
        Drop candidates below ``min_rel`` times the value of the ``rel_to``-th
        strongest survivor (0 = the strongest); skipped when fewer survive.
    rel_to : int
        See ``min_rel``.
    max_num : int
        Keep at most this many (the strongest).
    keep : (n,) bool array
        Receives True for the kept candidates (indices into the inputs).

    Returns
    -------
    order : (m,) int64 array
        Indices of the kept candidates, by decreasing value.
    """
    order = np.argsort(-vs[:n], kind="mergesort")
    # Greedy in decreasing value: a candidate survives the spacing filter when no stronger
    # survivor lies within min_spacing. Once the rel_to-th survivor (the relative reference)
    # is known, every later (weaker) candidate below min_rel times it is dropped, and once
    # max_num survivors pass the relative threshold the rest would be cut anyway: both
    # end the loop early, so the cost is about (number kept) x (candidates examined).
    s2 = min_spacing * min_spacing
    kept = np.empty(n, dtype=np.int64)
    m = 0
    ref = -1.0
    for k in range(n):
        c = order[k]
        v = vs[c]
        if (ref >= 0.0 and v < min_rel * ref) or (m >= max_num and (ref >= 0.0 or min_rel <= 0)):
            break
        if v < min_abs:
            continue
        ok = True
        if min_spacing > 0:
            for q in range(m):
                dx = xs[kept[q]] - xs[c]
                dy = ys[kept[q]] - ys[c]
                if dx * dx + dy * dy < s2:
                    ok = False
                    break
        if ok:
            kept[m] = c
            m += 1
            if min_rel > 0 and m == rel_to + 1:
                ref = v
    # survivors stronger than the reference were kept before it was known: apply the
    # relative threshold (they are above it unless min_rel > 1, which params forbid) and max_num
    out = np.empty(min(m, max_num), dtype=np.int64)
    j = 0
    for q in range(m):
        c = kept[q]
        if j < max_num and (ref < 0.0 or vs[c] >= min_rel * ref):
            out[j] = c
            keep[c] = True
            j += 1
    return out[:j]


@njit(cache=True, nogil=True, inline="always")
def _parabola(a, b, c):
    """Vertex offset of the parabola through (-1, a), (0, b), (1, c), clipped to [-0.5, 0.5]."""
    den = a - 2.0 * b + c
    if den >= 0.0:
        return 0.0
    d = 0.5 * (a - c) / den
    return min(0.5, max(-0.5, d))


@njit(cache=True, nogil=True)
def parabola_offsets(corr, i, j):
    """Sub-pixel offset of a maximum by separate parabola fits along each axis.

    Parameters
    ----------
    corr : (H, W) float array
    i, j : int
        The maximum's pixel (not on the outer ring).

    Returns
    -------
    dx, dy, value : float
        Offsets in [-0.5, 0.5] px and the interpolated peak value.
    """
    b = float(corr[i, j])
    ax, cx = float(corr[i - 1, j]), float(corr[i + 1, j])
    ay, cy = float(corr[i, j - 1]), float(corr[i, j + 1])
    dx = _parabola(ax, b, cx)
    dy = _parabola(ay, b, cy)
    val = b - 0.25 * ((ax - cx) * dx + (ay - cy) * dy)
    return dx, dy, val


@njit(cache=True, nogil=True, fastmath=_FAST)
def local_dft(spec_re, spec_im, H, W, band, x0, y0, step, nx, ny, out):
    """Correlation at off-grid points from its half spectrum (matrix-multiply DFT).

    Evaluates ``c(x, y) = 1/(H W) sum_{u,v} S[u, v] exp(2 pi i (u x / H + v y / W))``
    on the ``nx`` x ``ny`` grid ``x = x0 + a step``, ``y = y0 + b step`` as two
    small matrix products (first over ``v`` for each ``y``, then over ``u``
    for each ``x``), the method of Guizar-Sicairos et al. [1]_ on the
    Hermitian half spectrum of a real map.

    Parameters
    ----------
    spec_re, spec_im : (H, W//2 + 1) float32 arrays
        Real and imaginary parts of ``rfft2`` of the real map.
    H, W : int
        Shape of the real map.
    band : int
        Only frequencies ``|u| < band`` and ``v < band`` are summed (the rest
        are taken as zero, e.g. because a Gaussian smoothing already removed
        them); ``band >= max(H, W)`` sums everything.
    x0, y0, step : float
        Grid origin and spacing, in pixels.
    nx, ny : int
        Grid size.
    out : (nx, ny) float64 array
        Receives the map values.

    Notes
    -----
    Frequencies are taken in ``[-H/2, H/2)``; the Nyquist column gets weight
    one, the others (except ``v = 0``) weight two, and the real part is kept,
    so on integer points the result equals ``irfft2(spec)``.
    """
    ws = dft_workspace(spec_re.shape[1], H, nx, ny)
    _local_dft_ws(spec_re, spec_im, H, W, band, x0, y0, step, nx, ny, out, ws)


@njit(cache=True, nogil=True)
def dft_workspace(Wr, H, nx, ny):
    """Scratch arrays for :func:`_local_dft_ws` (grids up to ``nx`` x ``ny``, half-spectrum width ``Wr``)."""
    return (np.empty((ny, Wr), dtype=np.float32), np.empty((ny, Wr), dtype=np.float32),
            np.empty((nx, H), dtype=np.float64), np.empty((nx, H), dtype=np.float64),
            np.empty(ny, dtype=np.float64), np.empty(ny, dtype=np.float64))


@njit(cache=True, nogil=True, fastmath=_FAST)
def _local_dft_ws(spec_re, spec_im, H, W, band, x0, y0, step, nx, ny, out, ws):
    """:func:`local_dft` with caller-owned scratch ``ws`` from :func:`dft_workspace` (no allocation)."""
    kyr, kyi, kxr, kxi, tr, ti = ws
    Wr = spec_re.shape[1]
    nv = min(Wr, band)
    two_pi = 2.0 * math.pi
    # column phases exp(2 pi i v y_b / W) with Hermitian weights, by recurrence
    for b in range(ny):
        ph = two_pi * (y0 + b * step) / W
        dr = math.cos(ph)
        di = math.sin(ph)
        cr = 1.0
        ci = 0.0
        for v in range(nv):
            w = 1.0 if (v == 0 or (W % 2 == 0 and v == W // 2)) else 2.0
            kyr[b, v] = w * cr
            kyi[b, v] = w * ci
            cr, ci = cr * dr - ci * di, cr * di + ci * dr
    # row phases exp(2 pi i u x_a / H), u = 0, 1, ... and u = -1, -2, ...
    for a in range(nx):
        ph = two_pi * (x0 + a * step) / H
        dr = math.cos(ph)
        di = math.sin(ph)
        cr = 1.0
        ci = 0.0
        for u in range((H + 1) // 2):
            kxr[a, u] = cr
            kxi[a, u] = ci
            if u > 0:
                kxr[a, H - u] = cr
                kxi[a, H - u] = -ci
            cr, ci = cr * dr - ci * di, cr * di + ci * dr
        if H % 2 == 0:
            kxr[a, H // 2] = cr
            kxi[a, H // 2] = -ci
    for a in range(nx):
        for b in range(ny):
            out[a, b] = 0.0
    for u in range(H):
        us = u if u < (H + 1) // 2 else u - H
        if us >= band or -us >= band:
            continue
        sr = spec_re[u]
        si = spec_im[u]
        for b in range(ny):
            ar = np.float32(0.0)
            ai = np.float32(0.0)
            kr = kyr[b]
            ki = kyi[b]
            for v in range(nv):
                ar += sr[v] * kr[v] - si[v] * ki[v]
                ai += sr[v] * ki[v] + si[v] * kr[v]
            tr[b] = ar
            ti[b] = ai
        for a in range(nx):
            c = kxr[a, u]
            s = kxi[a, u]
            for b in range(ny):
                out[a, b] += c * tr[b] - s * ti[b]
    norm = 1.0 / (H * W)
    for a in range(nx):
        for b in range(ny):
            out[a, b] *= norm


@njit(cache=True, nogil=True)
def dft_refine(spec_re, spec_im, H, W, band, x, y, usf):
    """Refine a peak to ``1/usf`` px by locally DFT-upsampled correlation.

    Starting from an estimate ``(x, y)`` (e.g. the parabola fit), the map is
    evaluated by :func:`local_dft` on 3 x 3 stencils of spacing ``1/4``,
    ``1/16`` ... down to ``1/usf`` px; at each stage the stencil is moved
    until its centre is the maximum, and the last stage ends with a parabola
    fit. This gives the ``1/usf`` grid of Guizar-Sicairos et al. [1]_ with 9
    evaluated points per stage instead of ``(1.5 usf)^2``.

    Parameters
    ----------
    spec_re, spec_im : (H, W//2 + 1) float32 arrays
        Half spectrum of the correlation.
    H, W : int
        Shape of the correlation map.
    band : int
        Frequency limit, see :func:`local_dft`.
    x, y : float
        Starting estimate, px.
    usf : int
        Upsampling factor (>= 1).

    Returns
    -------
    x, y, value : float
        Refined position and the map value there.
    """
    return _dft_refine_ws(spec_re, spec_im, H, W, band, x, y, usf, dft_workspace(spec_re.shape[1], H, 3, 3))


@njit(cache=True, nogil=True)
def _dft_refine_ws(spec_re, spec_im, H, W, band, x, y, usf, ws):
    """:func:`dft_refine` with caller-owned scratch ``ws`` (``dft_workspace(Wr, H, 3, 3)`` or larger)."""
    grid = np.empty((3, 3), dtype=np.float64)
    value = 0.0
    step = 1.0
    final = 1.0 / max(1, usf)
    while step > final + 1e-12:
        step = max(step / 4.0, final)
        cx = round(x / step) * step
        cy = round(y / step) * step
        for _ in range(6):
            _local_dft_ws(spec_re, spec_im, H, W, band, cx - step, cy - step, step, 3, 3, grid, ws)
            bi = 1
            bj = 1
            best = grid[1, 1]
            for a in range(3):
                for b in range(3):
                    if grid[a, b] > best:
                        best = grid[a, b]
                        bi = a
                        bj = b
            if bi == 1 and bj == 1:
                break
            cx += (bi - 1) * step
            cy += (bj - 1) * step
        dx = _parabola(grid[0, 1], grid[1, 1], grid[2, 1])
        dy = _parabola(grid[1, 0], grid[1, 1], grid[1, 2])
        value = grid[1, 1] - 0.25 * ((grid[0, 1] - grid[2, 1]) * dx + (grid[1, 0] - grid[1, 2]) * dy)
        x = cx + dx * step
        y = cy + dy * step
    return x, y, value


@njit(cache=True, nogil=True)
def disk_sums_at(patterns, pidx, qx, qy, radius, out):
    """Sum of pattern ``pidx[k]`` over the disk of ``radius`` around ``(qx[k], qy[k])`` (pixel centres inside)."""
    N, H, W = patterns.shape
    r2 = radius * radius
    for k in range(pidx.shape[0]):
        p = pidx[k]
        s = 0.0
        if math.isfinite(qx[k]) and math.isfinite(qy[k]):
            i0 = max(0, int(math.ceil(qx[k] - radius)))
            i1 = min(H - 1, int(math.floor(qx[k] + radius)))
            j0 = max(0, int(math.ceil(qy[k] - radius)))
            j1 = min(W - 1, int(math.floor(qy[k] + radius)))
            for i in range(i0, i1 + 1):
                ddx = i - qx[k]
                for j in range(j0, j1 + 1):
                    ddy = j - qy[k]
                    if ddx * ddx + ddy * ddy <= r2:
                        s += patterns[p, i, j]
        out[k] = s


@njit(cache=True, nogil=True)
def disk_sums(pattern, qx, qy, radius, out):
    """Sum of a pattern over a disk of ``radius`` around each peak (pixel centres inside).

    Parameters
    ----------
    pattern : (H, W) float array
    qx, qy : (m,) float arrays
        Disk centres, px.
    radius : float
    out : (m,) float array
        Receives the sums; pixels off the detector count as zero.
    """
    disk_sums_at(pattern.reshape((1,) + pattern.shape), np.zeros(qx.shape[0], dtype=np.int64), qx, qy, radius, out)


@njit(cache=True, nogil=True)
def detect_batch(corr, spec_re, spec_im, band, patterns, valid, edge, min_abs, min_spacing, min_rel, rel_to, max_num,
                 mode, usf, radius, counts, qx, qy, inten, score):
    """Find, filter and refine the peaks of a batch of correlation maps.

    Parameters
    ----------
    corr : (N, H, W) float32 array
        Correlation maps.
    spec_re, spec_im : (N, H, W//2 + 1) float32 arrays
        Their half spectra (used by ``mode == MODE_DFT`` only).
    band : int
        Frequency limit of the spectra, see :func:`local_dft`.
    patterns : (N, H, W) float array
        The patterns, for the disk intensities.
    valid : (N,) bool array
        False: the pattern is skipped (no peaks).
    edge, min_abs, min_spacing, min_rel, rel_to, max_num
        Filters, see :func:`local_maxima` and :func:`select_peaks`.
    mode : int
        ``MODE_NONE``, ``MODE_PARABOLA`` or ``MODE_DFT``.
    usf : int
        Upsampling factor for ``MODE_DFT``.
    radius : float
        Disk radius for the intensity sums (0: no sums).
    counts : (N,) int64 array
        Receives the number of peaks per pattern.
    qx, qy, inten, score : (N * max_num,) float64 arrays
        Receive the peaks of pattern ``p`` at ``[p * max_num, p * max_num + counts[p])``.
    """
    N, H, W = corr.shape
    xs = np.empty(H * W, dtype=np.int64)
    ys = np.empty(H * W, dtype=np.int64)
    vs = np.empty(H * W, dtype=np.float64)
    for p in range(N):
        counts[p] = 0
        if not valid[p]:
            continue
        n = local_maxima(corr[p], edge, xs, ys, vs)
        keep = np.zeros(n, dtype=np.bool_)
        order = select_peaks(xs, ys, vs, n, min_abs, min_spacing, min_rel, rel_to, max_num, keep)
        base = p * max_num
        for k in range(order.shape[0]):
            i = xs[order[k]]
            j = ys[order[k]]
            x = float(i)
            y = float(j)
            v = vs[order[k]]
            if mode >= MODE_PARABOLA:
                dx, dy, v = parabola_offsets(corr[p], i, j)
                x += dx
                y += dy
            if mode == MODE_DFT:
                x, y, v = dft_refine(spec_re[p], spec_im[p], H, W, band, x, y, usf)
            qx[base + k] = x
            qy[base + k] = y
            score[base + k] = v
        m = order.shape[0]
        counts[p] = m
        if radius > 0 and m > 0:
            disk_sums(patterns[p], qx[base:base + m], qy[base:base + m], radius, inten[base:base + m])


@njit(cache=True, nogil=True)
def splat_bilinear(qx, qy, w, out):
    """Add weights ``w`` at sub-pixel points into ``out`` by bilinear splatting.

    Parameters
    ----------
    qx, qy : (n,) float arrays
        Points in pixels of ``out`` (axis 0, axis 1).
    w : (n,) float array
        Weights.
    out : (H, W) float64 array
        Accumulated in place; the parts of a point's footprint off the grid
        are dropped.
    """
    H, W = out.shape
    for k in range(qx.shape[0]):
        x = qx[k]
        y = qy[k]
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        i = int(math.floor(x))
        j = int(math.floor(y))
        fx = x - i
        fy = y - j
        for a in range(2):
            ii = i + a
            if ii < 0 or ii >= H:
                continue
            wx = fx if a else 1.0 - fx
            for b in range(2):
                jj = j + b
                if jj < 0 or jj >= W:
                    continue
                wy = fy if b else 1.0 - fy
                out[ii, jj] += w[k] * wx * wy


@njit(cache=True, nogil=True)
def radial_median_subtract(patterns, ox, oy, out):
    """Subtract from each pattern the median of its 1-px rings around an origin.

    Parameters
    ----------
    patterns : (N, H, W) float array
    ox, oy : (N,) float arrays
        Origin of each pattern, px.
    out : (N, H, W) float32 array
        Receives ``pattern - median(ring)`` for each pixel's ring
        ``round(|q - origin|)``.
    """
    N, H, W = patterns.shape
    rmax = int(math.ceil(math.hypot(H, W))) + 2
    rings = np.empty(H * W, dtype=np.int64)
    counts = np.zeros(rmax, dtype=np.int64)
    starts = np.zeros(rmax + 1, dtype=np.int64)
    vals = np.empty(H * W, dtype=np.float64)
    med = np.zeros(rmax, dtype=np.float64)
    for p in range(N):
        counts[:] = 0
        for i in range(H):
            for j in range(W):
                r = int(round(math.hypot(i - ox[p], j - oy[p])))
                rings[i * W + j] = r
                counts[r] += 1
        starts[0] = 0
        for r in range(rmax):
            starts[r + 1] = starts[r] + counts[r]
        fill = starts[:-1].copy()
        for i in range(H):
            for j in range(W):
                r = rings[i * W + j]
                vals[fill[r]] = patterns[p, i, j]
                fill[r] += 1
        for r in range(rmax):
            c = counts[r]
            if c > 0:
                med[r] = np.median(vals[starts[r]:starts[r] + c])
        for i in range(H):
            for j in range(W):
                out[p, i, j] = patterns[p, i, j] - med[rings[i * W + j]]


@njit(cache=True, nogil=True)
def copy_finite(src, dst, valid):
    """Copy patterns into a float32 array and mark the ones holding only finite values.

    One pass instead of a conversion plus ``np.isfinite(...).all()``.

    Parameters
    ----------
    src : (N, H, W) array, any real dtype
    dst : (N, H, W) float32 array
        Receives the patterns; a pattern with a NaN or infinite value is zeroed.
    valid : (N,) bool array
        Receives False for those patterns.

    Examples
    --------
    >>> src = np.array([[[1.0, 2.0]], [[np.nan, 1.0]]])
    >>> dst, ok = np.empty((2, 1, 2), np.float32), np.empty(2, np.bool_)
    >>> copy_finite(src, dst, ok); dst.tolist(), ok.tolist()
    ([[[1.0, 2.0]], [[0.0, 0.0]]], [True, False])
    """
    N, H, W = src.shape
    for p in range(N):
        bad = False
        for i in range(H):
            for j in range(W):
                v = np.float32(src[p, i, j])
                dst[p, i, j] = v
                # v - v is 0 for finite v and NaN for NaN or +-inf; summed without a branch
                bad |= (v - v) != 0.0
        valid[p] = not bad
        if bad:
            dst[p] = 0.0
