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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence

from ..core.errors import CancelledError, ParameterError
from .job import Buffer, Job  # noqa: F401  (Buffer: used by the examples)
from .progress import make_progress

__all__ = ["run_job", "run_passes", "start_job", "JobHandle", "Cancel", "process_chunk", "PassRunner",
           "default_workers"]


class Cancel(threading.Event):
    """A cancel token: ``token.cancel()`` (or ``set()``) stops a running job between chunks.

    >>> t = Cancel(); t.cancel(); t.is_set()
    True
    """

    def cancel(self) -> None:
        self.set()


def process_chunk(cube: Any, job: Job, rx: slice, ry: slice) -> Any:
    """Read one block of ``cube`` and run ``job.process`` on it (what a worker executes)."""
    rows = getattr(job, "detector_rows", None)  # duck-typed jobs need not declare it
    return job.process(cube.read(rx, ry) if rows is None else cube.read(rx, ry, rows), rx, ry)


class _Sync:
    """Runs each chunk on the caller, when its result is asked for."""

    def bind_cube(self, cube: Any) -> None:
        self.cube = cube

    def bind_job(self, job: Job) -> None:
        self.job = job

    def submit(self, rx: slice, ry: slice) -> Callable[[], Any]:
        cube, job = self.cube, self.job
        return lambda: process_chunk(cube, job, rx, ry)

    def result(self, fut: Callable[[], Any]) -> Any:
        return fut()

    def cancel(self, futs: list) -> None:
        pass

    def close(self) -> None:
        pass


#: Idle thread pools kept between jobs, by worker count: starting and joining the threads of a
#: fresh pool cost 0.1-0.3 ms a job, several % of a short pass over an in-memory cube. A job takes
#: a pool for itself (concurrent jobs never share one, so a live preview does not queue behind
#: a long job's chunks, and a job started from inside a chunk cannot wait on its own pool).
_IDLE_POOLS: dict[int, list[ThreadPoolExecutor]] = {}
_IDLE_LOCK = threading.Lock()
_IDLE_PID = os.getpid()
#: Idle pools kept per worker count; more are shut down when their job ends.
_IDLE_KEEP = 2


def _take_pool(workers: int) -> ThreadPoolExecutor:
    global _IDLE_PID
    with _IDLE_LOCK:
        if _IDLE_PID != os.getpid():  # a forked child: the parent's threads do not exist here
            _IDLE_POOLS.clear()
            _IDLE_PID = os.getpid()
        idle = _IDLE_POOLS.get(workers)
        if idle:
            return idle.pop()
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fourd-engine")


def _return_pool(workers: int, pool: ThreadPoolExecutor) -> None:
    with _IDLE_LOCK:
        idle = _IDLE_POOLS.setdefault(workers, [])
        if _IDLE_PID == os.getpid() and len(idle) < _IDLE_KEEP:
            idle.append(pool)
            return
    pool.shutdown(wait=False)


class _Threads(_Sync):
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool = _take_pool(workers)
        self.futures: set[Future] = set()

    def submit(self, rx: slice, ry: slice) -> Future:  # type: ignore[override]
        fut = self.pool.submit(process_chunk, self.cube, self.job, rx, ry)
        self.futures.add(fut)
        fut.add_done_callback(self.futures.discard)
        return fut

    def result(self, fut: Future) -> Any:  # type: ignore[override]
        return fut.result()

    def cancel(self, futs: list) -> None:
        for f in futs:
            f.cancel()

    def close(self) -> None:
        # as shutdown(wait=True, cancel_futures=True) did: nothing of this job runs after it ends
        for f in list(self.futures):
            f.cancel()
        wait(list(self.futures))
        _return_pool(self.workers, self.pool)


class _Dask(_Sync):
    """The same tasks on a dask.distributed cluster; workers read their own chunks."""

    def __init__(self, client: Any, own: bool) -> None:
        self.client = client
        self.own = own

    def bind_cube(self, cube: Any) -> None:
        # Scatter once: a file-backed cube pickles as "reopen this path", an
        # in-memory one as its data; either way it is not re-sent per task.
        [self.cube] = self.client.scatter([cube], broadcast=True, hash=False)

    def bind_job(self, job: Job) -> None:
        # Once per pass: a job carrying the state of an iterative algorithm
        # reaches each worker once, not once per chunk.
        [self.job] = self.client.scatter([job], broadcast=True, hash=False)

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


def default_workers() -> int:
    """The thread count of a job run with ``workers=None``: the machine's CPU count (read once).

    >>> default_workers() >= 1
    True
    """
    global _CPUS
    if _CPUS is None:
        _CPUS = os.cpu_count() or 1  # ~15 µs a call, three calls a job
    return _CPUS


_CPUS: int | None = None


def _check_workers(workers: int | None) -> int:
    workers = int(workers or default_workers())
    if workers < 1:
        raise ParameterError(f"workers must be at least 1, got {workers}", field="workers")
    return workers


