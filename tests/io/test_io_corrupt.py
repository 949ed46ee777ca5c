"""Property tests: truncated and corrupted files end in a FourDError or a correct load,
never another exception or a hang, and the input file is never modified."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fourd_widgets as fw
from fourd_widgets.errors import FourDError

from ._io_helpers import fingerprint

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _small_npy(folder: Path) -> Path:
    p = folder / "s.npy"
    np.save(p, np.arange(2 * 3 * 4 * 4, dtype=np.uint16).reshape(2, 3, 4, 4))
    return p


def _small_h5(folder: Path) -> Path:
    p = folder / "s.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8),
                         chunks=(1, 1, 8, 8), compression="gzip")
        f.attrs["scan_step_A"] = 1.0
    return p


def _small_raw(folder: Path) -> Path:
    p = folder / "s.raw"
    np.arange(2 * 2 * 4 * 4, dtype=np.uint8).tofile(p)
    return p


def _load_and_read(path: Path, **options) -> None:
    """Load and read everything; only a FourDError may escape."""
    try:
        cube = fw.load(path, **options)
    except FourDError:
        return
    with cube:
        try:
            data = cube.to_numpy()
        except FourDError as exc:
            assert str(path) in str(exc)  # a read failure names the file
            return
        assert data.shape == cube.shape
        assert data.dtype == cube.dtype


def _mangle(src: Path, dest: Path, cut: float, flips: list[tuple[float, int]]) -> None:
    blob = bytearray(src.read_bytes())
    blob = blob[: int(len(blob) * cut)]
    for where, value in flips:
        if blob:
            blob[int(where * (len(blob) - 1))] = value
    dest.write_bytes(bytes(blob))


def _check(src_factory, options, cut, flips, shared: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        src = src_factory(d) if shared is None else shared
        bad = d / ("bad" + "".join(s for s in src.suffixes))
        if shared is not None and shared.suffix == ".mib":
            shutil.copy(shared.with_suffix(".hdr"), bad.with_suffix(".hdr"))
        _mangle(src, bad, cut, flips)
        before = fingerprint(bad)
        _load_and_read(bad, **options)
        assert fingerprint(bad) == before


cuts = st.one_of(st.just(1.0), st.floats(0.0, 1.0))
flips = st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=4)


@pytest.mark.timeout(120)
@SETTINGS
@given(cut=cuts, flips=flips)
def test_corrupt_npy(cut, flips):
    _check(_small_npy, {}, cut, flips)


@pytest.mark.timeout(120)
@SETTINGS
@given(cut=cuts, flips=flips)
def test_corrupt_hdf5(cut, flips):
    _check(_small_h5, {}, cut, flips)


@pytest.mark.timeout(120)
@SETTINGS
@given(cut=cuts, flips=flips, shape=st.lists(st.integers(1, 5), min_size=2, max_size=4),
       offset=st.integers(0, 40))
def test_corrupt_raw_and_random_shapes(cut, flips, shape, offset):
    # random shapes that may or may not fit the (possibly truncated) file
    _check(_small_raw, {"shape": tuple(shape), "dtype": "u1", "offset": offset, "scan_shape": None}, cut, flips)


@pytest.mark.timeout(180)
@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["merlin_4x2x256x256_6bit.mib", "sped_nanomegas_3x2x144x144.blo",
                                  "py4dstem_datacube_2x3x4x5.h5"])
def test_corrupt_real_files(shared_data, name):
    real = shared_data / "real" / name
    original = fingerprint(real)

    @settings(max_examples=20, deadline=None)
    @given(cut=cuts, flips=flips)
    def run(cut, flips):
        _check(None, {}, cut, flips, shared=real)

    run()
    assert fingerprint(real) == original


@pytest.mark.timeout(120)
@SETTINGS
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=5),
       scan=st.one_of(st.none(), st.tuples(st.integers(1, 6), st.integers(1, 6))))
def test_random_array_shapes_in_hdf5(shape, scan):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "r.h5"
        ref = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
        with h5py.File(p, "w") as f:
            f["data"] = ref
        ndim = len(shape)
        if ndim == 4:
            fits = scan is None or tuple(scan) == tuple(shape[:2])
        elif ndim == 3:
            fits = scan is not None and scan[0] * scan[1] == shape[0]
        elif ndim == 2:
            fits = scan is None or scan == (1, 1)
        else:
            fits = False
        try:
            cube = fw.load(p, dataset="data", scan_shape=scan)
        except FourDError as exc:
            assert not fits, exc
            assert "r.h5" in str(exc)
            return
        assert fits
        with cube:
            got = cube.to_numpy()
        assert got.size == ref.size and got.ndim == 4
        np.testing.assert_array_equal(got.ravel(), ref.ravel())
