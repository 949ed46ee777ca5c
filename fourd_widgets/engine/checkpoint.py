"""Checkpoints of iterative jobs: written atomically, keyed by what they were computed from.

A checkpoint is an ``.npz`` file (no pickles: loading never runs code) holding
the state arrays of an iterative algorithm, the number of iterations done and
its *key*: a SHA-256 over three parts, each kept in the file too so a refusal
can say which one differed:

* ``recipe``: the canonical JSON (sorted keys, no spaces) of the step's record;
* ``load options``: how the input was opened (reader options, crops and bins);
* ``input``: the input's identity: path, size, modification time and a hash of both
  ends of a file (as the batch runner keys finished outputs), or a SHA-256 of the
  contents of an in-memory array.

A checkpoint whose key differs from the run's is refused
(:class:`CheckpointError`), never resumed or overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

import numpy as np

from ..core.errors import FileFormatError
from ..io.identity import canonical_json, run_key_parts
from ..io.identity import input_identity as file_identity
from ..io.results import atomic_path

__all__ = ["CheckpointError", "canonical_json", "input_identity", "load_options", "checkpoint_key",
           "save_checkpoint", "load_checkpoint", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1
_HASH_BLOCK = 64 * 2**20


class CheckpointError(FileFormatError):
    """A checkpoint cannot be resumed: it belongs to another recipe or input, or is not one."""


def load_options(data: Any) -> dict:
    """How the cube was opened: its reader options and lazy crops/bins ({} for plain arrays)."""
    src = getattr(data, "source", None) or {}
    return {"format": src.get("format"), "options": src.get("options") or {},
            "ops": [list(op) for op in getattr(data, "_ops", ())]}


def input_identity(data: Any) -> dict:
    """Identity of the input: that of its file (:func:`fourd_widgets.io.identity.input_identity`:
    path, size, mtime and a hash of both ends), or a content hash of in-memory data.

    >>> input_identity(np.zeros(3))["sha256"][:12]
    '9d908ecfb6b2'
    """
    src = getattr(data, "source", None) or {}
    path = src.get("path")
    if path is not None and os.path.exists(path):
        # the batch runner's identity, so a checkpoint and a finished output share one key
        return {**file_identity(path), "shape": list(data.shape), "dtype": str(data.dtype)}
    h = hashlib.sha256()
    if hasattr(data, "chunk_slices"):  # a cube: hash it block by block, never all in memory
        for rx, ry in data.chunk_slices(_HASH_BLOCK):
            h.update(np.ascontiguousarray(data.read(rx, ry)).tobytes())
    else:
        h.update(np.ascontiguousarray(data).tobytes())
    return {"sha256": h.hexdigest(), "shape": list(np.shape(data)), "dtype": str(data.dtype)}


def checkpoint_key(recipe: Any, data: Any) -> tuple[str, dict[str, str]]:
    """The key of a run, and the digest of each of its parts (recipe, load options, input).

    The same construction as :func:`fourd_widgets.io.identity.run_key`, which the batch
    runner uses to decide that an output is finished.
    """
    parts = run_key_parts(recipe, load_options(data), input_identity(data))
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest(), parts


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any], iteration: int, key: str,
                    parts: Mapping[str, str], done: bool = False) -> None:
    """Write ``state`` (a dict of arrays and numbers) atomically: temporary name, then rename."""
    arrays = {}
    for name, value in state.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"checkpoint state {name!r} of type {type(value).__name__} is not numeric")
        arrays["state/" + name] = arr
    header = {"version": CHECKPOINT_VERSION, "key": key, "parts": dict(parts), "iteration": int(iteration),
              "done": bool(done), "scalars": [n for n, v in state.items() if np.ndim(v) == 0]}
    tmp = atomic_path(path)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, __header__=np.array(json.dumps(header)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: str | os.PathLike, key: str, parts: Mapping[str, str]) -> tuple[dict, int, bool]:
    """``(state, iterations done, finished)`` from a checkpoint whose key is ``key``.

    Raises
    ------
    CheckpointError
        The file is not a checkpoint, or was made from another recipe, load
        options or input (the message names which).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["__header__"]))
            state = {n[len("state/"):]: z[n] for n in z.files if n.startswith("state/")}
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(path, f"is not a readable checkpoint ({exc}).",
                              "Delete it or choose another checkpoint path.") from None
    if header.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(path, f"is a checkpoint of version {header.get('version')}, "
                              f"this version reads {CHECKPOINT_VERSION}.", "Delete it to start afresh.")
    if header.get("key") != key:
        theirs = header.get("parts", {})
        differ = [k for k in parts if theirs.get(k) != parts[k]] or ["key"]
        raise CheckpointError(
            path, f"was written for another run: its {', '.join(differ)} differ from this run's, "
            "so it is not resumed (nor overwritten).",
            "Delete it, or pass another checkpoint path, to start afresh; or rerun with the "
            "recipe and input it was made from.")
    for name in header.get("scalars", []):
        state[name] = state[name][()]
    return state, int(header["iteration"]), bool(header.get("done"))
