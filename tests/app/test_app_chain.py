"""The dashboard's pages as a non-programmer uses them: explore -> disks -> calibration -> strain, one recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.app.dashboard_ui import Dashboard
from fourd_widgets.app.demo import write_cube_h5

from .app_helpers import run_cli


@pytest.fixture(scope="module")
def crystal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    data = tmp_path_factory.mktemp("chain") / "data"
    data.mkdir()
    cube, truth = fw.datasets.sample("strained_crystal", small=True)
    write_cube_h5(cube, data / "crystal.h5")
    return data, truth


def test_the_chain_from_explore_to_strain_saves_one_recipe_that_replays(crystal, tmp_path: Path) -> None:
    data, truth = crystal
    board = Dashboard(data, output_dir=tmp_path / "out", size=160)
    try:
        board.chooser.value = "crystal.h5"
        assert board.explorer is not None and board.tabs.selected_index == 0
        # later pages say what to do first instead of opening
        for name in ("calibration", "strain"):
            assert board.show_page(name) is None
            assert "run on all" in board._pages[name].note.value
        tuner = board.show_page("disks")
        tuner.wait()
        tuner.run().wait_run()
        assert tuner.run_state == "done"
        assert board.show_page("strain") is None and "calibration" in board._pages["strain"].note.value
        cal = board.show_page("calibration").wait()
        assert cal.ready
        mapper = board.show_page("strain").wait()
        assert mapper.ready and board._pages["strain"].note.value == ""
        strain = mapper.strain
        assert (~strain.mask).mean() >= 0.95
        path = board.save_recipe()
        assert path == tmp_path / "out" / "crystal.strain.recipe.json"
        recipe = fw.Recipe.load(path)
        assert recipe.labels[:2] == ("virtual_image", "virtual_diffraction")
        assert {"find_disks", "origin", "strain_map"} <= set(recipe.labels)
        with fw.load(data / "crystal.h5") as cube:
            replay = fw.run(recipe, cube, progress=False)
        for name in ("exx", "eyy", "exy", "theta_deg", "mask"):
            np.testing.assert_array_equal(getattr(replay["strain_map"], name), getattr(strain, name))
        np.testing.assert_array_equal(replay["virtual_image"], board.explorer.virtual_images)
    finally:
        board.close()
    # the same recipe, replayed by the batch command, writes one results file
    out = tmp_path / "results"
    done = run_cli("run", str(path), str(data / "crystal.h5"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    results = fw.Results.load(next(out.glob("*.h5")))
    np.testing.assert_array_equal(results["strain_map"].exx, strain.exx)


def test_finding_disks_again_rebuilds_the_pages_after_it(crystal, tmp_path: Path) -> None:
    data, _truth = crystal
    board = Dashboard(data, output_dir=tmp_path, size=120)
    try:
        board.chooser.value = "crystal.h5"
        tuner = board.show_page("disks")
        tuner.wait()
        tuner.run().wait_run()
        first = board.show_page("calibration").wait()
        assert board.show_page("calibration") is first  # unchanged inputs: the same tool
        tuner.run().wait_run()  # new peaks
        assert board.chain.current("calibration") is None
        second = board.show_page("calibration").wait()
        assert second is not first and second.ready
    finally:
        board.close()
