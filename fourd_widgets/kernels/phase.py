"""Numba kernels for the phase steps: the centre-of-mass moments of every pattern in one read.

The patterns are read once in their own dtype (integer counts are never
converted to a float copy). Over the whole detector the kernel keeps, per
detector column ``j``, the running column sum ``C_i[j] = Σ_{i' ≤ i} I[i', j]`` and
its running total ``S[j] = Σ_i C_i[j] = Σ_i (n - i) I[i, j]`` over a band of ``n``
rows: both are vector adds the compiler turns into SIMD, with no sum across a
row, and two rows are folded per step so each column is loaded and stored once
per two rows (the pass then runs near the memory's speed: on the 2-core benchmark
machine one core takes 4.3 ms for 75 MB of 16-bit counts and 7.8 ms for 151 MB of
float32, against 3.5-3.8 and 7.0-7.5 ms for a bare sum of the same data).
The moments follow from the two short vectors at the end of each band:
``Σ I = Σ_j C[j]``, ``Σ i I = Σ_j (i0 + n) C[j] - S[j]`` (``i0``: the band's first row),
``Σ j I = Σ_j j C[j]``.

Integers accumulate exactly: in int32 for 8- and 16-bit data (a band holds as
many rows as keep ``|S[j]|`` below 2**31: :func:`band_rows`, 254 rows for 16-bit
counts), in int64 otherwise. Float patterns accumulate each band's columns in
their own dtype (float32: at most :data:`FLOAT_BAND_ROWS` rows per band) and the
moments in float64.

A detector mask that is one run of pixels ``lo[i] <= j < hi[i]`` per row (a
disk) takes the row-run loop: a running column sum plus one sum per row.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["pattern_moments", "moments_workspace", "band_rows", "curl_sums", "FLOAT_BAND_ROWS"]

# 'reassoc' lets LLVM vectorise the sums (see kernels/virtual.py)
_FAST = {"reassoc", "contract"}

#: Detector rows per band of the whole-detector loop for float patterns: bounds the terms of each
#: float32 running sum (a 96- or 128-row detector is one band, which also runs fastest).
FLOAT_BAND_ROWS = 128
# col and S live in one work array, each starting on a 64-byte cache line (a vector store that
# straddles two lines costs twice), at least this many elements apart beyond Qy
_GAP = 16
_LINE = 64


def _second_start(Qy: int, itemsize: int) -> int:
    """Index in the work array where ``S`` starts: ``Qy + _GAP`` rounded up to a cache line."""
    per_line = _LINE // itemsize
    return -(-(Qy + _GAP) // per_line) * per_line


def band_rows(dtype: np.dtype, Qx: int) -> int:
    """Rows per band of the whole-detector loop: all ``Qx`` when the running sums stay exact (or, for floats,
    within :data:`FLOAT_BAND_ROWS`).

    An int32 band of ``n`` rows holds ``|S[j]| ≤ n (n + 1) / 2 x max |I|``, so 16-bit counts take
    254 rows at a time and 8-bit counts any detector.

    >>> band_rows(np.dtype(np.uint16), 96), band_rows(np.dtype(np.uint16), 512), band_rows(np.dtype(np.float32), 256)
    (96, 254, 128)
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return min(Qx, FLOAT_BAND_ROWS)
    if dtype.itemsize > 2:  # int64 sums: exact for any detector of 32-bit counts
        return Qx
    info = np.iinfo(dtype)
    top = max(abs(int(info.min)), int(info.max))
    n = int((math.isqrt(8 * (2**31 - 1) // top + 1) - 1) // 2)  # largest n with n (n + 1) / 2 x top < 2**31
    n -= n % 2
    return min(Qx, max(n, 2))


def moments_workspace(detector_shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """Work array for :func:`pattern_moments`, starting on a cache line (its dtype is the accumulator: see the
    module notes).

    >>> moments_workspace((96, 96), np.dtype(np.uint16)).dtype, moments_workspace((4, 4), np.dtype(np.float32)).dtype
    (dtype('int32'), dtype('float32'))
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        acc = np.dtype(np.int32 if dtype.itemsize <= 2 else np.int64)
    else:
        acc = dtype
    n = _second_start(detector_shape[1], acc.itemsize) + detector_shape[1]
    raw = np.zeros(n + _LINE // acc.itemsize, acc)
    start = (-raw.ctypes.data % _LINE) // acc.itemsize
    return raw[start:start + n]


@njit(cache=True, nogil=True, fastmath=_FAST)
def _band_moments(col, s, i0, n, out_t, out_x, out_y):  # pragma: no cover - compiled
    t = 0.0
    x = 0.0
    y = 0.0
    for j in range(col.shape[0]):
        c = float(col[j])
        t += c
        x += float(s[j])
        y += j * c
    # over the band's rows i0 + l: Σ_l l I = n C - S per column, so Σ (i0 + l) I = (i0 + n) C - S
    return out_t + t, out_x + (i0 + n) * t - x, out_y + y


@njit(cache=True, nogil=True, fastmath=_FAST)
def _band_moments_int(col, s, i0, n, out_t, out_x, out_y):  # pragma: no cover - compiled
    # _band_moments in int64 (exact: 16-bit counts on a 4096² detector stay below 2**53), one rounding at the end
    t = 0
    x = 0
    y = 0
    for j in range(col.shape[0]):
        c = np.int64(col[j])
        t += c
        x += np.int64(s[j])
        y += j * c
    return out_t + float(t), out_x + float((i0 + n) * t - x), out_y + float(y)


@njit(cache=True, nogil=True, fastmath=_FAST)
def _full_int32(block, work, s0, band, out):  # pragma: no cover - compiled
    nx, ny, Qx, Qy = block.shape
    col = work[:Qy]
    s = work[s0:s0 + Qy]
    Q2 = Qx - Qx % 2
    for a in range(nx):
        for b in range(ny):
            pat = block[a, b]
            if band >= Qx:  # one band: this plain loop compiles to faster code (~10 % on float32)
                col[:] = 0
                s[:] = 0
                for i in range(0, Q2, 2):
                    r0 = pat[i]
                    r1 = pat[i + 1]
                    for j in range(Qy):
                        # explicit int32: numba widens integer sums to int64, which halves the SIMD width
                        c1 = np.int32(col[j] + r0[j])
                        c2 = np.int32(c1 + r1[j])
                        s[j] = np.int32(s[j] + np.int32(c1 + c2))
                        col[j] = c2
                for i in range(Q2, Qx):
                    r0 = pat[i]
                    for j in range(Qy):
                        c1 = np.int32(col[j] + r0[j])
                        s[j] = np.int32(s[j] + c1)
                        col[j] = c1
                t, mx, my = _band_moments_int(col, s, 0, Qx, 0.0, 0.0, 0.0)
            else:
                t = 0.0
                mx = 0.0
                my = 0.0
                for i0 in range(0, Qx, band):
                    n = min(band, Qx - i0)
                    col[:] = 0
                    s[:] = 0
                    i = i0
                    while i + 1 < i0 + n:
                        r0 = pat[i]
                        r1 = pat[i + 1]
                        for j in range(Qy):
                            # explicit int32: numba widens integer sums to int64, which halves the SIMD width
                            c1 = np.int32(col[j] + r0[j])
                            c2 = np.int32(c1 + r1[j])
                            s[j] = np.int32(s[j] + np.int32(c1 + c2))
                            col[j] = c2
                        i += 2
                    if i < i0 + n:
                        r0 = pat[i]
                        for j in range(Qy):
                            c1 = np.int32(col[j] + r0[j])
                            s[j] = np.int32(s[j] + c1)
                            col[j] = c1
                    t, mx, my = _band_moments_int(col, s, i0, n, t, mx, my)
            out[a, b, 0] = t
            out[a, b, 1] = mx
            out[a, b, 2] = my


@njit(cache=True, nogil=True, fastmath=_FAST)
def _full(block, work, s0, band, out):  # pragma: no cover - compiled
    nx, ny, Qx, Qy = block.shape
    col = work[:Qy]
    s = work[s0:s0 + Qy]
    Q2 = Qx - Qx % 2
    for a in range(nx):
        for b in range(ny):
            pat = block[a, b]
            if band >= Qx:  # one band: this plain loop compiles to faster code (~10 % on float32)
                col[:] = 0
                s[:] = 0
                for i in range(0, Q2, 2):
                    r0 = pat[i]
                    r1 = pat[i + 1]
                    for j in range(Qy):
                        c1 = col[j] + r0[j]
                        c2 = c1 + r1[j]
                        s[j] += c1 + c2
                        col[j] = c2
                for i in range(Q2, Qx):
                    r0 = pat[i]
                    for j in range(Qy):
                        c1 = col[j] + r0[j]
                        s[j] += c1
                        col[j] = c1
                t, mx, my = _band_moments(col, s, 0, Qx, 0.0, 0.0, 0.0)
            else:
                t = 0.0
                mx = 0.0
                my = 0.0
                for i0 in range(0, Qx, band):
                    n = min(band, Qx - i0)
                    col[:] = 0
                    s[:] = 0
                    i = i0
                    while i + 1 < i0 + n:
                        r0 = pat[i]
                        r1 = pat[i + 1]
                        for j in range(Qy):
                            c1 = col[j] + r0[j]
                            c2 = c1 + r1[j]
                            s[j] += c1 + c2
                            col[j] = c2
                        i += 2
                    if i < i0 + n:
                        r0 = pat[i]
                        for j in range(Qy):
                            c1 = col[j] + r0[j]
                            s[j] += c1
                            col[j] = c1
                    t, mx, my = _band_moments(col, s, i0, n, t, mx, my)
            out[a, b, 0] = t
            out[a, b, 1] = mx
            out[a, b, 2] = my


@njit(cache=True, nogil=True, fastmath=_FAST)
def _runs(block, lo, hi, work, out):  # pragma: no cover - compiled
    nx, ny, Qx, Qy = block.shape
    col = work[:Qy]
    for a in range(nx):
        for b in range(ny):
            pat = block[a, b]
            col[:] = 0
            mx = 0.0
            for i in range(Qx):
                r = col[0] * 0
                l0, h0 = lo[i], max(lo[i], hi[i])
                row = pat[i, l0:h0]
                cv = col[l0:h0]
                for j in range(row.shape[0]):
                    v = row[j]
                    cv[j] += v
                    r += v
                mx += i * float(r)
            t = 0.0
            my = 0.0
            for j in range(Qy):
                c = float(col[j])
                t += c
                my += j * c
            out[a, b, 0] = t
            out[a, b, 1] = mx
            out[a, b, 2] = my


def pattern_moments(block: np.ndarray, lo: np.ndarray, hi: np.ndarray, work: np.ndarray, out: np.ndarray) -> None:
    """Total and first moments of each pattern over a row-run mask.

    Parameters
    ----------
    block : (nx, ny, Qx, Qy) C-contiguous array, real dtype
        Patterns (a non-contiguous block is slow: pass contiguous pieces).
    lo, hi : (Qx,) int64 arrays
        Pixels ``lo[i] <= j < hi[i]`` of row ``i`` are counted (``hi <= lo``: none).
    work : 1-D array
        From :func:`moments_workspace` (about ``2 Qy`` elements); its dtype is the accumulator.
    out : (nx, ny, 3) float64 array
        Receives ``(Σ I, Σ i I, Σ j I)`` per pattern (``i`` along Qx, ``j`` along Qy).

    Examples
    --------
    >>> b = np.arange(2 * 1 * 3 * 4, dtype=np.uint16).reshape(2, 1, 3, 4)
    >>> out = np.zeros((2, 1, 3))
    >>> pattern_moments(b, np.zeros(3, np.int64), np.full(3, 4, np.int64), moments_workspace((3, 4), b.dtype), out)
    >>> out[1, 0].tolist() == [float(b[1, 0].sum()), float((np.arange(3)[:, None] * b[1, 0]).sum()),
    ...                        float((np.arange(4)[None, :] * b[1, 0]).sum())]
    True
    """
    Qx, Qy = block.shape[2:]
    s0 = _second_start(Qy, work.itemsize)
    if work.shape[0] < s0 + Qy:
        raise ValueError(f"work must hold {s0 + Qy} elements (moments_workspace), got {work.shape[0]}")
    if np.all(lo == 0) and np.all(hi == Qy):
        band = band_rows(block.dtype, Qx)
        if work.dtype == np.int32:
            _full_int32(block, work, s0, band, out)
        else:
            _full(block, work, s0, band, out)
    else:
        _runs(block, lo, hi, work, out)


@njit(cache=True, nogil=True, inline="always")
def _finite_or_zero(com, a, b, c):  # pragma: no cover - compiled
    # a position with either component non-finite counts as (0, 0), as in the masked np.gradient
    x, y = com[a, b, 0], com[a, b, 1]
    return com[a, b, c] if np.isfinite(x) and np.isfinite(y) else 0.0


@njit(cache=True, nogil=True)
def curl_sums(com: np.ndarray) -> tuple[float, float, float, float, float, float]:  # pragma: no cover - compiled
    """Six sums over the scan of the first derivatives of a vector field, for the least-curl rotation.

    With ``cxx = ∂x c_x``, ``cxy = ∂y c_x`` (and so on; central differences inside, one-sided
    at the edges, as ``np.gradient``), the divergence ``s = cxx + cyy``, the curl
    ``t = cyx - cxy`` and the shears ``u = cxx - cyy``, ``w = cyx + cxy`` give
    ``(Σ s², Σ t², Σ s t, Σ u², Σ w², Σ u w)``. A position counts when both components are
    finite there; non-finite values count as 0 in their neighbours' differences.

    Parameters
    ----------
    com : (Rx, Ry, 2) float64 array
        With ``Rx, Ry >= 2``.

    Returns
    -------
    tuple of 6 float

    Examples
    --------
    >>> x, y = np.meshgrid(np.arange(5.0), np.arange(6.0), indexing="ij")
    >>> sums = curl_sums(np.stack([2 * x, 3 * y], -1))  # divergence 5, no curl, shear u = -1
    >>> [round(v, 9) for v in sums]
    [750.0, 0.0, 0.0, 30.0, 0.0, 0.0]
    """
    Rx, Ry = com.shape[0], com.shape[1]
    ss = tt = st = uu = ww = uw = 0.0
    for a in range(Rx):
        a0, a1 = max(a - 1, 0), min(a + 1, Rx - 1)
        hx = 1.0 / (a1 - a0)
        for b in range(Ry):
            cx, cy = com[a, b, 0], com[a, b, 1]
            if not (np.isfinite(cx) and np.isfinite(cy)):
                continue
            b0, b1 = max(b - 1, 0), min(b + 1, Ry - 1)
            hy = 1.0 / (b1 - b0)
            cxx = (_finite_or_zero(com, a1, b, 0) - _finite_or_zero(com, a0, b, 0)) * hx
            cyx = (_finite_or_zero(com, a1, b, 1) - _finite_or_zero(com, a0, b, 1)) * hx
            cxy = (_finite_or_zero(com, a, b1, 0) - _finite_or_zero(com, a, b0, 0)) * hy
            cyy = (_finite_or_zero(com, a, b1, 1) - _finite_or_zero(com, a, b0, 1)) * hy
            s, t = cxx + cyy, cyx - cxy
            u, w = cxx - cyy, cyx + cxy
            ss += s * s
            tt += t * t
            st += s * t
            uu += u * u
            ww += w * w
            uw += u * w
    return ss, tt, st, uu, ww, uw
