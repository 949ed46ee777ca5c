"""Result buffers declared by kind, multi-pass runs, and the pattern passes (mean, max, median strips)."""

from __future__ import annotations

import numpy as np
import pytest

from fourd_widgets.core import DataCube
from fourd_widgets.core.errors import CancelledError, ParameterError, ShapeError
from fourd_widgets.engine import Buffer, Cancel, Job, run_job, run_passes
from fourd_widgets.engine.patterns import MedianStripJob, median_pattern, median_strips


class Everything(Job):
    """One buffer of each kind and each reduction, checked against numpy below."""

    def buffers(self, cube):
        return {"image": Buffer("position", (2,)), "total": Buffer("pixel"),
                "brightest": Buffer("pixel", dtype=cube.dtype, reduce="max"),
                "darkest": Buffer("pixel", dtype=cube.dtype, reduce="min"),
                "count": Buffer("single", dtype=np.int64), "peak": Buffer("single", reduce="max")}

    def process(self, block, rx, ry):
        return {"image": np.stack([block.sum(axis=(2, 3), dtype=np.float64), block.max(axis=(2, 3))], axis=-1),
                "total": block.sum(axis=(0, 1), dtype=np.float64),
                "brightest": block.max(axis=(0, 1)), "darkest": block.min(axis=(0, 1)),
                "count": block.shape[0] * block.shape[1], "peak": float(block.max())}


@pytest.mark.parametrize("dtype", [np.uint16, np.int8, np.float32])
def test_buffer_kinds_merge_like_numpy(rng, dtype):
    a = (rng.random((7, 5, 6, 4)) * 100 - (50 if dtype == np.int8 else 0)).astype(dtype)
    cube = DataCube(a)
    for chunk in (cube.pattern_nbytes, 3 * cube.pattern_nbytes, None):
        out = run_job(cube, Everything(), chunk_bytes=chunk, workers=2, progress=False)
        np.testing.assert_allclose(out["image"][..., 0], a.sum(axis=(2, 3), dtype=np.float64), rtol=1e-12)
        np.testing.assert_array_equal(out["image"][..., 1], a.max(axis=(2, 3)))
        np.testing.assert_allclose(out["total"], a.sum(axis=(0, 1), dtype=np.float64), rtol=1e-12)
        np.testing.assert_array_equal(out["brightest"], a.max(axis=(0, 1)))
        np.testing.assert_array_equal(out["darkest"], a.min(axis=(0, 1)))
        assert out["brightest"].dtype == a.dtype and int(out["count"]) == 35 and out["peak"] == a.max()


def test_position_buffer_shows_what_is_missing_while_running(rng):
    cube = DataCube(rng.random((6, 3, 4, 4)))
    seen = []
    run_job(cube, Everything(), chunk_bytes=3 * cube.pattern_nbytes, progress=False,
            on_partial=lambda v, d, t: seen.append(np.isnan(v["image"][..., 0]).sum()))
    assert seen == [15, 12, 9, 6, 3, 0]


def test_a_job_without_buffers_must_merge_itself(rng):
    class Bare(Job):
        def init(self, cube):
            return 0

        def process(self, block, rx, ry):
            return 1

    with pytest.raises(NotImplementedError, match="override merge"):
        run_job(DataCube(rng.random((2, 2, 2, 2))), Bare(), chunk_bytes=32, progress=False)


def test_buffer_declarations_are_checked():
    with pytest.raises(ValueError, match="kind"):
        Buffer("row")
    with pytest.raises(ValueError, match="reduce"):
        Buffer("pixel", reduce="mean")


def test_run_passes_progress_spans_all_passes_and_cancel_names_the_pass(rng):
    cube = DataCube(rng.random((4, 3, 6, 5)))
    jobs = [MedianStripJob(rows, None, cube.dtype) for rows in [(0, 2), (2, 4), (4, 6)]]
    seen = []
    out = run_passes(cube, jobs, chunk_bytes=3 * cube.pattern_nbytes, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(d, 12) for d in range(13)]
    np.testing.assert_array_equal(np.concatenate(out), np.median(cube.to_numpy(), axis=(0, 1)))
    token = Cancel()

    def on_partial(p, value, done, total):
        if done == 6:
            token.cancel()

    with pytest.raises(CancelledError, match=r"after 6 of 12 chunks \(pass 2 of 3\)"):
        run_passes(cube, jobs, chunk_bytes=3 * cube.pattern_nbytes, cancel=token, on_partial=on_partial,
                   progress=False)


