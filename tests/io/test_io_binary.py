""".npy and raw binary files: pread slicing, size checks, bounded memory, lazy open."""

from __future__ import annotations

import gc
import os

import numpy as np
import psutil
import pytest
from hypothesis import given, settings, strategies as st

import fourd_widgets as fw
from fourd_widgets.errors import FileFormatError, MissingOptionError, ParameterError
from fourd_widgets.io.binary import PreadArray

from ._io_helpers import fingerprint

MiB = 2**20


def test_npy_loads_lazily_and_equals_numpy(tmp_path, small_cube_array):
    p = tmp_path / "cube.npy"
    np.save(p, small_cube_array)
    before = fingerprint(p)
    with fw.load(p) as cube:
        assert cube.source["format"] == "npy"
        assert not cube.in_memory
        assert cube.shape == small_cube_array.shape and cube.dtype == small_cube_array.dtype
        np.testing.assert_array_equal(cube.to_numpy(), small_cube_array)
        np.testing.assert_array_equal(cube.read((1, 4), (2, 3), (3, 9), (0, 10)), small_cube_array[1:4, 2:3, 3:9])
        np.testing.assert_array_equal(cube.pattern(-1, -1), small_cube_array[-1, -1])
    assert fingerprint(p) == before


def test_npy_without_extension_is_sniffed(tmp_path, small_cube_array):
    p = tmp_path / "cube.data_without_known_extension"
    with open(p, "wb") as f:
        np.save(f, small_cube_array)
    np.testing.assert_array_equal(fw.load(p).to_numpy(), small_cube_array)


def test_npy_3d_stack_with_scan_shape(tmp_path, rng):
    frames = rng.random((12, 5, 6), dtype=np.float32)
    p = tmp_path / "stack.npy"
    np.save(p, frames)
    cube = fw.load(p, scan_shape=(3, 4))
    np.testing.assert_array_equal(cube.to_numpy(), frames.reshape(3, 4, 5, 6))
    with pytest.raises(fw.errors.ShapeError, match="12 frames") as info:
        fw.load(p, scan_shape=(5, 5))
    assert "stack.npy" in str(info.value)
    with pytest.raises(MissingOptionError, match="scan_width"):
        fw.load(p)


def test_big_endian_npy(tmp_path, small_cube_array):
    p = tmp_path / "be.npy"
    np.save(p, small_cube_array.astype(">u2"))
    np.testing.assert_array_equal(fw.load(p).to_numpy(), small_cube_array)


def test_fortran_order_npy_is_refused_with_advice(tmp_path, small_cube_array):
    p = tmp_path / "f.npy"
    np.save(p, np.asfortranarray(small_cube_array))
    with pytest.raises(FileFormatError, match="Fortran order.*ascontiguousarray"):
        fw.load(p)


def test_raw_with_shape_dtype_offset(tmp_path, small_cube_array):
    p = tmp_path / "scan.raw"
    header = b"H" * 100
    p.write_bytes(header + small_cube_array.astype("<u2").tobytes())
    cube = fw.load(p, shape=small_cube_array.shape, dtype="<u2", offset=100)
    np.testing.assert_array_equal(cube.to_numpy(), small_cube_array)
    assert cube.source["options"] == {"shape": list(small_cube_array.shape), "dtype": "<u2", "offset": 100}


def test_raw_size_mismatch_says_the_expected_size(tmp_path, small_cube_array):
    p = tmp_path / "scan.raw"
    small_cube_array.tofile(p)
    with pytest.raises(FileFormatError) as info:
        fw.load(p, shape=(6, 5, 12, 11), dtype="uint16")
    msg = str(info.value)
    assert "scan.raw" in msg and str(small_cube_array.nbytes) in msg and str(6 * 5 * 12 * 11 * 2) in msg


def test_raw_without_shape_asks_for_it(tmp_path):
    p = tmp_path / "scan.raw"
    p.write_bytes(b"\0" * 64)
    with pytest.raises(MissingOptionError, match="shape="):
        fw.load(p)


