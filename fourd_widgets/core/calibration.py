"""Calibration: the frozen record of how pixels map to physical units.

A :class:`Calibration` never changes in place; ``cal.replace(...)`` gives a new
one. It converts detector pixels to 1/Å and mrad (the latter through the
electron wavelength, from the beam energy), scan pixels to Å or nm, and
round-trips through a plain JSON dict.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

import numpy as np

from .errors import CalibrationError, MissingCalibrationError, ParameterError

__all__ = ["Calibration", "electron_wavelength_A", "REAL_UNITS", "RECIPROCAL_UNITS"]

SCHEMA_VERSION = 1

#: Real-space length units and their size in Å.
REAL_UNITS: dict[str, float] = {"pm": 0.01, "Å": 1.0, "nm": 10.0, "µm": 1e4}
#: Reciprocal units. Spatial-frequency units with their size in 1/Å; "mrad" is angular.
RECIPROCAL_UNITS: dict[str, float | None] = {"1/Å": 1.0, "1/nm": 0.1, "1/pm": 100.0, "mrad": None}

_REAL_ALIASES = {
    "a": "Å", "å": "Å", "angstrom": "Å", "angstroms": "Å", "ang": "Å", "Å": "Å",
    "nm": "nm", "nanometer": "nm", "nanometers": "nm",
    "pm": "pm", "um": "µm", "µm": "µm", "μm": "µm", "micron": "µm", "microns": "µm",
}
_RECIP_ALIASES = {
    "1/a": "1/Å", "a^-1": "1/Å", "a-1": "1/Å", "inva": "1/Å", "1/å": "1/Å", "å^-1": "1/Å",
    "å-1": "1/Å", "1/angstrom": "1/Å",
    "1/nm": "1/nm", "nm^-1": "1/nm", "nm-1": "1/nm", "invnm": "1/nm",
    "1/pm": "1/pm", "pm^-1": "1/pm",
    "mrad": "mrad", "milliradian": "mrad", "milliradians": "mrad",
}

# CODATA constants for the relativistic electron wavelength.
_H = 6.62607015e-34
_M0 = 9.1093837015e-31
_E = 1.602176634e-19
_C = 299792458.0


def electron_wavelength_A(energy_eV: float) -> float:
    """Relativistic electron wavelength in Å.

    Parameters
    ----------
    energy_eV : float
        Accelerating voltage times e, in eV.

    Returns
    -------
    float
        λ = h / sqrt(2 m0 e E (1 + e E / (2 m0 c²))), in Å.

    Examples
    --------
    >>> round(electron_wavelength_A(300e3), 5)
    0.01969
    """
    if not (energy_eV > 0 and math.isfinite(energy_eV)):
        raise CalibrationError(f"beam energy must be a positive number of eV, got {energy_eV!r}")
    e = energy_eV * _E
    return _H / math.sqrt(2 * _M0 * e * (1 + e / (2 * _M0 * _C**2))) * 1e10


def normalize_real_units(units: str) -> str:
    """Canonical name of a real-space length unit ('Å', 'nm', 'pm', 'µm')."""
    key = str(units).strip()
    canon = _REAL_ALIASES.get(key) or _REAL_ALIASES.get(key.lower())
    if canon is None:
        raise CalibrationError(
            f"unknown real-space unit {units!r}; use one of {', '.join(REAL_UNITS)}"
        )
    return canon


def normalize_reciprocal_units(units: str) -> str:
    """Canonical name of a reciprocal unit ('1/Å', '1/nm', '1/pm', 'mrad')."""
    key = str(units).strip().replace(" ", "")
    canon = _RECIP_ALIASES.get(key) or _RECIP_ALIASES.get(key.lower())
    if canon is None:
        raise CalibrationError(
            f"unknown reciprocal unit {units!r}; use one of {', '.join(RECIPROCAL_UNITS)}"
        )
    return canon


def _positive(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CalibrationError(f"{name} must be a number, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise CalibrationError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _numbers(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array, or a CalibrationError naming the field (a string, a ragged list...)."""
    if isinstance(value, (str, bytes)):
        raise CalibrationError(f"{name} must be numbers, not the text {value!r}")
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CalibrationError(f"{name} must be numbers in a regular (not ragged) list, got {value!r:.80} "
                               f"({exc})") from None


