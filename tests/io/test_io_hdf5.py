"""Generic HDF5 and Zarr files: finding the 4D dataset, choosing, stacks, attributes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.errors import FileFormatError, MissingOptionError, ShapeError

from ._io_helpers import fingerprint


def test_single_4d_dataset_anywhere_is_found(tmp_path, small_cube_array):
    p = tmp_path / "nested.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("some/group/patterns", data=small_cube_array, chunks=(2, 5, 12, 10))
        f.create_dataset("image", data=np.zeros((6, 5)))
    before = fingerprint(p)
    with fw.load(p) as cube:
        assert cube.metadata["dataset"] == "/some/group/patterns"
        assert cube.storage_chunks == (2, 5, 12, 10)
        np.testing.assert_array_equal(cube.to_numpy(), small_cube_array)
        # opened read-only: the file handle refuses writes
        handle = cube._resources[0]
        assert handle.mode == "r"
    assert fingerprint(p) == before


def test_several_4d_datasets(tmp_path, small_cube_array):
    p = tmp_path / "two.h5"
    with h5py.File(p, "w") as f:
        f["a/cube"] = small_cube_array
        f["b/cube"] = small_cube_array[::-1].copy()
    with pytest.raises(FileFormatError) as info:
        fw.load(p)
    msg = str(info.value)
    assert "two.h5" in msg and "a/cube" in msg and "b/cube" in msg and "dataset=" in msg
    np.testing.assert_array_equal(fw.load(p, dataset="b/cube").to_numpy(), small_cube_array[::-1])
    np.testing.assert_array_equal(fw.load(p, dataset="/a/cube").to_numpy(), small_cube_array)
    with pytest.raises(FileFormatError, match="no dataset named 'c'"):
        fw.load(p, dataset="c")
    with h5py.File(p, "a") as f:
        f["data"] = small_cube_array + 1
    np.testing.assert_array_equal(fw.load(p).to_numpy(), small_cube_array + 1)  # 'data' preferred


def test_3d_dataset_with_scan_shape_and_wrong_dimensionality(tmp_path, rng):
    frames = rng.integers(0, 9, size=(20, 4, 6), dtype=np.int32)
    p = tmp_path / "stack.h5"
    with h5py.File(p, "w") as f:
        f["frames"] = frames
        f["line"] = np.zeros(7)
        f["five"] = np.zeros((1, 2, 2, 2, 2))
    np.testing.assert_array_equal(fw.load(p, scan_shape=(4, 5)).to_numpy(), frames.reshape(4, 5, 4, 6))
    np.testing.assert_array_equal(fw.load(p, scan_width=10).to_numpy(), frames.reshape(2, 10, 4, 6))
    with pytest.raises(MissingOptionError, match="20 diffraction frames"):
        fw.load(p)
    with pytest.raises(ShapeError, match="stack.h5.*20 frames"):
        fw.load(p, scan_shape=(3, 3))
    with pytest.raises(ShapeError, match="1D"):
        fw.load(p, dataset="line")
    with pytest.raises(ShapeError, match="5D"):
        fw.load(p, dataset="five")


def test_file_without_any_stack_lists_what_it_holds(tmp_path):
    p = tmp_path / "images.h5"
    with h5py.File(p, "w") as f:
        f["haadf"] = np.zeros((8, 8))
    with pytest.raises(FileFormatError, match=r"no 4D array.*haadf \(8, 8\)"):
        fw.load(p)
    assert fw.load(p, dataset="haadf").shape == (1, 1, 8, 8)  # one pattern as a 1x1 scan


def test_calibration_from_attributes(tmp_path, small_cube_array):
    p = tmp_path / "cal.h5"
    with h5py.File(p, "w") as f:
        d = f.create_dataset("data", data=small_cube_array)
        f.attrs["scan_step_A"] = [2.5, 2.5]
        f.attrs["reciprocal_sampling_invA"] = [0.02, 0.02]
        f.attrs["energy_eV"] = 200e3
        f.attrs["convergence_semiangle_mrad"] = 1.5
        f.attrs["origin_px"] = [6, 5]
        d.attrs["energy_eV"] = 80e3  # the dataset's own attribute wins over the root's
    cal = fw.load(p).calibration
    assert (cal.real_step, cal.real_units) == (2.5, "Å")
    assert (cal.reciprocal_step, cal.reciprocal_units) == (0.02, "1/Å")
    assert cal.energy_eV == 80e3 and cal.convergence_semiangle_mrad == 1.5 and cal.origin == (6.0, 5.0)


def test_unequal_steps_and_bad_values_are_not_calibration(tmp_path, small_cube_array):
    p = tmp_path / "odd.h5"
    with h5py.File(p, "w") as f:
        f["data"] = small_cube_array
        f.attrs["scan_step_A"] = [1.0, 2.0]
        f.attrs["angular_sampling_mrad"] = [0.3, 0.3]
        f.attrs["energy_eV"] = -5.0
    cal = fw.load(p).calibration
    assert cal.real_step is None and cal.energy_eV is None
    assert (cal.reciprocal_step, cal.reciprocal_units) == (0.3, "mrad")


def test_hdf5_is_sniffed_by_signature_and_format_overrides(tmp_path, small_cube_array):
    p = tmp_path / "cube.weird"
    with h5py.File(p, "w") as f:
        f["data"] = small_cube_array
    assert fw.load(p).source["format"] == "hdf5"
    assert fw.load(p, format="hdf5").shape == small_cube_array.shape
    with pytest.raises(FileFormatError, match="cube.weird"):
        fw.load(p, format="npy")


def test_compressed_dataset(tmp_path, small_cube_array):
    import hdf5plugin

    p = tmp_path / "lz4.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=small_cube_array, chunks=(1, 1, 12, 10), **hdf5plugin.LZ4())
    np.testing.assert_array_equal(fw.load(p).to_numpy(), small_cube_array)


def test_zarr_store(tmp_path, small_cube_array):
    import zarr

    p = tmp_path / "cube.zarr"
    root = zarr.open_group(str(p), mode="w")
    arr = root.create_array("scan/data", shape=small_cube_array.shape, dtype=small_cube_array.dtype,
                            chunks=(3, 5, 12, 10))
    arr[...] = small_cube_array
    root.attrs["scan_step_A"] = 0.5
    root.attrs["reciprocal_sampling_invA"] = 0.01
    root.create_array("mask", shape=(12, 10), dtype="bool")
    cube = fw.load(p)
    assert cube.source["format"] == "zarr"
    assert cube.storage_chunks == (3, 5, 12, 10)
    np.testing.assert_array_equal(cube.to_numpy(), small_cube_array)
    np.testing.assert_array_equal(cube.read((2, 5), (1, 3)), small_cube_array[2:5, 1:3])
    assert cube.calibration.real_step == 0.5 and cube.calibration.reciprocal_step == 0.01
    with pytest.raises(ValueError, match="read-only"):  # opened read-only: the store refuses writes
        cube.array.base[0, 0, 0, 0] = 1
