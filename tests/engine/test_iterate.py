"""The iterative engine: passes with shared state, progress, cancel, checkpoints, threads == Dask.

The test algorithm is a power iteration for the leading principal pattern of a
cube (as NMF or PCA would run on the engine): each pass sums p (p · v) over the
patterns p for the state v; the update normalises it. The ground truth is the
leading eigenvector of the patterns' scatter matrix.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from fourd_widgets.core import DataCube
from fourd_widgets.core.errors import CancelledError, FourDError, ParameterError
from fourd_widgets.engine import Buffer, Cancel, CheckpointError, IterativeJob, Job, run_iterative


class Project(Job):
    name = "project"

    def __init__(self, v):
        self.v = v

    def buffers(self, cube):
        return Buffer("pixel")

    def process(self, block, rx, ry):
        p = block.reshape(-1, block.shape[2] * block.shape[3]).astype(np.float64)
        return (p.T @ (p @ self.v)).reshape(block.shape[2:])


class PowerIteration(IterativeJob):
    name = "power iteration"

    def __init__(self, record=None, batches=1, tol=0.0):
        self.record = record if record is not None else {"step": "test.power", "tol": tol}
        self.nbatches = batches
        self.tol = tol
        self.updates = 0

    def init_state(self, cube):
        n = cube.detector_shape[0] * cube.detector_shape[1]
        return {"v": np.ones(n) / np.sqrt(n), "change": np.inf, "sum": np.zeros(n), "batch": 0}

    def pass_job(self, state, iteration):
        return Project(state["v"])

    def batches(self, slices, iteration):
        return [slices[i::self.nbatches] for i in range(self.nbatches)]

    def update(self, state, merged, iteration):
        # batches add up; the last one of the iteration normalises
        self.updates += 1
        total, batch = state["sum"] + merged.ravel(), state["batch"] + 1
        if batch < self.nbatches:
            return {**state, "sum": total, "batch": batch}
        w = total / np.linalg.norm(total)
        return {"v": w, "change": float(np.abs(w - state["v"]).max()), "sum": np.zeros_like(w), "batch": 0}

    def converged(self, state, iteration):
        return state["change"] < self.tol

    def result(self, state):
        return state["v"]


@pytest.fixture
def cube(rng):
    # two components with distinct weights so the leading one is well separated
    base = rng.random((2, 6, 5))
    w = rng.random((9, 7, 2)) * [3.0, 1.0]
    return DataCube((w @ base.reshape(2, -1)).reshape(9, 7, 6, 5) + 0.01 * rng.random((9, 7, 6, 5)))


def leading(cube):
    p = cube.to_numpy().reshape(-1, 30)
    vals, vecs = np.linalg.eigh(p.T @ p)
    v = vecs[:, -1]
    return v * np.sign(v.sum()), vals[-1] / vals[-2]


def test_converges_to_the_leading_eigenvector(cube):
    truth, gap = leading(cube)
    seen, progress = [], []
    got = run_iterative(cube, PowerIteration(), iterations=12, chunk_bytes=2 * 7 * cube.pattern_nbytes,
                        workers=2, on_iteration=lambda i, s: seen.append(i),
                        progress=lambda d, t: progress.append((d, t)))
    # Power iteration shrinks the error by the eigenvalue ratio per step; the gap here is large
    # (> 30), so after 12 steps the error is far below float64 rounding of the eigensolver (1e-12).
    assert gap > 30
    np.testing.assert_allclose(got, truth, atol=1e-12)
    assert seen == list(range(1, 13))
    assert progress == [(d, 12) for d in range(13)]


def test_batches_update_after_each_and_converged_stops(cube):
    job = PowerIteration(batches=3, tol=1e-10)
    got = run_iterative(cube, job, iterations=50, chunk_bytes=7 * cube.pattern_nbytes, progress=False)
    np.testing.assert_allclose(got, leading(cube)[0], atol=1e-9)
    assert job.updates % 3 == 0 and job.updates < 3 * 50  # three updates per iteration, stopped early


def test_an_array_of_per_position_values_is_data_too():
    # (Rx, Ry, k) arrays are seen as cubes of (1, k) patterns
    v = run_iterative(np.ones((4, 3, 2)), PowerIteration(), iterations=2, progress=False)
    np.testing.assert_allclose(v, [2 ** -0.5] * 2)


def test_resume_from_checkpoint_equals_an_uninterrupted_run(cube, tmp_path):
    chunk = 2 * 7 * cube.pattern_nbytes
    want = run_iterative(cube, PowerIteration(), iterations=8, chunk_bytes=chunk, progress=False)
    ck = tmp_path / "power.ckpt.npz"
    token = Cancel()

    def stop_after_3(i, state):
        if i == 3:
            token.cancel()

    with pytest.raises(CancelledError, match="iteration 3") as info:
        run_iterative(cube, PowerIteration(), iterations=8, chunk_bytes=chunk, progress=False, cancel=token,
                      on_iteration=stop_after_3, checkpoint=ck)
    assert info.value.iteration == 3 and set(info.value.state) == {"v", "change", "sum", "batch"}
    assert [p.name for p in tmp_path.iterdir()] == ["power.ckpt.npz"]  # no temporary left behind
    seen = []
    got = run_iterative(cube, PowerIteration(), iterations=8, chunk_bytes=chunk, progress=False, checkpoint=ck,
                        on_iteration=lambda i, s: seen.append(i))
    assert seen == [4, 5, 6, 7, 8]  # continued, not restarted
    np.testing.assert_array_equal(got, want)
    # a finished checkpoint is the result, without another pass
    job = PowerIteration()
    np.testing.assert_array_equal(run_iterative(cube, job, iterations=8, progress=False, checkpoint=ck), want)
    assert job.updates == 0


def test_cancel_within_a_pass_keeps_the_last_whole_iteration(cube):
    token = Cancel()

    class Stop(PowerIteration):
        def update(self, state, merged, iteration):
            if iteration == 1:  # while the pass of iteration 3 is about to run
                token.cancel()
            return super().update(state, merged, iteration)

    with pytest.raises(CancelledError) as info:
        run_iterative(cube, Stop(), iterations=5, chunk_bytes=cube.pattern_nbytes, progress=False, cancel=token)
    assert info.value.iteration == 2


def test_a_checkpoint_of_another_run_is_refused_and_kept(cube, tmp_path, rng):
    ck = tmp_path / "ck.npz"
    run_iterative(cube, PowerIteration(), iterations=2, progress=False, checkpoint=ck)
    before = ck.read_bytes()
    with pytest.raises(CheckpointError, match=r"ck\.npz.*its recipe differ") as info:
        run_iterative(cube, PowerIteration(record={"step": "test.power", "tol": 1.0}), iterations=3,
                      progress=False, checkpoint=ck)
    assert isinstance(info.value, FourDError)
    other = DataCube(cube.to_numpy() + 1e-9)
    with pytest.raises(CheckpointError, match="its input differ"):
        run_iterative(other, PowerIteration(), iterations=3, progress=False, checkpoint=ck)
    assert ck.read_bytes() == before  # neither resumed nor overwritten
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        run_iterative(cube, PowerIteration(), iterations=3, progress=False, checkpoint=tmp_path / "junk.npz")
    with pytest.raises(ParameterError, match="recipe"):
        job = PowerIteration()
        job.record = None
        run_iterative(cube, job, iterations=1, progress=False, checkpoint=tmp_path / "x.npz")


def test_file_inputs_are_keyed_by_path_size_mtime_and_load_options(tmp_path, rng):
    import fourd_widgets as fw

    data = rng.random((4, 3, 5, 6))
    np.save(tmp_path / "cube.npy", data)
    ck = tmp_path / "ck.npz"
    run_iterative(fw.load(tmp_path / "cube.npy"), PowerIteration(), iterations=2, progress=False, checkpoint=ck)
    with pytest.raises(CheckpointError, match="its load options"):
        run_iterative(fw.load(tmp_path / "cube.npy").crop(rx=(0, 3)), PowerIteration(), iterations=3,
                      progress=False, checkpoint=ck)
    st = os.stat(tmp_path / "cube.npy")
    os.utime(tmp_path / "cube.npy", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file was rewritten
    with pytest.raises(CheckpointError, match="input differ"):
        run_iterative(fw.load(tmp_path / "cube.npy"), PowerIteration(), iterations=3, progress=False,
                      checkpoint=ck)


@pytest.mark.slow
def test_dask_runs_the_same_iterations_bit_for_bit(cube, dask_cluster, tmp_path):
    _, client = dask_cluster
    chunk = 2 * 7 * cube.pattern_nbytes
    want = run_iterative(cube, PowerIteration(batches=2), iterations=6, chunk_bytes=chunk, workers=2,
                         progress=False)
    counting = CountingClient(client)
    got = run_iterative(cube, PowerIteration(batches=2), iterations=6, chunk_bytes=chunk, scheduler=counting,
                        progress=False, checkpoint=tmp_path / "ck.npz")
    np.testing.assert_array_equal(got, want)
    # the cube is scattered once, the job with its state once per pass (6 iterations x 2 batches),
    # and every task refers to them instead of carrying them
    assert counting.scattered == ["DataCube"] + ["Project"] * 12
    assert counting.tasks == len(cube.chunk_slices(chunk)) * 6 and counting.carried == 0


class CountingClient:
    """A dask Client that counts what is scattered and what tasks carry."""

    def __init__(self, client):
        self.client = client
        self.scattered, self.tasks, self.carried = [], 0, 0

    def scatter(self, data, **kw):
        self.scattered += [type(d).__name__ for d in data]
        return self.client.scatter(data, **kw)

    def submit(self, fn, *args, **kw):
        self.tasks += 1
        self.carried += sum(isinstance(a, (DataCube, Job)) for a in args)
        return self.client.submit(fn, *args, **kw)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_checkpoint_key_is_the_batch_runners_key_for_a_file(tmp_path) -> None:
    """One key for "this output is finished" (batch resume) and "this checkpoint may resume"."""
    import fourd_widgets as fw
    from fourd_widgets.engine.checkpoint import checkpoint_key, load_options
    from fourd_widgets.io.identity import input_identity, run_key

    path = tmp_path / "cube.npy"
    np.save(path, np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4))
    recipe = {"steps": [{"step": "x", "a": 1}]}
    with fw.load(path) as cube:
        key, _parts = checkpoint_key(recipe, cube)
        ident = {**input_identity(path), "shape": list(cube.shape), "dtype": str(cube.dtype)}
        assert key == run_key(recipe, load_options(cube), ident)
        path.write_bytes(path.read_bytes()[:-4] + b"\x00\x00\x80\x7f")  # same size, other content
        assert checkpoint_key(recipe, cube)[0] != key
