"""Results of a recipe run, and their HDF5 files (with the recipe beside the arrays).

A results file holds, at its root:

``recipe``       the recipe as JSON text (so the analysis can be rerun),
``calibration``  the calibration used, as JSON text,
``provenance``   JSON text: package version, input file name/size/mtime, start and end time,
``results/``     one dataset (arrays) or group (typed containers) per step label.

Files are written atomically: to a temporary name in the same folder, then renamed.

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
from typing import Any, Callable, Iterator

import h5py
import numpy as np

from ..core import registry
from ..core.calibration import Calibration
from ..core.errors import FileFormatError
from ..core.recipe import Recipe

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
    """

    def __init__(self, values: Mapping[str, Any], recipe: Recipe, provenance: Mapping[str, Any] | None = None):
        self._values = dict(values)
        self.recipe = recipe
        self.provenance = dict(provenance or {})

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(f"no result {key!r}; results are {', '.join(self._values) or '(none)'}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Results({', '.join(self._values)})"

    def save(self, path: str | os.PathLike) -> str:
        """Write an HDF5 results file atomically; returns the path written."""
        path = os.fspath(path)
        tmp = atomic_path(path)
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["fourd_widgets_results"] = RESULTS_FORMAT_VERSION
                f.create_dataset("recipe", data=self.recipe.to_json())
                cal = self.recipe.calibration or Calibration()
                f.create_dataset("calibration", data=cal.to_json())
                f.create_dataset("provenance", data=json.dumps(self.provenance, default=str))
                g = f.create_group("results")
                for k, v in self._values.items():
                    _write_value(g, k, v)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Results":
        """Read a results file written by :meth:`save` (read-only)."""
        path = os.fspath(path)
        try:
            f = h5py.File(path, "r")
        except (OSError, ValueError) as exc:
            raise FileFormatError(path, f"cannot open as a results file ({exc}).") from None
        with f:
            if "fourd_widgets_results" not in f.attrs or "recipe" not in f:
                raise FileFormatError(path, "is not a fourd_widgets results file (no recipe inside).")
            version = int(f.attrs["fourd_widgets_results"])
            if version > RESULTS_FORMAT_VERSION:
                raise FileFormatError(path, f"results format {version} is newer than this fourd_widgets reads.",
                                      "Upgrade fourd_widgets.")
            recipe = Recipe.from_json(f["recipe"].asstr()[()])
            prov = json.loads(f["provenance"].asstr()[()]) if "provenance" in f else {}
            values = {k: _read_value(f["results"][k]) for k in f["results"]}
        return cls(values, recipe, prov)
