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

Most jobs need not write ``init`` and ``merge`` at all: they declare their
result buffers by kind (:class:`Buffer`) in :meth:`Job.buffers`, and the base
class allocates and merges them:

* ``"position"``: one value per scan position, ``(Rx, Ry, *shape)``; a chunk's
  partial is its ``(nx, ny, *shape)`` block, written in place;
* ``"pixel"``: one value per detector pixel, ``(Qx, Qy, *shape)`` (the pixels
  the job reads, see :attr:`Job.detector_rows`); partials are reduced;
* ``"single"``: one value (array of ``shape``) for the whole scan; partials are
  reduced.

Reductions are ``"sum"``, ``"max"`` or ``"min"`` (NaN propagates through max
and min, as ``np.max`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np

__all__ = ["Job", "ImageJob", "Buffer", "BUFFER_KINDS", "REDUCTIONS"]

#: Kinds of result buffers: per scan position, per detector pixel, one for the scan.
BUFFER_KINDS = ("position", "pixel", "single")
#: How partials of "pixel" and "single" buffers are merged.
REDUCTIONS = {"sum": np.add, "max": np.maximum, "min": np.minimum}


@dataclass(frozen=True)
class Buffer:
    """Declaration of one result buffer of a :class:`Job`.

    Parameters
    ----------
    kind : {'position', 'pixel', 'single'}
        Per scan position, per detector pixel, or one value for the scan.
    shape : tuple of int
        Shape of one item: ``()`` for a number per position/pixel (or a scalar
        single value), ``(k,)`` for k numbers, and so on.
    dtype : numpy dtype
        Type of the buffer.
    reduce : {'sum', 'max', 'min'}
        How partials of 'pixel' and 'single' buffers merge (ignored for 'position').
    fill : scalar, optional
        Initial value. Default: NaN for float 'position' buffers (so a partly
        painted image shows what is missing), 0 otherwise for 'sum', and the
        smallest (largest) value of the dtype for 'max' ('min').

    Examples
    --------
    >>> Buffer("pixel", dtype=np.uint16, reduce="max").initial(np.uint16)
    0
    >>> Buffer("position", dtype=np.float32).empty((2, 3), (4, 4)).shape
    (2, 3)
    """

    kind: Literal["position", "pixel", "single"]
    shape: tuple[int, ...] = ()
    dtype: Any = np.float64
    reduce: Literal["sum", "max", "min"] = "sum"
    fill: Any = None

    def __post_init__(self) -> None:
        if self.kind not in BUFFER_KINDS:
            raise ValueError(f"Buffer kind must be one of {BUFFER_KINDS}, got {self.kind!r}")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"Buffer reduce must be one of {tuple(REDUCTIONS)}, got {self.reduce!r}")
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))

    def initial(self, dtype: Any) -> Any:
        """The starting value of the buffer for its reduction."""
        if self.fill is not None:
            return self.fill
        dt = np.dtype(dtype)
        if self.kind == "position":
            return np.nan if dt.kind in "fc" else 0
        if self.reduce == "sum" or dt.kind == "c":
            return 0
        if dt.kind == "b":
            return self.reduce == "min"
        if dt.kind == "f":
            return -np.inf if self.reduce == "max" else np.inf
        info = np.iinfo(dt)
        return int(info.min if self.reduce == "max" else info.max)

    def empty(self, scan_shape: tuple[int, int], detector_shape: tuple[int, int]) -> np.ndarray:
        """The buffer before any chunk was merged."""
        lead = {"position": tuple(scan_shape), "pixel": tuple(detector_shape), "single": ()}[self.kind]
        return np.full(lead + self.shape, self.initial(self.dtype), dtype=self.dtype)

    def merge(self, buf: np.ndarray, partial: Any, rx: slice, ry: slice) -> np.ndarray:
        """Fold one chunk's partial into ``buf`` (in place when the buffer is an array)."""
        if self.kind == "position":
            buf[rx, ry] = partial
            return buf
        op = REDUCTIONS[self.reduce]
        if buf.ndim == 0:
            return np.asarray(op(buf, partial), dtype=self.dtype)
        op(buf, partial, out=buf)
        return buf


class Job:
    """Base class of a chunked computation over a :class:`~fourd_widgets.core.DataCube`.

    Subclasses override :meth:`process` and either declare :meth:`buffers`
    (the base class then writes ``init`` and ``merge``) or override
    :meth:`init` and :meth:`merge` themselves. Keep instances small and
    picklable: they travel to Dask workers.

    Examples
    --------
    A job with its own accumulator:

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

    The same with declared buffers, plus a per-position image and a maximum pattern:

    >>> class Stats(Job):
    ...     def buffers(self, cube):
    ...         return {"total": Buffer("single"), "image": Buffer("position"),
    ...                 "brightest": Buffer("pixel", dtype=cube.dtype, reduce="max")}
    ...     def process(self, block, rx, ry):
    ...         return {"total": block.sum(), "image": block.sum(axis=(2, 3)),
    ...                 "brightest": block.max(axis=(0, 1))}
    >>> out = run_job(DataCube(np.arange(48.).reshape(4, 3, 2, 2)), Stats(), chunk_bytes=64, progress=False)
    >>> float(out["total"]), out["image"].shape, out["brightest"].tolist()
    (1128.0, (4, 3), [[44.0, 45.0], [46.0, 47.0]])
    """

    #: Shown beside the progress bar.
    name: str = "job"
    #: Detector rows ``(start, stop)`` each block holds; None reads whole patterns.
    #: A job over a strip of the detector (e.g. the median in strips) sets it.
    detector_rows: tuple[int, int] | None = None

    def buffers(self, cube: Any) -> Buffer | Mapping[str, Buffer] | None:
        """Result buffers by kind: one :class:`Buffer` or a dict of them (None: own init/merge).

        With one Buffer, the accumulator and each partial are the array itself;
        with a dict, they are dicts by buffer name (a partial may leave a name out).
        """
        return None

    def init(self, cube: Any) -> Any:
        """The empty accumulator for ``cube`` (called once, on the caller)."""
        spec = self.buffers(cube)
        if spec is None:
            return None
        # Remembered for merge: buffers() may depend on the cube, merge sees none.
        self._spec = spec
        scan = cube.scan_shape
        det = cube.detector_shape
        if self.detector_rows is not None:
            det = (self.detector_rows[1] - self.detector_rows[0], det[1])
        if isinstance(spec, Buffer):
            return spec.empty(scan, det)
        return {name: b.empty(scan, det) for name, b in spec.items()}

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> Any:
        """Partial result of one block.

        Parameters
        ----------
        block : (nx, ny, Qx, Qy) ndarray
            Patterns at scan positions ``rx`` x ``ry`` (only rows
            :attr:`detector_rows` of the detector when set); may be a read-only
            view of the cube's own memory, so never write to it.
        rx, ry : slice
            Where the block lies in the scan.
        """
        raise NotImplementedError

    def merge(self, acc: Any, partial: Any, rx: slice, ry: slice) -> Any:
        """Fold ``partial`` into ``acc`` and return the accumulator (may be a new object)."""
        spec = getattr(self, "_spec", None)
        if spec is None:
            raise NotImplementedError(f"{type(self).__name__} declares no buffers(); override merge()")
        if isinstance(spec, Buffer):
            return spec.merge(acc, partial, rx, ry)
        for name, value in partial.items():
            acc[name] = spec[name].merge(acc[name], value, rx, ry)
        return acc

    def finalize(self, acc: Any) -> Any:
        """The result from the accumulator; must leave ``acc`` unchanged."""
        return acc

    def __getstate__(self) -> dict:
        # The buffer spec is the caller's business; workers never merge.
        state = dict(self.__dict__)
        state.pop("_spec", None)
        return state


class ImageJob(Job):
    """A job whose partial results are per-position values ``(nx, ny, *item_shape)``.

    The accumulator is a ``(Rx, Ry, *item_shape)`` array filled in place chunk by
    chunk; positions not yet computed hold ``fill`` (NaN by default, so a partly
    painted image shows what is missing). It is a job with one ``"position"``
    :class:`Buffer` of ``item_shape`` and ``dtype``.
    """

    item_shape: tuple[int, ...] = ()
    dtype: Any = np.float64
    fill: Any = np.nan

    def buffers(self, cube: Any) -> Buffer:
        return Buffer("position", tuple(self.item_shape), self.dtype, fill=self.fill)
