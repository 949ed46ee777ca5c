"""DataCube: a 4D-STEM dataset with axes (Rx, Ry, Qx, Qy), read lazily.

The backing array can be anything with ``shape``, ``dtype`` and basic slicing:
a numpy array, a memory map, an h5py or zarr dataset, a dask array, or one of
the readers' own adapters. Nothing is read until a step asks for it; steps read
contiguous blocks of scan rows (:meth:`DataCube.iter_chunks`), so a cube larger
than memory works. Cropping and binning return new lazy cubes.

The whole-scan reductions (mean, maximum and median patterns) are passes of the
engine, which sits above core in the layers: ``fourd_widgets.engine`` registers
them here when imported (:func:`set_pattern_passes`), and ``import fourd_widgets``
always imports it. So they run on threads or Dask with progress and cancel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .calibration import Calibration
from .errors import ParameterError, ShapeError

__all__ = ["DataCube", "Chunk", "DEFAULT_CHUNK_BYTES", "IN_MEMORY_CHUNK_BYTES", "DEFAULT_MEMORY_BUDGET",
           "set_pattern_passes"]

#: Default size of one streamed block of patterns. A few MB keep the block in
#: cache-friendly territory while amortising per-read overhead.
DEFAULT_CHUNK_BYTES = 16 * 2**20
#: Block size for cubes held in memory (plain numpy). Their blocks are views, not
#: copies, so the size bounds no memory; larger blocks amortise the per-call cost
#: of the kernels (measured: 16 MiB blocks ran a virtual image at half the speed of
#: 32-64 MiB ones on 2 threads, BLAS calls contending).
IN_MEMORY_CHUNK_BYTES = 64 * 2**20
#: Default bound on memory a whole-cube reduction (e.g. median) may hold at once.
DEFAULT_MEMORY_BUDGET = 1 * 2**30


# io registers its loader here so a pickled cube can reopen its file on a worker
# without core importing the layer above it.
_reopener: Callable[..., "DataCube"] | None = None


def set_reopener(loader: Callable[..., "DataCube"]) -> None:
    """Register the function that reopens a cube from ``source`` (done by fourd_widgets.io)."""
    global _reopener
    _reopener = loader


# The engine registers the mean/max/median pattern passes here at import
# (dependency inversion: core sits below the engine and cannot import it). The
# DataCube methods stay the public entry points; the passes live in
# fourd_widgets.engine.patterns, where they get threads, Dask, progress and cancel.
_pattern_passes: tuple[Callable[..., np.ndarray], ...] | None = None


def set_pattern_passes(mean: Callable[..., np.ndarray], maximum: Callable[..., np.ndarray],
                       median: Callable[..., np.ndarray]) -> None:
    """Register the functions behind ``DataCube.mean_pattern``/``max_pattern``/``median_pattern``.

    Done by :mod:`fourd_widgets.engine.patterns`; each takes ``(cube, region, ...)``
    and the engine options.
    """
    global _pattern_passes
    _pattern_passes = (mean, maximum, median)


@dataclass(frozen=True)
class Chunk:
    """One block of patterns: ``data[i, j]`` is the pattern at ``(rx.start+i, ry.start+j)``."""

    rx: slice
    ry: slice
    data: np.ndarray


def _read(array: Any, key: tuple[slice, ...]) -> np.ndarray:
    """Read a basic-slice block from any backing array into numpy."""
    out = array[key]
    if hasattr(out, "compute") and not isinstance(out, np.ndarray):  # dask
        out = out.compute()
    out = np.asarray(out)
    if not out.dtype.isnative:  # e.g. big-endian MIB or raw data: the kernels read native order only
        out = out.astype(out.dtype.newbyteorder("="))
    return out


def _norm_range(value: Any, n: int, axis: str) -> tuple[int, int]:
    """(start, stop) from None, a (start, stop) pair or a slice with step 1."""
    if value is None:
        return 0, n
    if isinstance(value, slice):
        if value.step not in (None, 1):
            raise ParameterError(f"{axis}: only slices with step 1 are supported, got {value}", field=axis)
        start, stop, _ = value.indices(n)
    else:
        try:
            start, stop = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ParameterError(f"{axis} must be (start, stop), got {value!r}", field=axis) from None
        start, stop, _ = slice(start, stop).indices(n)
    if stop <= start:
        raise ShapeError(f"{axis} range {value!r} selects nothing on an axis of length {n}")
    return start, stop


class _Region:
    """Lazy crop of a 4D backing array."""

    def __init__(self, base: Any, bounds: Sequence[tuple[int, int]]) -> None:
        self.base = base
        self.bounds = tuple(bounds)
        self.shape = tuple(b - a for a, b in self.bounds)
        self.dtype = np.dtype(base.dtype)
        self.chunks = getattr(base, "chunks", None)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        mapped = []
        for s, (a, _b), n in zip(key, self.bounds, self.shape):
            start, stop, _ = s.indices(n)
            mapped.append(slice(a + start, a + stop))
        return _read(self.base, tuple(mapped))


def _binned_dtype(dtype: np.dtype, factor: int, reduce: str) -> np.dtype:
    if reduce == "mean" or dtype.kind == "f":
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    if dtype.kind == "b":
        return np.dtype(np.uint32)
    bits = dtype.itemsize * 8 + math.ceil(math.log2(max(factor, 1)))
    if dtype.kind == "u":
        return np.dtype(np.uint32) if bits <= 32 else np.dtype(np.uint64)
    return np.dtype(np.int32) if bits <= 32 else np.dtype(np.int64)


class _Binned:
    """Lazy block-binning of a 4D backing array (remainders are trimmed)."""

    def __init__(self, base: Any, factors: tuple[int, int, int, int], reduce: str) -> None:
        self.base = base
        self.factors = factors
        self.reduce = reduce
        self.shape = tuple(n // f for n, f in zip(base.shape, factors))
        if min(self.shape) < 1:
            raise ShapeError(f"binning by {factors} leaves an empty cube from shape {tuple(base.shape)}")
        total = int(np.prod(factors))
        self.dtype = _binned_dtype(np.dtype(base.dtype), total, reduce)
        self.chunks = None

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        src = []
        out_shape = []
        for s, f, n in zip(key, self.factors, self.shape):
            start, stop, _ = s.indices(n)
            src.append(slice(start * f, stop * f))
            out_shape += [stop - start, f]
        block = _read(self.base, tuple(src)).astype(self.dtype, copy=False)
        block = block.reshape(out_shape).sum(axis=(1, 3, 5, 7), dtype=self.dtype)
        if self.reduce == "mean":
            block /= np.prod(self.factors)
        return block


class DataCube:
    """A 4D-STEM dataset, axes ``(Rx, Ry, Qx, Qy)``: scan x, scan y, detector x, detector y.

    Parameters
    ----------
    data : (Rx, Ry, Qx, Qy) array-like
        numpy array, memory map, h5py/zarr dataset, dask array, or any object with
        ``shape``, ``dtype`` and basic slicing. It is not read here.
    calibration : Calibration, optional
        Defaults to an empty calibration (everything in pixels).
    source : dict, optional
        Where the data came from: ``{"path": ..., "format": ..., "options": {...}}``.
        Set by :func:`fourd_widgets.load`; lets a worker process reopen the file.
    metadata : dict, optional
        The file's own metadata, as read.

    Examples
    --------
    >>> import numpy as np
    >>> cube = DataCube(np.ones((4, 5, 8, 8), dtype=np.uint16))
    >>> cube.scan_shape, cube.detector_shape
    ((4, 5), (8, 8))
    >>> float(cube.mean_pattern().sum())
    64.0
    >>> cube.bin(detector=2).shape
    (4, 5, 4, 4)
    """

    def __init__(
        self,
        data: Any,
        calibration: Calibration | None = None,
        *,
        source: dict | None = None,
        metadata: dict | None = None,
        _ops: tuple = (),
        _resources: tuple = (),
    ) -> None:
        shape = getattr(data, "shape", None)
        if shape is None or not hasattr(data, "dtype"):
            data = np.asarray(data)
            shape = data.shape
        if len(shape) != 4:
            raise ShapeError(
                f"a DataCube needs a 4D array (Rx, Ry, Qx, Qy); got {len(shape)}D with shape {tuple(shape)}. "
                "For a stack of patterns pass scan_shape= to fw.load, or reshape the array."
            )
        if min(shape) < 1:
            raise ShapeError(f"a DataCube cannot have an empty axis; got shape {tuple(shape)}")
        if calibration is None:
            calibration = Calibration()
        if not isinstance(calibration, Calibration):
            raise ParameterError(f"calibration must be a Calibration, got {type(calibration).__name__}")
        self._array = data
        self._calibration = calibration
        self.source = source
        self.metadata = dict(metadata or {})
        self._ops = tuple(_ops)
        self._resources = tuple(_resources)  # open files kept alive with the cube

    # --- basic properties ---------------------------------------------------
    @property
    def array(self) -> Any:
        """The backing array (not read)."""
        return self._array

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(n) for n in self._array.shape)  # type: ignore[return-value]

    @property
    def scan_shape(self) -> tuple[int, int]:
        return self.shape[0], self.shape[1]

    @property
    def detector_shape(self) -> tuple[int, int]:
        return self.shape[2], self.shape[3]

    @property
    def dtype(self) -> np.dtype:
        """The data type of blocks read from the cube (native byte order)."""
        return np.dtype(self._array.dtype).newbyteorder("=")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def pattern_nbytes(self) -> int:
        return self.shape[2] * self.shape[3] * self.dtype.itemsize

    @property
    def calibration(self) -> Calibration:
        return self._calibration

    @calibration.setter
    def calibration(self, value: Calibration) -> None:
        if not isinstance(value, Calibration):
            raise ParameterError(f"calibration must be a Calibration, got {type(value).__name__}")
        if value.origin_map is not None and value.origin_map.shape[:2] != self.scan_shape:
            raise ShapeError(
                f"origin_map has scan shape {value.origin_map.shape[:2]} but the cube's is {self.scan_shape}"
            )
        self._calibration = value

    def with_calibration(self, calibration: Calibration) -> "DataCube":
        """The same data (not copied) under another calibration."""
        cube = DataCube(self._array, self._calibration, source=self.source, metadata=self.metadata,
                        _ops=self._ops, _resources=self._resources)
        cube.calibration = calibration
        return cube

    @property
    def in_memory(self) -> bool:
        """True when the backing array is an ordinary (not memory-mapped) numpy array."""
        return type(self._array) is np.ndarray

    @property
    def storage_chunks(self) -> tuple[int, ...] | None:
        """Chunk shape of the backing storage (h5py/zarr/dask), if any."""
        chunks = getattr(self._array, "chunks", None)
        if chunks is None:
            return None
        if chunks and isinstance(chunks[0], tuple):  # dask: tuple of tuples
            return tuple(int(c[0]) for c in chunks)
        return tuple(int(c) for c in chunks)

    def __repr__(self) -> str:
        src = f", source={self.source.get('path')!r}" if self.source else ""
        return f"DataCube(shape={self.shape}, dtype={self.dtype}{src})"

    # --- reading ------------------------------------------------------------
    def read(
        self,
        rx: slice | tuple[int, int] | None = None,
        ry: slice | tuple[int, int] | None = None,
        qx: slice | tuple[int, int] | None = None,
        qy: slice | tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Read one block into memory as numpy (basic ranges only)."""
        key = tuple(
            slice(*_norm_range(v, n, name))
            for v, n, name in zip((rx, ry, qx, qy), self.shape, ("rx", "ry", "qx", "qy"))
        )
        return _read(self._array, key)

    def pattern(self, rx: int, ry: int) -> np.ndarray:
        """The diffraction pattern at one scan position, shape (Qx, Qy)."""
        Rx, Ry = self.scan_shape
        if not (-Rx <= rx < Rx and -Ry <= ry < Ry):
            raise IndexError(f"scan position ({rx}, {ry}) is outside the scan of shape {self.scan_shape}")
        rx, ry = rx % Rx, ry % Ry
        return self.read((rx, rx + 1), (ry, ry + 1))[0, 0]

    def __getitem__(self, key: Any) -> Any:
        """``cube[rx, ry]`` -> pattern; ``cube[a:b, c:d]`` -> lazy DataCube of that region."""
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) > 4:
            raise IndexError(f"a DataCube has 4 axes, got {len(key)} indices")
        key = key + (slice(None),) * (4 - len(key))
        if all(isinstance(k, slice) for k in key):
            return self.crop(rx=key[0], ry=key[1], qx=key[2], qy=key[3])
        if all(isinstance(k, (int, np.integer, slice)) for k in key):
            idx = []
            squeeze = []
            for ax, (k, n) in enumerate(zip(key, self.shape)):
                if isinstance(k, slice):
                    idx.append(k)
                else:
                    k = int(k)
                    if not -n <= k < n:
                        raise IndexError(f"index {k} out of range for axis {ax} of length {n}")
                    k %= n
                    idx.append(slice(k, k + 1))
                    squeeze.append(ax)
            norm = []
            for s, n in zip(idx, self.shape):
                if s.step not in (None, 1):
                    raise IndexError("only slices with step 1 are supported")
                norm.append(slice(*s.indices(n)[:2]))
            return _read(self._array, tuple(norm)).squeeze(axis=tuple(squeeze))
        raise IndexError("a DataCube takes integers and step-1 slices; use cube.read() or crop()")

    def to_numpy(self) -> np.ndarray:
        """Read the whole cube into memory."""
        return self.read()

    # --- chunking -----------------------------------------------------------
    def chunk_slices(self, chunk_bytes: int | None = None) -> list[tuple[slice, slice]]:
        """Scan blocks to stream the cube in, each at most ``chunk_bytes``.

        Blocks are whole scan rows (contiguous in C order) when a row fits the
        budget (default :data:`DEFAULT_CHUNK_BYTES`, or :data:`IN_MEMORY_CHUNK_BYTES`
        for in-memory cubes), aligned to the storage chunking along Rx when there is one;
        otherwise pieces of a row.
        """
        budget = int(chunk_bytes or (IN_MEMORY_CHUNK_BYTES if self.in_memory else DEFAULT_CHUNK_BYTES))
        if budget < 1:
            raise ParameterError(f"chunk_bytes must be positive, got {chunk_bytes!r}", field="chunk_bytes")
        Rx, Ry = self.scan_shape
        row_bytes = Ry * self.pattern_nbytes
        out: list[tuple[slice, slice]] = []
        if row_bytes <= budget:
            rows = max(1, budget // row_bytes)
            sc = self.storage_chunks
            if sc and sc[0] > 1 and Ry <= sc[1]:
                rows = max(sc[0], rows // sc[0] * sc[0]) if rows >= sc[0] else rows
            for r in range(0, Rx, rows):
                out.append((slice(r, min(Rx, r + rows)), slice(0, Ry)))
        else:
            cols = max(1, budget // self.pattern_nbytes)
            for r in range(Rx):
                for c in range(0, Ry, cols):
                    out.append((slice(r, r + 1), slice(c, min(Ry, c + cols))))
        return out

    def iter_chunks(self, chunk_bytes: int | None = None) -> Iterator[Chunk]:
        """Yield :class:`Chunk` blocks covering the scan once, in order."""
        for rx, ry in self.chunk_slices(chunk_bytes):
            yield Chunk(rx, ry, self.read(rx, ry))

    # --- lazy transforms ----------------------------------------------------
    def _derive(self, array: Any, op: tuple, calibration: Calibration) -> "DataCube":
        return DataCube(
            array, calibration, source=self.source, metadata=self.metadata,
            _ops=self._ops + (op,), _resources=self._resources,
        )

    def crop(
        self,
        rx: Any = None,
        ry: Any = None,
        qx: Any = None,
        qy: Any = None,
    ) -> "DataCube":
        """Lazy sub-cube. Each argument is ``(start, stop)`` or a slice; None keeps the axis.

        A detector crop moves the calibrated origin with it; a scan crop cuts the
        origin map.
        """
        bounds = [
            _norm_range(v, n, name)
            for v, n, name in zip((rx, ry, qx, qy), self.shape, ("rx", "ry", "qx", "qy"))
        ]
        cal = self.calibration
        changes: dict[str, Any] = {}
        if cal.origin is not None:
            changes["origin"] = (cal.origin[0] - bounds[2][0], cal.origin[1] - bounds[3][0])
        if cal.origin_map is not None:
            m = cal.origin_map[bounds[0][0]:bounds[0][1], bounds[1][0]:bounds[1][1]].copy()
            m[..., 0] -= bounds[2][0]
            m[..., 1] -= bounds[3][0]
            changes["origin_map"] = m
        if changes:
            cal = cal.replace(**changes)
        return self._derive(_Region(self._array, bounds), ("crop", [list(b) for b in bounds]), cal)

    def bin(self, real: int | tuple[int, int] = 1, detector: int | tuple[int, int] = 1,
            reduce: str = "sum") -> "DataCube":
        """Lazy block binning in scan (``real``) and detector space.

        ``reduce='sum'`` (default, counts are kept, integer types widen so
        nothing overflows) or ``'mean'`` (float32). Remainder rows are trimmed.
        The calibration's steps grow by the factors.
        """
        def pair(v: Any, name: str) -> tuple[int, int]:
            t = (v, v) if np.isscalar(v) else tuple(v)
            if len(t) != 2 or not all(isinstance(x, (int, np.integer)) and x >= 1 for x in t):
                raise ParameterError(f"{name} binning must be a positive integer or a pair, got {v!r}", field=name)
            return int(t[0]), int(t[1])

        fr, fq = pair(real, "real"), pair(detector, "detector")
        if reduce not in ("sum", "mean"):
            raise ParameterError(f"reduce must be 'sum' or 'mean', got {reduce!r}", field="reduce")
        if fr == (1, 1) and fq == (1, 1):
            return self
        cal = self.calibration
        changes: dict[str, Any] = {}
        if fr[0] == fr[1] and cal.real_step is not None:
            changes["real_step"] = cal.real_step * fr[0]
        if fq[0] == fq[1] and cal.reciprocal_step is not None:
            changes["reciprocal_step"] = cal.reciprocal_step * fq[0]
        if cal.origin is not None:
            # pixel centre convention: a bin of f pixels maps x to (x + 0.5)/f - 0.5
            changes["origin"] = ((cal.origin[0] + 0.5) / fq[0] - 0.5, (cal.origin[1] + 0.5) / fq[1] - 0.5)
        if cal.origin_map is not None:
            m = cal.origin_map
            nx, ny = m.shape[0] // fr[0], m.shape[1] // fr[1]
            m = m[: nx * fr[0], : ny * fr[1]].reshape(nx, fr[0], ny, fr[1], 2).mean(axis=(1, 3))
            m = m.copy()
            m[..., 0] = (m[..., 0] + 0.5) / fq[0] - 0.5
            m[..., 1] = (m[..., 1] + 0.5) / fq[1] - 0.5
            changes["origin_map"] = m
        if changes:
            cal = cal.replace(**changes)
        arr = _Binned(self._array, (fr[0], fr[1], fq[0], fq[1]), reduce)
        return self._derive(arr, ("bin", {"real": list(fr), "detector": list(fq), "reduce": reduce}), cal)

    # --- reductions ---------------------------------------------------------
    def _passes(self) -> tuple[Callable[..., np.ndarray], ...]:
        if _pattern_passes is None:
            raise RuntimeError("fourd_widgets.engine is not imported; it runs the pattern passes "
                               "(import fourd_widgets)")
        return _pattern_passes

    def mean_pattern(self, region: np.ndarray | None = None, chunk_bytes: int | None = None,
                     ignore_nan: bool = False, **engine_options: Any) -> np.ndarray:
        """Mean diffraction pattern (float64) over all positions or a boolean scan mask.

        ``ignore_nan=True`` leaves non-finite pixels (dead frames, masked pixels)
        out of the mean pixel by pixel; a pixel that is never finite stays NaN.
        Runs on the engine: ``engine_options`` are ``scheduler``, ``workers``,
        ``progress``, ``cancel``, ``on_partial`` of :func:`fourd_widgets.engine.run_job`.
        """
        return self._passes()[0](self, region, ignore_nan, chunk_bytes=chunk_bytes, **engine_options)

    def max_pattern(self, region: np.ndarray | None = None, chunk_bytes: int | None = None,
                    **engine_options: Any) -> np.ndarray:
        """Per-pixel maximum over all positions or a boolean scan mask (input dtype).

        Runs on the engine; ``engine_options`` as for :meth:`mean_pattern`.
        """
        return self._passes()[1](self, region, chunk_bytes=chunk_bytes, **engine_options)

    def median_pattern(self, region: np.ndarray | None = None,
                       memory_budget: int = DEFAULT_MEMORY_BUDGET, **engine_options: Any) -> np.ndarray:
        """Exact per-pixel median (float64) over all positions or a boolean scan mask.

        Works in strips of detector rows, one pass over the data each, holding
        at most ``memory_budget`` bytes of patterns (one detector row of every
        selected pattern at the least). Runs on the engine: ``engine_options``
        are ``chunk_bytes``, ``scheduler``, ``workers``, ``progress`` (over all
        passes) and ``cancel``.
        """
        return self._passes()[2](self, region, memory_budget, **engine_options)

    # --- resources and pickling --------------------------------------------
    def close(self) -> None:
        """Close files the cube holds open (the cube is unusable afterwards)."""
        for r in self._resources:
            close = getattr(r, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> "DataCube":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # A cube opened from a file travels as "how to reopen it" (path, options,
        # crops/bins), so a Dask worker reads its own chunks; others travel as data.
        state = {"calibration": self._calibration.to_dict(), "metadata": self.metadata,
                 "source": self.source, "ops": self._ops}
        if self.source is not None and self.source.get("path") is not None:
            state["array"] = None
        else:
            arr = self._array
            state["array"] = arr if isinstance(arr, np.ndarray) or hasattr(arr, "dask") else self.to_numpy()
            state["ops"] = ()
        return state

    def __setstate__(self, state: dict) -> None:
        cal = Calibration.from_dict(state["calibration"])
        if state["array"] is None:
            if _reopener is None:
                raise RuntimeError("fourd_widgets.io is not imported; cannot reopen " + repr(state["source"]))
            src = state["source"]
            cube = _reopener(src["path"], **src.get("options", {}))
            for name, args in state["ops"]:
                if name == "crop":
                    cube = cube.crop(*[tuple(b) for b in args])
                elif name == "bin":
                    cube = cube.bin(tuple(args["real"]), tuple(args["detector"]), args["reduce"])
            self.__dict__.update(cube.__dict__)
            self._calibration = cal
        else:
            DataCube.__init__(self, state["array"], cal, source=state["source"], metadata=state["metadata"])
