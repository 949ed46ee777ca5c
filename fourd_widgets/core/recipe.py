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

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from .calibration import Calibration
from .errors import FourDError, ParameterError
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
        for lab in labels:  # before the uniqueness test, which needs hashable labels
            if not isinstance(lab, str) or not lab or "/" in lab:
                raise ParameterError(f"a recipe label must be a non-empty string without '/', got {lab!r}",
                                     field="labels")
        if len(set(labels)) != len(labels):
            raise ParameterError(f"recipe labels must be unique, got {list(labels)}", field="labels")
        object.__setattr__(self, "labels", labels)
        if self.calibration is not None and not isinstance(self.calibration, Calibration):
            raise ParameterError("recipe calibration must be a Calibration", field="calibration")
        if self.input is not None:
            if not isinstance(self.input, Mapping):
                raise ParameterError(f"recipe input must be an object (file name, size, shape...) or null, "
                                     f"got {_shown(self.input)}", field="input")
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
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ParameterError(f"recipe schema_version must be a positive integer, got {_shown(version)}",
                                 field="schema_version")
        if version > RECIPE_SCHEMA_VERSION:
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
            with _refused(f"recipe step {i}"):
                steps.append(record_from_dict(s))
        cal = d.get("calibration")
        with _refused("recipe calibration", "calibration"):
            calibration = None if cal is None else Calibration.from_dict(cal)
        labels = d.get("labels") or ()
        if not isinstance(labels, (list, tuple)):
            raise ParameterError(f"recipe labels must be a list of names, got {_shown(labels)}", field="labels")
        return cls(steps=tuple(steps), calibration=calibration, input=d.get("input"), labels=tuple(labels))

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
        """Rebuild a recipe from its JSON text (see :meth:`from_dict`)."""
        try:
            d = json.loads(text, parse_int=_parse_int)
        except ParameterError:
            raise
        except RecursionError:
            raise ParameterError("recipe is not valid JSON: it nests lists or objects too deeply") from None
        except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
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
        """Read a recipe JSON file.

        Raises
        ------
        FileFormatError
            If the file cannot be read, or is not UTF-8 text.
        ParameterError
            If the recipe in it is refused; the message starts with the file's name.
        """
        from .errors import FileFormatError

        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise FileFormatError(path, f"cannot read the recipe ({exc.strerror or exc}).") from None
        except UnicodeDecodeError as exc:
            raise FileFormatError(path, f"is not a recipe: not UTF-8 text (byte {exc.start}).",
                                  "A recipe is the JSON file a widget or fw.Recipe.save wrote.") from None
        try:
            return cls.from_json(text)
        except ParameterError as exc:
            raise ParameterError(f"{os.fspath(path)}: {exc}", field=exc.field) from None


def _parse_int(digits: str) -> int:
    # Python refuses to convert integers of more than sys.get_int_max_str_digits() digits
    # (4300), saying how to raise that limit; say what is wrong with the recipe instead.
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    if limit and len(digits.lstrip("-")) > limit:
        raise ParameterError(f"recipe holds an integer of {len(digits.lstrip('-'))} digits "
                             f"({digits[:12]}...); no parameter takes one so large")
    return int(digits)


def _shown(value: Any) -> str:
    """``value`` for a message: its repr cut short, and its JSON type."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


@contextlib.contextmanager
def _refused(where: str, field: str | None = None) -> Iterator[None]:
    """Any refusal inside as a ParameterError that starts with ``where``.

    A record read from a file may hold values its own checks did not foresee
    (a ragged list where an array goes, a number too large for a float); what
    they raise is reported as the recipe's error, naming the step, with the
    original exception chained for a bug report.
    """
    try:
        yield
    except ParameterError as exc:
        raise ParameterError(f"{where}: {exc}", field=exc.field or field) from None
    except FourDError as exc:
        raise ParameterError(f"{where}: {exc}", field=field) from None
    except (TypeError, ValueError, ArithmeticError, IndexError, KeyError, RecursionError) as exc:
        raise ParameterError(f"{where}: cannot be read ({type(exc).__name__}: {exc})", field=field) from exc
