"""``describe(path)``: what a file holds, without reading its data (for ``fourd-widgets info``)."""

from __future__ import annotations

import os
from typing import Any

from .load import load

__all__ = ["describe"]


def describe(path: str | os.PathLike, **options: Any) -> dict:
    """Summary of a 4D-STEM file as a plain dict.

    Parameters
    ----------
    path : str or os.PathLike
        The file; ``options`` are those of :func:`fourd_widgets.io.load`.

    Returns
    -------
    dict
        ``path``, ``format``, ``shape`` (Rx, Ry, Qx, Qy), ``dtype``, ``nbytes`` (size of
        the data as loaded), ``file_bytes`` (size on disk), ``storage_chunks`` (the
        file's own chunking, in its own axes, or None), ``calibration`` (set fields
        only) and ``options``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "s.npy")
    ...     np.save(p, np.zeros((2, 2, 4, 4), dtype=np.float32))
    ...     info = describe(p)
    >>> info["format"], info["shape"], info["dtype"], info["nbytes"]
    ('npy', [2, 2, 4, 4], 'float32', 256)
    """
    with load(path, **options) as cube:
        cal = {k: v for k, v in cube.calibration.to_dict().items()
               if k not in ("type", "schema_version") and v is not None
               and not (k == "rotation_deg" and v == 0.0) and not (k == "flip" and v is False)}
        src = cube.source or {}
        file_path = src.get("path", os.fspath(path))
        if os.path.isdir(file_path):
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(file_path) for f in fs)
        else:
            size = os.path.getsize(file_path)
        chunks = cube.metadata.get("storage_chunks")
        return {
            "path": file_path,
            "format": src.get("format"),
            "shape": list(cube.shape),
            "dtype": str(cube.dtype),
            "nbytes": cube.nbytes,
            "file_bytes": size,
            "storage_chunks": list(chunks) if chunks is not None else None,
            "calibration": cal,
            "options": dict(src.get("options", {})),
        }
