"""Issue 12 items 3, 5 and 7: resume keyed by the whole run, batches sharing --out, bad --out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.app import batch as batch_mod
from fourd_widgets.app.batch import run_batch
from fourd_widgets.core.calibration import Calibration
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.results import Results

from .privileges import as_nobody, needs_root, open_folder  # noqa: F401 (fixture)

CLI = [sys.executable, "-m", "fourd_widgets.app"]


def _recipe(calibration: Calibration | None = None) -> Recipe:
    from fourd_widgets.analysis.virtual import VirtualImageParams

    return Recipe((VirtualImageParams(detectors=(fw.detectors.Circle(center=(8, 8), radius=4),)),),
                  calibration=calibration)


def _inputs(folder: Path, n: int, shape=(6, 5, 16, 16)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        p = folder / f"scan_{i}.npy"
        np.save(p, rng.integers(0, 500, size=shape, dtype=np.uint16))
        out.append(p)
    return out


def _quiet(**kw):
    return dict(progress=False, log=lambda s: None, **kw)


# --- 3. resume compares the whole run ----------------------------------------------------------


def test_changed_calibration_is_not_answered_with_old_outputs(tmp_path):
    (src,) = _inputs(tmp_path / "data", 1)
    out = tmp_path / "out"
    assert run_batch(_recipe(Calibration(real_step=1.0)), [src], out, **_quiet()).ok
    # Before: "skipped ... already done", keeping outputs of the old calibration.
    again = run_batch(_recipe(Calibration(real_step=2.0)), [src], out, **_quiet())
    assert not again.skipped and not again.ok
    assert "not made by this recipe" in again.failed[str(src)]
    forced = run_batch(_recipe(Calibration(real_step=2.0)), [src], out, **_quiet(force=True))
    assert forced.ok and Results.load(out / "scan_0.npy.results.h5").recipe.calibration.real_step == 2.0


def test_changed_load_option_is_not_answered_with_old_outputs(tmp_path):
    (src,) = _inputs(tmp_path / "data", 1)
    out = tmp_path / "out"
    assert run_batch(_recipe(), [src], out, **_quiet()).ok
    again = run_batch(_recipe(), [src], out, **_quiet(load_options={"binning": 2}))
    assert not again.skipped
    assert "other load options" in again.failed[str(src)] and "binning" in again.failed[str(src)]


def test_changed_input_is_not_answered_with_old_outputs(tmp_path):
    (src,) = _inputs(tmp_path / "data", 1)
    out = tmp_path / "out"
    assert run_batch(_recipe(), [src], out, **_quiet()).ok
    arr = np.load(src)
    st = os.stat(src)
    np.save(src, arr[::-1].copy())  # same size, other data
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old time, the hash differs
    again = run_batch(_recipe(), [src], out, **_quiet())
    assert not again.skipped and "another version of the input" in again.failed[str(src)]


def test_unchanged_run_is_skipped_and_the_key_is_stored(tmp_path):
    from fourd_widgets.io.identity import input_identity, run_key

    (src,) = _inputs(tmp_path / "data", 1)
    out = tmp_path / "out"
    run_batch(_recipe(), [src], out, **_quiet(load_options={"scan_shape": [6, 5]}))
    again = run_batch(_recipe(), [src], out, **_quiet(load_options={"scan_shape": (6, 5)}))
    assert list(again.skipped) == [str(src)]
    stored = Results.load(out / "scan_0.npy.results.h5").provenance["run"]
    recipe = _recipe().to_dict()
    recipe.pop("fourd_widgets_version")
    assert stored["key"] == run_key(recipe, {"scan_shape": [6, 5]}, input_identity(src))


# --- 5. two batches on one --out ---------------------------------------------------------------


def test_partial_of_a_live_process_is_kept_and_a_dead_ones_removed(tmp_path):
    (src,) = _inputs(tmp_path / "data", 1)
    out = tmp_path / "out"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        live_partial = out / f".scan_0.npy.results.h5.partial-{sleeper.pid}"
        dead_partial = out / f".scan_0.npy.results.h5.partial-{dead.pid}"
        live_partial.write_bytes(b"being written")
        dead_partial.write_bytes(b"half")
        # Before: every partial was deleted, and the live writer died at its rename.
        assert run_batch(_recipe(), [src], out, **_quiet()).ok
        assert live_partial.read_bytes() == b"being written"
        assert not dead_partial.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_batch_waits_for_the_output_another_holds_then_finds_it_done(tmp_path):
    (src,) = _inputs(tmp_path / "data", 1)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    run_batch(_recipe(), [src], elsewhere, **_quiet())  # what "the other batch" will write
    out.mkdir()
    dst = str(out / "scan_0.npy.results.h5")
    lines: list[str] = []
    reports = []
    with batch_mod._output_lock(dst, lambda s: None):  # the other batch holds the output
        worker = threading.Thread(target=lambda: reports.append(
            run_batch(_recipe(), [src], out, progress=False, log=lines.append)))
        worker.start()
        for _ in range(600):  # the waiting batch says so; before, nothing waited at all
            if any(line.startswith("waiting") for line in lines) or not worker.is_alive():
                break
            time.sleep(0.1)
        assert any(line.startswith("waiting: another batch is writing") for line in lines), lines
        shutil.copy(elsewhere / "scan_0.npy.results.h5", dst)  # the other batch finishes
    worker.join(120)
    (report,) = reports
    assert list(report.skipped) == [str(src)] and not report.done
    assert not list(out.glob(".*lock")) and not list(out.glob(".*partial*"))


def test_two_cli_batches_on_one_out_both_succeed_and_compute_each_output_once(tmp_path):
    inputs = _inputs(tmp_path / "data", 6, shape=(24, 24, 32, 32))
    recipe_path = tmp_path / "recipe.json"
    _recipe().save(recipe_path)
    out = tmp_path / "out"
    cmd = CLI + ["run", str(recipe_path), *map(str, inputs), "--out", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (so, se) in zip(procs, outs):
        assert p.returncode == 0, so + se
    done = sum(so.count("\ndone ") + so.startswith("done ") for so, _ in outs)
    assert done == 6  # each output computed by exactly one of the two
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.name}.results.h5" for p in inputs)


# --- 7. a bad --out is a usage error, found before computing --------------------------------


def _cli(recipe_path: Path, src: Path, out: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + ["run", str(recipe_path), str(src), "--out", out],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kind", ["file", "under_file", "proc"])
def test_bad_out_exits_2_with_a_clear_message_before_computing(tmp_path, kind):
    (src,) = _inputs(tmp_path / "data", 1)
    recipe_path = tmp_path / "recipe.json"
    _recipe().save(recipe_path)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file")
    out = {"file": str(a_file), "under_file": str(a_file / "sub"), "proc": "/proc/fourd_widgets_out"}[kind]
    proc = _cli(recipe_path, src, out)
    # Before: a traceback and exit 1 (or a FAILED line per input).
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "--out" in proc.stderr and out in proc.stderr
    assert "done" not in proc.stdout and "FAILED" not in proc.stdout  # nothing was computed
    assert a_file.read_text() == "a file"


@needs_root
def test_unwritable_out_folder_exits_2_before_computing(open_folder):
    from fourd_widgets.app.cli import main

    data = open_folder / "data"
    (src,) = _inputs(data, 1)
    os.chmod(data, 0o755)
    os.chmod(src, 0o644)
    recipe_path = open_folder / "recipe.json"
    _recipe().save(recipe_path)
    os.chmod(recipe_path, 0o644)
    run_batch(_recipe(), [src], open_folder / "warm", **_quiet())  # imports, while still root
    locked = open_folder / "locked_out"
    locked.mkdir(mode=0o755)  # root's; nobody may not write in it
    def attempt() -> int:
        import io
        from contextlib import redirect_stderr, redirect_stdout

        err, std = io.StringIO(), io.StringIO()
        with redirect_stderr(err), redirect_stdout(std):
            code = main(["run", str(recipe_path), str(src), "--out", str(locked)])
        if code == 2:  # carry the messages back in the exception text
            assert "not writable" in err.getvalue() and str(locked) in err.getvalue(), err.getvalue()
            assert "done" not in std.getvalue() and "FAILED" not in std.getvalue(), std.getvalue()
        return code

    out = as_nobody(attempt)
    # Before: the input was computed, then the save failed: exit 1 after the work was done.
    assert out == "ok 2", out
    assert not list(locked.iterdir())
