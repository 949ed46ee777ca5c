"""Plain binary arrays: ``.npy`` files and raw files of known shape, read with ``pread``.

Why not ``np.memmap``: pages of a memory map count as resident memory of the
process until the kernel evicts them, so streaming a cube through a map makes
RSS climb to the file size. ``os.preadv`` into a fresh buffer reads the same bytes
through the page cache, which is not charged to the process, and the buffer is
freed when the chunk is dropped.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..core.errors import FileFormatError, MissingOptionError, ParameterError
from ._common import Opened, product

__all__ = ["PreadArray", "open_npy", "open_raw"]

_NPY_MAGIC = b"\x93NUMPY"


class _FileHandle:
    """A read-only descriptor that the cube keeps alive and closes with it."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class PreadArray:
    """A C-ordered array stored at ``offset`` in a file, sliced with ``pread``.

    Leading axes (all but the last two) are indexed exactly; the last two (one
    pattern) are always read whole and cut in memory, so each read is one
    contiguous byte range per run of patterns.

    Examples
    --------
    >>> import tempfile, os
    >>> arr = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "a.raw")
    ...     arr.tofile(p)
    ...     pa = PreadArray(p, arr.shape, arr.dtype, 0)
    ...     ok = np.array_equal(pa[1:2, 0:3, 1:3, :], arr[1:2, 0:3, 1:3, :])
    ...     pa.close()
    >>> ok
    True
    """

    def __init__(self, path: str, shape: tuple[int, ...], dtype: Any, offset: int,
                 handle: _FileHandle | None = None) -> None:
        self.path = path
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.offset = int(offset)
        self.handle = handle or _FileHandle(path)
        self.chunks = None

    def close(self) -> None:
        self.handle.close()

    def _pread_into(self, buf: memoryview, pos: int) -> None:
        """Fill ``buf`` from byte ``pos``; a short file is a truncated file."""
        done = 0
        while done < len(buf):
            n = os.preadv(self.handle.fd, [buf[done:]], pos + done)
            if n == 0:
                raise FileFormatError(
                    self.path,
                    f"ends at byte {pos + done} but the array needs bytes up to {pos + len(buf)}.",
                    "The file is truncated; check the copy, or the shape=/dtype=/offset= given.",
                )
            done += n

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (len(self.shape) - len(key))
        if len(key) != len(self.shape) or not all(isinstance(k, slice) for k in key):
            raise IndexError(f"PreadArray takes {len(self.shape)} slices, got {key!r}")
        ranges = []
        for k, n in zip(key, self.shape):
            start, stop, step = k.indices(n)
            if step != 1:
                raise IndexError("PreadArray supports step-1 slices only")
            ranges.append((start, max(start, stop)))
        lead = max(0, len(self.shape) - 2)
        frame_items = product(self.shape[lead:])
        item = self.dtype.itemsize
        counts = [b - a for a, b in ranges[:lead]]
        out = np.empty(tuple(counts) + tuple(self.shape[lead:]), dtype=self.dtype)
        if out.size:
            # Axes after the last partly selected leading axis are read whole, so one
            # contiguous range serves every index of the axes before it.
            split = lead
            while split > 0 and ranges[split - 1] == (0, self.shape[split - 1]):
                split -= 1
            if split == 0:
                self._pread_into(memoryview(out.reshape(-1).view(np.uint8)), self.offset)
            else:
                run_axis = split - 1
                inner = product(self.shape[split:lead]) * frame_items
                flat = out.reshape(-1, counts[run_axis] * inner)
                outer_idx = np.ndindex(*counts[:run_axis]) if run_axis else [()]
                strides = [product(self.shape[i + 1:lead]) for i in range(lead)]
                for row, idx in enumerate(outer_idx):
                    first = sum((ranges[i][0] + j) * strides[i] for i, j in enumerate(idx))
                    first += ranges[run_axis][0] * strides[run_axis]
                    pos = self.offset + first * frame_items * item
                    self._pread_into(memoryview(flat[row].view(np.uint8)), pos)
        tail = tuple(slice(a, b) for a, b in ranges[lead:])
        return out[(Ellipsis,) + tail] if any(r != (0, n) for r, n in zip(ranges[lead:], self.shape[lead:])) else out


def _check_size(path: str, expected: int, what: str) -> None:
    actual = os.path.getsize(path)
    if actual != expected:
        raise FileFormatError(
            path,
            f"is {actual} bytes but {what} needs exactly {expected} bytes.",
            "The file is truncated or the shape=, dtype= or offset= options do not describe it.",
        )


def open_npy(path: str) -> Opened:
    """Open a ``.npy`` file lazily (header parsed with :mod:`numpy.lib.format`)."""
    with open(path, "rb") as f:
        magic = f.read(6)
        if magic != _NPY_MAGIC:
            raise FileFormatError(path, "is not a .npy file (no NUMPY magic at its start).",
                                  "Pass format= to read it as another format.")
        try:
            f.seek(0)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except Exception as exc:  # numpy raises ValueError/SyntaxError/... for bad headers
            raise FileFormatError(path, f"has a corrupt .npy header ({exc}).",
                                  "Re-save it with numpy.save.") from exc
        offset = f.tell()
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.fields is not None or dtype.itemsize == 0:
        raise FileFormatError(path, f"holds {dtype} values, not plain numbers.",
                              "Save the patterns as an integer or float array.")
    if fortran and len(shape) > 1:
        raise FileFormatError(path, "is stored in Fortran order, which cannot be streamed by scan rows.",
                              "Re-save it with numpy.save(path, numpy.ascontiguousarray(a)).")
    _check_size(path, offset + product(shape) * dtype.itemsize, f"its header (shape {shape}, {dtype})")
    arr = PreadArray(path, shape, dtype, offset)
    return Opened(arr, resources=(arr,), metadata={"npy_header_bytes": offset})


def open_raw(path: str, shape: Any = None, dtype: Any = None, offset: int = 0) -> Opened:
    """Open a headerless binary file given its ``shape``, ``dtype`` and byte ``offset``."""
    if shape is None or dtype is None:
        raise MissingOptionError(
            path, "is a raw binary file, which does not record its shape or type.",
            "Pass shape=(Rx, Ry, Qx, Qy) (or (frames, Qx, Qy) with scan_shape=), dtype= and, "
            "if there is a header, offset=. For an EMPAD acquisition, open its .xml file instead.",
        )
    try:
        shp = tuple(int(n) for n in shape)
        if any(n < 1 for n in shp) or any(not float(n).is_integer() for n in shape):
            raise ValueError
    except (TypeError, ValueError):
        raise ParameterError(f"shape= must be a tuple of positive integers, got {shape!r}", field="shape") from None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ParameterError(f"dtype= {dtype!r} is not a numpy dtype; use e.g. 'uint16' or '<f4'",
                             field="dtype") from None
    if dt.hasobject or dt.itemsize == 0 or dt.kind not in "biuf" or dt.fields is not None:
        raise ParameterError(f"dtype= must be a real numeric type (bool, integer or float), got {dt} "
                             f"({dt.str!r})", field="dtype")
    if not isinstance(offset, (int, np.integer)) or isinstance(offset, bool) or offset < 0:
        raise ParameterError(f"offset= must be a non-negative integer of bytes, got {offset!r}", field="offset")
    _check_size(path, int(offset) + product(shp) * dt.itemsize,
                f"shape={shp}, dtype={dt.str}, offset={int(offset)}")
    arr = PreadArray(path, shp, dt, int(offset))
    return Opened(arr, resources=(arr,))
