"""Numba kernels behind interactive virtual imaging: a detector-major prefix-sum cache.

The cache holds, for every detector row ``qx`` and column ``k``, the running sum
along the detector's y axis of every pattern, laid out detector-major so that one
``(qx, k)`` plane is a contiguous vector over the flattened scan::

    S[qx, k, n] = sum(pattern_n[qx, :k + 1])                    (prefix)
    M[qx, k, n] = sum(q * pattern_n[qx, q] for q in 0..k)        (first moment, optional)

For a weight image ``w`` of the detector, let ``D[qx, k] = w[qx, k] - w[qx, k + 1]``
(``w[qx, Qy] = 0``): then ``sum(w * pattern_n) = sum(D[qx, k] * S[qx, k, n])``,
summed over the non-zero entries of ``D`` only. A shape covers one run of pixels
``[a, b)`` per row and costs two planes for it, whatever its area. These
non-zero entries are the *terms* ``(qx, k, coef)`` the query kernel applies.

NaN pixels are stored as 0 by :func:`prefix_block`; the caller keeps their
positions separately (a NaN would otherwise spread along the prefix row).
:func:`bin_block` sums scan and detector bins on the way in, for the binned
preview cache of cubes larger than the memory budget.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["QUERY_TILE", "apply_terms", "apply_terms_serial", "bin_block", "prefix_block"]

#: Scan positions per parallel task of :func:`apply_terms`: the float64
#: accumulators of one tile (K x 2048 x 8 B) stay in L1/L2 while terms stream past.
QUERY_TILE = 2048
#: Patterns transposed together by :func:`prefix_block` (one contiguous write of
#: this many values per plane).
_BUILD_TILE = 128
_PAD = 16


@njit(cache=True, nogil=True, parallel=True)
def prefix_block(block, S, M, n0, with_moments):
    """Write the prefix sums of a block of patterns into the cache, NaN as 0.

    Parameters
    ----------
    block : (m, Qx, Qy) array, real dtype
        Patterns of ``m`` consecutive scan positions (flattened scan order).
    S : (Qx, Qy, N) array
        Prefix cache; receives ``S[qx, k, n0 + p] = sum(block[p, qx, :k + 1])``.
    M : (Qx, Qy, N) array
        Moment cache, same dtype; receives ``sum(q * block[p, qx, q], q <= k)``
        when ``with_moments`` (else untouched; pass any 3D array of S's dtype).
    n0 : int
        Flat scan index of ``block[0]``.
    with_moments : bool

    Examples
    --------
    >>> b = np.array([[[1, 2, 3]]], np.uint16)
    >>> S = np.zeros((1, 3, 1), np.uint32)
    >>> prefix_block(b, S, S, 0, False); S.ravel().tolist()
    [1, 3, 6]
    """
    m, Qx, Qy = block.shape
    ntiles = (m + _BUILD_TILE - 1) // _BUILD_TILE
    for t in prange(ntiles):
        p0 = t * _BUILD_TILE
        w = min(m, p0 + _BUILD_TILE) - p0
        # rows of the tile, prefix-summed; the padded stride keeps the column reads
        # below from mapping onto a few L1 sets (a power-of-two stride would)
        tmp = np.empty((_BUILD_TILE, Qy + _PAD), S.dtype)
        tmq = np.empty((_BUILD_TILE if with_moments else 1, Qy + _PAD), S.dtype)
        for qx in range(Qx):
            for p in range(w):
                row = block[p0 + p, qx]
                acc = tmp[p]
                a = S.dtype.type(0)
                for q in range(Qy):
                    v = row[q]
                    if v == v:  # noqa: PLR0124 - NaN counts as 0 here; always true for integers
                        a += v
                    acc[q] = a
                if with_moments:
                    mom = tmq[p]
                    b = S.dtype.type(0)
                    for q in range(Qy):
                        v = row[q]
                        if v == v:  # noqa: PLR0124
                            b += q * v
                        mom[q] = b
            for q in range(Qy):
                dst = S[qx, q]
                for p in range(w):
                    dst[n0 + p0 + p] = tmp[p, q]
                if with_moments:
                    dsm = M[qx, q]
                    for p in range(w):
                        dsm[n0 + p0 + p] = tmq[p, q]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, inline="always")
def _terms_tile(S, qx, k, coef, out, t):
    """:func:`apply_terms` over scan tile ``t`` (accumulated in a tile-sized buffer)."""
    C = coef.shape[0]
    n0 = t * QUERY_TILE
    n1 = min(S.shape[2], n0 + QUERY_TILE)
    acc = np.zeros((C, n1 - n0))
    for i in range(qx.shape[0]):
        row = S[qx[i], k[i]]
        for c in range(C):
            w = coef[c, i]
            if w != 0.0:
                a = acc[c]
                for n in range(n1 - n0):
                    a[n] += w * row[n0 + n]
    for c in range(C):
        for n in range(n1 - n0):
            out[c, n0 + n] = acc[c, n]


@njit(cache=True, nogil=True, parallel=True)
def apply_terms(S, qx, k, coef, out):
    """``out[c, n] = sum_t coef[c, t] * S[qx[t], k[t], n]`` for every scan position ``n``.

    Parameters
    ----------
    S : (Qx, Qy, N) array
        Prefix (or moment) cache.
    qx, k : (T,) int64 arrays
        Plane of each term.
    coef : (C, T) float64 array
        Coefficients of each term, for ``C`` outputs computed in the same pass.
    out : (C, N) float64 array
        Overwritten.

    Notes
    -----
    Integer caches are converted to float64 per element; sums of integers stay
    exact while they are below 2**53. Parallel over tiles of the scan; for small
    work use :func:`apply_terms_serial` (a parallel launch costs more than it saves).

    Examples
    --------
    >>> S = np.arange(6, dtype=np.uint32).reshape(1, 3, 2)
    >>> out = np.empty((1, 2))
    >>> apply_terms(S, np.array([0, 0]), np.array([2, 0]), np.array([[1.0, -1.0]]), out)
    >>> out.tolist()
    [[4.0, 4.0]]
    """
    for t in prange((S.shape[2] + QUERY_TILE - 1) // QUERY_TILE):
        _terms_tile(S, qx, k, coef, out, t)


@njit(cache=True, nogil=True)
def apply_terms_serial(S, qx, k, coef, out):
    """:func:`apply_terms` on the calling thread only.

    >>> out = np.empty((1, 1))
    >>> apply_terms_serial(np.ones((1, 1, 1)), np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones((1, 1)), out)
    >>> out.tolist()
    [[1.0]]
    """
    for t in range((S.shape[2] + QUERY_TILE - 1) // QUERY_TILE):
        _terms_tile(S, qx, k, coef, out, t)


@njit(cache=True, nogil=True, parallel=True)
def bin_block(block, sr, sq, out):
    """Sum ``sr x sr`` scan positions and ``sq x sq`` detector pixels (remainders dropped).

    Parameters
    ----------
    block : (nx, ny, Qx, Qy) array, real dtype
    sr, sq : int
        Scan and detector binning factors.
    out : (nx // sr, ny // sr, Qx // sq, Qy // sq) array
        Overwritten with the sums (NaN propagates), in its own dtype.

    Examples
    --------
    >>> out = np.empty((1, 1, 1, 2), np.uint32)
    >>> bin_block(np.ones((2, 2, 2, 5), np.uint16), 2, 2, out); out.ravel().tolist()
    [16, 16]
    """
    nbx, nby, nqx, nqy = out.shape
    for a in prange(nbx):
        for b in range(nby):
            o = out[a, b]
            o[:] = 0
            for da in range(sr):
                for db in range(sr):
                    pat = block[a * sr + da, b * sr + db]
                    for i in range(nqx * sq):
                        dst = o[i // sq]
                        row = pat[i]
                        for j in range(nqy):
                            s = dst[j]
                            for dj in range(sq):
                                s += row[j * sq + dj]
                            dst[j] = s
