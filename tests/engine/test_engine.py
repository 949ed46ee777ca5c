"""The chunked engine: schedulers agree bitwise, progress, cancel, partial results, background jobs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fourd_widgets.analysis.detectors import Annulus, Circle
from fourd_widgets.analysis.virtual import VirtualDiffractionJob, VirtualImageJob
from fourd_widgets.core import DataCube
from fourd_widgets.core.errors import CancelledError, ParameterError
from fourd_widgets.engine import Cancel, ImageJob, Job, make_progress, run_job, start_job


class RowSums(ImageJob):
    """Per-position total, optionally slow (to cancel mid-run); threads only."""

    item_shape = ()

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    def process(self, block, rx, ry):
        self.calls += 1
        time.sleep(self.delay)
        return block.sum(axis=(2, 3), dtype=np.float64)


class Ordered(Job):
    """Records the order merges happen in."""

    def init(self, cube):
        return []

    def process(self, block, rx, ry):
        time.sleep(0.002 * (rx.start % 3))  # finish out of order on purpose
        return rx.start

    def merge(self, acc, partial, rx, ry):
        acc.append(partial)
        return acc


@pytest.fixture
def cube(rng):
    return DataCube(rng.random((12, 5, 8, 9)).astype(np.float32))


def mean_job(cube):
    return VirtualDiffractionJob("mean", np.ones(cube.scan_shape), None, False)


def test_schedulers_agree_bitwise(cube):
    chunk = 2 * 5 * cube.pattern_nbytes
    want = run_job(cube, mean_job(cube), chunk_bytes=chunk, scheduler="sync", progress=False)
    np.testing.assert_allclose(want, cube.to_numpy().mean(axis=(0, 1)), rtol=1e-6)
    for workers in (1, 2, 3):
        got = run_job(cube, mean_job(cube), chunk_bytes=chunk, scheduler="threads", workers=workers, progress=False)
        np.testing.assert_array_equal(got, want)


def test_merges_happen_in_chunk_order(cube):
    order = run_job(cube, Ordered(), chunk_bytes=5 * cube.pattern_nbytes, workers=3, progress=False)
    assert order == list(range(12))


def test_progress_callback_counts_every_chunk(cube):
    seen = []
    run_job(cube, RowSums(), chunk_bytes=3 * cube.pattern_nbytes, progress=lambda d, t: seen.append((d, t)))
    total = len(cube.chunk_slices(3 * cube.pattern_nbytes))
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert [d for d, _ in seen] == list(range(total + 1))


def test_progress_bar_modes_do_not_fail(cube, capsys):
    for mode in (True, None):
        run_job(cube, RowSums(), chunk_bytes=5 * cube.pattern_nbytes, progress=mode)
    with pytest.raises(TypeError, match="progress must be"):
        make_progress("yes", 3)


def test_cancel_mid_run_keeps_delivered_partials(cube):
    token = Cancel()
    partials = []

    def on_partial(image, done, total):
        partials.append((image.copy(), done, total))
        if done == 3:
            token.cancel()

    chunk = 5 * cube.pattern_nbytes  # one scan row per chunk
    with pytest.raises(CancelledError, match="after 3 of 12 chunks"):
        run_job(cube, RowSums(), chunk_bytes=chunk, cancel=token, on_partial=on_partial, progress=False)
    assert [p[1] for p in partials] == [1, 2, 3]
    last = partials[-1][0]
    np.testing.assert_allclose(last[:3], cube.to_numpy()[:3].sum(axis=(2, 3)), rtol=1e-6)
    assert np.isnan(last[3:]).all()


def test_a_plain_event_also_cancels(cube):
    ev = threading.Event()
    ev.set()
    with pytest.raises(CancelledError):
        run_job(cube, RowSums(), chunk_bytes=cube.pattern_nbytes, cancel=ev, progress=False)


def test_background_job_result_progress_and_partial(cube):
    h = start_job(cube, RowSums(), chunk_bytes=5 * cube.pattern_nbytes)
    out = h.result(timeout=60)
    assert h.done() and h.progress == (12, 12)
    np.testing.assert_allclose(out, cube.to_numpy().sum(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_array_equal(h.partial, out)


def test_background_job_cancel(cube):
    h = start_job(cube, RowSums(delay=0.05), chunk_bytes=cube.pattern_nbytes, workers=1)
    time.sleep(0.12)
    h.cancel()
    with pytest.raises(CancelledError):
        h.result(timeout=60)
    assert h.done() and h.progress[0] < h.progress[1]
    with pytest.raises(ParameterError, match="handle.cancel"):
        start_job(cube, RowSums(), cancel=Cancel())


def test_bad_options_are_refused(cube):
    with pytest.raises(ParameterError, match="scheduler must be 'threads', 'sync'"):
        run_job(cube, RowSums(), chunk_bytes=cube.pattern_nbytes, scheduler=42, progress=False)
    with pytest.raises(ParameterError, match="chunk_bytes must be positive"):
        run_job(cube, RowSums(), chunk_bytes=-1, progress=False)


# --- dask.distributed: the same job code on worker processes ---------------------------------
@pytest.fixture
def cluster(dask_cluster):
    """The session's shared LocalCluster (tests/conftest.py)."""
    return dask_cluster


