"""Which input, opened how, processed by which recipe: the key of a run.

A finished output (a batch's results file, an iterative job's checkpoint) may be
reused only when it was made from the same three things:

* the **recipe**, in canonical JSON (sorted keys, no whitespace), so a change
  to the calibration or to any parameter counts, not only the list of steps;
* the **load options** (``scan_shape=``, ``binning=``...);
* the **input's identity** (:func:`input_identity`): resolved path, size,
  modification time and a SHA-256 of its first and last MiB, so a file replaced
  by another of the same name is noticed without reading it all.

:func:`run_key` hashes the three (each part's digest is kept by
:func:`run_key_parts`, so a refusal can say which part differed). It lives in
``io`` so that the engine's checkpoints and the batch runner use the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from typing import Any, Mapping

import numpy as np

__all__ = ["HASHED_BYTES", "canonical_json", "input_identity", "run_key_parts", "run_key"]

#: Bytes hashed at each end of a file by :func:`input_identity`.
HASHED_BYTES = 2**20


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, np.ndarray):
        return {"dtype": obj.dtype.str, "shape": list(obj.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.dtype):
        return obj.str
    if isinstance(obj, type) and issubclass(obj, np.generic):
        return np.dtype(obj).str
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} cannot be part of a run key")


def canonical_json(obj: Any) -> str:
    """One text per meaning: sorted keys, no whitespace, records through their ``to_dict``.

    Tuples and lists give the same text (JSON has only lists).

    >>> canonical_json({"b": 1, "a": (2.0, None)})
    '{"a":[2.0,null],"b":1}'
    """
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable,
                      allow_nan=True)


def _ends_sha256(path: str, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(HASHED_BYTES))
        if size > HASHED_BYTES:
            f.seek(max(HASHED_BYTES, size - HASHED_BYTES))
            h.update(f.read(HASHED_BYTES))
    return h.hexdigest()


def input_identity(path: str | os.PathLike) -> dict:
    """The identity of an input file (or Zarr folder), cheap to compute.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``path`` (resolved, symbolic links followed), ``size`` (bytes), ``mtime_ns``
        and ``sha256`` of the first and last :data:`HASHED_BYTES` bytes (the whole
        file when it is smaller than twice that). For a folder, ``size`` is the
        sum of its files and ``sha256`` covers the names, sizes and times of
        every file in it.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "scan.npy")
    ...     np.save(p, np.zeros(4))
    ...     ident = input_identity(p)
    >>> sorted(ident), ident["size"]
    (['mtime_ns', 'path', 'sha256', 'size'], 160)
    """
    real = os.path.realpath(os.fspath(path))
    st = os.stat(real)
    if stat.S_ISDIR(st.st_mode):
        h = hashlib.sha256()
        total = 0
        for folder, dirs, names in os.walk(real):
            dirs.sort()
            for name in sorted(names):
                p = os.path.join(folder, name)
                fst = os.stat(p)
                total += fst.st_size
                h.update(f"{os.path.relpath(p, real)}\0{fst.st_size}\0{fst.st_mtime_ns}\n".encode())
        return {"path": real, "size": total, "mtime_ns": int(st.st_mtime_ns), "sha256": h.hexdigest()}
    return {"path": real, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns),
            "sha256": _ends_sha256(real, int(st.st_size))}


def run_key_parts(recipe: Any, load_options: Mapping[str, Any] | None, identity: Mapping[str, Any]) -> dict[str, str]:
    """SHA-256 of the canonical JSON of each part: ``recipe``, ``load options``, ``input``."""
    parts = {"recipe": canonical_json(recipe), "load options": canonical_json(dict(load_options or {})),
             "input": canonical_json(dict(identity))}
    return {k: hashlib.sha256(v.encode("utf-8")).hexdigest() for k, v in parts.items()}


def run_key(recipe: Any, load_options: Mapping[str, Any] | None, identity: Mapping[str, Any]) -> str:
    """The key of a run: SHA-256 over the digests of its three parts (see :func:`run_key_parts`).

    Parameters
    ----------
    recipe : Recipe or dict
        The whole recipe (anything with ``to_dict``, or its dict).
    load_options : dict or None
        Options given to :func:`fourd_widgets.load` (None and ``{}`` are the same).
    identity : dict
        From :func:`input_identity`.

    Returns
    -------
    str
        64 hexadecimal digits.

    Examples
    --------
    >>> ident = {"path": "/d/scan.h5", "size": 10, "mtime_ns": 1, "sha256": "0" * 64}
    >>> run_key({"steps": []}, {"binning": 2}, ident) == run_key({"steps": []}, {"binning": 2}, ident)
    True
    >>> run_key({"steps": []}, {"binning": 2}, ident) == run_key({"steps": []}, {"binning": 4}, ident)
    False
    """
    digests = run_key_parts(recipe, load_options, identity)
    return hashlib.sha256(canonical_json(digests).encode("utf-8")).hexdigest()