@pytest.mark.parametrize("budget", [1, 3 * 40 * 2, 10**9])
def test_median_in_strips_is_exact_within_the_budget(rng, budget):
    a = rng.integers(0, 50, (8, 5, 9, 7), dtype=np.uint16)  # few values: many ties, even count
    cube = DataCube(a)
    mask = rng.random((8, 5)) > 0.3
    n = int(mask.sum())
    strips = median_strips(cube, n, budget)
    rows = [q1 - q0 for q0, q1 in strips]
    assert sum(rows) == 9 and all(n * r * 7 * 2 <= max(budget, n * 7 * 2) for r in rows)
    seen = []
    got = median_pattern(cube, mask, memory_budget=budget, chunk_bytes=2 * cube.pattern_nbytes, workers=2,
                         progress=lambda d, t: seen.append(t))
    np.testing.assert_array_equal(got, np.median(a[mask], axis=0))
    assert seen[0] == len(strips) * len(cube.chunk_slices(2 * cube.pattern_nbytes))  # one read per strip pass
    np.testing.assert_array_equal(cube.median_pattern(mask, memory_budget=budget, progress=False), got)


def test_median_refuses_what_it_cannot_do(rng):
    cube = DataCube(rng.random((3, 3, 4, 4)))
    with pytest.raises(ParameterError, match="memory_budget"):
        median_pattern(cube, memory_budget=0)
    with pytest.raises(ParameterError, match="no partial results"):
        median_pattern(cube, on_partial=print)
    with pytest.raises(ShapeError, match="selects no scan positions"):
        median_pattern(cube, np.zeros((3, 3), bool))


def test_datacube_patterns_take_engine_options(rng):
    """Through the engine: progress, cancel and schedulers reach DataCube.mean_pattern and friends."""
    a = rng.random((10, 4, 5, 6)).astype(np.float32)
    cube = DataCube(a)
    chunk = 4 * cube.pattern_nbytes
    seen = []
    want = cube.mean_pattern(chunk_bytes=chunk, scheduler="sync", progress=lambda d, t: seen.append(d))
    assert seen == list(range(11))
    np.testing.assert_allclose(want, a.mean(axis=(0, 1)), rtol=1e-6)
    np.testing.assert_array_equal(cube.mean_pattern(chunk_bytes=chunk, workers=3, progress=False), want)
    token = Cancel()
    token.cancel()
    for method in (cube.mean_pattern, cube.max_pattern, cube.median_pattern):
        with pytest.raises(CancelledError):
            method(chunk_bytes=chunk, cancel=token, progress=False)


def test_virtual_diffraction_median_runs_its_strips_on_the_engine(rng):
    from fourd_widgets.analysis.virtual import virtual_diffraction

    a = rng.integers(0, 9, (6, 4, 5, 5), dtype=np.uint8)
    cube = DataCube(a)
    region = np.zeros((6, 4), bool)
    region[1:5, 1:3] = True
    seen = []
    got = virtual_diffraction(cube, "median", region, chunk_bytes=4 * cube.pattern_nbytes,
                              progress=lambda d, t: seen.append((d, t)), on_partial=print)  # nothing to paint
    np.testing.assert_array_equal(got, np.median(a[region], axis=0))
    assert seen[-1][0] == seen[-1][1] == len(cube.chunk_slices(4 * cube.pattern_nbytes))  # budget: one strip
    token = Cancel()
    token.cancel()
    with pytest.raises(CancelledError):
        virtual_diffraction(cube, "median", cancel=token, progress=False)


@pytest.mark.slow
def test_pattern_passes_on_dask_match_threads_bitwise(dask_cluster, rng):
    _, client = dask_cluster
    a = rng.random((8, 5, 7, 6)).astype(np.float32)
    a[2, 2, 3, 3] = np.nan
    cube = DataCube(a)
    mask = rng.random((8, 5)) > 0.4
    chunk = 2 * 5 * cube.pattern_nbytes
    for method, kw in ((cube.mean_pattern, {"ignore_nan": True}), (cube.max_pattern, {}),
                       (cube.median_pattern, {"memory_budget": 3 * 40 * 6 * 4})):
        want = method(mask, chunk_bytes=chunk, workers=2, progress=False, **kw)
        got = method(mask, chunk_bytes=chunk, scheduler=client, progress=False, **kw)
        np.testing.assert_array_equal(got, want)
