"""Fourier-space filters shared by whole-pattern and per-disk correlation (rfft2 grids)."""

from __future__ import annotations

import math

import numpy as np
import scipy.fft as sfft

__all__ = ["BAND_TOL", "gauss_filter", "band"]

#: Fourier filters below this relative gain are treated as zero by the DFT refinement.
BAND_TOL = 1e-7


def gauss_filter(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Fourier gain ``exp(-2 pi^2 sigma^2 f^2)`` on the rfft2 grid (float32)."""
    H, W = shape
    u = sfft.fftfreq(H)[:, None]
    v = sfft.rfftfreq(W)[None, :]
    return np.exp(-2.0 * np.pi ** 2 * sigma ** 2 * (u ** 2 + v ** 2)).astype(np.float32)


def band(shape: tuple[int, int], sigma: float) -> int:
    """Frequency index beyond which the correlation smoothing leaves less than ``BAND_TOL``."""
    if sigma <= 0:
        return max(shape)
    fmax = math.sqrt(math.log(1.0 / BAND_TOL) / (2.0 * math.pi ** 2 * sigma ** 2))
    return int(min(max(shape), math.ceil(fmax * max(shape)) + 1))
