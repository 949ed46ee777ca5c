"""Results of a recipe run, and their HDF5 files (with the recipe beside the arrays).

A results file holds, at its root:

``recipe``       the recipe as JSON text (so the analysis can be rerun),
``calibration``  the calibration used, as JSON text,
``provenance``   JSON text: package version, input file name/size/mtime, start and end time,
``results/``     one dataset (arrays) or group (typed containers) per step label,

and the root attribute ``partial`` (true when the run was cancelled before every
step finished: :func:`fourd_widgets.run` then raises a ``CancelledError`` whose
``.partial`` holds the steps that did).

Files are written atomically and durably: to a temporary name in the same folder,
flushed to the disk (``fsync``), then renamed, and the folder flushed, so that a
power cut leaves either the old file or the whole new one. Reading a damaged file
ends in a :class:`~fourd_widgets.errors.FileFormatError` naming it, whatever part
is damaged.

Typed results are stored as groups tagged with a container name: ``calibration``
(a :class:`~fourd_widgets.core.Calibration` as JSON), ``dict`` (a group per key),
and the containers of the step manifest (:mod:`fourd_widgets.core.registry`), whose
classes write and read themselves (``to_h5(group)``, ``from_h5(group)``). Reading
a tag imports only the class the manifest names for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from ..core import registry
from ..core.calibration import Calibration
from ..core.errors import FileFormatError, FourDError
from ..core.recipe import Recipe

if TYPE_CHECKING:  # h5py is imported when a file is read or written (import fourd_widgets stays light)
    import h5py

__all__ = ["Results", "register_container", "atomic_path", "RESULTS_FORMAT_VERSION"]

RESULTS_FORMAT_VERSION = 1

# Containers registered at run time (tests, notebooks): name -> (class, write(group,
# value), read(group) -> value). The package's own are in the step manifest.
_CONTAINERS: dict[str, tuple[type, Callable[[h5py.Group, Any], None], Callable[[h5py.Group], Any]]] = {}


def register_container(name: str, cls: type, write: Callable[[h5py.Group, Any], None],
                       read: Callable[[h5py.Group], Any]) -> None:
    """Teach results files to store instances of ``cls`` under the tag ``name``."""
    _CONTAINERS[name] = (cls, write, read)


def _write_value(parent: h5py.Group, key: str, value: Any) -> None:
    if isinstance(value, Calibration):
        g = parent.create_group(key)
        g.attrs["container"] = "calibration"
        g.create_dataset("json", data=value.to_json())
        return
    tag = registry.container_tag(value)
    if tag is not None:
        g = parent.create_group(key)
        g.attrs["container"] = tag
        value.to_h5(g)
        return
    for name, (cls, write, _read) in _CONTAINERS.items():
        if isinstance(value, cls):
            g = parent.create_group(key)
            g.attrs["container"] = name
            write(g, value)
            return
    if isinstance(value, Mapping):
        g = parent.create_group(key)
        g.attrs["container"] = "dict"
        for k, v in value.items():
            _write_value(g, str(k), v)
        return
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"result {key!r} of type {type(value).__name__} cannot be stored in a results file")
    parent.create_dataset(key, data=arr, compression="gzip" if arr.size > 4096 else None)


def _read_value(node: h5py.Group | h5py.Dataset) -> Any:
    import h5py

    if isinstance(node, h5py.Dataset):
        return node[()]
    tag = node.attrs.get("container", "dict")
    if tag == "dict":
        return {k: _read_value(node[k]) for k in node}
    if tag == "calibration":
        return Calibration.from_dict(json.loads(node["json"].asstr()[()]))
    cls = registry.container_class(tag)
    if cls is not None:
        return cls.from_h5(node)
    if tag not in _CONTAINERS:
        raise FileFormatError(node.file.filename, f"result {node.name} is a {tag!r}, which this version cannot read.",
                              "Upgrade fourd_widgets.")
    return _CONTAINERS[tag][2](node)


def atomic_path(path: str | os.PathLike) -> str:
    """Temporary name beside ``path`` for an atomic write (same folder, so rename is atomic)."""
    path = os.fspath(path)
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, f".{base}.partial-{os.getpid()}")


class Results(Mapping):
    """What ``fw.run`` returns: step label -> result, with the recipe and provenance.

    Parameters
    ----------
    values : dict
        Results by step label (arrays or registered containers).
    recipe : Recipe
        The recipe that made them.
    provenance : dict
        Package version, input file, times.
    partial : bool
        True for the results of a cancelled run (the steps finished before the
        cancel); saved with the file, and never counted as done by a batch.
    """

    def __init__(self, values: Mapping[str, Any], recipe: Recipe, provenance: Mapping[str, Any] | None = None,
                 *, partial: bool = False):
        self._values = dict(values)
        self.recipe = recipe
        self.provenance = dict(provenance or {})
        #: True when the run was cancelled: only the steps finished before are here.
        self.partial = bool(partial)

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            why = " (partial results: the run was cancelled before that step finished)" if (
                self.partial and key in self.recipe.labels) else ""
            raise KeyError(f"no result {key!r}{why}; results are {', '.join(self._values) or '(none)'}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Results({', '.join(self._values)}{'; partial' if self.partial else ''})"

    def save(self, path: str | os.PathLike) -> str:
        """Write an HDF5 results file atomically and durably; returns the path written.

        The file is written under a temporary name beside ``path``, flushed to the
        disk, renamed to ``path``, and the folder flushed (the rename itself).

        Raises
        ------
        FileFormatError
            If ``path`` is a folder, its folder does not exist, or the file cannot
            be written there (permissions, disk full...); nothing is left behind.
        TypeError
            If a result cannot be stored in a results file.
        """
        import h5py

        path = os.fspath(path)
        _check_writable_target(path)
        tmp = atomic_path(path)
        try:
            try:
                with h5py.File(tmp, "w") as f:
                    f.attrs["fourd_widgets_results"] = RESULTS_FORMAT_VERSION
                    f.attrs["partial"] = self.partial
                    f.create_dataset("recipe", data=self.recipe.to_json())
                    cal = self.recipe.calibration or Calibration()
                    f.create_dataset("calibration", data=cal.to_json())
                    f.create_dataset("provenance", data=json.dumps(self.provenance, default=str))
                    g = f.create_group("results")
                    for k, v in self._values.items():
                        _write_value(g, k, v)
                _fsync(tmp)  # the bytes are on the disk before the name says "done"
                os.replace(tmp, path)
            except OSError as exc:  # no permission, disk full...
                raise FileFormatError(path, f"cannot be written ({_os_reason(exc)}).",
                                      "Save the results to a folder you can write in, with room.") from None
            _fsync(os.path.dirname(os.path.abspath(path)))  # and so is the rename
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Results":
        """Read a results file written by :meth:`save` (read-only).

        Raises
        ------
        FileFormatError
            Naming the file, if it is missing, not a results file, from a newer
            fourd_widgets, or damaged anywhere (what could not be read is said).
        """
        import h5py

        path = os.fspath(path)
        try:
            f = h5py.File(path, "r")
        except Exception as exc:  # noqa: BLE001 - OSError mostly; a damaged superblock may raise others
            raise FileFormatError(path, f"cannot open as a results file ({exc}).") from None
        part = "its layout"
        try:
            with f:
                if "fourd_widgets_results" not in f.attrs or "recipe" not in f:
                    raise FileFormatError(path, "is not a fourd_widgets results file (no recipe inside).")
                version = _format_version(f.attrs["fourd_widgets_results"])
                if version is None:
                    raise FileFormatError(path, "is damaged: its results format version is not a number.")
                if version > RESULTS_FORMAT_VERSION:
                    raise FileFormatError(path, f"results format {version} is newer than this fourd_widgets "
                                                "reads.", "Upgrade fourd_widgets.")
                partial = bool(np.asarray(f.attrs.get("partial", False)).item())
                part = "the recipe"
                recipe = Recipe.from_json(f["recipe"].asstr()[()])
                part = "the provenance"
                prov = json.loads(f["provenance"].asstr()[()]) if "provenance" in f else {}
                if not isinstance(prov, dict):
                    raise FileFormatError(path, "is damaged: its provenance is not a JSON object.")
                part = "the list of results"
                values = {}
                for k in f["results"]:
                    part = f"result {k!r}"
                    values[k] = _read_value(f["results"][k])
        except FileFormatError as exc:
            if exc.path is None:
                raise FileFormatError(path, exc.problem, exc.hint) from None
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to read a damaged file is the file's
            what = str(exc) if isinstance(exc, FourDError) else f"{type(exc).__name__}: {exc}"
            raise FileFormatError(path, f"is damaged: {part} cannot be read ({what}).",
                                  "Recompute it from its recipe, or restore a copy.") from exc
        rank = {label: i for i, label in enumerate(recipe.labels)}  # the recipe's order, not HDF5's (by name)
        values = dict(sorted(values.items(), key=lambda kv: rank.get(kv[0], len(rank))))
        return cls(values, recipe, prov, partial=partial)


def _format_version(value: Any) -> int | None:
    try:
        v = np.asarray(value)
        if v.shape != () or v.dtype.kind not in "iu":
            return None
        return int(v)
    except (TypeError, ValueError):
        return None


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _check_writable_target(path: str) -> None:
    """Refuse, naming ``path``, a target that is a folder or lies in a folder that does not exist."""
    if os.path.isdir(path):
        raise FileFormatError(path, "is a folder; a results file needs a file name.",
                              f"Save to a name in it, such as {os.path.join(path, 'results.h5')}.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise FileFormatError(path, f"cannot be written: the folder {folder} {what}.",
                              "Create the folder first, or save elsewhere.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileFormatError(path, f"cannot be written: no permission to write in the folder {folder}.",
                              "Save the results to a folder you can write in.")


def _fsync(path: str) -> None:
    """Flush a file, or a folder's entries, to the disk (a folder is skipped where it cannot be opened)."""
    folder = os.path.isdir(path)
    try:
        fd = os.open(path, (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if folder else os.O_RDWR)
    except OSError:
        if folder:
            return  # Windows cannot open folders
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
        # some file systems cannot flush a folder (EINVAL); the file itself is flushed and in place
    finally:
        os.close(fd)
