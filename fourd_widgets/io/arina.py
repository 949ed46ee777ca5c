"""DECTRIS Arina (and other NeXus "master + data files") acquisitions.

The master file lists the frames as ``entry/data/data_000001``, ``data_000002``...,
usually external links to one data file each, every one a 3D ``(frames, Qy, Qx)``
stack compressed with bitshuffle/LZ4. The frames are joined lazily by
:class:`~fourd_widgets.io.stack.FrameStack`; the scan shape is not in the file,
so ``scan_width=`` (or ``scan_shape=``) tells it. The detector axes keep the
file's order (axis 2 = rows = y of the detector), as everywhere in fourd_widgets.
"""

from __future__ import annotations

import math
import os

import hdf5plugin  # noqa: F401  (bitshuffle/LZ4 filters for the data files)
import h5py
import numpy as np

from ..core.errors import FileFormatError
from ._common import Opened, calibration_from_attrs, scalar_or_equal_pair, wrapped_errors
from .hdf5 import check_extent

__all__ = ["open_arina", "energy_from_wavelength_eV"]

_LENGTH_TO_M = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "nm": 1e-9}

# CODATA: h c in eV·Å and the electron rest energy in eV.
_HC_EV_A = 12398.419843320026
_MC2_EV = 510998.95


def energy_from_wavelength_eV(wavelength_A: float) -> float:
    """Electron kinetic energy (eV) from its relativistic wavelength (Å).

    >>> round(energy_from_wavelength_eV(0.019687) / 1e3, 1)
    300.0
    """
    pc = _HC_EV_A / wavelength_A
    return math.sqrt(pc**2 + _MC2_EV**2) - _MC2_EV


def _number(group: h5py.Group | None, name: str, to_si: bool = False) -> float | None:
    """A scalar dataset's value (optionally converted from its ``units`` to metres)."""
    if group is None or name not in group:
        return None
    obj = group[name]
    if not isinstance(obj, h5py.Dataset) or obj.size != 1 or obj.dtype.kind not in "iuf":
        return None
    value = float(np.asarray(obj[()]).ravel()[0])
    if to_si:
        units = obj.attrs.get("units", b"m")
        units = units.decode() if isinstance(units, bytes) else str(units)
        value *= _LENGTH_TO_M.get(units.strip(), 1.0)
    return value if math.isfinite(value) and value > 0 else None


def _calibration(f: h5py.File) -> dict:
    instrument = f.get("entry/instrument")
    detector = instrument.get("detector") if isinstance(instrument, h5py.Group) else None
    beam = instrument.get("beam") if isinstance(instrument, h5py.Group) else None
    cal = calibration_from_attrs(dict(f["entry"].attrs), dict(f.attrs))
    px = _number(detector, "x_pixel_size", to_si=True)
    py = _number(detector, "y_pixel_size", to_si=True)
    distance = _number(detector, "detector_distance", to_si=True)
    if px and distance and (py is None or math.isclose(px, py, rel_tol=1e-9)):
        # small-angle: one pixel subtends pixel_size / camera_length radians
        cal.update(reciprocal_step=1e3 * px / distance, reciprocal_units="mrad")
    energy = _number(beam, "incident_energy")
    wavelength = _number(beam, "incident_wavelength")
    if energy:
        cal["energy_eV"] = energy
    elif wavelength:
        cal["energy_eV"] = energy_from_wavelength_eV(wavelength)
    cx, cy = _number(detector, "beam_center_x"), _number(detector, "beam_center_y")
    if cx is not None and cy is not None:
        cal["origin"] = (cy, cx)  # axis 2 is the detector's y (rows), axis 3 its x
    return cal


def _file_scan_shape(f: h5py.File) -> tuple[int, int] | None:
    for obj in (f["entry"], f["entry/data"], f):
        for key in ("scan_shape", "scan_size"):
            if key in obj.attrs:
                v = np.asarray(obj.attrs[key]).ravel()
                if v.size == 2 and all(float(x).is_integer() and x >= 1 for x in v):
                    return int(v[0]), int(v[1])
        if "scan_width" in obj.attrs:
            w = scalar_or_equal_pair(obj.attrs["scan_width"])
            if w and w.is_integer():
                return (-1, int(w))
    return None


def open_arina(path: str) -> Opened:
    """Open a NeXus master file with ``entry/data/data_NNNNNN`` frame stacks."""
    with wrapped_errors(path, "open it as HDF5"):
        f = h5py.File(path, "r")
    try:
        with wrapped_errors(path, "read its entry/data group"):
            data = f["entry/data"]
            names = sorted(k for k in data.keys() if k.startswith("data_"))
        parts, files = [], []
        for name in names:
            link = data.get(name, getlink=True)
            try:
                obj = data[name]
            except (KeyError, OSError) as exc:
                target = getattr(link, "filename", name)
                raise FileFormatError(
                    path,
                    f"links entry/data/{name} to {target!r}, which cannot be opened ({exc}).",
                    f"Keep the data files next to the master file (in {os.path.dirname(path) or '.'}).",
                ) from exc
            if isinstance(obj, h5py.Group):
                obj = obj.get("data")
            if not isinstance(obj, h5py.Dataset) or obj.ndim not in (2, 3):
                raise FileFormatError(
                    path, f"entry/data/{name} is not a 3D stack of frames.",
                    "Open the data file itself with format='hdf5' and dataset=.",
                )
            check_extent(path, obj)
            parts.append(obj)
            if obj.file.id != f.id:
                files.append(obj.file)
        if not parts:
            raise FileFormatError(path, "has no entry/data/data_NNNNNN frame stacks.",
                                  "Pass format='hdf5' to open it as a plain HDF5 file.")
        with wrapped_errors(path, "read the instrument metadata"):
            cal = _calibration(f)
            scan = _file_scan_shape(f)
        meta = {"data_files": [getattr(data.get(n, getlink=True), "filename", n) for n in names]}
        return Opened(parts, calibration=cal, metadata=meta, resources=(f, *files),
                      scan_shape=scan, storage_chunks=parts[0].chunks,
                      files=tuple(dict.fromkeys(x.filename for x in files)))
    except BaseException:
        f.close()
        raise
