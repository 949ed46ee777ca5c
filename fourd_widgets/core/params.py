"""Parameter records: the typed, frozen, JSON-round-tripping truth of every step.

A step's parameters are a frozen dataclass deriving from :class:`Params`. Each
field is declared with :func:`param`, which documents its units and allowed
range; ``to_dict()`` gives a plain JSON dict carrying the step name and schema
version, and ``from_dict()`` refuses anything it does not understand, naming
the field. Loading never executes code: arrays travel as base64 of raw bytes
with an explicit, whitelisted dtype.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Blur(Params):
...     step = "example.blur"
...     sigma: float = param(1.0, units="px", ge=0, doc="Gaussian width")
>>> Blur.from_dict({"step": "example.blur", "schema_version": 1, "sigma": 2}).sigma
2.0
>>> Blur.from_dict({"step": "example.blur", "sigma": -1})
Traceback (most recent call last):
...
fourd_widgets.core.errors.ParameterError: example.blur.sigma: -1.0 is out of range; allowed: >= 0 (px)
"""

from __future__ import annotations

import base64
import dataclasses
import math
import types
import typing
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from . import registry
from .errors import ParameterError

__all__ = ["Params", "param", "record_from_dict", "registered_steps", "encode_array", "decode_array"]

_REGISTRY: dict[str, type["Params"]] = {}
_ARRAY_KINDS = {"b", "i", "u", "f", "c"}


