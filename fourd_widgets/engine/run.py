"""Run a :class:`~fourd_widgets.engine.job.Job` over a cube: sync, threads or Dask.

Whatever runs ``process``, the caller merges the partial results strictly in
chunk order, so a result is bit-identical across schedulers for one chunking.
At most ``2 x workers`` chunks are in flight, which bounds memory to about
``2 x workers x chunk_bytes`` plus the accumulator.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from ..core.errors import CancelledError, ParameterError
from .job import Job
from .progress import make_progress

__all__ = ["run_job", "start_job", "JobHandle", "Cancel", "process_chunk"]


class Cancel(threading.Event):
    """A cancel token: ``token.cancel()`` (or ``set()``) stops a running job between chunks.

    >>> t = Cancel(); t.cancel(); t.is_set()
    True
    """

    def cancel(self) -> None:
        self.set()


def process_chunk(cube: Any, job: Job, rx: slice, ry: slice) -> Any:
    """Read one block of ``cube`` and run ``job.process`` on it (what a worker executes)."""
    return job.process(cube.read(rx, ry), rx, ry)


class _Sync:
    """Runs each chunk on the caller, when its result is asked for."""

    def submit(self, rx: slice, ry: slice) -> Callable[[], Any]:
        return lambda: process_chunk(self.cube, self.job, rx, ry)

    def result(self, fut: Callable[[], Any]) -> Any:
        return fut()

    def cancel(self, futs: list) -> None:
        pass

    def close(self) -> None:
        pass


class _Threads(_Sync):
    def __init__(self, workers: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fourd-engine")

    def submit(self, rx: slice, ry: slice) -> Future:  # type: ignore[override]
        return self.pool.submit(process_chunk, self.cube, self.job, rx, ry)

    def result(self, fut: Future) -> Any:  # type: ignore[override]
        return fut.result()

    def cancel(self, futs: list) -> None:
        for f in futs:
            f.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Dask(_Sync):
    """The same tasks on a dask.distributed cluster; workers read their own chunks."""

    def __init__(self, client: Any, own: bool) -> None:
        self.client = client
        self.own = own

    def bind(self, cube: Any, job: Job) -> None:
        # Scatter once: a file-backed cube pickles as "reopen this path", an
        # in-memory one as its data; either way it is not re-sent per task.
        self.cube, self.job = self.client.scatter([cube, job], broadcast=True, hash=False)

    def submit(self, rx: slice, ry: slice) -> Any:  # type: ignore[override]
        return self.client.submit(process_chunk, self.cube, self.job, rx, ry, pure=False)

    def result(self, fut: Any) -> Any:  # type: ignore[override]
        return fut.result()

    def cancel(self, futs: list) -> None:
        if futs:
            self.client.cancel(futs)

    def close(self) -> None:
        if self.own:
            self.client.close()


_blas_controller: Any = None


def _blas_one_thread() -> Any:
    """Context limiting BLAS to one thread while our own threads run chunks.

    Each worker thread runs its own GEMMs; a multi-threaded BLAS under them
    oversubscribes the cores, and OpenBLAS's own threading of the thin GEMMs of
    one chunk measured 2-5x slower than one thread even alone. Needs the optional
    ``threadpoolctl``; without it this does nothing. The limit is process-wide
    for the duration of the job.
    """
    global _blas_controller
    if _blas_controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas_controller = False
        else:
            _blas_controller = ThreadpoolController()
    if not _blas_controller:
        return contextlib.nullcontext()
    return _blas_controller.limit(limits=1, user_api="blas")


def _executor(scheduler: Any, workers: int) -> _Sync:
    if scheduler in (None, "threads"):
        return _Threads(workers) if workers > 1 else _Sync()
    if scheduler == "sync":
        return _Sync()
    if isinstance(scheduler, str):
        from distributed import Client

        return _Dask(Client(scheduler), own=True)
    if hasattr(scheduler, "submit") and hasattr(scheduler, "scatter"):
        return _Dask(scheduler, own=False)
    raise ParameterError(
        f"scheduler must be 'threads', 'sync', a dask.distributed address or Client, got {scheduler!r}",
        field="scheduler",
    )


def run_job(
    cube: Any,
    job: Job,
    *,
    chunk_bytes: int | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    progress: Any = None,
    cancel: Any = None,
    on_partial: Callable[[Any, int, int], Any] | None = None,
) -> Any:
    """Run ``job`` over every scan chunk of ``cube`` and return ``job.finalize(acc)``.

    Parameters
    ----------
    cube : DataCube
        Data, axes (Rx, Ry, Qx, Qy).
    job : Job
        The computation.
    chunk_bytes : int, optional
        Size of one block of patterns (memory budget per chunk in flight);
        default :data:`fourd_widgets.core.datacube.DEFAULT_CHUNK_BYTES`.
    scheduler : {'threads', 'sync'} or str or distributed.Client, optional
        ``'threads'`` (default): a thread pool; ``'sync'``: the caller's thread;
        a scheduler address or a ``Client``: the same tasks on a Dask cluster.
    workers : int, optional
        Thread count (default ``os.cpu_count()``); ignored for Dask.
    progress : None, bool or callable, optional
        See :mod:`fourd_widgets.engine.progress`.
    cancel : threading.Event or Cancel, optional
        Checked between chunks; when set, :class:`~fourd_widgets.errors.CancelledError`
        is raised (after ``on_partial`` saw every finished chunk).
    on_partial : callable, optional
        ``on_partial(job.finalize(acc), done, total)`` after each merged chunk.

    Returns
    -------
    object
        Whatever ``job.finalize`` returns.

    Examples
    --------
    >>> import numpy as np
    >>> from fourd_widgets.core import DataCube
    >>> from fourd_widgets.engine.job import ImageJob
    >>> class Total(ImageJob):
    ...     def process(self, block, rx, ry):
    ...         return block.sum(axis=(2, 3))
    >>> cube = DataCube(np.ones((3, 4, 2, 2)))
    >>> run_job(cube, Total(), chunk_bytes=64, progress=False).tolist()[0]
    [4.0, 4.0, 4.0, 4.0]
    """
    workers = int(workers or os.cpu_count() or 1)
    if workers < 1:
        raise ParameterError(f"workers must be at least 1, got {workers}", field="workers")
    slices = cube.chunk_slices(chunk_bytes)
    total = len(slices)
    acc = job.init(cube)
    ex = _executor(scheduler if total > 1 else "sync", workers)
    if isinstance(ex, _Dask):
        ex.bind(cube, job)
    else:
        ex.cube, ex.job = cube, job  # type: ignore[attr-defined]
    window = 2 * (workers if not isinstance(ex, _Dask) else max(workers, _dask_threads(ex.client)))
    reporter = make_progress(progress, total, getattr(job, "name", "job"))
    pending: deque = deque()
    todo = iter(slices)
    done = 0
    limit = contextlib.nullcontext() if isinstance(ex, _Dask) else _blas_one_thread()
    limit.__enter__()
    try:
        for rx, ry in todo:
            pending.append((rx, ry, ex.submit(rx, ry)))
            if len(pending) >= window:
                break
        while pending:
            if cancel is not None and cancel.is_set():
                raise CancelledError(f"{getattr(job, 'name', 'job')} cancelled after {done} of {total} chunks; "
                                     "the partial results delivered so far stay valid")
            rx, ry, fut = pending.popleft()
            acc = job.merge(acc, ex.result(fut), rx, ry)
            done += 1
            reporter.update(done)
            if on_partial is not None:
                on_partial(job.finalize(acc), done, total)
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt[0], nxt[1], ex.submit(*nxt)))
        return job.finalize(acc)
    finally:
        ex.cancel([f for _, _, f in pending])
        ex.close()
        limit.__exit__(None, None, None)
        reporter.close()


def _dask_threads(client: Any) -> int:
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # an unreachable scheduler shows up on submit with a clearer error
        return 1


class JobHandle:
    """A job running in a background thread (from :func:`start_job`).

    Attributes
    ----------
    progress : tuple of int
        ``(done, total)`` chunks so far.
    partial : object
        The latest partial result (``job.finalize`` of the accumulator), or None.
    """

    def __init__(self, cube: Any, job: Job, options: dict) -> None:
        self._cancel = Cancel()
        self._future: Future = Future()
        self.progress: tuple[int, int] = (0, len(cube.chunk_slices(options.get("chunk_bytes"))))
        self.partial: Any = None
        user_partial = options.pop("on_partial", None)
        user_progress = options.pop("progress", False)

        def on_partial(value: Any, done: int, total: int) -> None:
            self.partial = value
            if user_partial is not None:
                user_partial(value, done, total)

        def progress(done: int, total: int) -> None:
            self.progress = (done, total)
            if callable(user_progress):
                user_progress(done, total)

        def work() -> None:
            self._future.set_running_or_notify_cancel()
            try:
                value = run_job(cube, job, cancel=self._cancel, on_partial=on_partial,
                                progress=progress, **options)
            except BaseException as exc:  # handed to whoever calls result()
                self._future.set_exception(exc)
            else:
                self._future.set_result(value)

        self._thread = threading.Thread(target=work, name="fourd-job", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the job to stop after the chunks in flight; ``result()`` then raises CancelledError."""
        self._cancel.set()

    def done(self) -> bool:
        """True once the job finished, failed or was cancelled."""
        return self._future.done()

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the result (raises what the job raised; TimeoutError after ``timeout`` s)."""
        return self._future.result(timeout)

    def add_done_callback(self, fn: Callable[["JobHandle"], Any]) -> None:
        """Call ``fn(handle)`` when the job ends (in the job's thread)."""
        self._future.add_done_callback(lambda _f: fn(self))


def start_job(cube: Any, job: Job, **options: Any) -> JobHandle:
    """Start :func:`run_job` in a background thread and return its :class:`JobHandle`.

    Takes the options of :func:`run_job` except ``cancel`` (use ``handle.cancel()``).

    Examples
    --------
    >>> import numpy as np
    >>> from fourd_widgets.core import DataCube
    >>> class Positions(Job):
    ...     def init(self, cube): return 0
    ...     def process(self, block, rx, ry): return block.shape[0] * block.shape[1]
    ...     def merge(self, n, more, rx, ry): return n + more
    >>> h = start_job(DataCube(np.zeros((2, 3, 4, 4))), Positions(), chunk_bytes=100)
    >>> h.result(timeout=30), h.done(), h.progress
    (6, True, (6, 6))
    """
    if "cancel" in options:
        raise ParameterError("start_job makes its own cancel token; call handle.cancel()", field="cancel")
    return JobHandle(cube, job, dict(options))
