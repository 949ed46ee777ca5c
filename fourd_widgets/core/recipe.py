"""Recipe: an ordered list of step records plus the calibration, saved as JSON.

A recipe replays an analysis headless: ``fw.run(recipe, cube)``. Each step has
a label (the key of its result); by default the step name, with ``_2``, ``_3``
... appended when a step repeats.

Examples
--------
>>> from fourd_widgets.core.calibration import Calibration
>>> r = Recipe(steps=(), calibration=Calibration(real_step=2.0))
>>> Recipe.from_json(r.to_json()) == r
True
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .calibration import Calibration
from .errors import ParameterError
from .params import Params, record_from_dict

__all__ = ["Recipe", "RECIPE_SCHEMA_VERSION"]

RECIPE_SCHEMA_VERSION = 1
_KEYS = {"type", "schema_version", "steps", "calibration", "input", "labels", "fourd_widgets_version"}


def _default_labels(steps: Sequence[Params]) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    out = []
    for s in steps:
        seen[s.step] = seen.get(s.step, 0) + 1
        out.append(s.step if seen[s.step] == 1 else f"{s.step}_{seen[s.step]}")
    return tuple(out)


@dataclass(frozen=True, eq=False)
class Recipe:
    """Steps to replay, in order, with the calibration they assume.

    Parameters
    ----------
    steps : sequence of Params
        The step records.
    calibration : Calibration, optional
        Applied to the cube before the first step; None keeps the cube's own.
    input : dict, optional
        Reference to the data it was made on (file name, size, shape), for the record.
    labels : sequence of str, optional
        Result names, one per step; defaults to the step names made unique.
    """

    steps: tuple[Params, ...] = ()
    calibration: Calibration | None = None
    input: Mapping[str, Any] | None = None
    labels: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        for i, s in enumerate(steps):
            if not isinstance(s, Params):
                raise ParameterError(f"recipe step {i} is a {type(s).__name__}, not a parameter record",
                                     field=f"steps[{i}]")
        object.__setattr__(self, "steps", steps)
        labels = tuple(self.labels) if self.labels else _default_labels(steps)
        if len(labels) != len(steps):
            raise ParameterError(f"a recipe needs one label per step: {len(labels)} labels for {len(steps)} steps",
                                 field="labels")
        if len(set(labels)) != len(labels):
            raise ParameterError(f"recipe labels must be unique, got {list(labels)}", field="labels")
        for lab in labels:
            if not isinstance(lab, str) or not lab or "/" in lab:
                raise ParameterError(f"a recipe label must be a non-empty string without '/', got {lab!r}",
                                     field="labels")
        object.__setattr__(self, "labels", labels)
        if self.calibration is not None and not isinstance(self.calibration, Calibration):
            raise ParameterError("recipe calibration must be a Calibration", field="calibration")
        if self.input is not None:
            object.__setattr__(self, "input", dict(self.input))

    def __iter__(self):
        return iter(zip(self.labels, self.steps))

    def __len__(self) -> int:
        return len(self.steps)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Recipe):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def then(self, step: Params, label: str | None = None) -> "Recipe":
        """A new recipe with ``step`` appended."""
        steps = self.steps + (step,)
        if label is None:
            n = 1 + sum(1 for s in self.steps if s.step == step.step)
            label = step.step if n == 1 else f"{step.step}_{n}"
            while label in self.labels:
                n += 1
                label = f"{step.step}_{n}"
        labels = self.labels + (label,)
        return Recipe(steps, self.calibration, self.input, labels)

    def to_dict(self) -> dict[str, Any]:
        from .._version import __version__

        return {
            "type": "recipe",
            "schema_version": RECIPE_SCHEMA_VERSION,
            "fourd_widgets_version": __version__,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "input": None if self.input is None else dict(self.input),
            "labels": list(self.labels),
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Recipe":
        """Rebuild a recipe; every step record is validated strictly."""
        if not isinstance(d, Mapping):
            raise ParameterError(f"a recipe must be a JSON object, got {type(d).__name__}")
        if d.get("type", "recipe") != "recipe":
            raise ParameterError(f"expected a recipe, got type {d.get('type')!r}", field="type")
        version = d.get("schema_version", RECIPE_SCHEMA_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version > RECIPE_SCHEMA_VERSION:
            raise ParameterError(
                f"recipe schema_version {version!r} is newer than this fourd_widgets understands "
                f"({RECIPE_SCHEMA_VERSION}); upgrade fourd_widgets", field="schema_version")
        unknown = sorted(set(d) - _KEYS)
        if unknown:
            raise ParameterError(f"recipe: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(_KEYS))}",
                                 field=unknown[0])
        raw_steps = d.get("steps", [])
        if not isinstance(raw_steps, list):
            raise ParameterError("recipe steps must be a list", field="steps")
        steps = []
        for i, s in enumerate(raw_steps):
            try:
                steps.append(record_from_dict(s))
            except ParameterError as exc:
                raise ParameterError(f"recipe step {i}: {exc}", field=exc.field) from None
        cal = d.get("calibration")
        return cls(
            steps=tuple(steps),
            calibration=None if cal is None else Calibration.from_dict(cal),
            input=d.get("input"),
            labels=tuple(d.get("labels") or ()),
        )

    @classmethod
    def coerce(cls, value: "Recipe | Mapping[str, Any] | str") -> "Recipe":
        """A Recipe from a Recipe, its dict or its JSON text (what tools' ``from_params`` accept)."""
        if isinstance(value, str):
            return cls.from_json(value)
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if not isinstance(value, cls):
            raise ParameterError(f"expected a Recipe, its dict or its JSON, got {type(value).__name__}")
        return value

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParameterError(f"recipe is not valid JSON: {exc}") from None
        return cls.from_dict(d)

    def save(self, path: str | os.PathLike) -> None:
        """Write the recipe as JSON (atomically: temporary name, then rename)."""
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_json())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Recipe":
        """Read a recipe JSON file."""
        from .errors import FileFormatError

        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise FileFormatError(path, f"cannot read the recipe ({exc.strerror or exc}).") from None
        try:
            return cls.from_json(text)
        except ParameterError as exc:
            raise ParameterError(f"{os.fspath(path)}: {exc}", field=exc.field) from None