@pytest.mark.parametrize("opts", [{"shape": (2, -1, 4, 4), "dtype": "u1"}, {"shape": (2, 2, 4, 4), "dtype": "nope"},
                                  {"shape": (2, 2, 2, 2), "dtype": "u1", "offset": -3}])
def test_raw_bad_options_are_parameter_errors(tmp_path, opts):
    p = tmp_path / "scan.raw"
    p.write_bytes(b"\0" * 64)
    with pytest.raises(ParameterError):
        fw.load(p, **opts)


@st.composite
def array_and_key(draw):
    ndim = draw(st.integers(2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    key = []
    for n in shape:
        a = draw(st.integers(0, n))
        b = draw(st.integers(0, n))
        key.append(slice(min(a, b), max(a, b)) if draw(st.booleans()) else slice(None))
    return shape, tuple(key)


@settings(max_examples=60, deadline=None)
@given(array_and_key(), st.sampled_from(["u1", "<u2", ">i4", "<f8"]), st.integers(0, 17))
def test_pread_array_slices_like_numpy(tmp_path_factory, shape_key, dtype, offset):
    shape, key = shape_key
    ref = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape).astype(dtype)
    p = tmp_path_factory.mktemp("pread") / "a.raw"
    p.write_bytes(b"x" * offset + ref.tobytes())
    arr = PreadArray(str(p), shape, dtype, offset)
    try:
        got = arr[key]
        np.testing.assert_array_equal(got, ref[key])
        assert got.dtype == ref.dtype
    finally:
        arr.close()


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_streaming_a_big_npy_keeps_memory_near_the_chunk_budget(tmp_path):
    shape = (120, 100, 160, 160)  # 614 MB of uint16: many times the chunk budget
    p = tmp_path / "big.npy"
    frame_values = (np.arange(shape[0] * shape[1]) % 997).astype(np.uint16)
    with open(p, "wb") as f:  # written frame-row by frame-row so the test itself stays small
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<u2", "fortran_order": False, "shape": shape})
        for rx in range(shape[0]):
            row = np.broadcast_to(frame_values[rx * shape[1]:(rx + 1) * shape[1], None, None],
                                  (shape[1],) + shape[2:])
            f.write(np.ascontiguousarray(row).tobytes())
    expected = int(frame_values.astype(np.int64).sum()) * shape[2] * shape[3]
    budget = 32 * MiB
    cube = fw.load(p)
    base = _rss()
    peak = base
    for _ in range(3):
        total = 0
        for chunk in cube.iter_chunks(chunk_bytes=budget):
            assert chunk.data.nbytes <= budget
            total += int(chunk.data.sum(dtype=np.uint64))
            peak = max(peak, psutil.Process().memory_info().rss)
            del chunk
        assert total == expected
    growth = peak - base
    assert growth < 4 * budget + 60 * MiB, f"RSS grew by {growth / MiB:.0f} MiB"
    cube.close()


def test_opening_a_sparse_20gb_raw_reads_nothing(tmp_path):
    p = tmp_path / "huge.raw"
    shape = (256, 320, 256, 256)  # 256*320*256*256*2 B = 10 GiB... doubled below
    dtype = np.dtype("<u4")  # 20 GiB
    size = int(np.prod(shape)) * dtype.itemsize
    assert size == 20 * 2**30
    with open(p, "wb") as f:
        f.truncate(size)  # sparse: no blocks on disk
    base = _rss()
    cube = fw.load(p, shape=shape, dtype=dtype.str)
    info = fw.io.describe(p, shape=shape, dtype=dtype.str)
    assert _rss() - base < 30 * MiB
    assert cube.shape == shape and cube.nbytes == size
    assert info["nbytes"] == size and info["file_bytes"] == size
    assert os.stat(p).st_blocks * 512 < 1 * MiB  # still sparse: nothing was written
    np.testing.assert_array_equal(cube.pattern(255, 319), np.zeros((256, 256), dtype))
    cube.close()
