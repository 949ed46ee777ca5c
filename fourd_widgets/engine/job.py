"""The :class:`Job` protocol: per-chunk work split from its merge (as in LiberTEM's UDFs).

A job is run over a cube by :func:`fourd_widgets.engine.run_job`:

* ``init(cube)`` builds the accumulator, on the caller;
* ``process(block, rx, ry)`` turns one block of patterns into a small partial
  result; it is pure, must not touch the accumulator and runs on a worker (a
  thread or a Dask worker process), so the job must pickle;
* ``merge(acc, partial, rx, ry)`` folds a partial into the accumulator on the
  caller, always in chunk order, so sums come out bit-identical whatever ran
  ``process``;
* ``finalize(acc)`` turns the accumulator into the result without changing it,
  so it also serves to show partial results while the job runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Job", "ImageJob"]


class Job:
    """Base class of a chunked computation over a :class:`~fourd_widgets.core.DataCube`.

    Subclasses override :meth:`process` and usually :meth:`init`, :meth:`merge`
    and :meth:`finalize`. Keep instances small and picklable: they travel to
    Dask workers.

    Examples
    --------
    >>> import numpy as np
    >>> from fourd_widgets.core import DataCube
    >>> from fourd_widgets.engine import run_job
    >>> class Total(Job):
    ...     def init(self, cube):
    ...         return 0.0
    ...     def process(self, block, rx, ry):
    ...         return float(block.sum())
    ...     def merge(self, acc, partial, rx, ry):
    ...         return acc + partial
    >>> run_job(DataCube(np.ones((4, 3, 2, 2))), Total(), chunk_bytes=64, progress=False)
    48.0
    """

    #: Shown beside the progress bar.
    name: str = "job"

    def init(self, cube: Any) -> Any:
        """The empty accumulator for ``cube`` (called once, on the caller)."""
        return None

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> Any:
        """Partial result of one block.

        Parameters
        ----------
        block : (nx, ny, Qx, Qy) ndarray
            Patterns at scan positions ``rx`` x ``ry``; may be a read-only view
            of the cube's own memory, so never write to it.
        rx, ry : slice
            Where the block lies in the scan.
        """
        raise NotImplementedError

    def merge(self, acc: Any, partial: Any, rx: slice, ry: slice) -> Any:
        """Fold ``partial`` into ``acc`` and return the accumulator (may be a new object)."""
        raise NotImplementedError

    def finalize(self, acc: Any) -> Any:
        """The result from the accumulator; must leave ``acc`` unchanged."""
        return acc


class ImageJob(Job):
    """A job whose partial results are per-position values ``(nx, ny, *item_shape)``.

    The accumulator is a ``(Rx, Ry, *item_shape)`` array filled in place chunk by
    chunk; positions not yet computed hold ``fill`` (NaN by default, so a partly
    painted image shows what is missing).
    """

    item_shape: tuple[int, ...] = ()
    dtype: Any = np.float64
    fill: Any = np.nan

    def init(self, cube: Any) -> np.ndarray:
        return np.full(cube.scan_shape + tuple(self.item_shape), self.fill, dtype=self.dtype)

    def merge(self, acc: np.ndarray, partial: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        acc[rx, ry] = partial
        return acc
