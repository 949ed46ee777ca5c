"""Numba kernel for the phase steps: the centre-of-mass moments of every pattern in one read.

The patterns are read once in their own dtype (integer counts are never
converted to a float copy). For each pattern the kernel keeps a running column
sum ``col[j] = Σ_i I[i, j]`` (a vector add the compiler turns into SIMD) and the
row sums ``r_i = Σ_j I[i, j]``; the moments follow from those two short vectors:
``total = Σ_j col[j]``, ``Σ i I = Σ_i i r_i``, ``Σ j I = Σ_j j col[j]``. Integers
accumulate exactly (``col`` integer, int32 for 8- and 16-bit data), float32 patterns accumulate each row and
column (≤ a few hundred terms) in float32 and the moments in float64.

Only the pixels ``lo[i] <= j < hi[i]`` of row ``i`` count, so the detector is any
mask that is one run of pixels per row (the whole detector, a disk).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["pattern_moments"]

# 'reassoc' lets LLVM vectorise the row sums (see kernels/virtual.py)
_FAST = {"reassoc", "contract"}


@njit(cache=True, nogil=True, fastmath=_FAST)
def pattern_moments(block, lo, hi, col, out):
    """Total and first moments of each pattern over a row-run mask.

    Parameters
    ----------
    block : (nx, ny, Qx, Qy) C-contiguous array, real dtype
        Patterns (a non-contiguous block is slow: pass contiguous pieces).
    lo, hi : (Qx,) int64 arrays
        Pixels ``lo[i] <= j < hi[i]`` of row ``i`` are counted (``hi <= lo``: none).
    col : (Qy,) array
        Work space; its dtype is the accumulator (int32 or int64 for integer data, float32
        or float64 for float data): each column sum must fit it.
    out : (nx, ny, 3) float64 array
        Receives ``(Σ I, Σ i I, Σ j I)`` per pattern (``i`` along Qx, ``j`` along Qy).

    Examples
    --------
    >>> b = np.arange(2 * 1 * 3 * 4, dtype=np.uint16).reshape(2, 1, 3, 4)
    >>> out = np.zeros((2, 1, 3))
    >>> pattern_moments(b, np.zeros(3, np.int64), np.full(3, 4, np.int64), np.zeros(4, np.int64), out)
    >>> out[1, 0].tolist() == [float(b[1, 0].sum()), float((np.arange(3)[:, None] * b[1, 0]).sum()),
    ...                        float((np.arange(4)[None, :] * b[1, 0]).sum())]
    True
    """
    nx, ny, Qx, Qy = block.shape
    full = True
    for i in range(Qx):
        if lo[i] != 0 or hi[i] != Qy:
            full = False
    for a in range(nx):
        for b in range(ny):
            pat = block[a, b]
            col[:] = 0
            mx = 0.0
            for i in range(Qx):
                r = col[0] * 0
                if full:  # fixed bounds: the loop vectorises
                    for j in range(Qy):
                        v = pat[i, j]
                        col[j] += v
                        r += v
                else:
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
