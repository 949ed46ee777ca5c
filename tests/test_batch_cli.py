"""`fourd-widgets run`: a recipe over many files; atomic outputs, resume, bad inputs reported."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.run import run
from fourd_widgets.app.batch import output_paths, run_batch
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.results import Results

CLI = [sys.executable, "-m", "fourd_widgets.app"]


def _recipe():
    from fourd_widgets.analysis.virtual import VirtualImageParams

    return Recipe((VirtualImageParams(detectors=(fw.detectors.Circle(center=(8, 8), radius=4),
                                                 fw.detectors.Annulus(center=(8, 8), inner=4, outer=8))),))


def _write_inputs(folder: Path, n: int, shape=(6, 5, 16, 16)) -> list[Path]:
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        p = folder / f"scan_{i}.npy"
        np.save(p, rng.integers(0, 500, size=shape, dtype=np.uint16))
        paths.append(p)
    return paths


def _digest(p: Path) -> tuple[str, float]:
    return hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime


@pytest.fixture
def batch(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    inputs = _write_inputs(data, 3)
    bad = data / "corrupt.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00garbage that is not a header")
    recipe_path = tmp_path / "recipe.json"
    _recipe().save(recipe_path)
    return tmp_path, inputs, bad, recipe_path


def test_cli_runs_all_reports_bad_input_and_leaves_inputs_untouched(batch):
    tmp, inputs, bad, recipe_path = batch
    before = {p: _digest(p) for p in inputs + [bad]}
    out = tmp / "out"
    proc = subprocess.run(CLI + ["run", str(recipe_path), *map(str, inputs), str(bad), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # one input failed
    assert f"FAILED {bad}" in proc.stdout and "corrupt.npy" in proc.stdout
    assert "4 datasets: 3 done, 0 skipped (already done), 1 failed" in proc.stdout
    assert {p: _digest(p) for p in inputs + [bad]} == before
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"scan_{i}.npy.results.h5" for i in range(3)]  # nothing half-written
    # Each output equals a headless fw.run on the same file, and carries its recipe.
    for p in inputs:
        res = Results.load(out / f"{p.name}.results.h5")
        ref = run(_recipe(), fw.load(p))
        assert np.array_equal(res["virtual_image"], ref["virtual_image"])
        assert res.recipe.steps == _recipe().steps
        assert res.provenance["input"]["path"] == str(p)


def test_rerun_skips_finished_and_resumes(batch):
    tmp, inputs, _bad, recipe_path = batch
    out = tmp / "out"
    first = run_batch(Recipe.load(recipe_path), inputs[:2], out, progress=False, log=lambda s: None)
    assert first.ok and len(first.done) == 2
    kept = _digest(out / "scan_0.npy.results.h5")
    os.remove(out / "scan_1.npy.results.h5")
    stale = out / ".scan_1.npy.results.h5.partial-99999"  # left by a killed run
    stale.write_bytes(b"half")
    proc = subprocess.run(CLI + ["run", str(recipe_path), *map(str, inputs), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 datasets: 2 done, 1 skipped (already done), 0 failed" in proc.stdout
    assert _digest(out / "scan_0.npy.results.h5") == kept
    assert not stale.exists()


def test_killed_batch_resumes_without_redoing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    inputs = _write_inputs(data, 8, shape=(32, 32, 64, 64))
    recipe_path = tmp_path / "recipe.json"
    _recipe().save(recipe_path)
    out = tmp_path / "out"
    proc = subprocess.Popen(CLI + ["run", str(recipe_path), *map(str, inputs), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(out.glob("*.results.h5")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = {p: _digest(p) for p in out.glob("*.results.h5")}
    assert finished, "the batch never produced an output"
    proc2 = subprocess.run(CLI + ["run", str(recipe_path), *map(str, inputs), "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    assert f"{len(finished)} skipped (already done)" in proc2.stdout
    assert {p: _digest(p) for p in finished} == finished  # finished outputs not redone
    assert len(list(out.glob("*.results.h5"))) == 8
    assert not list(out.glob(".*partial*"))


def test_existing_output_from_another_recipe_is_not_overwritten(batch):
    tmp, inputs, _bad, _recipe_path = batch
    out = tmp / "out"
    run_batch(_recipe(), inputs[:1], out, progress=False, log=lambda s: None)
    target = out / "scan_0.npy.results.h5"
    before = _digest(target)
    from fourd_widgets.analysis.virtual import VirtualImageParams

    other = Recipe((VirtualImageParams(detectors=(fw.detectors.Circle(center=(3, 3), radius=2),)),))
    report = run_batch(other, inputs[:1], out, progress=False, log=lambda s: None)
    assert not report.ok and "not made by this recipe" in report.failed[str(inputs[0])]
    assert _digest(target) == before
    forced = run_batch(other, inputs[:1], out, progress=False, log=lambda s: None, force=True)
    assert forced.ok and _digest(target) != before


def test_same_file_names_in_different_folders_get_distinct_outputs(tmp_path):
    a, b = tmp_path / "a" / "scan.npy", tmp_path / "b" / "scan.npy"
    names = output_paths([a, b], tmp_path / "out")
    assert len(set(names.values())) == 2


def test_cli_usage_errors_exit_2(batch, tmp_path):
    _tmp, inputs, _bad, _recipe_path = batch
    bad_recipe = tmp_path / "bad.json"
    bad_recipe.write_text('{"type": "recipe", "steps": [{"step": "virtual_image", "colour": 1}]}')
    proc = subprocess.run(CLI + ["run", str(bad_recipe), str(inputs[0]), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "bad.json" in proc.stderr and "colour" in proc.stderr and "Traceback" not in proc.stderr
