"""Numba kernels for virtual detectors and pattern reductions, on plain arrays.

Blocks are ``(nx, ny, Qx, Qy)`` arrays of any real dtype, read as they are (integers
are converted on the fly, never copied). Detectors come as a weight stack
``(K, bx, by)`` cut to the bounding box of their support, whose corner sits at
detector pixel ``(x0, y0)``.

Shifts follow one convention everywhere: with a per-position shift
``s = (ix + fx, iy + fy)`` (integer part, fraction in [0, 1)), the pattern is
read at ``q + s`` — a detector at ``t`` sees pixel ``t + s``, i.e. the mask moves
with the beam — interpolated bilinearly from the four integer-shifted reads with
weights ``(1-fx)(1-fy), (1-fx)fy, fx(1-fy), fx fy``. Pixels read from outside the
detector count as zero.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["mac_shifted", "max_shifted", "accumulate_shifted", "split_shift", "mac_gemm", "TILE_BYTES",
           "mac_ranges", "pair_ranges"]

# 'reassoc' lets LLVM vectorise the reductions; NaN checks stay valid because
# 'nnan' is not among the flags.
_FAST = {"reassoc", "contract"}


@njit(cache=True, nogil=True, inline="always")
def _span(x0: int, b: int, d: int, n: int) -> tuple[int, int]:
    """Indices ``i`` in [0, b) with ``0 <= x0 + i + d < n``."""
    lo = max(0, -(x0 + d))
    hi = min(b, n - (x0 + d))
    return lo, max(lo, hi)


@njit(cache=True, nogil=True, inline="always")
def _corner(c: int, f: float) -> float:
    return 1.0 - f if c == 0 else f


@njit(cache=True, nogil=True, fastmath=_FAST)
def mac_shifted(block, weights, x0, y0, ix, iy, fx, fy, out):
    """Multiply-accumulate ``K`` detectors over a block, with per-position shifts.

    Parameters
    ----------
    block : (nx, ny, Qx, Qy) array, real dtype
        Patterns.
    weights : (K, bx, by) float64 array
        Detector weights over their bounding box.
    x0, y0 : int
        Detector pixel of ``weights[:, 0, 0]``.
    ix, iy : (nx, ny) int64 arrays
        Integer part of the shift per position.
    fx, fy : (nx, ny) float64 arrays
        Fractional part (all zeros for integer shifts).
    out : (nx, ny, K) float64 array
        Receives ``sum_t weights[k, t] * pattern(t + s)``; overwritten.

    Notes
    -----
    A NaN pixel only poisons detectors that weigh it: a row whose sum comes out
    NaN is summed again over non-zero weights only (rare, so the fast loop stays
    branch-free).

    Examples
    --------
    >>> b = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> z, f = np.zeros((1, 1), np.int64), np.zeros((1, 1))
    >>> out = np.empty((1, 1, 1))
    >>> mac_shifted(b, np.ones((1, 1, 2)), 1, 1, z, z, f, f, out); out.ravel().tolist()
    [11.0]
    """
    nx, ny, Qx, Qy = block.shape
    K, bx, by = weights.shape
    for a in range(nx):
        for b in range(ny):
            for k in range(K):
                out[a, b, k] = 0.0
            for ca in range(2):
                wa = _corner(ca, fx[a, b])
                if wa == 0.0:
                    continue
                dx = ix[a, b] + ca
                i0, i1 = _span(x0, bx, dx, Qx)
                for cb in range(2):
                    w = wa * _corner(cb, fy[a, b])
                    if w == 0.0:
                        continue
                    dy = iy[a, b] + cb
                    j0, j1 = _span(y0, by, dy, Qy)
                    for i in range(i0, i1):
                        # 1-D slices with 0-based indices: no negative-index
                        # wrap-around branch, so the loop vectorises
                        row = block[a, b, x0 + i + dx, y0 + j0 + dy:y0 + j1 + dy]
                        for k in range(K):
                            wk = weights[k, i, j0:j1]
                            # a row is short: summing it in the weights' dtype
                            # (float32 doubles the SIMD width) loses nothing notable
                            s = wk.dtype.type(0)
                            for j in range(j1 - j0):
                                s += row[j] * wk[j]
                            if s != s:
                                s = wk.dtype.type(0)
                                for j in range(j1 - j0):
                                    if wk[j] != 0.0:
                                        s += row[j] * wk[j]
                            out[a, b, k] += w * s


@njit(cache=True, nogil=True)
def max_shifted(block, support, x0, y0, ix, iy, out):
    """Maximum of each pattern within ``K`` detector supports, with integer shifts.

    Parameters
    ----------
    block : (nx, ny, Qx, Qy) array
    support : (K, bx, by) bool array
    x0, y0 : int
    ix, iy : (nx, ny) int64 arrays
    out : (nx, ny, K) float64 array
        The maximum; NaN if a NaN pixel is inside; 0 if no pixel of the support
        falls on the detector.

    Examples
    --------
    >>> b = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> z = np.zeros((1, 1), np.int64)
    >>> out = np.empty((1, 1, 1))
    >>> max_shifted(b, np.ones((1, 2, 2), np.bool_), 0, 0, z, z, out); out.ravel().tolist()
    [5.0]
    """
    nx, ny, Qx, Qy = block.shape
    K, bx, by = support.shape
    for a in range(nx):
        for b in range(ny):
            dx, dy = ix[a, b], iy[a, b]
            i0, i1 = _span(x0, bx, dx, Qx)
            j0, j1 = _span(y0, by, dy, Qy)
            for k in range(K):
                m = -np.inf
                seen = False
                for i in range(i0, i1):
                    for j in range(j0, j1):
                        if support[k, i, j]:
                            v = np.float64(block[a, b, x0 + i + dx, y0 + j + dy])
                            if v != v:
                                m = v
                                seen = True
                                break
                            if v > m:
                                m = v
                            seen = True
                    if m != m:
                        break
                out[a, b, k] = m if seen else 0.0


@njit(cache=True, nogil=True, fastmath=_FAST)
def accumulate_shifted(block, weights, ix, iy, fx, fy, total, use_max):
    """Fold the shifted patterns of a block into one pattern: weighted sum or maximum.

    Parameters
    ----------
    block : (nx, ny, Qx, Qy) array
    weights : (nx, ny) float64 array
        Per-position weight; positions with weight 0 are skipped entirely.
    ix, iy, fx, fy : (nx, ny) arrays
        Shift per position (see module notes): the result at ``q`` is read at ``q + s``.
    total : (Qx, Qy) float64 array
        Updated in place: ``+= w * shifted`` or ``= max(total, shifted)`` (for
        the maximum start from ``-inf``; NaN pixels propagate).
    use_max : bool

    Returns
    -------
    int
        Number of positions folded in.

    Examples
    --------
    >>> b = np.arange(8.0).reshape(2, 1, 2, 2)
    >>> z, f = np.zeros((2, 1), np.int64), np.zeros((2, 1))
    >>> t = np.zeros((2, 2))
    >>> accumulate_shifted(b, np.ones((2, 1)), z, z, f, f, t, False), t.tolist()
    (2, [[4.0, 6.0], [8.0, 10.0]])
    """
    nx, ny, Qx, Qy = block.shape
    tmp = np.empty((Qx, Qy))
    count = 0
    for a in range(nx):
        for b in range(ny):
            wp = weights[a, b]
            if wp == 0.0:
                continue
            count += 1
            tmp[:] = 0.0
            for ca in range(2):
                wa = _corner(ca, fx[a, b])
                if wa == 0.0:
                    continue
                dx = ix[a, b] + ca
                i0, i1 = _span(0, Qx, dx, Qx)
                for cb in range(2):
                    w = wa * _corner(cb, fy[a, b])
                    if w == 0.0:
                        continue
                    dy = iy[a, b] + cb
                    j0, j1 = _span(0, Qy, dy, Qy)
                    for i in range(i0, i1):
                        for j in range(j0, j1):
                            tmp[i, j] += w * block[a, b, i + dx, j + dy]
            if use_max:
                for i in range(Qx):
                    for j in range(Qy):
                        v = tmp[i, j]
                        if v > total[i, j] or v != v:
                            total[i, j] = v
            else:
                for i in range(Qx):
                    for j in range(Qy):
                        total[i, j] += wp * tmp[i, j]
    return count


def split_shift(shift: np.ndarray, subpixel: bool) -> tuple[np.ndarray, ...]:
    """Integer and fractional parts of per-position shifts, in the kernels' form.

    Parameters
    ----------
    shift : (nx, ny, 2) float array
        Shift per position, in pixels.
    subpixel : bool
        False rounds to whole pixels (fractions all zero).

    Returns
    -------
    ix, iy : (nx, ny) int64 arrays
    fx, fy : (nx, ny) float64 arrays, in [0, 1)

    Examples
    --------
    >>> [a.ravel().tolist() for a in split_shift(np.array([[[1.25, -0.5]]]), True)]
    [[1], [-1], [0.25], [0.5]]
    """
    shift = np.asarray(shift, dtype=np.float64)
    if subpixel:
        whole = np.floor(shift)
        frac = shift - whole
    else:
        whole = np.round(shift)
        frac = np.zeros_like(shift)
    whole = whole.astype(np.int64)
    return (np.ascontiguousarray(whole[..., 0]), np.ascontiguousarray(whole[..., 1]),
            np.ascontiguousarray(frac[..., 0]), np.ascontiguousarray(frac[..., 1]))


#: Size of the float buffer a tile of patterns is converted into before its GEMM:
#: small enough to stay in cache (no extra memory pass for the conversion), big
#: enough that BLAS reuses the weights over many rows (1 MiB measured 2x slower).
TILE_BYTES = 4 << 20


def mac_gemm(block: np.ndarray, stack: np.ndarray, x0: int, y0: int, box: tuple[int, int]) -> np.ndarray:
    """``K`` detectors applied by BLAS GEMMs over the bounding box of their weights.

    Parameters
    ----------
    block : (nx, ny, Qx, Qy) array, real dtype
    stack : (bx*by, K) float32 or float64 array
        Weights over the box ``[x0:x0+bx, y0:y0+by]``, Fortran-ordered for BLAS.
    x0, y0 : int
    box : (bx, by)

    Returns
    -------
    (nx, ny, K) float64 array. A float block covering the whole detector in the
    stack's dtype is multiplied in place (a view, no copy); otherwise tiles of
    patterns are cut to the box and converted into a cache-sized buffer first.
    NaN wherever a NaN pixel met any weight, zero or not: callers re-run those
    positions with :func:`mac_shifted`.

    Examples
    --------
    >>> b = np.ones((1, 2, 2, 2), np.uint8)
    >>> mac_gemm(b, np.ones((2, 1), np.float32), 0, 1, (2, 1)).ravel().tolist()
    [2.0, 2.0]
    """
    nx, ny, Qx, Qy = block.shape
    bx, by = box
    K = stack.shape[1]
    if block.dtype == stack.dtype and (bx, by) == (Qx, Qy) and block.flags.c_contiguous:
        flat = block.reshape(nx * ny, Qx * Qy)  # a view: no copy of the block
        return (flat @ stack).astype(np.float64, copy=False).reshape(nx, ny, K)
    out = np.empty((nx, ny, K))
    per = max(1, min(ny, TILE_BYTES // max(1, bx * by * stack.dtype.itemsize)))
    buf = np.empty((per, bx, by), dtype=stack.dtype)
    for a in range(nx):
        for b0 in range(0, ny, per):
            m = min(per, ny - b0)
            np.copyto(buf[:m], block[a, b0:b0 + m, x0:x0 + bx, y0:y0 + by], casting="unsafe")
            out[a, b0:b0 + m] = buf[:m].reshape(m, bx * by) @ stack
    return out


@njit(cache=True, nogil=True, fastmath=_FAST)
def mac_ranges(patterns, weights, groups, lo, hi, out):
    """Detectors as dot products over contiguous ranges of flattened patterns.

    The memory-speed path for unshifted detectors: every pattern is read once
    from memory while up to two detectors at a time are applied to four
    patterns at a time (each weight load feeds four multiply-adds, each pattern
    load two), and a detector pair only sweeps the range of pixels between its
    first and its last non-zero weight.

    Parameters
    ----------
    patterns : (n, P) array, real dtype, C-contiguous
        Flattened patterns, read as they are (integers converted on the fly).
    weights : (K, P) float32 or float64 array
        Detector weights over the flattened detector; sums accumulate in this
        dtype (float32 doubles the SIMD width, as BLAS's sgemm does).
    groups : (G, 2) int64 array
        Detector indices swept together; ``-1`` in the second column for a
        detector swept alone. The first group should be the widest: it streams
        the patterns in from memory and the later ones find them in cache.
    lo, hi : (G,) int64 arrays
        Flattened pixel range ``[lo, hi)`` of each group.
    out : (n, K) float64 array
        Receives the sums; overwritten.

    Notes
    -----
    A NaN pixel gives NaN for every detector whose range holds it, weighted or
    not; callers re-run those patterns with :func:`mac_shifted`.

    Examples
    --------
    >>> p = np.arange(12.0).reshape(3, 4)
    >>> w = np.array([[0, 1, 1, 0], [1, 0, 0, 0]])
    >>> out = np.empty((3, 2))
    >>> g, lo, hi = pair_ranges(w)
    >>> mac_ranges(p, w, g, lo, hi, out); out.tolist()
    [[3.0, 0.0], [11.0, 4.0], [19.0, 8.0]]
    """
    n = patterns.shape[0]
    z = weights.dtype.type(0)
    for g in range(groups.shape[0]):
        for p in range(n):
            out[p, groups[g, 0]] = 0.0
            if groups[g, 1] >= 0:
                out[p, groups[g, 1]] = 0.0
    n4 = n - n % 4
    for p in range(0, n4, 4):
        for g in range(groups.shape[0]):
            a, b = lo[g], hi[g]
            x0 = patterns[p, a:b]
            x1 = patterns[p + 1, a:b]
            x2 = patterns[p + 2, a:b]
            x3 = patterns[p + 3, a:b]
            k0, k1 = groups[g, 0], groups[g, 1]
            u = weights[k0, a:b]
            if k1 < 0:
                s0 = z
                s1 = z
                s2 = z
                s3 = z
                for j in range(b - a):
                    q = u[j]
                    s0 += x0[j] * q
                    s1 += x1[j] * q
                    s2 += x2[j] * q
                    s3 += x3[j] * q
                out[p, k0] = s0
                out[p + 1, k0] = s1
                out[p + 2, k0] = s2
                out[p + 3, k0] = s3
            else:
                v = weights[k1, a:b]
                s0 = z
                s1 = z
                s2 = z
                s3 = z
                t0 = z
                t1 = z
                t2 = z
                t3 = z
                for j in range(b - a):
                    q = u[j]
                    r = v[j]
                    s0 += x0[j] * q
                    t0 += x0[j] * r
                    s1 += x1[j] * q
                    t1 += x1[j] * r
                    s2 += x2[j] * q
                    t2 += x2[j] * r
                    s3 += x3[j] * q
                    t3 += x3[j] * r
                out[p, k0] = s0
                out[p + 1, k0] = s1
                out[p + 2, k0] = s2
                out[p + 3, k0] = s3
                out[p, k1] = t0
                out[p + 1, k1] = t1
                out[p + 2, k1] = t2
                out[p + 3, k1] = t3
    for p in range(n4, n):
        for g in range(groups.shape[0]):
            a, b = lo[g], hi[g]
            x0 = patterns[p, a:b]
            for c in range(2):
                k = groups[g, c]
                if k < 0:
                    continue
                u = weights[k, a:b]
                s0 = z
                for j in range(b - a):
                    s0 += x0[j] * u[j]
                out[p, k] = s0


def pair_ranges(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group detectors in pairs of similar pixel ranges for :func:`mac_ranges`.

    Parameters
    ----------
    weights : (K, P) array
        Flattened detector weights.

    Returns
    -------
    groups : (G, 2) int64 array
        Detector pairs (``-1``: alone), the widest range first.
    lo, hi : (G,) int64 arrays
        Flattened range ``[lo, hi)`` holding every non-zero weight of the group
        (empty for all-zero detectors).

    Examples
    --------
    >>> w = np.zeros((3, 10)); w[0, 2:4] = 1; w[1, 0:9] = 1; w[2, 3:5] = 1
    >>> g, lo, hi = pair_ranges(w)
    >>> g.tolist(), lo.tolist(), hi.tolist()
    ([[1, 0], [2, -1]], [0, 3], [9, 5])
    """
    K = weights.shape[0]
    nz = weights != 0
    first = np.where(nz.any(1), nz.argmax(1), 0)
    last = np.where(nz.any(1), weights.shape[1] - nz[:, ::-1].argmax(1), 0)
    # pairs of neighbours by range start; pairing keeps the union tight
    order = np.argsort(first, kind="stable")
    groups = [order[i:i + 2].tolist() + ([-1] if i + 1 >= K else []) for i in range(0, K, 2)]
    spans = [(min(first[k] for k in g if k >= 0), max(last[k] for k in g if k >= 0)) for g in groups]
    widest = sorted(range(len(groups)), key=lambda i: spans[i][0] - spans[i][1])
    g = np.array([groups[i] for i in widest], dtype=np.int64).reshape(-1, 2)
    lo = np.array([spans[i][0] for i in widest], dtype=np.int64)
    hi = np.array([max(spans[i]) for i in widest], dtype=np.int64)
    return g, lo, hi
