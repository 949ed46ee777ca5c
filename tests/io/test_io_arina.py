"""DECTRIS Arina / NeXus master files with external, bitshuffle-compressed data files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.errors import FileFormatError, MissingOptionError, ShapeError
from fourd_widgets.io.arina import energy_from_wavelength_eV
from fourd_widgets.core.calibration import electron_wavelength_A

from ._io_helpers import fingerprint, write_arina


@pytest.fixture
def arina_frames(rng) -> np.ndarray:
    """(30, 12, 16) uint16 frames: 30 scan positions, a 12x16 detector."""
    return rng.integers(0, 4000, size=(30, 12, 16), dtype=np.uint16)


def test_master_file_joins_data_files_lazily(tmp_path, arina_frames):
    master = write_arina(tmp_path, arina_frames, per_file=7)  # 5 data files, the last partial
    assert len(list(tmp_path.glob("scan_data_*.h5"))) == 5
    before = fingerprint(master)
    with fw.load(master, scan_width=6) as cube:
        assert cube.source["format"] == "arina"
        assert cube.shape == (5, 6, 12, 16)
        assert cube.dtype == np.uint16
        expected = arina_frames.reshape(5, 6, 12, 16)
        np.testing.assert_array_equal(cube.to_numpy(), expected)
        # blocks that straddle data files and partial scan rows
        np.testing.assert_array_equal(cube.read((1, 3), (2, 5)), expected[1:3, 2:5])
        np.testing.assert_array_equal(cube.pattern(4, 5), arina_frames[29])
        assert cube.storage_chunks is None  # frames reshaped: no 4D storage chunking to align to
        assert cube.metadata["storage_chunks"] == (1, 12, 16)
    assert fingerprint(master) == before


def test_scan_shape_and_width_agree(tmp_path, arina_frames):
    master = write_arina(tmp_path, arina_frames, per_file=10)
    a = fw.load(master, scan_shape=(3, 10)).to_numpy()
    b = fw.load(master, scan_width=10).to_numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, arina_frames.reshape(3, 10, 12, 16))


def test_missing_scan_shape_asks_for_scan_width(tmp_path, arina_frames):
    master = write_arina(tmp_path, arina_frames, per_file=10)
    with pytest.raises(MissingOptionError) as info:
        fw.load(master)
    msg = str(info.value)
    assert master.name in msg and "scan_width=" in msg and "30" in msg


def test_scan_shape_recorded_in_the_file_is_used(tmp_path, arina_frames):
    master = write_arina(tmp_path, arina_frames, per_file=10, master_attrs={"scan_shape": [15, 2]})
    assert fw.load(master).shape == (15, 2, 12, 16)


@pytest.mark.parametrize("opts,match", [({"scan_width": 7}, "not a multiple"),
                                         ({"scan_shape": (4, 8)}, "30 frames")])
def test_scan_shape_that_does_not_divide_the_frames(tmp_path, arina_frames, opts, match):
    master = write_arina(tmp_path, arina_frames, per_file=10)
    with pytest.raises(ShapeError, match=match) as info:
        fw.load(master, **opts)
    assert master.name in str(info.value)


def test_calibration_from_instrument_group(tmp_path, arina_frames):
    master = write_arina(tmp_path, arina_frames, per_file=30)
    cal = fw.load(master, scan_width=5).calibration
    assert cal.reciprocal_units == "mrad"
    assert cal.reciprocal_step == pytest.approx(1e3 * 100e-6 / 0.2)
    assert cal.energy_eV == pytest.approx(200e3, rel=1e-3)
    assert cal.origin == (7.25, 11.5)  # (y, x): axis 2 is the detector's rows
    uncalibrated = write_arina(tmp_path, arina_frames, per_file=30, name="bare", calibrate=False)
    assert fw.load(uncalibrated, scan_width=5).calibration == fw.Calibration()


def test_energy_from_wavelength_inverts_the_wavelength():
    for kv in (60, 80, 200, 300):
        assert energy_from_wavelength_eV(electron_wavelength_A(kv * 1e3)) == pytest.approx(kv * 1e3, rel=1e-6)


def test_missing_data_file_names_the_master_and_the_link(tmp_path, arina_frames):
    master = write_arina(tmp_path, arina_frames, per_file=10)
    (tmp_path / "scan_data_000002.h5").unlink()
    with pytest.raises(FileFormatError) as info:
        fw.load(master, scan_width=6)
    msg = str(info.value)
    assert master.name in msg and "scan_data_000002.h5" in msg


def test_binning_and_pickle_reopen(tmp_path, arina_frames):
    master = write_arina(tmp_path, arina_frames, per_file=8)
    cube = fw.load(master, scan_width=6, binning=2)
    assert cube.shape == (5, 6, 6, 8)
    expected = arina_frames.reshape(5, 6, 6, 2, 8, 2).sum(axis=(3, 5))
    np.testing.assert_array_equal(cube.to_numpy(), expected)
    again = pickle.loads(pickle.dumps(cube))
    assert again.shape == cube.shape
    np.testing.assert_array_equal(again.to_numpy(), expected)
    assert again.calibration == cube.calibration
