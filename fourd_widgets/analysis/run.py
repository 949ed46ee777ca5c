"""``fw.run(recipe, cube)``: replay a recipe headless."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Any

from .._version import __version__
from ..core import registry
from ..core.datacube import DataCube
from ..core.errors import CancelledError, ParameterError
from ..core.params import Params
from ..core.recipe import Recipe
from ..io.results import Results
from .steps import RunContext

__all__ = ["run", "input_reference"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def input_reference(cube: DataCube) -> dict[str, Any]:
    """Name, size, modification time and shape of the cube's input file (for provenance)."""
    ref: dict[str, Any] = {"shape": list(cube.shape), "dtype": str(cube.dtype)}
    src = cube.source or {}
    path = src.get("path")
    if path:
        ref["path"] = os.fspath(path)
        ref["format"] = src.get("format")
        try:
            st = os.stat(path)
            ref["size"] = st.st_size
            ref["mtime"] = datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat()
        except OSError:
            pass
        if src.get("options"):
            ref["options"] = src["options"]
    return ref


def run(recipe: Recipe | Params | list, cube: DataCube, **engine: Any) -> Results:
    """Run every step of ``recipe`` on ``cube`` and return the :class:`Results`.

    Parameters
    ----------
    recipe : Recipe, a single step record, or a list of records
        What to run. The recipe's calibration, if it has one, replaces the cube's.
    cube : DataCube
        The data; it is not modified.
    **engine
        Options for the engine: ``scheduler``, ``workers``, ``chunk_bytes``,
        ``progress``, ``cancel``.

    Returns
    -------
    Results
        Step label -> result, with the recipe (completed with the input
        reference and calibration used) and provenance.

    Raises
    ------
    CancelledError
        When ``cancel`` is set before every step finished. Its ``.partial`` is a
        :class:`Results` marked ``partial=True`` holding the steps that finished
        (the whole recipe, so that a rerun does everything); its provenance says
        which step was cancelled.
    """
    if isinstance(recipe, Params):
        recipe = Recipe(steps=(recipe,))
    elif isinstance(recipe, (list, tuple)):
        recipe = Recipe(steps=tuple(recipe))
    if not isinstance(recipe, Recipe):
        raise ParameterError(f"fw.run needs a Recipe or parameter records, got {type(recipe).__name__}")
    if not isinstance(cube, DataCube):
        raise ParameterError(f"fw.run needs a DataCube, got {type(cube).__name__}; open files with fw.load(path)")
    if recipe.calibration is not None:
        cube = cube.with_calibration(recipe.calibration)
    started = _now()
    initial = cube.calibration
    context = RunContext(engine=dict(engine))

    def results(**extra: Any) -> Results:
        ref = input_reference(cube)
        done = Recipe(recipe.steps, initial, recipe.input or ref, recipe.labels)
        provenance = {
            "fourd_widgets_version": __version__,
            "python": platform.python_version(),
            "host": platform.node(),
            "input": ref,
            "started": started,
            "finished": _now(),
            **extra,
        }
        return Results(context.results, done, provenance, partial=bool(extra))

    for index, (label, step) in enumerate(recipe):
        entry = registry.step(step.step)
        try:
            result = entry.runner()(cube, step, context)
        except CancelledError as exc:
            finished = list(context.results)
            partial = results(cancelled={"step": label, "finished": finished,
                                         "not_run": list(recipe.labels[index:]), "message": str(exc)})
            err = CancelledError(
                f"fw.run cancelled during step {label!r} ({index + 1} of {len(recipe)}): {exc}. "
                + (f"The results of the steps finished before it ({', '.join(finished)}) are in this "
                   "error's .partial (Results with partial=True)." if finished else
                   "No step had finished; this error's .partial holds no result."))
            err.partial = partial  # type: ignore[attr-defined]
            for name in ("state", "iteration"):  # an iterative step's own state, if it kept one
                if hasattr(exc, name):
                    setattr(err, name, getattr(exc, name))
            raise err from exc
        context.results[label] = result
        if entry.calibration:
            # the manifest says this step (origin, ellipse, pixel size...) yields the
            # calibration every later step of the recipe works with
            cube = cube.with_calibration(result)
    return results()
