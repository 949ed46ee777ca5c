"""Issue 12's fuzz suite: every reader, the recipe and the results file, damaged by hypothesis,
each input tried in a child process that is killed after 10 s (a hang; C code included).

Figures per target (inputs tried, ok, clear errors, foreign errors, hangs, crashes) are
printed (``pytest -s``) and written to ``$FOURD_FUZZ_REPORT`` when set. The budget is
fixed and derandomised for CI: ``FOURD_FUZZ_EXAMPLES`` inputs per target (default 40);
bench/fuzz_readers.py runs the same suite with a larger one. test_io_corrupt.py fuzzes
the in-process side (file never modified, read errors name the file); this suite adds
the time limit, the crash detection, the other readers, recipes and results files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from .fuzz_harness import Tally, Worker, make_targets, mangle, try_once

EXAMPLES = int(os.environ.get("FOURD_FUZZ_EXAMPLES", "40"))

cuts = st.one_of(st.just(1.0), st.floats(0.0, 1.0))
flips = st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=3)
header_flips = st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=4)


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    from ..conftest import SHARED_DATA

    folder = tmp_path_factory.mktemp("fuzz")
    real = SHARED_DATA / "real"
    return {t.name: t for t in make_targets(folder, real if real.is_dir() else None)}


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


@pytest.fixture(scope="module")
def figures():
    found: dict[str, Tally] = {}
    yield found
    lines = [t.line(name) for name, t in found.items()]
    total = Tally()
    for t in found.values():
        total.counts.update(t.counts)
    lines.append(total.line("all"))
    print("\nfuzz suite figures (children killed after 10 s):\n" + "\n".join(lines))
    out = os.environ.get("FOURD_FUZZ_REPORT")
    if out:
        Path(out).write_text(json.dumps({name: {"counts": dict(t.counts), "examples": t.examples}
                                         for name, t in found.items()}, indent=1))


NAMES = ["npy", "hdf5_chunked", "hdf5_contig", "raw", "arina_master", "arina_data", "zarr_meta", "zarr_chunk",
         "recipe", "results",
         "mib", "blo", "py4dstem_emd", "prismatic_emd", "hspy", "tiff", "mrc"]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", NAMES)
def test_damaged_inputs_end_in_our_error_never_a_hang_or_crash(name, targets, worker, figures):
    if name not in targets:
        pytest.skip("the real files in ../shared/data/real are absent")
    target = targets[name]
    original = target.victim.read_bytes()
    tally = figures.setdefault(name, Tally())
    intact = try_once(worker, target, original, None, "intact")
    assert intact["outcome"] == "ok", intact  # the undamaged input is read: the target is not vacuous

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cut=cuts, flips=flips, head=header_flips)
    def explore(cut, flips, head):
        blob = mangle(original, cut, flips, head)
        try_once(worker, target, blob, tally, f"cut={cut:.4f} flips={flips} header={head}")

    explore()
    assert target.victim.read_bytes() == original  # the source is never touched
    assert tally.tried >= min(EXAMPLES, 10)
    summary = tally.line(name) + "".join(f"\n  {k}: {v}" for k, v in tally.examples.items())
    assert tally.counts["hang"] == 0 and tally.counts["crash"] == 0, summary
    assert tally.counts["foreign"] == 0, summary


def test_the_harness_counts_hangs_and_crashes_and_recovers(worker):
    assert worker.ask({"kind": "selftest-hang", "path": ""}, timeout=2)["outcome"] == "hang"
    assert worker.ask({"kind": "selftest-crash", "path": ""})["outcome"] == "crash"
    assert worker.ask({"kind": "recipe", "path": os.devnull})["outcome"] in ("clear", "foreign")
