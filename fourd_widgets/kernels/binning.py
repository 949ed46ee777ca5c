"""Numba kernel: crop, mask and bin a block of patterns in one read (integers converted on the fly).

Examples
--------
>>> import numpy as np
>>> block = np.arange(2 * 16, dtype=np.uint16).reshape(1, 2, 4, 4)
>>> out = np.empty((1, 2, 4), np.float32)
>>> bin_block(block, 0, 0, 2, 2, 2, np.ones((4, 4), np.float32), out)
>>> out[0, 0].tolist()
[2.5, 4.5, 10.5, 12.5]
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["bin_block"]


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
    inv = np.float32(1.0 / (b * b))
    row = np.empty(w, np.float32)
    for i in range(nx):
        for j in range(ny):
            for u in range(h):
                row[:] = 0.0
                for du in range(b):
                    x = u * b + du
                    for v in range(w):
                        acc = np.float32(0.0)
                        for dv in range(b):
                            y = v * b + dv
                            acc += np.float32(block[i, j, qx0 + x, qy0 + y]) * keep[x, y]
                        row[v] += acc
                for v in range(w):
                    out[i, j, u * w + v] = row[v] * inv
