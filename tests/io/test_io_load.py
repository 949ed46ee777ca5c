"""load(): format guessing, errors for bad paths and options, binning, pickling, describe."""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.errors import FileFormatError, FourDError, ParameterError
from fourd_widgets.io import SUPPORTED_FORMATS, describe, load


def test_public_api():
    import fourd_widgets.io as fio

    assert set(fio.__all__) == {"load", "describe", "SUPPORTED_FORMATS"}
    assert fw.load is load
    names = [name for name, _, _ in SUPPORTED_FORMATS]
    assert len(names) == len(set(names))
    for required in ("hdf5", "arina", "emd", "hspy", "zspy", "zarr", "npy", "raw", "mib", "blo", "dm",
                     "mrc", "empad", "tvips", "tia", "tiff"):
        assert required in names
    for name, exts, text in SUPPORTED_FORMATS:
        assert all(e.startswith(".") and e == e.lower() for e in exts) and text


def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="nothere.h5: no such file"):
        load(tmp_path / "nothere.h5")


def test_directory_that_is_not_zarr(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileFormatError, match="folder: is a directory"):
        load(tmp_path / "folder")


def test_unknown_extension_lists_supported_formats(tmp_path):
    p = tmp_path / "notes.xyz"
    p.write_text("hello")
    with pytest.raises(FileFormatError) as info:
        load(p)
    msg = str(info.value)
    assert "notes.xyz" in msg and ".xyz" in msg and ".mib" in msg and "format=" in msg


def test_unknown_format_and_option(tmp_path, small_cube_array):
    p = tmp_path / "c.npy"
    np.save(p, small_cube_array)
    with pytest.raises(ParameterError, match="unknown format='jpeg'"):
        load(p, format="jpeg")
    with pytest.raises(ParameterError, match="dataset= does not apply to the npy format"):
        load(p, dataset="data")


def test_hdf5_extension_without_hdf5_content(tmp_path):
    p = tmp_path / "fake.h5"
    p.write_bytes(b"definitely not hdf5" * 10)
    with pytest.raises(FileFormatError, match="fake.h5.*not an HDF5 file"):
        load(p)


@pytest.mark.parametrize("binning,factors", [(2, (2, 2)), ((3, 2), (3, 2)), ([1, 5], (1, 5))])
def test_binning_on_the_detector(tmp_path, small_cube_array, binning, factors):
    p = tmp_path / "c.npy"
    np.save(p, small_cube_array)
    cube = load(p, binning=binning)
    fx, fy = factors
    qx, qy = 12 // fx, 10 // fy
    ref = small_cube_array[:, :, : qx * fx, : qy * fy].astype(np.int64)
    ref = ref.reshape(6, 5, qx, fx, qy, fy).sum(axis=(3, 5))
    assert cube.shape == (6, 5, qx, qy)
    np.testing.assert_array_equal(cube.to_numpy(), ref)


def test_binning_scales_the_calibration(tmp_path, small_cube_array):
    p = tmp_path / "c.h5"
    with h5py.File(p, "w") as f:
        f["data"] = small_cube_array
        f.attrs["reciprocal_sampling_invA"] = 0.01
        f.attrs["origin_px"] = [6.5, 4.5]
    cal = load(p, binning=2).calibration
    assert cal.reciprocal_step == pytest.approx(0.02)
    assert cal.origin == pytest.approx((3.0, 2.0))


@pytest.mark.parametrize("binning", [0, -2, (2, 2, 2), "two", 1.5])
def test_bad_binning(tmp_path, small_cube_array, binning):
    p = tmp_path / "c.npy"
    np.save(p, small_cube_array)
    with pytest.raises(ParameterError, match="binning"):
        load(p, binning=binning)


def test_pickle_reopens_by_path(tmp_path, small_cube_array):
    p = tmp_path / "c.h5"
    with h5py.File(p, "w") as f:
        f["frames"] = small_cube_array.reshape(30, 12, 10)
        f.attrs["scan_step_A"] = 3.0
    cube = load(p, scan_shape=(6, 5), binning=(2, 1))
    json.dumps(cube.source)  # the reopen record is plain JSON
    assert cube.source["path"] == str(p.resolve())
    blob = pickle.dumps(cube)
    assert len(blob) < small_cube_array.nbytes  # travels as a path, not as data
    again = pickle.loads(blob)
    assert again.shape == cube.shape == (6, 5, 6, 10)
    np.testing.assert_array_equal(again.to_numpy(), cube.to_numpy())
    assert again.calibration == cube.calibration
    # derived (cropped) cubes replay their crop after reopening
    part = pickle.loads(pickle.dumps(cube[1:3, 2:5]))
    np.testing.assert_array_equal(part.to_numpy(), cube.to_numpy()[1:3, 2:5])


def test_describe_reports_without_reading(tmp_path, small_cube_array):
    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=small_cube_array, chunks=(1, 5, 12, 10))
        f.attrs["energy_eV"] = 300e3
    info = describe(p)
    json.dumps(info)
    assert info["format"] == "hdf5"
    assert info["shape"] == list(small_cube_array.shape)
    assert info["dtype"] == "uint16"
    assert info["nbytes"] == small_cube_array.nbytes
    assert info["file_bytes"] == p.stat().st_size
    assert info["storage_chunks"] == [1, 5, 12, 10]
    assert info["calibration"]["energy_eV"] == 300e3
    assert "real_step" not in info["calibration"]


def test_read_errors_after_open_name_the_file(tmp_path, small_cube_array):
    p = tmp_path / "c.npy"
    np.save(p, small_cube_array)
    cube = load(p)
    with open(p, "r+b") as f:  # the file shrinks under an open cube
        f.truncate(200)
    with pytest.raises(FourDError, match="c.npy.*truncated"):
        cube.to_numpy()


def test_shape_option_reads_an_unnamed_file_as_raw(tmp_path, small_cube_array):
    p = tmp_path / "frames.unknownext"
    small_cube_array.tofile(p)
    cube = load(p, shape=small_cube_array.shape, dtype=small_cube_array.dtype)
    assert cube.source["format"] == "raw"
    np.testing.assert_array_equal(cube.to_numpy(), small_cube_array)
    npy = tmp_path / "c.npy"
    np.save(npy, small_cube_array)
    with pytest.raises(ParameterError, match="(shape|dtype)= does not apply to the npy format"):
        load(npy, shape=small_cube_array.shape, dtype="uint16")
    np.testing.assert_array_equal(
        load(npy, format="raw", shape=small_cube_array.shape, dtype="<u2",
             offset=npy.stat().st_size - small_cube_array.nbytes).to_numpy(), small_cube_array)
