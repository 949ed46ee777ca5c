"""Helpers for the io tests: build an Arina acquisition, fingerprint a file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np


def fingerprint(path: str | os.PathLike) -> tuple[str, int]:
    """(sha256 of the bytes, mtime in ns): a reader must change neither."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest(), os.stat(path).st_mtime_ns


def write_arina(folder: Path, frames: np.ndarray, per_file: int, *, name: str = "scan",
                calibrate: bool = True, master_attrs: dict | None = None) -> Path:
    """A DECTRIS-style NeXus master file whose entry/data/data_NNNNNN are external
    links to bitshuffle/LZ4-compressed (frames, Qy, Qx) stacks in separate files."""
    master = folder / f"{name}_master.h5"
    with h5py.File(master, "w") as m:
        m.attrs.update(master_attrs or {})
        entry = m.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        for i, start in enumerate(range(0, len(frames), per_file), start=1):
            fname = f"{name}_data_{i:06d}.h5"
            with h5py.File(folder / fname, "w") as d:
                e = d.create_group("entry")
                e.attrs["NX_class"] = "NXentry"
                g = e.create_group("data")
                g.attrs["NX_class"] = "NXdata"
                g.create_dataset("data", data=frames[start:start + per_file],
                                 chunks=(1,) + frames.shape[1:],
                                 **hdf5plugin.Bitshuffle(cname="lz4"))
            data[f"data_{i:06d}"] = h5py.ExternalLink(fname, "/entry/data/data")
        if calibrate:
            inst = entry.create_group("instrument")
            inst.attrs["NX_class"] = "NXinstrument"
            det = inst.create_group("detector")
            det.attrs["NX_class"] = "NXdetector"
            for key, value, units in (("x_pixel_size", 100e-6, "m"), ("y_pixel_size", 100e-6, "m"),
                                      ("detector_distance", 0.2, "m"), ("beam_center_x", 11.5, "pixel"),
                                      ("beam_center_y", 7.25, "pixel")):
                det[key] = value
                det[key].attrs["units"] = units
            beam = inst.create_group("beam")
            beam.attrs["NX_class"] = "NXbeam"
            beam["incident_wavelength"] = 0.025079  # Å: 200 kV electrons
            beam["incident_wavelength"].attrs["units"] = "angstrom"
    return master