def _image_job(cube):
    dets = [Circle((4, 4), 3), Annulus((4, 4), 1, 4, response="com_x"), Circle((4, 4), 2, response="max")]
    return VirtualImageJob(dets, cube.detector_shape, cube.calibration)


@pytest.mark.slow
def test_dask_in_memory_and_file_backed_match_threads(cluster, tmp_path, rng):
    import h5py

    import fourd_widgets as fw

    lc, client = cluster
    data = rng.integers(0, 4000, (10, 6, 9, 8), dtype=np.uint16)
    mem = DataCube(data)
    np.save(tmp_path / "cube.npy", data)
    with h5py.File(tmp_path / "cube.h5", "w") as f:
        f["data"] = data
    npy = fw.load(tmp_path / "cube.npy")
    h5 = DataCube(h5py.File(tmp_path / "cube.h5", "r")["data"],
                  source={"path": str(tmp_path / "cube.h5"), "format": "hdf5", "options": {"dataset": "data"}})
    chunk = 2 * 6 * mem.pattern_nbytes
    want = run_job(mem, _image_job(mem), chunk_bytes=chunk, scheduler="threads", progress=False)
    want_dp = run_job(mem, mean_job(mem), chunk_bytes=chunk, scheduler="threads", progress=False)
    for cube in (mem, npy, h5):
        got = run_job(cube, _image_job(cube), chunk_bytes=chunk, scheduler=client, progress=False)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(
            run_job(cube, mean_job(cube), chunk_bytes=chunk, scheduler=client, progress=False), want_dp)
    # a scheduler address works too, and float data through BLAS give the same bits
    fl = DataCube(data.astype(np.float32))
    job = VirtualImageJob([Annulus((4, 4), 0, 9), Circle((4, 4), 3)], fl.detector_shape, fl.calibration)
    np.testing.assert_array_equal(
        run_job(fl, job, chunk_bytes=chunk, scheduler=lc.scheduler_address, progress=False),
        run_job(fl, job, chunk_bytes=chunk, scheduler="sync", progress=False))


@pytest.mark.slow
def test_dask_cancel_stops_and_reports(cluster, rng):
    _, client = cluster
    cube = DataCube(rng.random((8, 4, 6, 6)))
    token = Cancel()
    seen = []

    def on_partial(value, done, total):
        seen.append(done)
        token.cancel()

    with pytest.raises(CancelledError):
        run_job(cube, _image_job(cube), chunk_bytes=cube.pattern_nbytes * 4, scheduler=client,
                cancel=token, on_partial=on_partial, progress=False)
    assert seen == [1]


@pytest.mark.slow
def test_shared_cluster_leaves_dask_arrays_local(cluster):
    """The session's client is not dask's default: lazy readers' dask arrays compute in-process."""
    import io

    import dask
    import dask.array as da
    from distributed import default_client

    with pytest.raises(ValueError):
        default_client()
    handle = io.BytesIO(b"\x01\x02")  # like an open file in a reader's graph: cannot be pickled

    def read(block_id=None):
        return np.frombuffer(handle.getvalue(), np.uint8)[None]

    arr = da.map_blocks(read, chunks=((1,), (2,)), dtype=np.uint8)
    assert dask.compute(arr)[0].tolist() == [[1, 2]]
