"""HDF5 round trip of the small result containers of the polar family (results files).

A result is a frozen dataclass; :class:`H5Fields` writes its arrays as
datasets, its numbers and strings as attributes, its parameter records as JSON
attributes and nested results as sub-groups, and reads them back. ``None``
fields are left out (and read back as ``None``).

Examples
--------
>>> import io, h5py, numpy as np
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True, eq=False)
... class Curve(H5Fields):
...     k: np.ndarray
...     units: str
...     extra: np.ndarray | None = None
>>> buf = io.BytesIO()
>>> with h5py.File(buf, "w") as f:
...     Curve(np.arange(3.0), "1/Å").to_h5(f.create_group("c"))
...     back = Curve.from_h5(f["c"])
>>> back.k.tolist(), back.units, back.extra
([0.0, 1.0, 2.0], '1/Å', None)
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import numpy as np

from ..core.params import Params, record_from_dict

__all__ = ["H5Fields"]

_RECORDS = "__records__"


def _result_type(tp: Any) -> type | None:
    """The H5Fields class in an annotation (``X`` or ``X | None``), if any."""
    for t in (tp, *typing.get_args(tp)):
        if isinstance(t, type) and issubclass(t, H5Fields):
            return t
    return None


def _same(a: Any, b: Any) -> bool:
    """Field equality: arrays by value (NaN equals NaN), records and results by their own ``==``."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape or x.dtype.kind != y.dtype.kind:
            return False
        return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))
    return bool(a == b)


class H5Fields:
    """Mixin: ``to_h5(group)`` and ``from_h5(group)`` for frozen dataclass results, and equality by value.

    Two results are equal when they are of one class and every field is (arrays
    by value, NaN equal to NaN): what a replayed recipe is checked with.
    """

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name))
                   for f in dataclasses.fields(self))  # type: ignore[arg-type]

    __hash__ = None  # type: ignore[assignment]  # equal by value, and holds arrays

    def to_h5(self, group: Any) -> None:
        """Write every field into an HDF5 group."""
        records = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, Params):
                group.attrs[f.name] = json.dumps(v.to_dict())
                records.append(f.name)
            elif isinstance(v, H5Fields):
                v.to_h5(group.create_group(f.name))
            elif isinstance(v, np.ndarray):
                group.create_dataset(f.name, data=v)
            elif isinstance(v, tuple):
                group.create_dataset(f.name, data=np.asarray(v))
            else:
                group.attrs[f.name] = v
        group.attrs[_RECORDS] = json.dumps(records)

    @classmethod
    def from_h5(cls, group: Any) -> Any:
        """Read a result written by :meth:`to_h5`."""
        hints = typing.get_type_hints(cls)
        records = set(json.loads(group.attrs.get(_RECORDS, "[]")))
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in records:
                kw[f.name] = record_from_dict(json.loads(group.attrs[f.name]))
            elif f.name in group:
                obj = group[f.name]
                sub = _result_type(hints[f.name])
                if sub is not None and hasattr(obj, "keys"):
                    kw[f.name] = sub.from_h5(obj)
                else:
                    kw[f.name] = obj[()]
            elif f.name in group.attrs:
                v = group.attrs[f.name]
                kw[f.name] = v.item() if isinstance(v, np.generic) else v
            else:
                kw[f.name] = None
        return cls(**kw)
