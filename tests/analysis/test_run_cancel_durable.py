"""Issue 12 items 4 and 6: a cancelled ``fw.run`` keeps its finished steps (``.partial``, marked
partial and never "done" for a batch), and ``Results.save`` flushes the file and its folder."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import h5py
import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.analysis.run import run
from fourd_widgets.analysis.steps import register_step
from fourd_widgets.analysis.virtual import VirtualImageParams
from fourd_widgets.app.batch import run_batch
from fourd_widgets.core.params import Params, param
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.errors import CancelledError
from fourd_widgets.io import results as results_mod
from fourd_widgets.io.results import Results


@dataclass(frozen=True)
class TotalCounts(Params):
    """Toy step that does not use the engine (so a cancel does not stop it): counts per position."""

    step = "test.total_counts"
    factor: float = param(1.0, gt=0)


register_step(TotalCounts, lambda cube, p, ctx: cube.to_numpy().astype(np.float64).sum(axis=(2, 3)) * p.factor)


def _cube(seed: int = 0) -> fw.DataCube:
    data = np.random.default_rng(seed).poisson(5.0, size=(6, 5, 16, 16)).astype(np.uint16)
    return fw.DataCube(data, fw.Calibration(real_step=1.0))


def _recipe() -> Recipe:
    disk = fw.detectors.Circle(center=(8, 8), radius=4)
    return Recipe((TotalCounts(2.0), VirtualImageParams(detectors=(disk,)), TotalCounts(3.0)))


def _cancelled() -> threading.Event:
    ev = threading.Event()
    ev.set()  # the engine checks it before its first merge: the engine step is cancelled
    return ev


# --- 4. cancel keeps the finished steps -------------------------------------------------------


def test_cancelled_run_raises_with_the_finished_steps_as_partial_results():
    cube = _cube()
    with pytest.raises(CancelledError) as info:
        run(_recipe(), cube, cancel=_cancelled(), progress=False)
    partial = info.value.partial
    assert isinstance(partial, Results) and partial.partial
    # the step before the cancelled one is there, with its true values; the others are not
    assert list(partial) == ["test.total_counts"]
    expected = cube.to_numpy().astype(np.float64).sum(axis=(2, 3)) * 2.0
    assert np.array_equal(partial["test.total_counts"], expected)
    with pytest.raises(KeyError, match="cancelled"):
        partial["virtual_image"]
    assert partial.provenance["cancelled"]["step"] == "virtual_image"
    assert partial.provenance["cancelled"]["not_run"] == ["virtual_image", "test.total_counts_2"]
    assert partial.recipe.labels == _recipe().labels  # the whole recipe, so a rerun does everything
    assert "virtual_image" in str(info.value) and "test.total_counts" in str(info.value)


def test_a_finished_run_is_not_partial_and_save_records_the_flag(tmp_path):
    cube = _cube()
    whole = run(_recipe(), cube, progress=False)
    assert not whole.partial
    with pytest.raises(CancelledError) as info:
        run(_recipe(), cube, cancel=_cancelled(), progress=False)
    for name, res, flag in (("whole.h5", whole, False), ("part.h5", info.value.partial, True)):
        res.save(tmp_path / name)
        with h5py.File(tmp_path / name, "r") as f:
            assert bool(f.attrs["partial"]) is flag
        back = Results.load(tmp_path / name)
        assert back.partial is flag and list(back) == list(res)


def _batch_inputs(folder):
    folder.mkdir()
    paths = []
    for i in range(2):
        p = folder / f"scan_{i}.npy"
        np.save(p, _cube(i).to_numpy())
        paths.append(p)
    return paths


def _quiet(**kw):
    return dict(progress=False, log=lambda s: None, **kw)


def test_batch_never_counts_partial_results_as_done(tmp_path):
    (src, _) = _batch_inputs(tmp_path / "data")
    out = tmp_path / "out"
    recipe = _recipe()
    assert run_batch(recipe, [src], out, **_quiet()).ok
    (dst,) = out.glob("*.results.h5")
    whole = Results.load(dst)
    with h5py.File(dst, "r+") as f:  # the same run's output, but partial (as a cancelled save leaves it)
        f.attrs["partial"] = True
        del f["results/virtual_image"]
    again = run_batch(recipe, [src], out, **_quiet())
    # Before: reported as failed ("not made by this run"); a partial file must be finished, not kept.
    assert again.ok and str(src) in again.done and not again.skipped
    redone = Results.load(dst)
    assert not redone.partial
    assert np.array_equal(redone["virtual_image"], whole["virtual_image"])
    # ...and then it is done
    assert str(src) in run_batch(recipe, [src], out, **_quiet()).skipped


def test_cancelled_batch_saves_nothing_and_stops(tmp_path):
    inputs = _batch_inputs(tmp_path / "data")
    out = tmp_path / "out"
    report = run_batch(_recipe(), inputs, out, cancel=_cancelled(), **_quiet())
    assert not report.ok and not report.done
    assert report.failed[str(inputs[0])].startswith("cancelled")
    assert "not started" in report.failed[str(inputs[1])]  # before: each input was opened and cancelled in turn
    assert not list(out.glob("*.results.h5"))


# --- 6. the file and its folder are flushed around the rename ---------------------------------


def test_save_flushes_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.fspath(a)))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    res = run(Recipe((TotalCounts(),)), _cube(), progress=False)
    target = tmp_path / "r.h5"
    res.save(target)
    tmp = results_mod.atomic_path(target)
    assert ("fsync", tmp) in events, events  # before: no fsync at all
    assert events.index(("fsync", tmp)) < events.index(("replace", tmp))
    assert events.index(("fsync", str(tmp_path))) > events.index(("replace", tmp))
    assert Results.load(target)["test.total_counts"].shape == (6, 5)
