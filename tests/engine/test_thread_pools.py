"""Thread pools kept between jobs: reused one after another, never shared by jobs running at once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fourd_widgets.core import DataCube
from fourd_widgets.core.errors import CancelledError
from fourd_widgets.engine import Cancel, ImageJob, run_job, start_job


class WhoRan(ImageJob):
    """Records the thread that processed each chunk; optionally waits on an event, or runs a nested job."""

    item_shape = ()

    def __init__(self, gate: threading.Event | None = None, nested: DataCube | None = None, delay: float = 0.0):
        self.threads: set[threading.Thread] = set()  # the objects: thread idents are reused
        self.gate = gate
        self.nested = nested
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def process(self, block, rx, ry):
        self.threads.add(threading.current_thread())
        with self._lock:
            self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(30)
        if self.nested is not None:  # a job started from inside a chunk, on the same worker count
            inner = run_job(self.nested, WhoRan(), chunk_bytes=self.nested.pattern_nbytes, workers=2, progress=False)
            return np.full(block.shape[:2], inner.sum())
        time.sleep(self.delay)
        return block.sum(axis=(2, 3))


def _cube(n: int = 8) -> DataCube:
    return DataCube(np.arange(n * 4 * 3 * 3, dtype=np.float64).reshape(n, 4, 3, 3))


def test_jobs_one_after_another_reuse_the_threads():
    cube = _cube()
    chunk = 4 * cube.pattern_nbytes  # 8 chunks
    seen = []
    for _ in range(3):
        job = WhoRan()
        out = run_job(cube, job, chunk_bytes=chunk, workers=2, progress=False)
        np.testing.assert_array_equal(out, cube.to_numpy().sum(axis=(2, 3)))
        seen.append(job.threads)
    assert threading.current_thread() not in seen[0]  # worker threads ran the chunks
    assert seen[1] <= seen[0] and seen[2] <= seen[0]  # no new threads after the first job


def test_jobs_running_at_once_get_their_own_threads():
    cube = _cube()
    chunk = 4 * cube.pattern_nbytes
    gate = threading.Event()
    slow = WhoRan(gate=gate)
    handle = start_job(cube, slow, chunk_bytes=chunk, workers=2)
    try:
        while not slow.threads:
            time.sleep(0.001)
        # the slow job's workers are blocked on the gate: this job must not queue behind them
        quick = WhoRan()
        out = run_job(cube, quick, chunk_bytes=chunk, workers=2, progress=False)
        np.testing.assert_array_equal(out, cube.to_numpy().sum(axis=(2, 3)))
        assert not (quick.threads & slow.threads)
    finally:
        gate.set()
    np.testing.assert_array_equal(handle.result(timeout=30), cube.to_numpy().sum(axis=(2, 3)))


def test_a_job_started_inside_a_chunk_completes():
    cube = _cube(2)
    inner = _cube(3)
    handle = start_job(cube, WhoRan(nested=inner), chunk_bytes=cube.pattern_nbytes, workers=2)
    out = handle.result(timeout=60)  # a shared pool would deadlock here: its workers wait on themselves
    np.testing.assert_array_equal(out, np.full(cube.scan_shape, inner.to_numpy().sum()))


def test_no_chunk_of_a_cancelled_job_runs_after_it_raised():
    """A pool goes back for reuse only when the job's chunks in flight have finished (as a shut-down
    pool's would have), so nothing of a cancelled job runs on after run_job raised."""
    cube = _cube(16)
    token = Cancel()
    job = WhoRan(delay=0.02)

    def partial(value, n, total):
        if n == 1:
            token.cancel()

    with pytest.raises(CancelledError):
        run_job(cube, job, chunk_bytes=cube.pattern_nbytes, workers=2, cancel=token, on_partial=partial,
                progress=False)
    calls_then = job.calls
    time.sleep(0.2)
    assert job.calls == calls_then < 16