def param(
    default: Any = dataclasses.MISSING,
    *,
    units: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
    doc: str = "",
) -> Any:
    """Declare a record field with its units, allowed range and meaning."""
    meta = {"units": units, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "doc": doc}
    if isinstance(default, (list, dict, np.ndarray)):
        raise TypeError("record defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=meta)


def encode_array(a: np.ndarray) -> dict:
    """JSON form of an array: dtype, shape and base64 of little-endian C-order bytes."""
    a = np.asarray(a)
    if a.dtype.kind not in _ARRAY_KINDS:
        raise ParameterError(f"arrays of dtype {a.dtype} cannot be stored in a record")
    le = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return {"__ndarray__": True, "dtype": le.dtype.str, "shape": list(a.shape),
            "data": base64.b64encode(le.tobytes()).decode("ascii")}


def decode_array(d: Mapping, where: str = "array") -> np.ndarray:
    """Inverse of :func:`encode_array`; refuses anything but plain numeric dtypes."""
    try:
        dt = np.dtype(str(d["dtype"]))
        shape = tuple(int(n) for n in d["shape"])
        raw = base64.b64decode(str(d["data"]), validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise ParameterError(f"{where}: not a valid stored array ({exc})", field=where) from None
    if dt.kind not in _ARRAY_KINDS or dt.hasobject:
        raise ParameterError(f"{where}: dtype {dt} is not allowed in a record", field=where)
    if any(n < 0 for n in shape):
        raise ParameterError(f"{where}: shape {list(shape)} has a negative size", field=where)
    if len(raw) != dt.itemsize * math.prod(shape):
        raise ParameterError(f"{where}: {len(raw)} bytes do not fill shape {shape} of {dt}", field=where)
    out = np.frombuffer(raw, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
    out.setflags(write=False)
    return out


def _describe_range(meta: Mapping) -> str:
    parts = []
    for key, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if meta.get(key) is not None:
            parts.append(f"{sym} {meta[key]}")
    text = " and ".join(parts)
    if meta.get("units"):
        text += f" ({meta['units']})"
    return text


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class Params:
    """Base of every step's parameter record (subclass with ``@dataclass(frozen=True)``).

    Class attributes
    ----------------
    step : str
        Unique step name, e.g. ``"virtual_image"``; the key of the registry.
    schema_version : int
        Bumped when fields change; older dicts pass through ``migrations``.
    migrations : dict[int, callable]
        ``migrations[v](d) -> d`` upgrades a dict from version ``v`` to ``v + 1``.
    """

    step: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1
    migrations: ClassVar[dict[int, Callable[[dict], dict]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Put our array-aware __eq__/__hash__ in the subclass's own dict so the
        # @dataclass decorator applied afterwards keeps them instead of
        # generating tuple comparisons that choke on array fields.
        if "__eq__" not in cls.__dict__:
            cls.__eq__ = Params.__eq__  # type: ignore[method-assign]
        if "__hash__" not in cls.__dict__:
            cls.__hash__ = Params.__hash__  # type: ignore[method-assign]
        name = cls.__dict__.get("step")
        if name:
            other = _REGISTRY.get(name)
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise TypeError(f"step name {name!r} is already used by {other.__qualname__}")
            _REGISTRY[name] = cls

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _coerce(getattr(self, f.name), hints[f.name], f"{self.step}.{f.name}")
            _check_range(value, f.metadata, f"{self.step}.{f.name}")
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; override and raise ParameterError naming the field."""

    # --- dict round trip ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict with ``step`` and ``schema_version``."""
        out: dict[str, Any] = {"step": self.step, "schema_version": self.schema_version}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _to_jsonable(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Params":
        """Rebuild a record, refusing unknown keys, wrong types, bad ranges, newer versions."""
        if not isinstance(d, Mapping):
            raise ParameterError(f"a {cls.step or 'parameter'} record must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        step = d.pop("step", cls.step)
        target = cls
        if step != cls.step:
            target = _lookup(step)  # type: ignore[assignment]
            if target is None or not issubclass(target, cls):
                allowed = sorted(n for n, c in _REGISTRY.items() if issubclass(c, cls) and n)
                raise ParameterError(
                    f"unknown step {step!r}" + (f"; expected one of {', '.join(allowed)}" if allowed else ""),
                    field="step",
                )
        version = d.pop("schema_version", target.schema_version)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ParameterError(f"{step}.schema_version must be a positive integer, got {version!r}",
                                 field="schema_version")
        if version > target.schema_version:
            raise ParameterError(
                f"{step}: schema_version {version} is newer than this fourd_widgets understands "
                f"({target.schema_version}); upgrade fourd_widgets to load this record",
                field="schema_version",
            )
        while version < target.schema_version:
            migrate = target.migrations.get(version)
            if migrate is None:
                raise ParameterError(
                    f"{step}: schema_version {version} is too old to migrate "
                    f"(current {target.schema_version}); re-create the record",
                    field="schema_version",
                )
            d = migrate(dict(d))
            version += 1
        names = [f.name for f in dataclasses.fields(target)]  # type: ignore[arg-type]
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ParameterError(
                f"{step}: unknown field {unknown[0]!r}; allowed fields: {', '.join(names) or '(none)'}",
                field=unknown[0],
            )
        return target(**d)

    def replace(self, **changes: Any) -> "Params":
        """A copy with some fields changed (validated)."""
        names = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        for k in changes:
            if k not in names:
                raise ParameterError(f"{self.step}: unknown field {k!r}", field=k)
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Field name, type, default, units, range and doc of each field (for UIs and docs)."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            rows.append({"name": f.name, "type": _type_name(hints[f.name]),
                         "default": None if f.default is dataclasses.MISSING else f.default,
                         **{k: v for k, v in f.metadata.items() if v is not None}})
        return rows

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return _to_jsonable(self) == _to_jsonable(other)

    def __hash__(self) -> int:
        import json

        return hash(json.dumps(self.to_dict(), sort_keys=True))


def record_from_dict(d: Mapping[str, Any]) -> Params:
    """Rebuild any registered record from its dict (dispatching on ``step``)."""
    if not isinstance(d, Mapping):
        raise ParameterError(f"a step record must be a JSON object, got {type(d).__name__}")
    step = d.get("step")
    cls = _lookup(step) if isinstance(step, str) else None
    if cls is None:
        known = sorted(set(_REGISTRY) | set(registry.manifest().steps))
        raise ParameterError(f"unknown step {step!r}; known steps: {', '.join(known)}", field="step")
    return cls.from_dict(d)


def _lookup(step: Any) -> type[Params] | None:
    """The record class of ``step``: defined already, or named by the step manifest (then imported)."""
    cls = _REGISTRY.get(step)
    if cls is None and isinstance(step, str):
        # the manifest names the record's module; importing it defines (and so registers) the class
        if registry.record_path(step) is not None:
            registry.record_class(step)
            cls = _REGISTRY.get(step)
    return cls


def registered_steps() -> dict[str, type[Params]]:
    """Copy of the step-name -> record class registry (records defined so far)."""
    return dict(_REGISTRY)


# --- coercion and validation -----------------------------------------------------
def _to_jsonable(v: Any) -> Any:
    if isinstance(v, Params):
        return v.to_dict()
    if isinstance(v, np.ndarray):
        return encode_array(v)
    if isinstance(v, tuple):
        return [_to_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _check_range(value: Any, meta: Mapping, where: str) -> None:
    if not meta:
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ParameterError(
            f"{where}: {value!r} is not allowed; choose one of {', '.join(map(repr, meta['choices']))}",
            field=where.split(".")[-1],
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        bad = ((meta.get("ge") is not None and not value >= meta["ge"])
               or (meta.get("gt") is not None and not value > meta["gt"])
               or (meta.get("le") is not None and not value <= meta["le"])
               or (meta.get("lt") is not None and not value < meta["lt"]))
        if bad:
            raise ParameterError(f"{where}: {value!r} is out of range; allowed: {_describe_range(meta)}",
                                 field=where.split(".")[-1])


def _fail(where: str, expected: str, value: Any) -> ParameterError:
    return ParameterError(f"{where}: expected {expected}, got {value!r} ({type(value).__name__})",
                          field=where.split(".")[-1])


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and normalise it (lists -> tuples...)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if isinstance(value, Mapping) and "step" in value:
            # a record: coerce with the type its step names, so its own error shows
            named = [a for a in options if isinstance(a, type) and issubclass(a, Params) and a.step == value["step"]]
            options = named or options
        if len(options) == 1:
            return _coerce(value, options[0], where)
        for a in options:
            try:
                return _coerce(value, a, where)
            except ParameterError:
                pass
        expected = " or ".join(_type_name(a) for a in args)
        raise _fail(where, expected, value)
    if origin is typing.Literal:
        if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
            return value
        raise ParameterError(f"{where}: {value!r} is not allowed; choose one of {', '.join(map(repr, args))}",
                             field=where.split(".")[-1])
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
            raise _fail(where, f"a list ({_type_name(tp)})", value)
        items = list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(x, args[0], f"{where}[{i}]") for i, x in enumerate(items))
        if len(items) != len(args):
            raise ParameterError(f"{where}: expected {len(args)} values, got {len(items)}",
                                 field=where.split(".")[-1])
        return tuple(_coerce(x, a, f"{where}[{i}]") for i, (x, a) in enumerate(zip(items, args)))
    if tp is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise _fail(where, "true or false", value)
    if tp is int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return int(value)
        raise _fail(where, "an integer", value)
    if tp is float:
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            try:
                v = float(value)
            except OverflowError:  # an integer beyond the range of a float (1e400 written out)
                raise ParameterError(f"{where}: {str(value)[:20]}... ({len(str(value))} digits) is too large "
                                     "for a number", field=where.split(".")[-1]) from None
            if not math.isfinite(v):
                raise ParameterError(f"{where}: must be a finite number, got {value!r}", field=where.split(".")[-1])
            return v
        raise _fail(where, "a number", value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _fail(where, "a string", value)
    if tp is np.ndarray:
        if isinstance(value, Mapping) and value.get("__ndarray__"):
            return decode_array(value, where)
        if isinstance(value, np.ndarray) or isinstance(value, (list, tuple)):
            try:
                arr = np.array(value)
            except (ValueError, OverflowError):  # a ragged list
                raise _fail(where, "a numeric array (a regular, not ragged, list)", value) from None
            if arr.dtype.kind not in _ARRAY_KINDS:
                raise _fail(where, "a numeric array", value)
            arr.setflags(write=False)
            return arr
        raise _fail(where, "an array", value)
    if isinstance(tp, type) and issubclass(tp, Params):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return tp.from_dict(value)
        raise _fail(where, f"a {tp.step or tp.__name__} record", value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _fail(where, _type_name(tp), value)
