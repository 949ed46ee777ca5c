"""A headless run of one recipe (load → disks → calibration → strain) through ``fourd-widgets run`` gives the
maps the tools show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from fourd_widgets.analysis.calibration import EllipseParams
from fourd_widgets.analysis.disks import FindDisksParams, find_disks
from fourd_widgets.analysis.strain import StrainMap
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.datasets import sample
from fourd_widgets.io.results import Results
from fourd_widgets.widgets.calibration_tool import CalibrationTool
from fourd_widgets.widgets.overlays import make_overlay
from fourd_widgets.widgets.strain_mapper import MAP_NAMES, StrainMapper

CLI = [sys.executable, "-m", "fourd_widgets.app"]


@pytest.mark.slow
def test_cli_run_of_the_tools_recipe_gives_their_maps(tmp_path: Path) -> None:
    cube, _ = sample("strained_crystal", small=True)
    data = tmp_path / "strained.h5"
    with h5py.File(data, "w") as f:
        f["data"] = np.asarray(cube.read(slice(None), slice(None)))
    disks = FindDisksParams()
    peaks = find_disks(cube, disks)
    tool = CalibrationTool(cube, peaks, ellipse=EllipseParams(r_inner=20.0, r_outer=55.0)).wait()
    mapper = StrainMapper(cube, peaks, tool, disks=disks).wait()
    try:
        mapper.set_reference(make_overlay("rectangle", x0=0, x1=2, y0=0, y1=16))   # as drawn on a map
        mapper.set_options(frame_deg=15.0)
        mapper.wait()
        assert tool.calibration.ellipse is not None and mapper.reference_message.value == ""
        recipe = mapper.params
        assert [s.step for s in recipe.steps] == ["find_disks", "origin", "origin_fit", "ellipse", "strain_map"]
        # the calibration rides in the recipe: the .h5 holds bare data (no calibration of its own)
        assert recipe.calibration == cube.calibration
        recipe_path = tmp_path / "strain.recipe.json"
        recipe.save(recipe_path)
        out = tmp_path / "out"
        proc = subprocess.run(CLI + ["run", str(recipe_path), str(data), "--out", str(out)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        res = Results.load(out / f"{data.name}.results.h5")
        shown = mapper.strain
        ran = res["strain_map"]
        assert isinstance(ran, StrainMap)
        for n in (*MAP_NAMES, "mask", "failure", "g1", "g2", "g1_ref", "g2_ref"):
            np.testing.assert_array_equal(getattr(ran, n), getattr(shown, n), err_msg=n)
        assert ran.frame_deg == 15.0
        assert res["ellipse"].ellipse == tool.calibration.ellipse
        assert Recipe.from_json(res.recipe.to_json()).steps[-1].frame_deg == 15.0
    finally:
        mapper.close()
        tool.close()
