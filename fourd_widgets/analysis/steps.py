"""The registry that ties each parameter record to the function that runs it.

Analysis modules call :func:`register_step` for their record class;
``fw.run`` looks steps up here. A step function has the signature
``fn(cube, params, context) -> result`` and must be pure: everything it needs
comes from the cube, the record, and results of earlier steps in ``context``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..core.errors import ParameterError
from ..core.params import Params

__all__ = ["RunContext", "register_step", "step_function", "StepFunction"]


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
_STEPS: dict[type[Params], StepFunction] = {}


def register_step(params_cls: type[Params], fn: StepFunction) -> StepFunction:
    """Register ``fn`` as the function that runs records of ``params_cls``."""
    if not params_cls.step:
        raise TypeError(f"{params_cls.__name__} has no step name")
    _STEPS[params_cls] = fn
    return fn


def step_function(params: Params) -> StepFunction:
    """The function registered for this record's class."""
    fn = _STEPS.get(type(params))
    if fn is None:
        raise ParameterError(
            f"step {params.step!r} cannot be run: no analysis is registered for it "
            f"(runnable steps: {', '.join(sorted(c.step for c in _STEPS))})",
            field="step",
        )
    return fn
