"""Recipes and results files written before the registry rework still load and replay to the bit.

``tests/fixtures/v1`` was written by ``make_v1.py`` with the code of commit 0c34757 (before the
step manifest, the module split and the one calling convention). The recipe covers every step
family; the results file holds what that code computed. Loading them now must give the same
records, and replaying the recipe on the same cube must give the same numbers, bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.results import Results

V1 = Path(__file__).resolve().parent / "fixtures" / "v1"


def _cube() -> fw.DataCube:
    with h5py.File(V1 / "cube.h5", "r") as f:
        data = f["data"][()].astype(np.float32)
        cal = fw.Calibration.from_json(f["calibration"].asstr()[()])
    return fw.DataCube(data, cal)


def _same(a: Any, b: Any, where: str) -> None:
    """Bit equality of results: arrays (NaN where NaN), containers field by field."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), where
    elif isinstance(a, fw.Calibration):
        assert a.to_dict() == b.to_dict(), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif hasattr(a, "__dict__"):
        assert vars(a).keys() == vars(b).keys(), where
        for k in vars(a):
            _same(vars(a)[k], vars(b)[k], f"{where}.{k}")
    elif isinstance(a, float):
        assert a == b or (np.isnan(a) and np.isnan(b)), where
    else:
        assert a == b, where


def test_v1_recipe_loads_to_the_same_records():
    text = (V1 / "recipe.json").read_text(encoding="utf-8")
    recipe = Recipe.from_json(text)
    d = json.loads(text)
    again = recipe.to_dict()
    # the version stamp is the writer's; everything else round-trips unchanged, but for the records whose
    # schema moved on since: they come back migrated, to what replays the v1 result
    d.pop("fourd_widgets_version")
    again.pop("fourd_widgets_version")
    for step in d["steps"]:
        if step["step"] == "find_disks" and step["schema_version"] == 1:
            step.update(schema_version=2, probe_fit=False)  # schema 2 added the probe fit, off for v1 records
    assert again == d
    assert [s.step for s in recipe.steps] == [s["step"] for s in d["steps"]]


def test_v1_results_file_loads():
    res = Results.load(V1 / "results.h5")
    written = Recipe.load(V1 / "recipe.json")
    # fw.run completed the recipe with the input reference; steps and calibration are those written
    assert res.recipe.steps == written.steps and res.recipe.calibration == written.calibration
    assert res.recipe.input["shape"] == [6, 6, 64, 64]
    assert sorted(res) == sorted(res.recipe.labels)
    assert isinstance(res["strain_map"], fw.StrainMap) and isinstance(res["find_disks"], fw.PeakTable)
    assert isinstance(res["origin"], fw.Calibration) and res["origin"].origin_map.shape == (6, 6, 2)


@pytest.mark.slow
def test_v1_recipe_replays_bit_identically():
    stored = Results.load(V1 / "results.h5")
    cube = _cube()
    for recipe in (Recipe.load(V1 / "recipe.json"), stored.recipe):
        res = fw.run(recipe, cube)
        assert sorted(res) == sorted(stored)
        for label in stored:
            _same(res[label], stored[label], label)
