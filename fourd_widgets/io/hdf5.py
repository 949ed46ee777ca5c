"""Generic HDF5 and Zarr files: find the 4D dataset (or a 3D stack) and its calibration.

The dataset itself is the backing array (h5py and zarr slice lazily), so nothing
is read at open. Calibration comes from attributes with common names on the
dataset, its group and the file root (see
:func:`fourd_widgets.io._common.calibration_from_attrs`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import hdf5plugin  # noqa: F401  (registers bitshuffle/LZ4/... filters with h5py)
import h5py
import numpy as np

from ..core.errors import FileFormatError
from ._common import Opened, calibration_from_attrs, choose_array, wrapped_errors

__all__ = ["HDF5_SIGNATURE", "is_hdf5", "open_hdf5", "open_zarr", "h5_kind", "storage_end", "check_extent",
           "ExternalReference", "external_references", "check_references_inside"]

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


def external_storage_files(dset: h5py.Dataset) -> list[tuple[str, int, int | None]]:
    """``(file, offset, size)`` of each external raw-storage segment of ``dset``.

    ``file`` is the first place HDF5 may find it (see :class:`ExternalReference`);
    ``size`` is None for a segment declared unlimited.
    """
    dcpl = dset.id.get_create_plist()
    out = []
    for i in range(dcpl.get_external_count()):
        name, offset, size = dcpl.get_external(i)
        cands, _ = _candidates("external storage", dset.file.filename, name.decode("utf-8", "replace"))
        found = next((c for c in cands if os.path.exists(c)), cands[0])
        out.append((found, int(offset), None if size >= h5py.h5f.UNLIMITED else int(size)))
    return out


def check_extent(path: str, dset: h5py.Dataset) -> None:
    """Refuse a dataset whose stored bytes run past the end of its file.

    HDF5 reads past the end of a file as zeros, so a truncated file would load and
    give a partly zero cube with no error.
    """
    with wrapped_errors(path, f"read the storage layout of {dset.name}"):
        end = storage_end(dset)
        filename = dset.file.filename
        externals = external_storage_files(dset)
    for target, offset, size in externals:
        have = os.path.getsize(target) if os.path.isfile(target) else None
        if have is None or (size is not None and offset + size > have):
            raise FileFormatError(
                target, f"holds part of the dataset {dset.name} of {filename} (external storage) at bytes "
                f"{offset} to {offset + (size or 0)}, but " + ("it is missing." if have is None else
                                                                 f"it has only {have} bytes."),
                "HDF5 would read the missing part as zeros; check the copy.")
    if end is None:
        return
    size = os.path.getsize(filename)
    if end > size:
        raise FileFormatError(
            filename, f"is truncated: the dataset {dset.name} is stored up to byte {end}, but the file "
            f"has only {size} bytes.", "Check the copy (compare its size with the original).")


@dataclass(frozen=True)
class ExternalReference:
    """Something in an HDF5 file that makes HDF5 read another file.

    Attributes
    ----------
    kind : str
        ``"external link"``, ``"external storage"`` or ``"virtual dataset source"``.
    file : str
        The HDF5 file that holds the reference.
    where : str
        The link or dataset in that file.
    target : str
        The file name as written in the reference.
    candidates : tuple of str
        Real paths HDF5 may open for it: next to ``file``, from the working
        folder, and under the ``HDF5_*_PREFIX`` environment variables.
    exists : bool
        Whether any candidate exists.
    """

    kind: str
    file: str
    where: str
    target: str
    candidates: tuple[str, ...]
    exists: bool


_PREFIX_ENV = {"external link": "HDF5_EXT_PREFIX", "external storage": "HDF5_EXTFILE_PREFIX",
               "virtual dataset source": "HDF5_VDS_PREFIX"}


def _candidates(kind: str, holder: str, target: str) -> tuple[tuple[str, ...], bool]:
    """Where HDF5 may look for ``target`` named in ``holder``; whether any of them exists."""
    if os.path.isabs(target):
        paths = [target]
    else:
        here = os.path.dirname(os.path.abspath(holder))
        paths = [os.path.join(here, target)]
        for prefix in filter(None, os.environ.get(_PREFIX_ENV[kind], "").split(os.pathsep)):
            paths.append(os.path.join(prefix.replace("${ORIGIN}", here), target))
        cwd = os.path.join(os.getcwd(), target)
        if os.path.exists(cwd):  # HDF5 also tries the name as given, from the working folder
            paths.append(cwd)
    real = tuple(dict.fromkeys(os.path.realpath(p) for p in paths))
    return real, any(os.path.exists(p) for p in real)


def _references_in(path: str) -> list[ExternalReference]:
    refs: list[ExternalReference] = []
    with h5py.File(path, "r") as f:
        def link(name: str, lnk: Any) -> None:
            if isinstance(lnk, h5py.ExternalLink):
                cands, exists = _candidates("external link", path, lnk.filename)
                refs.append(ExternalReference("external link", path, "/" + name, lnk.filename, cands, exists))

        def dataset(name: str, obj: Any) -> None:
            if not isinstance(obj, h5py.Dataset):
                return
            dcpl = obj.id.get_create_plist()
            for i in range(dcpl.get_external_count()):
                target = dcpl.get_external(i)[0].decode("utf-8", "replace")
                cands, exists = _candidates("external storage", path, target)
                refs.append(ExternalReference("external storage", path, "/" + name, target, cands, exists))
            if dcpl.get_layout() == h5py.h5d.VIRTUAL:
                for i in range(dcpl.get_virtual_count()):
                    target = dcpl.get_virtual_filename(i)
                    if target == ".":  # the file itself
                        continue
                    cands, exists = _candidates("virtual dataset source", path, target)
                    refs.append(ExternalReference("virtual dataset source", path, "/" + name, target, cands,
                                                  exists))

        if hasattr(f, "visititems_links"):
            f.visititems_links(link)
        else:  # h5py < 3.11: walk the groups by hand (hard links only lead on)
            stack = [("", f)]
            while stack:
                prefix, grp = stack.pop()
                for key in grp:
                    lnk = grp.get(key, getlink=True)
                    link(prefix + key, lnk)
                    if isinstance(lnk, h5py.HardLink) and isinstance(grp.get(key), h5py.Group):
                        stack.append((prefix + key + "/", grp[key]))
        f.visititems(dataset)
    return refs


def external_references(path: str, *, max_files: int = 10_000) -> list[ExternalReference]:
    """Every reference to another file in ``path``, and in the HDF5 files it links to.

    External links, external raw storage (``create_dataset(external=...)``) and
    virtual-dataset sources are listed without opening their targets' data;
    linked HDF5 files are searched in turn (each once), since HDF5 follows their
    references too.
    """
    out: list[ExternalReference] = []
    seen = {os.path.realpath(path)}
    todo = [os.path.abspath(path)]
    while todo and len(seen) <= max_files:
        current = todo.pop()
        refs = _references_in(current)
        out.extend(refs)
        for ref in refs:
            for cand in ref.candidates:
                if cand not in seen and os.path.isfile(cand) and is_hdf5(cand):
                    seen.add(cand)
                    todo.append(cand)
    return out


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_references_inside(path: str, root: str, *, what: str, hint: str) -> None:
    """Refuse ``path`` if it makes HDF5 read a file outside ``root``, or a missing VDS source.

    Parameters
    ----------
    path : str
        An HDF5 file.
    root : str
        The folder every referenced file must be in (after resolving links and ``..``).
    what : str
        How to name ``root`` in the message ("the folder of the file opened"...).
    hint : str
        What the user can do about it.

    Raises
    ------
    FileFormatError
        Naming the reference (kind, link or dataset, target).
    """
    root_real = os.path.realpath(root)
    with wrapped_errors(path, "list the files it refers to"):
        refs = external_references(path)
    for ref in refs:
        outside = [c for c in ref.candidates if not _inside(c, root_real)]
        if outside:
            where = "" if ref.file == os.path.abspath(path) else f" (in {ref.file})"
            raise FileFormatError(
                path, f"has {ref.kind} {ref.where}{where} pointing at {ref.target!r}, which resolves to "
                f"{outside[0]}, outside {what} ({root_real}); it is not opened.", hint)
        if ref.kind == "virtual dataset source" and not ref.exists:
            raise FileFormatError(
                path, f"has a virtual dataset {ref.where} whose source file {ref.target!r} is missing; "
                "HDF5 would read that part as zeros (the fill value).",
                "Put the source files back beside it, or open the source files themselves.")


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
        extra = tuple(t for t, _, _ in external_storage_files(dset))
        return Opened(dset, calibration=cal, metadata=meta, resources=(f,), storage_chunks=dset.chunks,
                      files=(dset.file.filename, *extra))
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
