"""fourd_widgets: interactive 4D-STEM analysis in Jupyter.

Usage::

    import fourd_widgets as fw
    cube = fw.load("scan.h5")                                  # any supported file, lazily
    bf = fw.virtual_image(cube, fw.detectors.Circle(center=(64, 64), radius=8))
    cube, truth = fw.datasets.sample("strained_crystal")       # simulated, with ground truth
    peaks = fw.disks.find_disks(cube)                          # each step family is a namespace

Every name is imported on first use (module ``__getattr__``), so ``import
fourd_widgets`` loads no analysis, kernel or widget module (only core, io and the
engine, which runs ``DataCube``'s pattern passes). The analysis names,
their families (``fw.virtual``, ``fw.disks``, ``fw.calibration``, ``fw.strain``...)
and the tools come from the step manifest (:mod:`fourd_widgets.core.registry`).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# The engine is imported here, not on first use: it runs DataCube's pattern passes
# (mean, max, median), and importing it registers them with core (which may not
# import the engine itself). It loads no kernels or analysis.
from . import engine, errors
from ._version import __version__
from .core import registry

# Names of the package itself (not analysis steps): name -> "module:attribute" or "module".
_FIXED = {
    "datasets": "fourd_widgets.datasets",
    "engine": "fourd_widgets.engine",
    "analysis": "fourd_widgets.analysis",
    "detectors": "fourd_widgets.analysis.detectors",
    "Calibration": "fourd_widgets.core.calibration:Calibration",
    "DataCube": "fourd_widgets.core.datacube:DataCube",
    "Params": "fourd_widgets.core.params:Params",
    "Recipe": "fourd_widgets.core.recipe:Recipe",
    "Results": "fourd_widgets.io.results:Results",
    "load": "fourd_widgets.io.load:load",
    "describe": "fourd_widgets.io:describe",
    "run": "fourd_widgets.analysis.run:run",
    "ImageView": "fourd_widgets.widgets:ImageView",
}


def _lazy() -> dict[str, str]:
    out = dict(registry.exports())
    for tool in registry.tools():
        out.setdefault(tool.view.partition(":")[2], tool.view)
    out.update(_FIXED)
    return out


def _family(name: str) -> types.ModuleType:
    """The namespace ``fw.<family>``: the family's exports, each imported on first use."""
    full = f"{__name__}.{name}"
    if full in sys.modules:
        return sys.modules[full]
    fam = registry.families()[name]
    mod = types.ModuleType(full, f"{fam.title}: {fam.summary}.")

    def getattr_(attr: str) -> Any:
        path = fam.exports.get(attr)
        if path is None:
            raise AttributeError(f"fw.{name} has no attribute {attr!r}; it has {', '.join(sorted(fam.exports))}")
        value = registry.resolve(path)
        setattr(mod, attr, value)
        return value

    mod.__getattr__ = getattr_  # type: ignore[attr-defined]
    mod.__all__ = sorted(fam.exports)  # type: ignore[attr-defined]
    mod.__dir__ = lambda: sorted(fam.exports)  # type: ignore[attr-defined]
    sys.modules[full] = mod
    return mod


def __getattr__(name: str) -> Any:
    if name in registry.families():
        value: Any = _family(name)
    else:
        path = _lazy().get(name)
        if path is None:
            raise AttributeError(f"module 'fourd_widgets' has no attribute {name!r}")
        value = registry.resolve(path) if ":" in path else importlib.import_module(path)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_lazy()) | set(registry.families()))


__all__ = sorted({"__version__", "errors"} | set(_lazy()) | set(registry.families()))