class PassRunner:
    """Runs one or more passes of jobs over one cube on one executor (threads or a Dask client).

    What :func:`run_job`, :func:`run_passes` and the iterative engine share: the
    executor (thread pool or Dask client, the cube scattered once), the
    in-flight window, in-order merging, cancel between chunks, and the BLAS
    thread limit. Use as a context manager; :meth:`run` runs one pass.

    Parameters
    ----------
    cube : DataCube
    scheduler, workers
        As for :func:`run_job`.
    single : bool
        True when the whole run is one chunk: then it runs on the caller.
    """

    def __init__(self, cube: Any, scheduler: Any = None, workers: int | None = None, *,
                 single: bool = False) -> None:
        self.workers = _check_workers(workers)
        self.cube = cube
        self.ex = _executor("sync" if single else scheduler, self.workers)
        dask = isinstance(self.ex, _Dask)
        self.window = 2 * (max(self.workers, _dask_threads(self.ex.client)) if dask else self.workers)
        try:
            self.ex.bind_cube(cube)
        except BaseException:
            self.ex.close()
            raise
        self._limit = contextlib.nullcontext() if dask else _blas_one_thread()

    def __enter__(self) -> "PassRunner":
        self._limit.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.ex.close()
        finally:
            self._limit.__exit__(None, None, None)

    def run(self, job: Job, slices: list[tuple[slice, slice]], acc: Any, *,
            cancel: Any = None, on_merged: Callable[[Any, int], Any] | None = None,
            where: Callable[[int], str] | None = None) -> Any:
        """Map ``job.process`` over ``slices``, merge in order into ``acc`` and return it.

        ``on_merged(acc, done)`` runs after each merge; ``cancel`` is checked
        before each merge and raises CancelledError with ``where(done)`` saying
        how far the work got.
        """
        ex = self.ex
        ex.bind_job(job)
        pending: deque = deque()
        todo = iter(slices)
        done = 0
        try:
            for rx, ry in todo:
                pending.append((rx, ry, ex.submit(rx, ry)))
                if len(pending) >= self.window:
                    break
            while pending:
                if cancel is not None and cancel.is_set():
                    how_far = where(done) if where else f"after {done} of {len(slices)} chunks"
                    raise CancelledError(f"{getattr(job, 'name', 'job')} cancelled {how_far}; "
                                         "the partial results delivered so far stay valid")
                rx, ry, fut = pending.popleft()
                acc = job.merge(acc, ex.result(fut), rx, ry)
                done += 1
                if on_merged is not None:
                    on_merged(acc, done)
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt[0], nxt[1], ex.submit(*nxt)))
            return acc
        finally:
            ex.cancel([f for _, _, f in pending])


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
    _check_workers(workers)
    slices = cube.chunk_slices(chunk_bytes)
    total = len(slices)
    acc = job.init(cube)
    reporter = make_progress(progress, total, getattr(job, "name", "job"))

    def on_merged(acc: Any, done: int) -> None:
        reporter.update(done)
        if on_partial is not None:
            on_partial(job.finalize(acc), done, total)

    try:
        with PassRunner(cube, scheduler, workers, single=total <= 1) as runner:
            acc = runner.run(job, slices, acc, cancel=cancel, on_merged=on_merged)
        return job.finalize(acc)
    finally:
        reporter.close()


def run_passes(
    cube: Any,
    jobs: Sequence[Job],
    *,
    chunk_bytes: int | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    progress: Any = None,
    cancel: Any = None,
    on_partial: Callable[[int, Any, int, int], Any] | None = None,
    name: str | None = None,
) -> list:
    """Run several jobs one after the other, each a full pass over ``cube``, on one executor.

    For work that cannot be merged from chunks in one pass (a median in
    detector strips, one pass per strip): the thread pool or the Dask client,
    and the scattered cube, serve every pass; progress counts the chunks of all
    passes; ``cancel`` is checked between chunks.

    Parameters
    ----------
    cube : DataCube
    jobs : sequence of Job
    chunk_bytes, scheduler, workers, progress, cancel
        As for :func:`run_job`.
    on_partial : callable, optional
        ``on_partial(pass_index, jobs[pass_index].finalize(acc), done, total)``
        after each merged chunk; ``done`` and ``total`` count over all passes.
    name : str, optional
        Shown beside the progress bar (default: the first job's name).

    Returns
    -------
    list
        ``job.finalize(acc)`` of each job, in order.

    Examples
    --------
    >>> import numpy as np
    >>> from fourd_widgets.core import DataCube
    >>> class RowTotal(Job):
    ...     def __init__(self, row): self.detector_rows = (row, row + 1)
    ...     def buffers(self, cube): return Buffer("single")
    ...     def process(self, block, rx, ry): return block.sum()
    >>> cube = DataCube(np.arange(16.).reshape(2, 2, 2, 2))
    >>> [float(v) for v in run_passes(cube, [RowTotal(0), RowTotal(1)], chunk_bytes=32, progress=False)]
    [52.0, 68.0]
    """
    jobs = list(jobs)
    _check_workers(workers)
    slices = cube.chunk_slices(chunk_bytes)
    per, n = len(slices), len(jobs)
    total = per * n
    reporter = make_progress(progress, total, name or (getattr(jobs[0], "name", "job") if jobs else "job"))
    out = []
    try:
        with PassRunner(cube, scheduler, workers, single=total <= 1) as runner:
            for p, job in enumerate(jobs):
                acc = job.init(cube)

                def on_merged(acc: Any, done: int, p: int = p, job: Job = job) -> None:
                    reporter.update(p * per + done)
                    if on_partial is not None:
                        on_partial(p, job.finalize(acc), p * per + done, total)

                acc = runner.run(job, slices, acc, cancel=cancel, on_merged=on_merged,
                                 where=lambda done, p=p: f"after {p * per + done} of {total} chunks "
                                                         f"(pass {p + 1} of {n})")
                out.append(job.finalize(acc))
                del acc  # before the next pass allocates its own
        return out
    finally:
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
