"""Where the dashboard writes: an output folder outside the data folder, names that never clash, no silent overwrite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.app import cli
from fourd_widgets.app.dashboard import dashboard_spec
from fourd_widgets.app.dashboard_ui import DATA_DIR_ENV, OUTPUT_DIR_ENV, Dashboard
from fourd_widgets.app.output import DEFAULT_OUT, OutputFolderError, recipe_filename, resolve_output_dir


def test_default_output_is_beside_the_working_folder(tmp_path: Path) -> None:
    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    work.mkdir()
    out = resolve_output_dir(data, None, cwd=work)
    assert out == (work / DEFAULT_OUT).resolve() and out.is_dir()


@pytest.mark.parametrize("cwd", ["data", "data/sub"])
def test_default_output_inside_the_data_folder_is_refused(tmp_path: Path, cwd: str) -> None:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    with pytest.raises(OutputFolderError, match="--out"):
        resolve_output_dir(tmp_path / "data", None, cwd=tmp_path / cwd)
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == ["sub"]  # nothing was made in there


@pytest.mark.parametrize("out", ["data", "data/results", "data/../data/x"])
def test_out_inside_the_data_folder_is_refused(tmp_path: Path, out: str) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(OutputFolderError, match="inside the data folder"):
        resolve_output_dir(tmp_path / "data", tmp_path / out)


def test_out_inside_through_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "data", tmp_path / "link")
    with pytest.raises(OutputFolderError, match="inside the data folder"):
        resolve_output_dir(tmp_path / "data", tmp_path / "link" / "out")


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        resolve_output_dir(tmp_path / "data", tmp_path / "f")


def test_recipe_names_carry_the_dataset_and_the_tool() -> None:
    names = {recipe_filename(d, t) for d in ("a.h5", "sub/b.mib", "c.zarr") for t in ("explore", "strain")}
    assert len(names) == 6
    assert recipe_filename("sub/b.mib", "strain") == "b.strain.recipe.json"
    assert recipe_filename("c.zarr", "disks") == "c.disks.recipe.json"


def test_cli_refuses_to_start_without_out_inside_the_data_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path / "data")
    assert cli.main(["dashboard", str(tmp_path / "data"), "--no-browser"]) == cli.USER_ERROR
    err = capsys.readouterr().err
    assert "--out" in err and "Traceback" not in err
    assert list((tmp_path / "data").iterdir()) == []


def test_cli_refuses_out_inside_the_data_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    code = cli.main(["dashboard", str(tmp_path / "data"), "--out", str(tmp_path / "data" / "o"), "--no-browser"])
    assert code == cli.USER_ERROR
    assert "inside the data folder" in capsys.readouterr().err
    assert not (tmp_path / "data" / "o").exists()


def test_the_server_gets_the_output_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    spec = dashboard_spec(tmp_path / "data", tmp_path, 8126, tmp_path / "out")
    assert spec.env == {DATA_DIR_ENV: str((tmp_path / "data").resolve()), OUTPUT_DIR_ENV: str(tmp_path / "out")}


@pytest.fixture
def two_files(tmp_path: Path) -> Path:
    from fourd_widgets.app.demo import write_cube_h5

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(5)
    for name in ("a.h5", "b.h5"):
        cube = fw.DataCube(rng.poisson(3.0, size=(4, 5, 16, 16)).astype(np.uint16),
                           fw.Calibration(real_step=1.0, reciprocal_step=0.02, origin=(8.0, 8.0)))
        write_cube_h5(cube, data / name)
    return data


def test_saving_for_two_files_keeps_both_and_asks_before_overwriting(two_files: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    board = Dashboard(two_files, output_dir=out, size=120)
    try:
        board.open("a.h5")
        board.explorer.wait()
        first = board.save_recipe()
        board.open("b.h5")
        board.explorer.wait()
        board.explorer.set_detector(0, fw.detectors.Circle(center=(8, 8), radius=3))
        second = board.save_recipe()
        assert first is not None and second is not None and first != second
        assert sorted(p.name for p in out.iterdir()) == ["a.explore.recipe.json", "b.explore.recipe.json"]
        before = first.read_bytes()
        board.open("a.h5")
        board.explorer.wait()
        board.explorer.set_detector(0, fw.detectors.Circle(center=(8, 8), radius=5))
        assert board.save_recipe() is None  # asks instead of overwriting
        assert first.read_bytes() == before and "overwrite" in board._saved.value
        assert board.save_recipe(overwrite=True) == first
        assert fw.Recipe.load(first).to_dict() == board.explorer.params.to_dict()
        assert first.read_bytes() != before
    finally:
        board.close()
    assert sorted(p.name for p in two_files.iterdir()) == ["a.h5", "b.h5"]  # nothing written in the data


def test_saving_without_a_usable_output_folder_says_why(two_files: Path, monkeypatch) -> None:
    monkeypatch.chdir(two_files)  # the default output folder would be inside the data folder
    board = Dashboard(two_files, size=120)
    try:
        board.open("a.h5")
        assert board.save_recipe() is None
        assert "--out" in board.message.value
    finally:
        board.close()
    assert sorted(p.name for p in two_files.iterdir()) == ["a.h5", "b.h5"]
