"""Generic HDF5 and Zarr files: find the 4D dataset (or a 3D stack) and its calibration.

The dataset itself is the backing array (h5py and zarr slice lazily), so nothing
is read at open. Calibration comes from attributes with common names on the
dataset, its group and the file root (see
:func:`fourd_widgets.io._common.calibration_from_attrs`).
"""

from __future__ import annotations

import os
from typing import Any

import hdf5plugin  # noqa: F401  (registers bitshuffle/LZ4/... filters with h5py)
import h5py
import numpy as np

from ..core.errors import FileFormatError
from ._common import Opened, calibration_from_attrs, choose_array, wrapped_errors

__all__ = ["HDF5_SIGNATURE", "is_hdf5", "open_hdf5", "open_zarr", "h5_kind", "storage_end", "check_extent"]

#: First 8 bytes of every HDF5 file (at offset 0 unless a user block precedes it).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: str) -> bool:
    """True when the file starts with the HDF5 signature."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def h5_kind(path: str) -> str:
    """Which reader suits an HDF5 file: 'hspy', 'emd', 'arina' or 'hdf5'.

    Decided from root attributes (HyperSpy, EMD) and the NeXus layout that DECTRIS
    detectors write (``entry/data/data_000001``).
    """
    with wrapped_errors(path, "open it as HDF5"):
        with h5py.File(path, "r") as f:
            attrs = f.attrs
            if _text(attrs.get("file_format")).lower() == "hyperspy":
                return "hspy"
            if "emd_group_type" in attrs or "version_major" in attrs:
                return "emd"
            for g in f.values():
                if isinstance(g, h5py.Group) and "emd_group_type" in g.attrs:
                    return "emd"
            entry = f.get("entry")
            if isinstance(entry, h5py.Group):
                data = entry.get("data")
                if isinstance(data, h5py.Group) and any(k.startswith("data_0") for k in data.keys()):
                    return "arina"
    return "hdf5"


def storage_end(dset: h5py.Dataset) -> int | None:
    """Byte just past the last stored byte of ``dset`` in its own file, or None.

    Contiguous: offset + storage size; chunked: the furthest end of any allocated
    chunk, from the chunk index (``chunk_iter``, one C pass, where h5py offers it).
    None where the raw data are not in the file itself (compact data live in the
    object header; external storage and virtual datasets elsewhere).
    """
    dsid = dset.id
    dcpl = dsid.get_create_plist()
    layout = dcpl.get_layout()
    if dcpl.get_external_count() > 0:
        return None
    base = int(dset.file.userblock_size or 0)  # addresses count from the superblock
    if layout == h5py.h5d.CONTIGUOUS:
        offset = dsid.get_offset()
        if offset is None:  # never written: reads give the fill value, rightly
            return 0
        return base + int(offset) + int(dsid.get_storage_size())
    if layout == h5py.h5d.CHUNKED:
        end = 0
        if hasattr(dsid, "chunk_iter"):
            ends: list[int] = []
            dsid.chunk_iter(lambda info: ends.append(info.byte_offset + info.size))
            end = max(ends, default=0)
        else:
            for i in range(dsid.get_num_chunks()):
                info = dsid.get_chunk_info(i)
                if info.byte_offset is not None:
                    end = max(end, int(info.byte_offset) + int(info.size))
        return base + end if end else 0
    return None


def check_extent(path: str, dset: h5py.Dataset) -> None:
    """Refuse a dataset whose stored bytes run past the end of its file.

    HDF5 reads past the end of a file as zeros, so a truncated file would load and
    give a partly zero cube with no error.
    """
    with wrapped_errors(path, f"read the storage layout of {dset.name}"):
        end = storage_end(dset)
        filename = dset.file.filename
    if end is None:
        return
    size = os.path.getsize(filename)
    if end > size:
        raise FileFormatError(
            filename, f"is truncated: the dataset {dset.name} is stored up to byte {end}, but the file "
            f"has only {size} bytes.", "Check the copy (compare its size with the original).")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.item())
    return "" if value is None else str(value)


def open_hdf5(path: str, dataset: str | None = None) -> Opened:
    """Open an HDF5 file read-only and pick its 4D dataset (or ``dataset=``)."""
    with wrapped_errors(path, "open it as HDF5"):
        f = h5py.File(path, "r")
    try:
        with wrapped_errors(path, "list the datasets in it"):
            found: dict[str, h5py.Dataset] = {}

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset) and obj.ndim >= 1 and obj.dtype.kind in "biuf":
                    found[name] = obj

            f.visititems(visit)
            if dataset is not None and str(dataset).strip("/") not in found:
                obj = f.get(str(dataset))
                if isinstance(obj, h5py.Dataset):
                    found[str(dataset).strip("/")] = obj
        name = choose_array(path, found, dataset, "dataset")
        dset = found[name]
        check_extent(path, dset)
        with wrapped_errors(path, f"read the attributes of {name}"):
            parent = dset.parent
            cal = calibration_from_attrs(dict(dset.attrs), dict(parent.attrs), dict(f.attrs))
            meta = {"dataset": "/" + name, "attrs": {k: _plain(v) for k, v in f.attrs.items()}}
        return Opened(dset, calibration=cal, metadata=meta, resources=(f,), storage_chunks=dset.chunks)
    except BaseException:
        f.close()
        raise


def _plain(value: Any) -> Any:
    """Attribute value as JSON-friendly Python (small arrays to lists)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"<array {value.shape} {value.dtype}>"
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_zarr(path: str, dataset: str | None = None) -> Opened:
    """Open a Zarr store read-only and pick its 4D array (or ``dataset=``)."""
    import zarr

    if not os.path.isdir(path) and not path.endswith(".zip"):
        raise FileFormatError(path, "is not a Zarr store (not a directory).", "Pass format= to choose a reader.")
    with wrapped_errors(path, "open it as a Zarr store"):
        root = zarr.open(path, mode="r")
        found: dict[str, Any] = {}
        groups: dict[str, Any] = {}
        if isinstance(root, zarr.Array):
            found[""] = root
        else:
            stack = [("", root)]
            while stack:
                prefix, grp = stack.pop()
                groups[prefix] = grp
                for key, arr in grp.arrays():
                    if np.dtype(arr.dtype).kind in "biuf":
                        found[f"{prefix}{key}"] = arr
                for key, sub in grp.groups():
                    stack.append((f"{prefix}{key}/", sub))
    name = choose_array(path, found, dataset, "array")
    arr = found[name]
    parent_key = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
    with wrapped_errors(path, f"read the attributes of {name or 'the array'}"):
        maps = [dict(arr.attrs)]
        if parent_key in groups:
            maps.append(dict(groups[parent_key].attrs))
        if "" in groups:
            maps.append(dict(groups[""].attrs))
        cal = calibration_from_attrs(*maps)
    chunks = tuple(int(c) for c in arr.chunks) if getattr(arr, "chunks", None) else None
    return Opened(arr, calibration=cal, metadata={"dataset": "/" + name}, storage_chunks=chunks)
