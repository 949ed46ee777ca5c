"""Iterative algorithms on the engine: a loop of passes with state shared with the workers.

An :class:`IterativeJob` (ptychography, NMF, iterative DPC integration...)
says what one iteration does:

* ``init_state(cube)``: the starting state, a dict of arrays and numbers (on the caller);
* ``pass_job(state, iteration)``: a :class:`~fourd_widgets.engine.job.Job` carrying
  what the workers need of the state, mapped over the scan (or None when an
  iteration needs no pass over the data). The job, state included, reaches
  each worker once per pass: threads share it, Dask scatters it to every worker;
* ``batches(slices, iteration)``: the scan blocks of each batch of the
  iteration (default: one batch, the whole scan); ``update`` follows each batch,
  as in mini-batch gradient descent;
* ``update(state, merged, iteration)``: the next state from the merged result
  of the pass (on the caller);
* ``converged(state, iteration)``: stop early;
* ``preview(state)``: what ``on_iteration`` paints; ``result(state)``: what
  :func:`run_iterative` returns.

:func:`run_iterative` runs it with threads or on a Dask cluster (same code,
same bits: merges are in chunk order), reports progress per iteration, checks
``cancel`` between chunks and iterations, and with ``checkpoint=path`` writes
the state atomically after each iteration, keyed by the recipe, the load
options and the input's identity (:mod:`fourd_widgets.engine.checkpoint`):
rerunning the same call resumes where it stopped; a checkpoint of another run
is refused.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from ..core.datacube import DataCube
from ..core.errors import CancelledError, ParameterError, ShapeError
from .checkpoint import checkpoint_key, load_checkpoint, save_checkpoint
from .job import Job
from .progress import make_progress
from .run import PassRunner

__all__ = ["IterativeJob", "run_iterative", "as_cube"]


class IterativeJob:
    """Base class of an iterative algorithm run by :func:`run_iterative`.

    Subclasses override :meth:`init_state`, :meth:`pass_job` and :meth:`update`;
    the state must be a dict of numpy arrays and numbers (what a checkpoint can
    hold), and ``update`` must depend only on the state and the merged pass, so
    a resumed run retraces an uninterrupted one exactly.

    Attributes
    ----------
    name : str
        Shown beside the progress bar.
    record : Params or dict, optional
        The step's record: the recipe part of the checkpoint key.

    Examples
    --------
    Halve the distance to the scan's total intensity every iteration:

    >>> from fourd_widgets.engine import Buffer, Job
    >>> class Total(Job):
    ...     def buffers(self, cube): return Buffer("single")
    ...     def process(self, block, rx, ry): return block.sum()
    >>> class Approach(IterativeJob):
    ...     record = {"step": "example.approach"}
    ...     def init_state(self, cube): return {"x": 0.0}
    ...     def pass_job(self, state, iteration): return Total()
    ...     def update(self, state, total, iteration): return {"x": (state["x"] + float(total)) / 2}
    >>> seen = []
    >>> run_iterative(np.ones((4, 4, 2, 2)), Approach(), iterations=3, progress=False,
    ...               on_iteration=lambda i, s: seen.append((i, s["x"])))
    {'x': 56.0}
    >>> seen
    [(1, 32.0), (2, 48.0), (3, 56.0)]
    """

    name: str = "iterative job"
    record: Any = None

    def init_state(self, cube: DataCube) -> dict[str, Any]:
        """The state before the first iteration."""
        raise NotImplementedError

    def pass_job(self, state: dict[str, Any], iteration: int) -> Job | None:
        """The job mapped over the scan in this iteration (None: no pass)."""
        return None

    def batches(self, slices: list[tuple[slice, slice]], iteration: int) -> list[list[tuple[slice, slice]]]:
        """Scan blocks of each batch of positions in this iteration (default: one batch, all)."""
        return [slices]

    def update(self, state: dict[str, Any], merged: Any, iteration: int) -> dict[str, Any]:
        """The next state from the finalized pass (``merged`` is None without a pass)."""
        raise NotImplementedError

    def converged(self, state: dict[str, Any], iteration: int) -> bool:
        """True to stop before ``iterations`` (``iteration`` counts those done)."""
        return False

    def preview(self, state: dict[str, Any]) -> Any:
        """What ``on_iteration`` receives (default: the state itself; do not modify it)."""
        return state

    def result(self, state: dict[str, Any]) -> Any:
        """What :func:`run_iterative` returns (default: the state)."""
        return state


def as_cube(data: Any) -> DataCube:
    """A DataCube as is; an array ``(Rx, Ry, ...)`` as a cube of ``(1, n)`` "patterns".

    Iterative algorithms often iterate over per-position values (a gradient
    field, a stack of spectra) rather than diffraction patterns; seen as a cube,
    they chunk, scatter and checkpoint like one.

    >>> as_cube(np.zeros((3, 4, 2))).shape
    (3, 4, 1, 2)
    """
    if isinstance(data, DataCube):
        return data
    arr = np.asarray(data)
    if arr.ndim < 2:
        raise ShapeError(f"an iterative job needs a DataCube or an array (Rx, Ry, ...), got shape {arr.shape}")
    if arr.ndim == 4:
        return DataCube(arr)
    return DataCube(arr.reshape(arr.shape[0], arr.shape[1], 1, -1))


def run_iterative(
    data: Any,
    job: IterativeJob,
    *,
    iterations: int,
    chunk_bytes: int | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    progress: Any = None,
    cancel: Any = None,
    on_iteration: Callable[[int, Any], Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    recipe: Any = None,
    input: Any = None,
) -> Any:
    """Run ``job`` for ``iterations`` iterations (fewer if it converges) and return ``job.result(state)``.

    Parameters
    ----------
    data : DataCube or (Rx, Ry, ...) array
        What the passes map over (see :func:`as_cube`).
    job : IterativeJob
    iterations : int
        Total number of iterations, counting those a checkpoint already holds.
    chunk_bytes, scheduler, workers
        As for :func:`~fourd_widgets.engine.run_job`; one thread pool or Dask
        client serves every pass, and the data are scattered to Dask once.
    progress : None, bool or callable, optional
        Per iteration: ``f(done, iterations)``; see :mod:`fourd_widgets.engine.progress`.
    cancel : threading.Event or Cancel, optional
        Checked between chunks and between iterations; when set,
        :class:`~fourd_widgets.errors.CancelledError` is raised with ``.state``
        and ``.iteration`` of the last completed iteration (a pass cut short is
        dropped; the checkpoint, if any, holds that same state).
    on_iteration : callable, optional
        ``on_iteration(done, job.preview(state))`` after each iteration, to paint
        intermediate results.
    checkpoint : path, optional
        File for the state, rewritten atomically after each iteration. If it
        exists and its key matches this run (recipe, load options, input
        identity) the run resumes from it; one that converged, or holds
        ``iterations`` or more, gives the result without another pass.
        A checkpoint of another run raises
        :class:`~fourd_widgets.engine.checkpoint.CheckpointError`.
    recipe : Params or dict, optional
        The recipe part of the checkpoint key (default ``job.record``).
    input : DataCube or array, optional
        What the load-options and input-identity parts of the key describe
        (default ``data``): e.g. the cube a per-position field was computed from.

    Returns
    -------
    object
        ``job.result(state)``.
    """
    if int(iterations) < 0:
        raise ParameterError(f"iterations must be 0 or more, got {iterations}", field="iterations")
    iterations = int(iterations)
    cube = as_cube(data)
    key = parts = None
    start = 0
    state = None
    if checkpoint is not None:
        recipe = recipe if recipe is not None else job.record
        if recipe is None:
            raise ParameterError("a checkpoint needs the run's recipe to key it: set job.record or pass recipe=",
                                 field="recipe")
        key, parts = checkpoint_key({"job": f"{type(job).__module__}.{type(job).__qualname__}",
                                     "recipe": recipe},
                                    data if input is None else input)
        if os.path.exists(checkpoint):
            state, start, finished = load_checkpoint(checkpoint, key, parts)
            if finished or start >= iterations:
                return job.result(state)
    if state is None:
        state = job.init_state(cube)
    slices = cube.chunk_slices(chunk_bytes)
    reporter = make_progress(progress, iterations, getattr(job, "name", "iterative job"))
    if start:
        reporter.update(start)
    done = start

    def stop(msg: str) -> CancelledError:
        err = CancelledError(f"{job.name} cancelled {msg}; the state after iteration {done} is kept"
                             + (f" in {os.fspath(checkpoint)}" if checkpoint is not None else ""))
        err.state = state  # type: ignore[attr-defined]
        err.iteration = done  # type: ignore[attr-defined]
        return err

    try:
        with PassRunner(cube, scheduler, workers, single=len(slices) <= 1) as runner:
            for it in range(start, iterations):
                if cancel is not None and cancel.is_set():
                    raise stop(f"before iteration {it + 1} of {iterations}")
                new = state
                for batch in job.batches(slices, it):
                    pj = job.pass_job(new, it)
                    merged = None
                    if pj is not None:
                        try:
                            acc = runner.run(pj, batch, pj.init(cube), cancel=cancel)
                        except CancelledError:
                            raise stop(f"during iteration {it + 1} of {iterations}") from None
                        merged = pj.finalize(acc)
                    new = job.update(new, merged, it)
                state = new
                done = it + 1
                finished = job.converged(state, done)
                if checkpoint is not None:
                    save_checkpoint(checkpoint, state, done, key, parts, done=finished)
                reporter.update(done)
                if on_iteration is not None:
                    on_iteration(done, job.preview(state))
                if finished:
                    break
        return job.result(state)
    finally:
        reporter.close()
