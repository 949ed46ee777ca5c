"""Virtual images against a plain numpy reference: shapes, responses, dtypes, descan, NaN, paths."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fourd_widgets.analysis.virtual as virtual
from fourd_widgets.analysis.detectors import Annulus, Circle, Mask, Point, Polygon, Rectangle, detector_mask
from fourd_widgets.analysis.steps import RunContext, step_function
from fourd_widgets.analysis.virtual import VirtualImageParams, virtual_image
from fourd_widgets.core import Calibration, DataCube
from fourd_widgets.core.errors import MissingCalibrationError

from .test_virtual_reference import ref_max, ref_sum, shifted_mask

QUIET = {"progress": False}


def reference_image(data: np.ndarray, det, cal: Calibration, shifts=None, subpixel=False) -> np.ndarray:
    """One detector, position by position, from masks moved in numpy."""
    Rx, Ry, Qx, Qy = data.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = detector_mask(det, (Qx, Qy), cal)
    scale = 1.0 if det.units == "px" else cal.reciprocal_step_in(det.units)
    origin = np.zeros(2)
    if det.relative_to_origin:
        origin = np.array(cal.origin if cal.origin is not None else cal.origin_map.reshape(-1, 2).mean(0))
    xs = (np.arange(Qx)[:, None] - origin[0]) * scale + 0 * np.arange(Qy)[None, :]
    ys = (np.arange(Qy)[None, :] - origin[1]) * scale + 0 * np.arange(Qx)[:, None]
    out = np.zeros((Rx, Ry), dtype=np.complex128 if base.dtype.kind == "c" else np.float64)
    for i in range(Rx):
        for j in range(Ry):
            s = (0.0, 0.0) if shifts is None else tuple(shifts[i, j])
            applied = np.array(s) if subpixel else np.round(s)

            def move(w):
                if base.dtype.kind == "c":
                    return move(w.real) + 1j * move(w.imag)
                return shifted_mask(np.asarray(w, dtype=np.float64), s, subpixel) if shifts is not None else w

            p = data[i, j]
            if det.response == "sum":
                out[i, j] = ref_sum(p, move(base))
            elif det.response == "max":
                out[i, j] = ref_max(p, shifted_mask(base, s, False) if shifts is not None else base)
            else:
                coord, ax = (xs, 0) if det.response == "com_x" else (ys, 1)
                den = ref_sum(p, move(base))
                num = ref_sum(p, move(base * coord))
                extra = 0.0 if det.relative_to_origin or shifts is None else applied[ax] * scale
                out[i, j] = (num / den if den != 0 else np.nan) + extra
    return out


coord = st.floats(-4, 14, allow_nan=False)
length = st.floats(0, 9, allow_nan=False)
responses = st.sampled_from(["sum", "com_x", "com_y", "max"])


@st.composite
def detector_records(draw):
    kind = draw(st.sampled_from(["point", "circle", "annulus", "rectangle", "polygon", "mask"]))
    r = draw(responses)
    if kind == "point":
        return Point(draw(coord), draw(coord), response=r)
    if kind == "circle":
        return Circle((draw(coord), draw(coord)), draw(length), response=r)
    if kind == "annulus":
        a, b = sorted((draw(length), draw(length)))
        return Annulus((draw(coord), draw(coord)), a, b, response=r)
    if kind == "rectangle":
        return Rectangle(tuple(sorted((draw(coord), draw(coord)))), tuple(sorted((draw(coord), draw(coord)))),
                         response=r)
    if kind == "polygon":
        return Polygon(tuple(draw(st.lists(st.tuples(coord, coord), min_size=3, max_size=5))), response=r)
    return ("mask", draw(st.sampled_from(["bool", "float"])), r)  # the array is drawn in the test


def materialise(det, shape, rng):
    if isinstance(det, tuple):  # the strategy only picked the kind; draw the array here
        _, kind, response = det
        w = rng.random(shape) > 0.6 if kind == "bool" else rng.normal(size=shape)
        return Mask(w, response=response)
    return det


def make_data(rng, shape, dtype):
    if np.dtype(dtype).kind == "f":
        return (rng.random(shape) * 100).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from([np.uint8, np.uint16, np.float32]),
       scan=st.tuples(st.integers(1, 3), st.integers(1, 4)),
       det_shape=st.tuples(st.integers(4, 12), st.integers(4, 12)),
       dets=st.lists(detector_records(), min_size=1, max_size=3),
       chunk_patterns=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_detectors_and_responses_match_reference(dtype, scan, det_shape, dets, chunk_patterns, seed):
    rng = np.random.default_rng(seed)
    data = make_data(rng, scan + det_shape, dtype)
    cube = DataCube(data)
    dets = [materialise(d, det_shape, rng) for d in dets]
    chunk = chunk_patterns * cube.pattern_nbytes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = virtual_image(cube, dets, chunk_bytes=chunk, scheduler="sync", **QUIET)
        for k, d in enumerate(dets):
            np.testing.assert_allclose(got[k], reference_image(data, d, cube.calibration),
                                       rtol=2e-5, atol=1e-6 * float(np.abs(data).max() + 1), equal_nan=True)


@pytest.fixture
def descan_cube(rng):
    data = rng.random((4, 5, 16, 15)).astype(np.float32) * 50
    om = np.stack([7.5 + rng.uniform(-2.5, 2.5, (4, 5)), 7.0 + rng.uniform(-2.5, 2.5, (4, 5))], axis=-1)
    cal = Calibration(origin_map=om, reciprocal_step=0.05, reciprocal_units="1/nm")
    return DataCube(data, cal)


@pytest.mark.parametrize("shift", ["integer", "subpixel"])
@pytest.mark.parametrize("det", [
    Circle((0, 0), 3.2, relative_to_origin=True),
    Annulus((0, 0), 1.5, 5, relative_to_origin=True, response="com_x"),
    Annulus((0, 0), 0.05, 0.2, units="1/nm", relative_to_origin=True, response="com_y"),
    Rectangle((2, 9), (3, 14), response="com_y"),
    Circle((7, 7), 4, response="max"),
    Polygon(((1, 1), (12, 3), (4, 13))),
    Mask(np.linspace(-1, 1, 240).reshape(16, 15)),
], ids=lambda d: f"{d.step}-{d.response}")
def test_descan_shift_matches_moved_masks(descan_cube, shift, det):
    got = virtual_image(descan_cube, det, shift=shift, chunk_bytes=3 * descan_cube.pattern_nbytes, **QUIET)
    shifts = descan_cube.calibration.origin_map - descan_cube.calibration.origin_map.reshape(-1, 2).mean(0)
    want = reference_image(descan_cube.to_numpy(), det, descan_cube.calibration, shifts, shift == "subpixel")
    # float32 sums of signed weights cancel: allow float32 rounding of the terms' magnitude
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * 50 * 240)


def test_shift_needs_origin_map():
    cube = DataCube(np.ones((2, 2, 6, 6)))
    with pytest.raises(MissingCalibrationError, match="origin_map.*replace\\(origin_map="):
        virtual_image(cube, Circle((3, 3), 2), shift="integer", **QUIET)


def test_zero_shift_equals_no_shift(rng):
    data = rng.integers(0, 500, (3, 4, 10, 11), dtype=np.uint16)
    cube = DataCube(data, Calibration(origin_map=np.full((3, 4, 2), 5.0)))
    dets = [Circle((5, 5), 3), Annulus((5, 5), 2, 4, response="com_x")]
    plain = virtual_image(cube, dets, **QUIET)
    for shift in ("integer", "subpixel"):
        np.testing.assert_allclose(virtual_image(cube, dets, shift=shift, **QUIET), plain, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
def test_many_detectors_in_one_pass_equal_separate_runs(rng, dtype):
    data = make_data(rng, (5, 6, 20, 18), dtype)
    cube = DataCube(data)
    dets = [Circle((10, 9), 4), Annulus((10, 9), 4, 9), Rectangle((0, 20), (0, 18)), Point(3, 4),
            Circle((10, 9), 6, response="com_x"), Annulus((10, 9), 2, 8, response="com_y"),
            Polygon(((0, 0), (19, 2), (5, 17))), Circle((10, 9), 5, response="max")]
    together = virtual_image(cube, dets, chunk_bytes=7 * cube.pattern_nbytes, **QUIET)
    for k, d in enumerate(dets):
        alone = virtual_image(cube, d, chunk_bytes=7 * cube.pattern_nbytes, **QUIET)
        np.testing.assert_allclose(together[k], alone, rtol=2e-6)


PATHS = [(0.0, 0), (2.0, 0), (0.0, 16)]  # (GEMM_MIN_FILL, RANGES_MAX_COLUMNS)


@pytest.mark.parametrize("fill,ranges", PATHS)
def test_gemm_and_kernel_paths_agree(rng, monkeypatch, fill, ranges):
    """Whole-detector GEMM, bounding-box GEMM tiles and the range kernel give the reference."""
    monkeypatch.setattr(virtual, "GEMM_MIN_FILL", fill)
    monkeypatch.setattr(virtual, "RANGES_MAX_COLUMNS", ranges)
    data = make_data(rng, (4, 3, 14, 16), np.float32)
    cube = DataCube(data)
    dets = [Circle((6, 7), 3), Annulus((7, 8), 2, 6, response="com_x")]
    got = virtual_image(cube, dets, **QUIET)
    for k, d in enumerate(dets):
        np.testing.assert_allclose(got[k], reference_image(data, d, cube.calibration), rtol=1e-5)


@pytest.mark.parametrize("shift", ["none", "subpixel"])
@pytest.mark.parametrize("fill,ranges", PATHS)
def test_nan_outside_a_detector_does_not_poison_it(monkeypatch, shift, fill, ranges):
    monkeypatch.setattr(virtual, "GEMM_MIN_FILL", fill)
    monkeypatch.setattr(virtual, "RANGES_MAX_COLUMNS", ranges)
    data = np.ones((2, 3, 12, 12), dtype=np.float32)
    data[0, 1, 0, 0] = np.nan     # far from the disc
    data[1, 2, 6, 6] = np.nan     # at its centre
    cal = Calibration(origin_map=np.full((2, 3, 2), 6.0))
    disc = Circle((6, 6), 3)
    got = virtual_image(DataCube(data, cal), [disc, Circle((6, 6), 3, response="max")], shift=shift, **QUIET)
    n = detector_mask(disc, (12, 12)).sum()
    expect = np.full((2, 3), float(n))
    expect[1, 2] = np.nan
    np.testing.assert_array_equal(got[0], expect)
    np.testing.assert_array_equal(got[1], np.where(np.isnan(expect), np.nan, 1.0))


def test_complex_mask_sum(rng):
    data = rng.integers(0, 100, (3, 3, 6, 7), dtype=np.uint8)
    w = np.exp(2j * np.pi * rng.random((6, 7)))
    got = virtual_image(DataCube(data), [Mask(w), Circle((3, 3), 2)], **QUIET)
    assert got.dtype == np.complex128
    np.testing.assert_allclose(got[0], np.einsum("abij,ij->ab", data.astype(float), w), rtol=1e-6)
    np.testing.assert_allclose(got[1].imag, 0)


def test_calibrated_centre_of_mass_is_pixels_times_step(rng):
    data = rng.random((3, 4, 15, 13))
    cal = Calibration(reciprocal_step=0.04, origin=(7.0, 6.5))
    cube = DataCube(data, cal)
    px = virtual_image(cube, [Circle((7, 6.5), 5, response=r) for r in ("com_x", "com_y")], **QUIET)
    inv = virtual_image(cube, [Circle((0, 0), 0.2, units="1/Å", relative_to_origin=True, response=r)
                               for r in ("com_x", "com_y")], **QUIET)
    np.testing.assert_allclose(inv[0], (px[0] - 7.0) * 0.04, atol=1e-12)
    np.testing.assert_allclose(inv[1], (px[1] - 6.5) * 0.04, atol=1e-12)


def test_detector_wholly_off_gives_zeros(rng):
    cube = DataCube(rng.random((2, 2, 8, 8)))
    with pytest.warns(UserWarning):
        out = virtual_image(cube, [Circle((50, 50), 3), Circle((50, 50), 3, response="max")], **QUIET)
    np.testing.assert_array_equal(out, 0)


def test_registered_step_and_schedulers_agree_bitwise(rng):
    data = make_data(rng, (9, 7, 10, 10), np.uint16)
    cube = DataCube(data)
    params = VirtualImageParams(detectors=(Circle((5, 5), 3), Annulus((5, 5), 2, 5, response="com_x")))
    opts = {"chunk_bytes": 2 * cube.pattern_nbytes * 7, "progress": False}
    sync = step_function(params)(cube, params, RunContext(engine={**opts, "scheduler": "sync"}))
    threads = step_function(params)(cube, params, RunContext(engine={**opts, "scheduler": "threads", "workers": 3}))
    assert sync.shape == (2, 9, 7)
    np.testing.assert_array_equal(sync, threads)
    np.testing.assert_array_equal(sync, virtual_image(cube, list(params.detectors), **opts))


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("response", ["sum", "com_x"])
def test_signed_mask_that_nearly_cancels_keeps_precision(dtype, response):
    """A signed mask whose weighted sum nearly cancels must not lose it to float32 accumulation."""
    rng = np.random.default_rng(3)
    data = rng.integers(100, 60000, size=(5, 7, 12, 11)).astype(dtype)
    w = rng.normal(size=(12, 11))
    # make the weighted sum at position (2, 3) cancel to ~1e-4 of its terms
    w[0, 0] -= 0.9999 * (data[2, 3].astype(np.float64) * w).sum() / float(data[2, 3, 0, 0])
    det = Mask(mask=w, response=response)
    got = virtual_image(DataCube(data), det, progress=False)
    d = data.astype(np.float64)
    num = (d * w).sum(axis=(2, 3))
    want = num if response == "sum" else (d * w * np.arange(12)[:, None]).sum(axis=(2, 3)) / num
    # float32 accumulation would be off by ~1e-7 / 1e-4 = 1e-3 relative at (2, 3)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.int16, np.uint8, np.int8])
def test_simd_pair_kernel_equals_reference(rng, monkeypatch, dtype):
    """Several detectors on 8/16-bit and float32 data go through the SIMD tiled kernel
    (checked by counting its calls); 42 positions leave 2 for the range kernel, 5 weight
    columns leave a pair with one detector."""
    from fourd_widgets.kernels.simd import simd_available

    assert simd_available()  # numba >= 0.59 on x86-64 and arm64 compiles it
    calls = []
    real = virtual.mac_pair_rows

    def counted(*args):
        calls.append(args[0].shape[0])
        return real(*args)

    monkeypatch.setattr(virtual, "mac_pair_rows", counted)
    data = make_data(rng, (6, 7, 16, 24), dtype)
    if np.dtype(dtype).kind == "i":
        data = (data.astype(np.int64) - np.iinfo(dtype).max // 2).astype(dtype)  # negative values too
    cube = DataCube(data)
    dets = [Annulus((8, 12), 2, 7), Circle((5, 14), 3), Rectangle((1, 9), (3, 20)),
            Circle((8, 12), 6, response="com_x")]
    got = virtual_image(cube, dets, scheduler="sync", **QUIET)
    assert calls and sum(calls) == 40
    for k, d in enumerate(dets):
        np.testing.assert_allclose(got[k], reference_image(data, d, cube.calibration), rtol=2e-5, atol=1e-3)


def test_nan_through_the_simd_path_poisons_only_its_detector(monkeypatch):
    calls = []
    real = virtual.mac_pair_rows
    monkeypatch.setattr(virtual, "mac_pair_rows", lambda *a: (calls.append(1), real(*a))[1])
    data = np.ones((2, 4, 16, 16), dtype=np.float32)
    data[0, 1, 0, 0] = np.nan      # outside both detectors
    data[1, 2, 4, 4] = np.nan      # inside the first only
    dets = [Circle((4, 4), 2), Circle((11, 11), 3)]
    got = virtual_image(DataCube(data), dets, scheduler="sync", **QUIET)
    assert calls
    n = [detector_mask(d, (16, 16)).sum() for d in dets]
    expect0 = np.full((2, 4), float(n[0]))
    expect0[1, 2] = np.nan
    np.testing.assert_array_equal(got[0], expect0)
    np.testing.assert_array_equal(got[1], np.full((2, 4), float(n[1])))


@pytest.mark.parametrize("dtype", [">u2", ">f4", ">i2"])
def test_big_endian_data_equal_native(rng, dtype):
    """Detectors write big-endian files (MIB, some raw dumps): blocks come out native."""
    native = make_data(rng, (3, 4, 16, 16), np.dtype(dtype).newbyteorder("="))
    cube = DataCube(native.astype(dtype))
    assert cube.dtype == native.dtype and cube.read().dtype.isnative
    dets = [Circle((8, 8), 3), Annulus((8, 8), 3, 7), Circle((8, 8), 5, response="com_y")]
    for d in (dets, dets[0]):
        np.testing.assert_array_equal(virtual_image(cube, d, **QUIET), virtual_image(DataCube(native), d, **QUIET))
