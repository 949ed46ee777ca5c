"""fw.run and Results files: provenance, recipe inside, atomic writes, rerun from a file."""

import json
import os
from dataclasses import dataclass

import h5py
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.run import run
from fourd_widgets.analysis.steps import register_step
from fourd_widgets.core.params import Params, param
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.errors import FileFormatError, ParameterError
from fourd_widgets.io.results import Results


@dataclass(frozen=True)
class ScaledSum(Params):
    """Toy step: per-position sum times a factor, plus a dict result (tests the plumbing only)."""

    step = "test.scaled_sum"
    factor: float = param(1.0, gt=0)


def _scaled_sum(cube, params, context):
    data = cube.to_numpy().astype(np.float64)
    return data.sum(axis=(2, 3)) * params.factor * cube.calibration.real_step


@dataclass(frozen=True)
class UsesPrevious(Params):
    step = "test.uses_previous"
    source: str = param("test.scaled_sum")


register_step(ScaledSum, _scaled_sum)
register_step(UsesPrevious, lambda cube, p, ctx: {"max": np.max(ctx.results[p.source]), "n": np.int64(3)})


@pytest.fixture
def cube_on_disk(tmp_path, small_cube_array):
    path = tmp_path / "scan.npy"
    np.save(path, small_cube_array)
    cube = fw.DataCube(small_cube_array, fw.Calibration(real_step=1.0),
                       source={"path": str(path), "format": "npy", "options": {}})
    return cube


def test_run_applies_recipe_calibration_without_touching_cube(cube_on_disk, small_cube_array):
    recipe = Recipe((ScaledSum(2.0), ScaledSum(0.5), UsesPrevious()), calibration=fw.Calibration(real_step=3.0))
    res = run(recipe, cube_on_disk)
    ref = small_cube_array.sum(axis=(2, 3)).astype(float)
    assert np.allclose(res["test.scaled_sum"], ref * 6.0)
    assert np.allclose(res["test.scaled_sum_2"], ref * 1.5)
    assert res["test.uses_previous"]["max"] == pytest.approx(ref.max() * 6.0)
    assert cube_on_disk.calibration.real_step == 1.0
    assert res.recipe.input["path"].endswith("scan.npy")
    assert res.provenance["input"]["size"] == os.path.getsize(cube_on_disk.source["path"])
    assert res.provenance["started"] <= res.provenance["finished"]


def test_results_file_round_trip_and_rerun(tmp_path, cube_on_disk):
    recipe = Recipe((ScaledSum(2.0), UsesPrevious()))
    res = run(recipe, cube_on_disk)
    out = tmp_path / "out.h5"
    res.save(out)
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    back = Results.load(out)
    assert back.recipe.steps == recipe.steps
    assert np.array_equal(back["test.scaled_sum"], res["test.scaled_sum"])
    assert back["test.uses_previous"]["n"] == 3
    assert back.provenance["fourd_widgets_version"] == fw.__version__
    # Rerun from the recipe inside the file: the same numbers, to the bit.
    again = run(back.recipe, cube_on_disk)
    assert np.array_equal(again["test.scaled_sum"], res["test.scaled_sum"])
    with h5py.File(out, "r") as f:
        assert json.loads(f["recipe"].asstr()[()])["steps"][0]["factor"] == 2.0
        assert json.loads(f["calibration"].asstr()[()])["real_step"] == 1.0


def test_failed_save_leaves_no_file(tmp_path, cube_on_disk):
    res = Results({"bad": object()}, Recipe(()), {})
    out = tmp_path / "never.h5"
    with pytest.raises(TypeError, match="cannot be stored"):
        res.save(out)
    assert list(tmp_path.iterdir()) == [tmp_path / "scan.npy"]


def test_run_refusals(cube_on_disk):
    with pytest.raises(ParameterError, match="needs a DataCube"):
        run(Recipe(()), np.zeros((2, 2, 2, 2)))

    @dataclass(frozen=True)
    class Unregistered(Params):
        step = "test.unregistered"

    with pytest.raises(ParameterError, match="test.unregistered.*cannot be run"):
        run(Unregistered(), cube_on_disk)


def test_load_refuses_other_files(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = 1
    with pytest.raises(FileFormatError, match="plain.h5.*not a fourd_widgets results file"):
        Results.load(plain)
    with pytest.raises(FileFormatError, match="missing.h5"):
        Results.load(tmp_path / "missing.h5")
    with pytest.raises(KeyError, match="no result 'x'"):
        Results({}, Recipe(()))["x"]
