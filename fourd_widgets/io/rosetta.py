"""Vendor formats read through rosettasciio's lazy readers (dask arrays).

Each reader returns a list of signals (a dict with ``data``, ``axes``,
``metadata``...). We pick the one holding the 4D-STEM data, keep its array order
(axis 0 = Rx) and translate its axes and metadata into calibration fields.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np

from ..core.errors import FileFormatError, ParameterError
from ._common import Opened, real_units_or_none, reciprocal_units_or_none, wrapped_errors
from .header_checks import check_header_claims

__all__ = ["ROSETTA_MODULES", "open_rosetta", "calibration_from_axes"]

#: fourd_widgets format name -> rsciio module that reads it.
ROSETTA_MODULES: dict[str, str] = {
    "mib": "quantumdetector",
    "blo": "blockfile",
    "dm": "digitalmicrograph",
    "mrc": "mrc",
    "empad": "empad",
    "tvips": "tvips",
    "tia": "tia",
    "hspy": "hspy",
    "zspy": "zspy",
    "emd": "emd",
    "tiff": "tiff",
}


def _reader(fmt: str) -> Any:
    name = f"rsciio.{ROSETTA_MODULES[fmt]}"
    return importlib.import_module(name).file_reader


def _rank(ndim: int) -> int:
    """Preference among signal dimensionalities (lower is better)."""
    return {4: 0, 5: 1, 3: 2, 2: 3}.get(ndim, 9)


def _describe(signals: list[dict]) -> str:
    parts = []
    for i, s in enumerate(signals):
        title = (s.get("metadata") or {}).get("General", {}).get("title") or ""
        parts.append(f"{i}: {title!r} {tuple(s['data'].shape)}" if title else f"{i}: {tuple(s['data'].shape)}")
    return "; ".join(parts)


def _pick_signal(path: str, signals: list[dict], signal: Any) -> int:
    if signal is not None:
        if isinstance(signal, (int, np.integer)) and not isinstance(signal, bool):
            if -len(signals) <= signal < len(signals):
                return int(signal) % len(signals)
        else:
            for i, s in enumerate(signals):
                if (s.get("metadata") or {}).get("General", {}).get("title") == signal:
                    return i
        raise FileFormatError(path, f"has no signal {signal!r}.",
                              f"Choose signal= by number or title among: {_describe(signals)}.")
    ranks = [_rank(len(s["data"].shape)) for s in signals]
    best = min(ranks, default=9)
    if best == 9:
        raise FileFormatError(
            path, f"holds no diffraction data with 2 to 5 dimensions (signals: {_describe(signals) or 'none'}).",
            "Check that this is a 4D-STEM or diffraction file.",
        )
    winners = [i for i, r in enumerate(ranks) if r == best]
    if len(winners) > 1:
        raise FileFormatError(path, f"holds several candidate signals: {_describe(signals)}.",
                              "Choose one with signal=<number or title>.")
    return winners[0]


def _axis_step(axes: list[dict], units_of: Any) -> tuple[float, str] | None:
    """Common (scale, units) of two axes, or None if they differ or are uncalibrated."""
    found = []
    for ax in axes:
        units = units_of(ax.get("units"))
        try:
            scale = float(ax.get("scale", 1.0))
        except (TypeError, ValueError):
            return None
        if units is None or not (scale > 0 and math.isfinite(scale)):
            return None
        found.append((scale, units))
    (s0, u0), (s1, u1) = found
    if u0 != u1 or not math.isclose(s0, s1, rel_tol=1e-6):
        return None
    return s0, u0


def _plausible_reciprocal(step: float, units: str) -> bool:
    """Whether a detector pixel size could be real.

    Some files carry scales off by many orders of magnitude (a detector axis of
    1e-19 1/nm); a calibration like that would silently wreck every later step, so
    it is dropped and the user calibrates instead.
    """
    if units == "mrad":
        return 1e-6 <= step <= 1e3
    inv_A = step * {"1/Å": 1.0, "1/nm": 0.1, "1/pm": 100.0}[units]
    return 1e-7 <= inv_A <= 100.0


def calibration_from_axes(axes: list[dict], metadata: dict | None = None) -> dict:
    """Calibration keyword arguments from rsciio axes (array order) and metadata.

    The last two axes are the detector, the two before them the scan.

    >>> axes = [dict(scale=2.0, units="nm"), dict(scale=2.0, units="nm"),
    ...         dict(scale=0.1, units="1 / nm", offset=-0.8, size=16),
    ...         dict(scale=0.1, units="1 / nm", offset=-0.8, size=16)]
    >>> calibration_from_axes(axes, {"Acquisition_instrument": {"TEM": {"beam_energy": 200.0}}})
    {'real_step': 2.0, 'real_units': 'nm', 'reciprocal_step': 0.1, 'reciprocal_units': '1/nm', 'origin': (8.0, 8.0), 'energy_eV': 200000.0}
    """
    cal: dict[str, Any] = {}
    if len(axes) >= 4 and (r := _axis_step(axes[-4:-2], real_units_or_none)):
        cal.update(real_step=r[0], real_units=r[1])
    q = _axis_step(axes[-2:], reciprocal_units_or_none) if len(axes) >= 2 else None
    if q is not None and not _plausible_reciprocal(*q):
        q = None
    if q is not None:
        cal.update(reciprocal_step=q[0], reciprocal_units=q[1])
        origin = []
        for ax in axes[-2:]:
            off = ax.get("offset") or 0.0
            centre = -float(off) / float(ax["scale"])
            # an offset that puts the zero beam outside the detector is no origin
            if off and ax.get("size") and 0 <= centre <= float(ax["size"]) - 1:
                origin.append(centre)
        if len(origin) == 2:
            cal["origin"] = (origin[0], origin[1])
    tem = ((metadata or {}).get("Acquisition_instrument") or {}).get("TEM") or {}
    for key, field, factor in (("beam_energy", "energy_eV", 1e3),
                               ("convergence_angle", "convergence_semiangle_mrad", 1.0)):
        try:
            v = float(tem.get(key)) * factor
        except (TypeError, ValueError):
            continue
        if v > 0 and math.isfinite(v):
            cal[field] = v
    return cal


def open_rosetta(path: str, fmt: str, signal: Any = None, index: Any = None) -> Opened:
    """Read ``path`` lazily with the rsciio reader of format ``fmt``."""
    read = _reader(fmt)
    module = ROSETTA_MODULES[fmt]
    check_header_claims(path, fmt)  # before rosettasciio sizes anything from the header
    with wrapped_errors(path, f"read it with rosettasciio's {module} reader"):
        signals = read(path, lazy=True)
        if isinstance(signals, dict):
            signals = [signals]
        signals = [s for s in signals if hasattr(s.get("data"), "shape")]
        chosen = signals[_pick_signal(path, signals, signal)]
        data = chosen["data"]
        axes = list(chosen.get("axes") or [])
        meta = dict(chosen.get("metadata") or {})
    if np.dtype(data.dtype).kind not in "biuf":
        raise FileFormatError(path, f"holds {data.dtype} data, not intensities.",
                              "Only real-valued diffraction data can be loaded.")
    extra: dict[str, Any] = {}
    if len(data.shape) == 5:
        # e.g. Prismatic's output depths: the first axis is not part of the scan
        n = int(data.shape[0])
        i = -1 if index is None else index
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not -n <= i < n:
            raise ParameterError(
                f"{path}: index= must be an integer in [{-n}, {n - 1}] choosing along the first axis "
                f"({axes[0].get('name') if axes else 'axis 0'}, length {n}); got {index!r}",
                field="index",
            )
        i = int(i) % n
        data = data[i]
        extra["index"] = i
        extra["index_axis"] = str(axes[0].get("name")) if axes else "axis 0"
        axes = axes[1:]
    elif index is not None:
        raise ParameterError(f"{path}: index= applies only to 5D data; this signal is {len(data.shape)}D",
                             field="index")
    cal = calibration_from_axes(axes, meta)
    meta.update(extra)
    chunks = getattr(data, "chunksize", None)
    return Opened(data, calibration=cal, metadata=meta,
                  storage_chunks=tuple(int(c) for c in chunks) if chunks else None)
