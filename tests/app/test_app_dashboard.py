"""``fourd-widgets dashboard``: the files it lists and opens (never outside its folder), its server command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fourd_widgets.app import cli
from fourd_widgets.app.dashboard import dashboard_spec
from fourd_widgets.app.dashboard_ui import DATA_DIR_ENV, OUTPUT_DIR_ENV, Dashboard
from fourd_widgets.app.demo import DASHBOARD_NAME
from fourd_widgets.app.files import list_data_files, loadable_extensions, resolve_inside
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.errors import FileFormatError
from fourd_widgets.io import SUPPORTED_FORMATS

from .conftest import DATA_SHAPE


def test_every_supported_extension_is_looked_for() -> None:
    exts = set(loadable_extensions())
    assert {".h5", ".mib", ".zarr", ".npy", ".dm4"} <= exts
    assert exts == {e.lower() for _name, group, _what in SUPPORTED_FORMATS for e in group}


def test_listing_stays_inside_the_folder(data_folder: Path) -> None:
    found = list_data_files(data_folder)
    assert found.root == data_folder.resolve()
    assert found.files == ("broken.h5", "scans/good.h5")  # not notes.txt, not the link to ../outside.h5
    assert not found.truncated


def test_listing_keeps_links_that_stay_inside_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "a.npy").write_bytes(b"")
    os.symlink(tmp_path / "a.npy", tmp_path / "b.npy")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.h5").write_bytes(b"")
    (tmp_path / "store.zarr").mkdir()
    (tmp_path / "store.zarr" / "inner.npy").write_bytes(b"")  # a Zarr store is one entry
    os.symlink(tmp_path.parent, tmp_path / "up")  # a linked folder is not searched
    assert list_data_files(tmp_path).files == ("a.npy", "b.npy", "store.zarr")


def test_listing_is_bounded(tmp_path: Path) -> None:
    deep = tmp_path / "1" / "2" / "3"
    deep.mkdir(parents=True)
    (deep / "deep.h5").write_bytes(b"")
    for k in range(5):
        (tmp_path / f"f{k}.h5").write_bytes(b"")
    shallow = list_data_files(tmp_path, max_depth=2)
    assert "1/2/3/deep.h5" not in shallow.files and shallow.truncated
    assert "1/2/3/deep.h5" in list_data_files(tmp_path, max_depth=3).files
    few = list_data_files(tmp_path, max_files=3)
    assert len(few.files) == 3 and few.truncated


def test_listing_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.h5").write_bytes(b"")
    with pytest.raises(FileFormatError, match="is not a folder"):
        list_data_files(tmp_path / "x.h5")


@pytest.mark.parametrize("escape", ["../outside.h5", "escape.h5", "scans/../../outside.h5"])
def test_paths_out_of_the_folder_are_refused(data_folder: Path, escape: str) -> None:
    with pytest.raises(FileFormatError, match="outside the folder"):
        resolve_inside(data_folder, escape)


def test_absolute_paths_are_refused(data_folder: Path) -> None:
    with pytest.raises(FileFormatError, match="absolute path"):
        resolve_inside(data_folder, data_folder / "scans" / "good.h5")


def test_a_path_inside_resolves(data_folder: Path) -> None:
    assert resolve_inside(data_folder, "scans/../scans/good.h5") == (data_folder / "scans" / "good.h5").resolve()


@pytest.fixture
def app(data_folder: Path, tmp_path: Path):
    board = Dashboard(data_folder, output_dir=tmp_path, size=200)
    try:
        yield board
    finally:
        board.close()


def test_dashboard_lists_and_opens_a_file(app: Dashboard, tmp_path: Path) -> None:
    assert app.chooser.options == ("broken.h5", "scans/good.h5")
    assert app.chooser.value is None and app.explorer is None
    app.chooser.value = "scans/good.h5"
    assert app.explorer is not None and app.explorer.cube.shape == DATA_SHAPE
    rx, ry, qx, qy = DATA_SHAPE
    assert f"scan {rx} x {ry}, detector {qx} x {qy}" in app.info.value
    assert app.message.value == ""
    app.explorer.wait()
    saved = app.save_recipe()
    assert saved == tmp_path / "good.explore.recipe.json"  # <dataset>.<tool>.recipe.json
    assert Recipe.load(saved).to_dict() == app.explorer.params.to_dict()


def test_dashboard_shows_a_corrupt_file_as_a_message(app: Dashboard) -> None:
    app.chooser.value = "scans/good.h5"
    assert app.explorer is not None
    app.chooser.value = "broken.h5"
    assert app.explorer is None and app.cube is None  # the previous file is closed
    assert 'class="fw-dashboard-error"' in app.message.value and "broken.h5" in app.message.value
    assert "Traceback" not in app.message.value


@pytest.mark.parametrize("escape", ["escape.h5", "../outside.h5"])
def test_dashboard_refuses_to_open_outside_its_folder(app: Dashboard, escape: str) -> None:
    assert app.open(escape) is None
    assert app.explorer is None
    assert "outside the folder" in app.message.value


def test_dashboard_says_when_there_is_nothing_to_open(tmp_path: Path) -> None:
    board = Dashboard(tmp_path)
    assert board.chooser.options == ()
    assert "No data files" in board.message.value and ".h5" in board.message.value
    board.close()


def test_dashboard_reads_its_folders_from_the_environment(data_folder: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(data_folder))
    monkeypatch.setenv(OUTPUT_DIR_ENV, str(tmp_path))
    board = Dashboard.from_environment()
    assert board.data_dir == data_folder.resolve() and board.output_dir == tmp_path
    assert board.chooser in board.widget.children
    board.close()


def test_dashboard_spec_serves_only_localhost(data_folder: Path, tmp_path: Path) -> None:
    spec = dashboard_spec(data_folder, tmp_path, 8125)
    assert spec.argv[:4] == [sys.executable, "-m", "fourd_widgets.app.voila_server", str(tmp_path / DASHBOARD_NAME)]
    assert "--Voila.ip=127.0.0.1" in spec.argv and "--Voila.port=8125" in spec.argv
    assert f"--Voila.root_dir={tmp_path}" in spec.argv  # the app folder: only the notebook is there
    assert spec.env == {DATA_DIR_ENV: str(data_folder.resolve())}
    assert spec.config == {"VoilaConfiguration": {"file_allowlist": []}}
    assert not any("token" in arg.lower() for arg in spec.argv)


def test_dashboard_of_a_missing_folder_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["dashboard", str(tmp_path / "nope"), "--no-browser"]) == cli.USER_ERROR
    assert "is not a folder" in capsys.readouterr().err


def test_a_stack_without_scan_shape_gets_a_field_for_the_scan_width(tmp_path: Path) -> None:
    import numpy as np

    data = tmp_path / "data"
    data.mkdir()
    frames = np.random.default_rng(2).integers(0, 50, size=(6, 8, 8), dtype=np.uint16)
    np.save(data / "stack.npy", frames)
    board = Dashboard(data, output_dir=tmp_path / "out", size=120)
    try:
        assert board.open("stack.npy") is None
        assert "scan_width" in board.message.value and board._options_row.layout.display == ""
        assert "6 frames" in board._scan_width_note.value
        board._scan_width.value = 3
        board._open_with_scan_width()
        assert board.cube is not None and board.cube.scan_shape == (2, 3)
        assert board.explorer is not None and board._options_row.layout.display == "none"
        np.testing.assert_array_equal(board.cube.pattern(1, 2), frames[5])
    finally:
        board.close()


def test_the_help_describes_this_dashboard(data_folder: Path, tmp_path: Path) -> None:
    board = Dashboard(data_folder, output_dir=tmp_path, size=120)
    assert "Pick a file" in board.help.value and str(data_folder.resolve()) in board.help.value
    assert str(tmp_path) in board.help.value
    board.close()
    demo = Dashboard(None, output_dir=tmp_path, size=120)  # the demo: no folder, no file list
    assert "Pick a file" not in demo.help.value and "built-in sample" in demo.help.value
    demo.close()


def test_a_merlin_mib_and_its_hdr_are_listed_as_one_dataset(tmp_path: Path) -> None:
    for name in ("scan.mib", "scan.hdr", "lone.hdr", "other.MIB", "other.HDR"):
        (tmp_path / name).write_bytes(b"")
    assert list_data_files(tmp_path).files == ("lone.hdr", "other.MIB", "scan.mib")
