"""What a recipe step sees besides its cube and record, and run-time step registration.

The steps of the package are declared in the manifest (:mod:`fourd_widgets.core.registry`);
``fw.run`` finds them there. A step's recipe adapter has the signature
``fn(cube, params, context) -> result`` and must be pure: everything it needs
comes from the cube, the record, and results of earlier steps in ``context``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from ..core import registry
from ..core.calibration import Calibration
from ..core.errors import ParameterError
from ..core.params import Params

__all__ = ["RunContext", "register_step", "step_function", "StepFunction", "current_calibration", "ENGINE_OPTIONS",
           "split_engine", "own_record", "deprecated_keyword", "renamed_keyword"]


@dataclass
class RunContext:
    """What a step may use besides its cube and record.

    Attributes
    ----------
    results : dict
        Results of the earlier steps of the recipe, by label.
    engine : dict
        Options for :func:`fourd_widgets.engine.run_job` (scheduler, workers,
        chunk_bytes, progress, cancel, on_partial).
    """

    results: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)


StepFunction = Callable[[Any, Params, RunContext], Any]


def register_step(params_cls: type[Params], fn: StepFunction, *, calibration: bool = False) -> StepFunction:
    """Make ``fn(cube, params, context)`` run records of ``params_cls`` in this process (tests, notebooks).

    Steps of the package are declared in a manifest file instead
    (:mod:`fourd_widgets.core.registry`).
    """
    registry.register_step(params_cls, fn, calibration=calibration)
    return fn


def step_function(params: Params) -> StepFunction:
    """The recipe adapter ``fn(cube, params, context)`` of this record's step."""
    return registry.step(params.step).runner()


def current_calibration(cube: Any, context: RunContext | None) -> Calibration:
    """The calibration a step works with: the cube's, which ``fw.run`` replaces by
    each earlier calibration step's result (``context`` is kept for callers)."""
    return cube.calibration


#: Keyword arguments of the engine (:func:`fourd_widgets.engine.run_job`) every pass over a cube accepts.
ENGINE_OPTIONS = frozenset({"chunk_bytes", "scheduler", "workers", "progress", "cancel", "on_partial"})


def split_engine(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(engine options, record overrides)`` of a function's ``**options``."""
    engine = {k: v for k, v in options.items() if k in ENGINE_OPTIONS}
    return engine, {k: v for k, v in options.items() if k not in ENGINE_OPTIONS}


def own_record(params: Any, cls: type[Params], overrides: dict[str, Any], where: str) -> Any:
    """``params`` (default ``cls()``) checked to be a ``cls`` record, with ``overrides`` applied."""
    if params is None:
        params = cls()
    if not isinstance(params, cls):
        raise ParameterError(f"{where} takes a {cls.__name__} record as its params, got {type(params).__name__}",
                             field="params")
    return params.replace(**overrides) if overrides else params


def deprecated_keyword(options: dict[str, Any], old: str, new: str, where: str, stacklevel: int = 3) -> None:
    """Move ``options[old]`` to ``options[new]`` with a DeprecationWarning (kept for one release).

    ``stacklevel`` 3 points the warning at the caller of the function that calls this.
    """
    if old in options:
        warnings.warn(f"{where}: {old}= is deprecated, use {new}=", DeprecationWarning, stacklevel=stacklevel)
        if new in options:
            raise ParameterError(f"{where}: give {new}= only (not also {old}=)", field=new)
        options[new] = options.pop(old)


def renamed_keyword(deprecated: dict[str, Any], old: str, new: str, value: Any, where: str) -> Any:
    """``value``, or the one in ``deprecated[old]`` (with a DeprecationWarning); refuses other keywords."""
    if not deprecated:
        return value
    if value is not None and old in deprecated:
        raise ParameterError(f"{where}: give {new}= only (not also {old}=)", field=new)
    if value is not None:
        deprecated[new] = value
    deprecated_keyword(deprecated, old, new, where, stacklevel=4)
    extra = sorted(set(deprecated) - {new})
    if extra:
        raise TypeError(f"{where}() got an unexpected keyword argument {extra[0]!r}")
    return deprecated.get(new)
