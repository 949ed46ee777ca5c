"""The whole-detector moments kernel of DPC (kernels/phase.py): banded running sums against the definition."""

import numpy as np
import pytest

from fourd_widgets.kernels.phase import band_rows, moments_workspace, pattern_moments


def _definition(block: np.ndarray) -> np.ndarray:
    d = block.astype(np.float64)
    i = np.arange(block.shape[2], dtype=np.float64)[:, None]
    j = np.arange(block.shape[3], dtype=np.float64)[None, :]
    return np.stack([d.sum((2, 3)), (d * i).sum((2, 3)), (d * j).sum((2, 3))], -1)


def _moments(block: np.ndarray) -> np.ndarray:
    Qx, Qy = block.shape[2:]
    out = np.full(block.shape[:2] + (3,), np.nan)
    pattern_moments(block, np.zeros(Qx, np.int64), np.full(Qx, Qy, np.int64), moments_workspace((Qx, Qy), block.dtype),
                    out)
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.uint32])
@pytest.mark.parametrize("Qx", [1, 7, 96, 254, 255, 511])
def test_integer_counts_are_summed_exactly(dtype, Qx):
    """Saturated patterns (every pixel at the dtype's extreme) are the worst case of the int32 running
    sums; odd row counts and several bands (16-bit counts: 254 rows a band) exercise the last row and
    the band folding."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(Qx)
    block = rng.integers(info.min, info.max, size=(2, 3, Qx, 40), endpoint=True).astype(dtype)
    block[0, 0] = info.max
    block[1, 2] = info.min
    if np.dtype(dtype).itemsize <= 2:
        # sums of integers below 2**53 are exact in float64, so the definition is exact here
        np.testing.assert_array_equal(_moments(block), _definition(block))
    else:  # saturated 32-bit counts: first moments beyond 2**53, rounded as float64 either way
        np.testing.assert_allclose(_moments(block), _definition(block), rtol=1e-15)


@pytest.mark.parametrize("Qx", [5, 96, 130, 257])
def test_float_patterns_match_the_float64_definition(Qx):
    rng = np.random.default_rng(2)
    block = rng.random((3, 2, Qx, 96)).astype(np.float32)
    got, want = _moments(block), _definition(block)
    # float32 running sums over bands of at most 128 rows: relative error a few 1e-7 of each moment
    np.testing.assert_allclose(got, want, rtol=2e-6)
    com_got, com_want = got[..., 1:] / got[..., :1], want[..., 1:] / want[..., :1]
    # the centre of mass itself, in px: float32 rounding of the sums, far below any measured shift
    assert np.abs(com_got - com_want).max() < 1e-4
    block64 = block.astype(np.float64)
    np.testing.assert_allclose(_moments(block64), _definition(block64), rtol=1e-13)


def test_bands_keep_the_int32_sums_below_two_to_the_31():
    for dtype in (np.uint8, np.int8, np.uint16, np.int16):
        info = np.iinfo(dtype)
        top = max(abs(int(info.min)), int(info.max))
        n = band_rows(np.dtype(dtype), 100000)
        assert n % 2 == 0 and n * (n + 1) // 2 * top < 2**31  # the largest running total of a band
        assert (n + 2) * (n + 3) // 2 * top >= 2**31  # and no needless band boundaries
    assert band_rows(np.dtype(np.uint16), 96) == 96 and band_rows(np.dtype(np.uint32), 4096) == 4096


def test_row_run_masks_still_count_only_their_pixels():
    rng = np.random.default_rng(3)
    block = rng.integers(0, 1000, size=(2, 2, 9, 11)).astype(np.uint16)
    lo = rng.integers(0, 5, 9)
    hi = lo + rng.integers(0, 7, 9)
    out = np.zeros((2, 2, 3))
    pattern_moments(block, lo, hi, moments_workspace((9, 11), block.dtype), out)
    j = np.arange(11)
    masked = block * ((j[None] >= lo[:, None]) & (j[None] < hi[:, None]))
    np.testing.assert_array_equal(out, _definition(masked))


def test_a_short_workspace_is_refused():
    block = np.zeros((1, 1, 4, 8), np.float32)
    with pytest.raises(ValueError, match="moments_workspace"):
        pattern_moments(block, np.zeros(4, np.int64), np.full(4, 8, np.int64), np.zeros(8, np.float32),
                        np.zeros((1, 1, 3)))


def test_curl_sums_match_the_masked_numpy_gradients():
    """The rotation check's six sums against np.gradient of the field with its non-finite positions set to
    (0, 0) and left out of the sums (the definition the calibration check used before)."""
    from fourd_widgets.kernels.phase import curl_sums

    rng = np.random.default_rng(4)
    com = rng.normal(size=(13, 9, 2)).cumsum(0)
    com[2, 3, 0] = np.nan
    com[7, 0, 1] = np.inf
    ok = np.isfinite(com).all(-1)
    z = np.where(ok[..., None], com, 0.0)
    cxx, cxy = np.gradient(z[..., 0])
    cyx, cyy = np.gradient(z[..., 1])
    s, t, u, w = (cxx + cyy)[ok], (cyx - cxy)[ok], (cxx - cyy)[ok], (cyx + cxy)[ok]
    want = [s @ s, t @ t, s @ t, u @ u, w @ w, u @ w]
    np.testing.assert_allclose(curl_sums(com), want, rtol=1e-12)