@dataclasses.dataclass(frozen=True, eq=False)
class Calibration:
    """How scan and detector pixels map to physical units.

    Every field is optional; a step that needs one that is missing raises
    :class:`~fourd_widgets.errors.MissingCalibrationError` naming it.

    Parameters
    ----------
    real_step : float, optional
        Scan step, in ``real_units``.
    real_units : {'Å', 'nm', 'pm', 'µm'}
        Unit of ``real_step``.
    reciprocal_step : float, optional
        Detector pixel size, in ``reciprocal_units``.
    reciprocal_units : {'1/Å', '1/nm', 'mrad'}
        Unit of ``reciprocal_step``.
    energy_eV : float, optional
        Beam energy (needed to convert between 1/Å and mrad).
    convergence_semiangle_mrad : float, optional
        Probe convergence semi-angle.
    origin : (2,) tuple of float, optional
        Position of the unscattered beam on the detector, (qx, qy) in pixels.
    origin_map : (Rx, Ry, 2) array, optional
        Origin per scan position (descan), in detector pixels.
    ellipse : (3,) tuple of float, optional
        Elliptic distortion (a, b, θ in degrees), semi-axes relative.
    rotation_deg : float
        Rotation from scan axes to detector axes, counter-clockwise.
    flip : bool
        Whether the detector is mirrored relative to the scan.

    Examples
    --------
    >>> cal = Calibration(reciprocal_step=0.015625, energy_eV=300e3)
    >>> round(cal.reciprocal_step_in("mrad"), 4)
    0.3076
    >>> Calibration.from_dict(cal.to_dict()) == cal
    True
    """

    real_step: float | None = None
    real_units: str = "Å"
    reciprocal_step: float | None = None
    reciprocal_units: str = "1/Å"
    energy_eV: float | None = None
    convergence_semiangle_mrad: float | None = None
    origin: tuple[float, float] | None = None
    origin_map: np.ndarray | None = None
    ellipse: tuple[float, float, float] | None = None
    rotation_deg: float = 0.0
    flip: bool = False

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "real_step", _positive("real_step", self.real_step))
        s(self, "real_units", normalize_real_units(self.real_units))
        s(self, "reciprocal_step", _positive("reciprocal_step", self.reciprocal_step))
        s(self, "reciprocal_units", normalize_reciprocal_units(self.reciprocal_units))
        s(self, "energy_eV", _positive("energy_eV", self.energy_eV))
        s(self, "convergence_semiangle_mrad",
          _positive("convergence_semiangle_mrad", self.convergence_semiangle_mrad))
        if self.origin is not None:
            o = tuple(float(v) for v in _numbers("origin", self.origin).ravel())
            if len(o) != 2 or not all(math.isfinite(v) for v in o):
                raise CalibrationError(f"origin must be two finite numbers (qx, qy), got {self.origin!r}")
            s(self, "origin", o)
        if self.origin_map is not None:
            m = _numbers("origin_map", self.origin_map)
            if m.ndim != 3 or m.shape[2] != 2:
                raise CalibrationError(
                    f"origin_map must have shape (Rx, Ry, 2), got {m.shape}"
                )
            m.setflags(write=False)
            s(self, "origin_map", m)
        if self.ellipse is not None:
            e = tuple(float(v) for v in _numbers("ellipse", self.ellipse).ravel())
            if len(e) != 3 or not (e[0] > 0 and e[1] > 0) or not math.isfinite(e[2]):
                raise CalibrationError(
                    f"ellipse must be (a, b, theta_deg) with a, b > 0, got {self.ellipse!r}"
                )
            s(self, "ellipse", e)
        try:
            rot = float(self.rotation_deg)
        except (TypeError, ValueError):
            raise CalibrationError(f"rotation_deg must be a number, got {self.rotation_deg!r}") from None
        if not math.isfinite(rot):
            raise CalibrationError(f"rotation_deg must be finite, got {self.rotation_deg!r}")
        s(self, "rotation_deg", rot)
        if not isinstance(self.flip, (bool, np.bool_)):
            raise CalibrationError(f"flip must be True or False, got {self.flip!r}")
        s(self, "flip", bool(self.flip))

    # --- records -------------------------------------------------------
    def replace(self, **changes: Any) -> "Calibration":
        """A copy with some fields changed (validated like the constructor)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ParameterError(
                f"Calibration has no field {unknown[0]!r}; fields are {', '.join(sorted(names))}",
                field=unknown[0],
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, with a schema version."""
        out: dict[str, Any] = {"type": "calibration", "schema_version": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Calibration":
        """Rebuild from :meth:`to_dict`; unknown keys and newer versions are refused."""
        if not isinstance(d, Mapping):
            raise ParameterError(f"a calibration must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        kind = d.pop("type", "calibration")
        if kind != "calibration":
            raise ParameterError(f"expected a calibration record, got type {kind!r}", field="type")
        version = d.pop("schema_version", SCHEMA_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ParameterError(f"calibration schema_version must be a positive integer, got {version!r}",
                                 field="schema_version")
        if version > SCHEMA_VERSION:
            raise ParameterError(
                f"calibration schema_version {version!r} is newer than this fourd_widgets "
                f"understands ({SCHEMA_VERSION}); upgrade fourd_widgets",
                field="schema_version",
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ParameterError(
                f"unknown calibration field {unknown[0]!r}; allowed: {', '.join(sorted(names))}",
                field=unknown[0],
            )
        return cls(**d)  # the constructor converts origin_map (a list in JSON) to an array

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calibration):
            return NotImplemented
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            # An origin map is an array: compare it with nothing, show its size.
            if isinstance(v, np.ndarray):
                parts.append(f"{f.name}=<map {v.shape[0]}x{v.shape[1]}>")
                continue
            if v is None or v == f.default:
                continue
            parts.append(f"{f.name}={v!r}")
        return f"Calibration({', '.join(parts)})"

    # --- requirements ----------------------------------------------------
    def require(self, field: str, step: str) -> Any:
        """Value of ``field``, or a :class:`MissingCalibrationError` saying how to set it."""
        value = getattr(self, field)
        if value is None:
            raise MissingCalibrationError(field, step, _HOW_TO_SET.get(field, f"set it with cube.calibration = cube.calibration.replace({field}=...)"))
        return value

    # --- conversions -----------------------------------------------------
    @property
    def wavelength_A(self) -> float:
        """Electron wavelength in Å (needs ``energy_eV``)."""
        return electron_wavelength_A(self.require("energy_eV", "the electron wavelength"))

    def reciprocal_step_in(self, units: str) -> float:
        """Detector pixel size in ``units`` ('1/Å', '1/nm', '1/pm' or 'mrad')."""
        target = normalize_reciprocal_units(units)
        step = self.require("reciprocal_step", f"conversion of detector pixels to {target}")
        source = self.reciprocal_units
        if source == target:
            return step
        if source == "mrad":  # angle -> spatial frequency: k = θ / λ
            inv_A = step * 1e-3 / self.wavelength_A
        else:
            inv_A = step * RECIPROCAL_UNITS[source]  # type: ignore[operator]
        if target == "mrad":
            return inv_A * self.wavelength_A * 1e3
        return inv_A / RECIPROCAL_UNITS[target]  # type: ignore[operator]

    def real_step_in(self, units: str) -> float:
        """Scan step in ``units`` ('Å', 'nm', 'pm', 'µm')."""
        target = normalize_real_units(units)
        step = self.require("real_step", f"conversion of scan pixels to {target}")
        return step * REAL_UNITS[self.real_units] / REAL_UNITS[target]

    def detector_to_px(self, value: float | np.ndarray, units: str) -> float | np.ndarray:
        """A length on the detector given in ``units`` expressed in pixels."""
        if units == "px":
            return value
        return value / self.reciprocal_step_in(units)

    def px_to_detector(self, value: float | np.ndarray, units: str) -> float | np.ndarray:
        """A length in detector pixels expressed in ``units``."""
        if units == "px":
            return value
        return value * self.reciprocal_step_in(units)

    @property
    def convergence_semiangle_px(self) -> float:
        """Probe (disk) radius on the detector in pixels, from the convergence angle."""
        alpha = self.require("convergence_semiangle_mrad", "the probe radius in pixels")
        return alpha / self.reciprocal_step_in("mrad")

    def origin_at(self, rx: int, ry: int) -> tuple[float, float]:
        """Origin (qx, qy) at one scan position: the map if set, else the single origin."""
        if self.origin_map is not None:
            o = self.origin_map[rx, ry]
            return float(o[0]), float(o[1])
        return self.require("origin", "locating the unscattered beam")


_HOW_TO_SET = {
    "real_step": "Set it with cube.calibration = cube.calibration.replace(real_step=..., real_units='Å').",
    "reciprocal_step": (
        "Set it with cube.calibration = cube.calibration.replace(reciprocal_step=..., "
        "reciprocal_units='1/Å'), or measure it from a known lattice spacing."
    ),
    "energy_eV": "Set the beam energy with cube.calibration = cube.calibration.replace(energy_eV=300e3).",
    "convergence_semiangle_mrad": (
        "Set it with cube.calibration = cube.calibration.replace(convergence_semiangle_mrad=...)."
    ),
    "origin": (
        "Set it with cube.calibration = cube.calibration.replace(origin=(qx0, qy0)), "
        "or measure it from the central beam."
    ),
}
