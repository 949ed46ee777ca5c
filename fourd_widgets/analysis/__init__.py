"""Analysis steps, one module per step family; the public names come from the step manifest.

Nothing is imported until it is used: ``fourd_widgets.analysis.find_disks`` imports
:mod:`.disks` on first access (module ``__getattr__``), so a script that needs one
step does not load them all. Which module holds which name is declared in
``fourd_widgets/manifest/*.json`` (:mod:`fourd_widgets.core.registry`).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..core import registry
# imported here, not on first use: importing the submodule .run would otherwise
# leave the package attribute ``run`` pointing at the module instead of the function
from .run import run

#: Modules of this package reachable as attributes (``fw.analysis.strain``).
_MODULES = ("calibration", "detectors", "disk_lattice", "disk_refine", "disks", "fourier_filters", "interactive",
            "lattice_basis", "peak_calibration", "peaks", "probe", "steps", "strain", "virtual")


def _names() -> dict[str, str]:
    out: dict[str, str] = {}
    for fam in registry.families().values():
        out.update(fam.exports)
    return out


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    path = _names().get(name)
    if path is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return registry.resolve(path)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULES) | set(_names()))


__all__ = sorted(set(_names()) | {"run", "detectors", "calibration", "strain", "disk_lattice"})
