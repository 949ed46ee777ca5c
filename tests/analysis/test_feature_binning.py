"""Binned pattern features (the streaming kernels of kernels/binning.py) against a float64 numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.analysis.features import FeatureParams, compute_features
from fourd_widgets.core import DataCube


def _reference(a: np.ndarray, p: FeatureParams) -> np.ndarray:
    qx0, qx1, qy0, qy1 = p.crop or (0, a.shape[2], 0, a.shape[3])
    b = p.bin
    h, w = (qx1 - qx0) // b, (qy1 - qy0) // b
    x = a[:, :, qx0:qx0 + h * b, qy0:qy0 + w * b].astype(np.float64)
    if p.mask is not None:
        x = x * ~p.mask[qx0:qx0 + h * b, qy0:qy0 + w * b]
    x = x.reshape(*a.shape[:2], h, b, w, b).mean(axis=(3, 5))
    if p.scaling == "sqrt":
        x = np.sqrt(np.maximum(x, 0))
    elif p.scaling == "log":
        x = np.log1p(np.maximum(x, 0) / p.log_offset)
    return x.reshape(*a.shape[:2], -1)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int16, np.int64, np.float32, np.float64])
@pytest.mark.parametrize("bin_, crop, scaling", [(8, None, "sqrt"), (3, (1, 30, 2, 27), "none"), (4, None, "log")])
def test_binned_features_equal_the_mean_of_each_cell(dtype, bin_, crop, scaling, masked) -> None:
    rng = np.random.default_rng(1)
    top = np.iinfo(dtype).max if np.dtype(dtype).kind in "ui" else 6.0e4
    a = rng.integers(0, min(top, 2 ** 31), size=(3, 5, 32, 32)).astype(dtype)
    a[0, 0] = top  # full-scale counts: the 8x8 sums of uint16 reach 64 x 65535 (must not overflow)
    if np.dtype(dtype).kind == "i":
        a[1, 1, :4] = -3  # negative values of signed data (clipped to 0 by the scaling, not by the binning)
    mask = None
    if masked:  # the weighted kernel (bin_block) instead of the exact sums
        mask = np.zeros(a.shape[2:], bool)
        mask[5:9, 3:20] = True
    p = FeatureParams(bin=bin_, crop=crop, scaling=scaling, mask=mask)
    got = compute_features(DataCube(a), p, progress=False).values
    assert got.dtype == np.float32
    # float32 output: relative rounding 6e-8 per operation
    np.testing.assert_allclose(got, _reference(a, p), rtol=2e-6, atol=1e-6)


def test_masked_binned_features_leave_masked_pixels_out() -> None:
    a = np.random.default_rng(2).poisson(50, size=(2, 3, 16, 16)).astype(np.uint16)
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True  # a beam stop covering the binned cell (1, 1)
    p = FeatureParams(bin=4, mask=mask)
    got = compute_features(DataCube(a), p, progress=False).values
    np.testing.assert_allclose(got, _reference(a, p), rtol=2e-6)
    assert (got[..., 5] == 0).all()  # the cell under the beam stop is masked entirely
