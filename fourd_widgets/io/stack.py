"""A stack of diffraction frames seen as a 4D cube ``(Rx, Ry, Qx, Qy)``.

Detectors write frames in acquisition order, often split over several datasets
(one per file for DECTRIS Arina). :class:`FrameStack` joins such parts lazily and
maps scan position ``(rx, ry)`` to frame ``rx * Ry + ry``: consecutive frames run
along Ry, the fast scan axis, as in a C-order reshape.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..core.errors import FileFormatError, ShapeError

__all__ = ["FrameStack", "scan_shape_from_width"]


def _as_numpy(block: Any) -> np.ndarray:
    if hasattr(block, "compute") and not isinstance(block, np.ndarray):  # dask
        block = block.compute()
    return np.asarray(block)


class FrameStack:
    """Lazy 4D view of frame stacks.

    Parameters
    ----------
    parts : sequence of array-like
        Each a 3D ``(frames, Qx, Qy)`` array or a 2D single frame; all with the same
        frame shape and dtype. They are not read here.
    scan_shape : (int, int)
        ``(Rx, Ry)``; ``Rx * Ry`` must equal the total number of frames.
    path : str
        The file, for error messages.

    Examples
    --------
    >>> frames = np.arange(6 * 2 * 3).reshape(6, 2, 3)
    >>> stack = FrameStack([frames[:4], frames[4:]], (3, 2))
    >>> stack.shape
    (3, 2, 2, 3)
    >>> bool(np.array_equal(stack[1:3, 1:2, :, :], frames.reshape(3, 2, 2, 3)[1:3, 1:2]))
    True
    """

    def __init__(self, parts: Sequence[Any], scan_shape: tuple[int, int], path: str = "") -> None:
        if not parts:
            raise FileFormatError(path or None, "holds no frames.", "Check that the acquisition wrote data.")
        self.parts = [p for p in parts]
        self._lengths = []
        frame_shape = None
        dtype = None
        for p in self.parts:
            shp = tuple(int(n) for n in p.shape)
            if len(shp) not in (2, 3):
                raise ShapeError(f"{path}: a frame stack needs 2D or 3D parts, got shape {shp}")
            fs = shp[-2:]
            if frame_shape is None:
                frame_shape, dtype = fs, np.dtype(p.dtype)
            elif fs != frame_shape or np.dtype(p.dtype) != dtype:
                raise FileFormatError(
                    path or None,
                    f"has frame stacks of different shapes or types ({frame_shape} {dtype} and {fs} {p.dtype}).",
                    "Open the parts separately.",
                )
            self._lengths.append(shp[0] if len(shp) == 3 else 1)
        self.n_frames = int(sum(self._lengths))
        self._starts = np.concatenate([[0], np.cumsum(self._lengths)]).astype(np.int64)
        rx, ry = (int(v) for v in scan_shape)
        if rx * ry != self.n_frames:
            raise ShapeError(
                f"{path}: scan_shape=({rx}, {ry}) needs {rx * ry} frames but the file holds "
                f"{self.n_frames} frames of {frame_shape[0]}x{frame_shape[1]}. "
                f"Give a scan shape whose product is {self.n_frames}"
                + (f", e.g. scan_width= one of {_divisors(self.n_frames)}." if self.n_frames > 1 else ".")
            )
        self.shape = (rx, ry) + tuple(frame_shape)
        self.dtype = dtype
        self.chunks = None

    def read_frames(self, start: int, stop: int, qx: slice, qy: slice) -> np.ndarray:
        """Frames ``start:stop`` (cut to ``qx, qy``), crossing part boundaries."""
        pieces = []
        for i, (a, b) in enumerate(zip(self._starts[:-1], self._starts[1:])):
            lo, hi = max(start, int(a)), min(stop, int(b))
            if lo >= hi:
                continue
            part = self.parts[i]
            if len(part.shape) == 2:
                pieces.append(_as_numpy(part[qx, qy])[None])
            else:
                pieces.append(_as_numpy(part[lo - int(a):hi - int(a), qx, qy]))
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=0)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (4 - len(key))
        rx0, rx1, _ = key[0].indices(self.shape[0])
        ry0, ry1, _ = key[1].indices(self.shape[1])
        q0, q1, _ = key[2].indices(self.shape[2])
        p0, p1, _ = key[3].indices(self.shape[3])
        qx, qy = slice(q0, q1), slice(p0, p1)
        nx, ny = max(0, rx1 - rx0), max(0, ry1 - ry0)
        Ry = self.shape[1]
        if nx == 0 or ny == 0:
            return np.empty((nx, ny, max(0, q1 - q0), max(0, p1 - p0)), dtype=self.dtype)
        if ny == Ry:  # whole scan rows: one contiguous run of frames
            block = self.read_frames(rx0 * Ry, rx1 * Ry, qx, qy)
            return block.reshape(nx, ny, *block.shape[1:])
        rows = [self.read_frames(r * Ry + ry0, r * Ry + ry1, qx, qy) for r in range(rx0, rx1)]
        return np.stack(rows, axis=0)


def _divisors(n: int, limit: int = 8) -> list[int]:
    """Some divisors of ``n`` near its square root, as suggestions."""
    divs = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    both = sorted(set(divs + [n // d for d in divs]))
    mid = min(range(len(both)), key=lambda i: abs(both[i] - n**0.5))
    return both[max(0, mid - limit // 2): mid + limit // 2]


def scan_shape_from_width(path: str, n_frames: int, width: Any) -> tuple[int, int]:
    """``(n_frames // width, width)``: ``width`` is the fast scan axis, Ry.

    >>> scan_shape_from_width("f.h5", 12, 4)
    (3, 4)
    """
    if not isinstance(width, (int, np.integer)) or isinstance(width, bool) or width < 1:
        raise ShapeError(f"{path}: scan_width= must be a positive integer, got {width!r}")
    width = int(width)
    if n_frames % width:
        raise ShapeError(
            f"{path}: the file holds {n_frames} frames, which is not a multiple of scan_width={width}. "
            f"Try one of {_divisors(n_frames)} or pass scan_shape=(Rx, Ry)."
        )
    return n_frames // width, width
