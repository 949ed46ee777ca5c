"""Numba kernels: crop, mask and bin a block of patterns in one read (integers converted on the fly).

:func:`bin_block_sum` is the route without a mask: each group of ``b`` detector
rows is summed elementwise first (contiguous, vectorised), in an accumulator of
the caller's choosing (:func:`accumulator_dtype`: exact integers for integer
data), then the columns; no float copy of a pattern is made. :func:`bin_block`
weights every pixel (a mask).

Examples
--------
>>> import numpy as np
>>> block = np.arange(2 * 16, dtype=np.uint16).reshape(1, 2, 4, 4)
>>> out = np.empty((1, 2, 4), np.float32)
>>> bin_block(block, 0, 0, 2, 2, 2, np.ones((4, 4), np.float32), out)
>>> out[0, 0].tolist()
[2.5, 4.5, 10.5, 12.5]
>>> bin_block_sum(block, 0, 0, 2, 2, 2, np.empty(4, accumulator_dtype(block.dtype, 2)), out)
>>> out[0, 1].tolist()
[18.5, 20.5, 26.5, 28.5]
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["bin_block", "bin_block_sum", "accumulator_dtype"]


def accumulator_dtype(dtype: np.dtype, b: int) -> np.dtype:
    """The sum type of ``b x b`` pixels of ``dtype``: exact integers where they cannot overflow, else float64.

    uint32 for 8- and 16-bit counts (vectorises widest), int64 for other integers
    up to 32 bits, float64 for floats and 64-bit integers.

    >>> [str(accumulator_dtype(np.dtype(t), 8)) for t in (np.uint16, np.int32, np.uint64, np.float32)]
    ['uint32', 'int64', 'float64', 'float64']
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "ub" and dtype.itemsize <= 2 and b * b * float(np.iinfo(np.uint16).max) < 2 ** 32:
        return np.dtype(np.uint32)
    if dtype.kind in "iub" and dtype.itemsize <= 4:
        return np.dtype(np.int64)
    return np.dtype(np.float64)


@njit(cache=True, nogil=True)
def bin_block_sum(block: np.ndarray, qx0: int, qy0: int, h: int, w: int, b: int, line: np.ndarray,
                  out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Mean of ``b x b`` pixel cells of the window starting at ``(qx0, qy0)``, every pixel kept.

    Parameters
    ----------
    block : (nx, ny, Qx, Qy) array
    qx0, qy0 : int
        Window corner.
    h, w : int
        Binned window shape (the window is ``h*b x w*b`` pixels).
    b : int
        Binning factor.
    line : (w*b,) array
        Scratch row; its dtype is the accumulator (:func:`accumulator_dtype`).
    out : (nx, ny, h*w) float32 array
        Written in place.
    """
    nx, ny = block.shape[0], block.shape[1]
    width = w * b
    inv = np.float32(1.0 / (b * b))
    for i in range(nx):
        for j in range(ny):
            pattern = block[i, j]
            for u in range(h):
                x0 = qx0 + u * b
                # one detector row at a time as a 1D view: contiguous, so the sums vectorise (2.6x)
                row = pattern[x0, qy0:qy0 + width]
                for y in range(width):
                    line[y] = row[y]
                for du in range(1, b):
                    row = pattern[x0 + du, qy0:qy0 + width]
                    for y in range(width):
                        line[y] += row[y]
                for v in range(w):
                    s = line[v * b]
                    for dv in range(1, b):
                        s += line[v * b + dv]
                    out[i, j, u * w + v] = np.float32(s) * inv


@njit(cache=True, nogil=True)
def bin_block(block: np.ndarray, qx0: int, qy0: int, h: int, w: int, b: int, keep: np.ndarray,
              out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Mean of ``b x b`` pixel cells of the window starting at ``(qx0, qy0)``, times ``keep`` (0 drops a pixel).

    Parameters
    ----------
    block : (nx, ny, Qx, Qy) array
    qx0, qy0 : int
        Window corner.
    h, w : int
        Binned window shape (the window is ``h*b x w*b`` pixels).
    b : int
        Binning factor.
    keep : (h*b, w*b) float32 array
        Weight of each window pixel (1 kept, 0 masked).
    out : (nx, ny, h*w) float32 array
        Written in place.
    """
    nx, ny = block.shape[0], block.shape[1]
    width = w * b
    inv = np.float32(1.0 / (b * b))
    line = np.empty(width, np.float32)
    for i in range(nx):
        for j in range(ny):
            pattern = block[i, j]
            for u in range(h):
                line[:] = 0.0
                for du in range(b):
                    x = u * b + du
                    row = pattern[qx0 + x, qy0:qy0 + width]  # contiguous views, as in bin_block_sum
                    weight = keep[x]
                    for y in range(width):
                        line[y] += np.float32(row[y]) * weight[y]
                for v in range(w):
                    acc = np.float32(0.0)
                    for dv in range(b):
                        acc += line[v * b + dv]
                    out[i, j, u * w + v] = acc * inv
