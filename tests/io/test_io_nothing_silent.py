"""Issue 12, "nothing silently wrong": files that changed, pipes, odd dtypes, permissions.

Each test here failed on the code before the fix it guards (see the commit messages).
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.errors import FileFormatError, FourDError, ParameterError

from ..privileges import as_nobody, needs_root, open_folder  # noqa: F401 (fixture)


def _h5(path: Path, shape=(40, 40, 16, 16), **kw) -> np.ndarray:
    data = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) % 97) + 1  # no zeros anywhere
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data, **kw)
    return data


# --- 1. a file that shrinks or changes while open -------------------------------------------


@pytest.mark.parametrize("layout", [{}, {"chunks": (1, 40, 16, 16)}], ids=["contiguous", "chunked"])
def test_hdf5_truncated_after_open_is_refused_not_read_as_zeros(tmp_path, layout):
    p = tmp_path / "scan.h5"
    _h5(p, **layout)
    cube = fw.load(p)
    with cube:
        assert cube.read(rx=slice(0, 2)).min() > 0
        os.truncate(p, int(os.path.getsize(p) * 0.6))
        with pytest.raises(FileFormatError) as info:
            cube.read()  # before the fix: 40 % of the patterns came back as zeros
        assert str(p) in str(info.value) and "size went from" in str(info.value)


def test_npy_rewritten_in_place_with_same_size_is_refused(tmp_path):
    p = tmp_path / "scan.npy"
    np.save(p, np.ones((4, 4, 8, 8), dtype=np.uint16))
    with fw.load(p) as cube:
        st = os.stat(p)
        np.save(p, np.full((4, 4, 8, 8), 7, dtype=np.uint16))  # same size, other numbers
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # coarse clocks: a visible change
        with pytest.raises(FileFormatError, match="changed since it was opened: it was modified"):
            cube.read()


def test_hdf5_file_removed_after_open_is_refused(tmp_path):
    p = tmp_path / "scan.h5"
    _h5(p, shape=(4, 4, 8, 8))
    with fw.load(p) as cube:
        os.remove(p)
        with pytest.raises(FileFormatError, match="cannot be found any more"):
            cube.read()


def test_unchanged_file_reads_as_written_and_stamps_survive_pickling(tmp_path):
    p = tmp_path / "scan.h5"
    data = _h5(p, shape=(3, 5, 8, 8), chunks=(1, 1, 8, 8))
    with fw.load(p) as cube:
        np.testing.assert_array_equal(cube.read(), data)
        stamps = cube.array.stamps if hasattr(cube.array, "stamps") else None
    from fourd_widgets.io._common import FileStamp

    stamp = FileStamp.of(str(p))
    assert pickle.loads(pickle.dumps(stamp)) == stamp
    assert stamps is None or stamp in stamps


def test_storage_end_reaches_every_chunk(tmp_path):
    from fourd_widgets.io.hdf5 import storage_end

    p = tmp_path / "many.h5"
    with h5py.File(p, "w") as f:
        d = f.create_dataset("data", shape=(50, 50, 4, 4), dtype="u1", chunks=(1, 1, 4, 4))
        d.write_direct(np.full(d.shape, 3, dtype=np.uint8))
    with h5py.File(p, "r") as f:
        d = f["data"]
        ends = [d.id.get_chunk_info(i).byte_offset + d.id.get_chunk_info(i).size
                for i in range(d.id.get_num_chunks())]
        assert len(ends) == 2500
        assert storage_end(d) == max(ends) <= os.path.getsize(p)


def test_arina_data_file_truncated_after_open_is_refused(tmp_path):
    from ._io_helpers import write_arina

    frames = (np.arange(12 * 16 * 16, dtype=np.uint16).reshape(12, 16, 16) % 50) + 1
    master = write_arina(tmp_path, frames, per_file=6)
    with fw.load(master, scan_width=4) as cube:
        data_file = tmp_path / "scan_data_000002.h5"
        os.truncate(data_file, os.path.getsize(data_file) // 2)
        with pytest.raises(FileFormatError) as info:
            cube.read()
        assert "scan_data_000002.h5" in str(info.value)


# --- 10. not a regular file ------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("name", ["x.npy", "x.h5", "x.mib", "x.raw"])
def test_named_pipe_is_refused_without_opening_it(tmp_path, name):
    p = tmp_path / name
    os.mkfifo(p)
    # Before the fix, opening the pipe for reading blocked forever; the child process
    # bounds the test so a regression fails instead of hanging the suite.
    code = ("import sys, fourd_widgets as fw\n"
            "try:\n"
            f"    fw.load({str(p)!r}, shape=(1, 1, 2, 2), dtype='u1') if {name!r}.endswith('.raw') "
            f"else fw.load({str(p)!r})\n"
            "except fw.errors.FileFormatError as e:\n"
            "    print(e); sys.exit(0)\n"
            "sys.exit(3)\n")
    import subprocess

    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    except subprocess.TimeoutExpired:
        pytest.fail("fw.load on a named pipe hung")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "named pipe" in proc.stdout and name in proc.stdout


def test_device_is_refused():
    with pytest.raises(FileFormatError, match="character device"):
        fw.load("/dev/null", format="npy")


# --- 12. non-numeric and complex dtypes --------------------------------------------------------


@pytest.mark.parametrize("dtype", ["<U2", "S3", "V2", "<m8[s]", "<M8[D]", "complex64", "complex128"])
def test_npy_with_non_numeric_or_complex_dtype_is_refused_by_name(tmp_path, dtype):
    p = tmp_path / "odd.npy"
    np.save(p, np.zeros((2, 2, 4, 4), dtype=dtype))
    with pytest.raises(FileFormatError) as info:
        fw.load(p)
    assert np.dtype(dtype).str in str(info.value)


@pytest.mark.parametrize("dtype", ["complex64", "S2", "<m8[s]"])
def test_hdf5_dataset_with_non_numeric_dtype_is_refused_by_name(tmp_path, dtype):
    p = tmp_path / "odd.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=np.zeros((2, 2, 4, 4), dtype=dtype) if dtype != "<m8[s]"
                         else np.zeros((2, 2, 4, 4), dtype="<i8"))
        if dtype == "<m8[s]":  # h5py stores timedelta as opaque; an 8-byte opaque type is the same
            del f["data"]
            f.create_dataset("data", data=np.zeros((2, 2, 4, 4), dtype="V8"))
    with pytest.raises(FileFormatError) as info:
        fw.load(p, dataset="data")
    expected = {"complex64": "<c8", "S2": "|S2", "<m8[s]": "|V8"}[dtype]
    assert expected in str(info.value)


def test_raw_with_complex_dtype_is_a_parameter_error(tmp_path):
    p = tmp_path / "x.raw"
    np.zeros((2, 2, 4, 4), dtype=np.complex64).tofile(p)
    with pytest.raises(ParameterError, match="complex64"):
        fw.load(p, shape=(2, 2, 4, 4), dtype="complex64")


def test_numeric_dtypes_still_load(tmp_path):
    for dtype in ("bool", "u1", ">u2", "i4", "f4", "<f8"):
        p = tmp_path / f"ok_{np.dtype(dtype).str.replace('<', 'l').replace('>', 'b').replace('|', 'n')}.npy"
        np.save(p, np.ones((2, 2, 4, 4), dtype=dtype))
        with fw.load(p) as cube:
            assert cube.read().sum() == 64


# --- 13. permissions -------------------------------------------------------------------------
# Tests run as root, for whom permission bits do not apply. Each case therefore runs in a
# forked child that drops to the user 'nobody' (os.setuid) before calling fw.load: the kernel
# then really refuses, and we see what fw.load makes of it. Modules are imported (and every
# reader warmed up) before the fork, because nobody may not read the Python installation.


def _warm(folder: Path) -> None:
    """Import every module fw.load touches for .npy and .h5 while still root."""
    np.save(folder / "warm.npy", np.ones((1, 1, 2, 2), dtype=np.uint8))
    with h5py.File(folder / "warm.h5", "w") as f:
        f["data"] = np.ones((1, 1, 2, 2), dtype=np.uint8)
    for name in ("warm.npy", "warm.h5"):
        with fw.load(folder / name) as cube:
            cube.read()
        try:
            fw.load(folder / "missing.npy")
        except FileFormatError:
            pass


@needs_root
@pytest.mark.parametrize("name", ["scan.npy", "scan.h5"])
def test_unreadable_file_is_called_unreadable(open_folder, name):
    _warm(open_folder)
    p = open_folder / name
    if name.endswith(".npy"):
        np.save(p, np.ones((2, 2, 4, 4), dtype=np.uint8))
    else:
        _h5(p, shape=(2, 2, 4, 4))
    os.chmod(p, 0o000)
    out = as_nobody(lambda: fw.load(p))
    # Before: a raw PermissionError (.npy) or "not an HDF5 file ... may be corrupt" (.h5).
    assert out.startswith("FileFormatError"), out
    assert "permission denied" in out and str(p) in out and "corrupt" not in out


@needs_root
def test_file_in_unsearchable_folder_is_not_called_missing(open_folder):
    _warm(open_folder)
    locked = open_folder / "locked"
    locked.mkdir()
    p = locked / "scan.npy"
    np.save(p, np.ones((2, 2, 4, 4), dtype=np.uint8))
    os.chmod(locked, 0o700)  # root's alone: nobody may not enter it
    out = as_nobody(lambda: fw.load(p))
    assert out.startswith("FileFormatError"), out
    assert "no such file" not in out
    assert f"permission denied on the folder {locked}" in out


@needs_root
def test_readable_file_still_loads_as_nobody(open_folder):
    _warm(open_folder)
    p = open_folder / "scan.npy"
    np.save(p, np.ones((2, 2, 4, 4), dtype=np.uint8))
    os.chmod(p, 0o644)
    assert as_nobody(lambda: int(fw.load(p).read().sum())) == "ok 64"


def test_missing_file_is_still_called_missing(tmp_path):
    with pytest.raises(FileFormatError, match="no such file"):
        fw.load(tmp_path / "nope.npy")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_info_command_on_a_named_pipe_is_a_usage_error(tmp_path, capsys):
    from fourd_widgets.app.cli import main

    p = tmp_path / "x.h5"
    os.mkfifo(p)
    assert main(["info", str(p)]) == 2  # before: hung in is_hdf5
    err = capsys.readouterr().err
    assert "named pipe" in err and "Traceback" not in err
