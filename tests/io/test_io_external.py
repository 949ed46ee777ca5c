"""Issue 12 item 8: what an HDF5 file points at (external storage, external links, virtual
datasets) must stay inside the folder of the file opened (fw.load) or the dashboard's folder."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.errors import FileFormatError, ParameterError

SHAPE = (2, 3, 8, 8)


@pytest.fixture
def layout(tmp_path) -> tuple[Path, Path]:
    """``data/`` (the folder opened) and ``secret.bin`` beside it, outside."""
    data = tmp_path / "data"
    data.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(np.prod(SHAPE), dtype=np.uint8).tobytes())
    return data, secret


def _external_storage(path: Path, target: str) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("data", shape=SHAPE, dtype="u1", external=[(target, 0, int(np.prod(SHAPE)))])


def _cube_file(path: Path, value: int = 5) -> None:
    with h5py.File(path, "w") as f:
        f["data"] = np.full(SHAPE, value, dtype=np.uint16)


def _vds(path: Path, source: str) -> None:
    layout = h5py.VirtualLayout(shape=SHAPE, dtype=np.uint16)
    layout[...] = h5py.VirtualSource(source, "data", shape=SHAPE)
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("data", layout, fillvalue=0)


@pytest.mark.parametrize("target", ["absolute", "relative"])
def test_external_storage_outside_the_folder_is_refused(layout, target):
    data, secret = layout
    p = data / "scan.h5"
    _external_storage(p, str(secret) if target == "absolute" else "../secret.bin")
    # Before: it loaded, and the cube's bytes were the other file's.
    with pytest.raises(FileFormatError) as info:
        fw.load(p)
    text = str(info.value)
    assert "external storage /data" in text and str(secret) in text and "allow_external=True" in text


def test_allow_external_reads_what_the_file_points_at(layout):
    data, secret = layout
    p = data / "scan.h5"
    _external_storage(p, str(secret))
    with fw.load(p, allow_external=True) as cube:
        assert cube.read().tobytes() == secret.read_bytes()
    with pytest.raises(ParameterError, match="allow_external"):
        fw.load(p, allow_external="yes")


def test_external_storage_inside_the_folder_loads(layout):
    data, _secret = layout
    blob = bytes(range(256)) + bytes(range(128))  # 384 bytes, the dataset's size
    (data / "raw.bin").write_bytes(blob)
    p = data / "scan.h5"
    _external_storage(p, str(data / "raw.bin"))
    with fw.load(p) as cube:
        assert cube.read().tobytes() == blob


def test_external_storage_file_shorter_than_declared_is_refused_not_read_as_zeros(layout):
    data, _secret = layout
    (data / "raw.bin").write_bytes(bytes(range(96)))  # the dataset declares 384 bytes
    p = data / "scan.h5"
    _external_storage(p, "raw.bin")
    # Before: the last 288 bytes read as zeros.
    with pytest.raises(FileFormatError, match="raw.bin: holds part of the dataset /data .* only 96 bytes"):
        fw.load(p)


def test_external_storage_file_changed_after_open_is_refused(layout):
    data, _secret = layout
    (data / "raw.bin").write_bytes(bytes(384))
    p = data / "scan.h5"
    _external_storage(p, "raw.bin")
    with fw.load(p) as cube:
        os.truncate(data / "raw.bin", 100)
        with pytest.raises(FileFormatError, match="raw.bin: was truncated"):
            cube.read()


def test_external_link_outside_the_folder_is_refused(layout, tmp_path):
    data, _secret = layout
    _cube_file(tmp_path / "other.h5")
    p = data / "scan.h5"
    with h5py.File(p, "w") as f:
        f["linked"] = h5py.ExternalLink("../other.h5", "/data")
    with pytest.raises(FileFormatError, match="external link /linked"):
        fw.load(p, dataset="linked")


def test_link_to_a_file_inside_that_links_outside_is_refused(layout, tmp_path):
    data, _secret = layout
    _cube_file(tmp_path / "other.h5")
    with h5py.File(data / "hop.h5", "w") as f:
        f["data"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/data")
    p = data / "scan.h5"
    with h5py.File(p, "w") as f:
        f["linked"] = h5py.ExternalLink("hop.h5", "/data")
    with pytest.raises(FileFormatError, match=r"external link /data \(in .*hop.h5\)"):
        fw.load(p, dataset="linked")


def test_virtual_dataset_with_a_source_outside_is_refused(layout, tmp_path):
    data, _secret = layout
    _cube_file(tmp_path / "source.h5")
    p = data / "scan.h5"
    _vds(p, str(tmp_path / "source.h5"))
    with pytest.raises(FileFormatError, match="virtual dataset source /data"):
        fw.load(p)
    with fw.load(p, allow_external=True) as cube:
        assert int(cube.read().min()) == 5


def test_virtual_dataset_with_a_missing_source_is_refused_not_read_as_zeros(layout):
    data, _secret = layout
    p = data / "scan.h5"
    _vds(p, "gone.h5")
    # Before: the cube loaded and read as zeros.
    with pytest.raises(FileFormatError, match="source file 'gone.h5' is missing"):
        fw.load(p)


def test_virtual_dataset_with_its_source_beside_it_loads(layout):
    data, _secret = layout
    _cube_file(data / "source.h5", value=9)
    p = data / "scan.h5"
    _vds(p, "source.h5")
    with fw.load(p) as cube:
        assert int(cube.read().min()) == 9


def test_arina_master_in_a_subfolder_linking_up_is_refused_but_allowed_on_request(tmp_path):
    from ._io_helpers import write_arina

    frames = np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16)
    master = write_arina(tmp_path, frames, per_file=2)
    sub = tmp_path / "sub"
    sub.mkdir()
    moved = sub / master.name
    with h5py.File(master, "r") as src, h5py.File(moved, "w") as dst:
        src.copy("entry/instrument", dst, name="entry/instrument")
        g = dst.require_group("entry/data")
        for name in src["entry/data"]:
            link = src["entry/data"].get(name, getlink=True)
            g[name] = h5py.ExternalLink("../" + link.filename, link.path)
    with pytest.raises(FileFormatError, match="external link /entry/data/data_000001"):
        fw.load(moved, scan_width=2)
    with fw.load(moved, scan_width=2, allow_external=True) as cube:
        assert np.array_equal(cube.read().reshape(4, 16, 16), frames)


def test_dashboard_check_uses_its_own_root(layout, tmp_path):
    from fourd_widgets.app.files import check_hdf5_links_inside

    data, secret = layout
    sub = data / "scans"
    sub.mkdir()
    (data / "raw.bin").write_bytes(bytes(96))
    inside = sub / "up.h5"
    _external_storage(inside, "../raw.bin")  # leaves scans/ but not the dashboard's folder
    assert check_hdf5_links_inside(inside, data) == inside
    outside = sub / "out.h5"
    _external_storage(outside, str(secret))
    with pytest.raises(FileFormatError, match="the dashboard was started in"):
        check_hdf5_links_inside(outside, data)
    text = data / "notes.mib"
    text.write_bytes(b"not hdf5")
    assert check_hdf5_links_inside(text, data) == text


def test_dashboard_refuses_to_open_external_storage_outside_its_folder(layout, tmp_path):
    from fourd_widgets.app.dashboard_ui import Dashboard

    data, secret = layout
    _external_storage(data / "passwd.h5", str(secret))
    out = tmp_path / "out"
    board = Dashboard(data, output_dir=out, size=200)
    try:
        # Before: listed and opened, with the other file's bytes as the cube.
        assert board.open("passwd.h5") is None
        assert board.explorer is None and "outside" in board.message.value
    finally:
        board.close()


@pytest.mark.parametrize("extra_env", [{}, {"chdir": True}])
def test_relative_targets_found_from_the_working_folder_are_checked_too(layout, tmp_path, monkeypatch, extra_env):
    data, _secret = layout
    p = data / "scan.h5"
    (data / "raw.bin").write_bytes(bytes(384))
    _external_storage(p, "raw.bin")
    if extra_env:
        # From tmp_path, "raw.bin" names another file, outside data/, which HDF5 might open first.
        (tmp_path / "raw.bin").write_bytes(bytes(384))
        monkeypatch.chdir(tmp_path)
        with pytest.raises(FileFormatError, match="outside the folder of the file opened"):
            fw.load(p)
    else:
        monkeypatch.chdir(data)
        with fw.load(p) as cube:
            assert cube.read().sum() == 0
    os.chdir(tmp_path)
