"""The files a dashboard may open: loadable files under one folder, and nothing outside it.

DESIGN.md: "A dashboard that browses files is confined to the folder it was
started in, including what an HDF5 file points at." Every path the dashboard
opens goes through :func:`resolve_inside`, which resolves symbolic links and
``..`` and refuses what lands outside the folder, then through
:func:`check_hdf5_links_inside`, which refuses an HDF5 file whose external links,
external raw storage or virtual-dataset sources resolve outside it;
:func:`list_data_files` lists only files that pass the first check.

Examples
--------
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     _ = (Path(d) / "scan.h5").write_bytes(b"")
...     _ = (Path(d) / "notes.txt").write_text("not data")
...     list_data_files(d).files
('scan.h5',)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import FileFormatError
from ..io import SUPPORTED_FORMATS
from .output import is_inside

__all__ = ["MAX_FILES", "MAX_DEPTH", "DataFiles", "loadable_extensions", "list_data_files", "resolve_inside",
           "check_hdf5_links_inside"]

#: At most this many files are listed (a dashboard started in a huge tree stays usable).
MAX_FILES = 1000
#: Sub-folders deeper than this (the folder itself is depth 0) are not searched.
MAX_DEPTH = 4
#: Formats stored as a folder (a Zarr store): listed as one entry, not searched inside.
_FOLDER_FORMATS = (".zarr", ".zspy")


@dataclass(frozen=True)
class DataFiles:
    """What :func:`list_data_files` found.

    Attributes
    ----------
    root : Path
        The folder searched, resolved.
    files : tuple of str
        Loadable files, as POSIX paths relative to ``root``, sorted.
    truncated : bool
        True when the search stopped at ``max_files`` or skipped folders deeper than ``max_depth``.
    """

    root: Path
    files: tuple[str, ...]
    truncated: bool


def loadable_extensions() -> tuple[str, ...]:
    """Every file extension :func:`fourd_widgets.load` knows (lower case, with the dot), sorted."""
    return tuple(sorted({ext.lower() for _name, exts, _what in SUPPORTED_FORMATS for ext in exts}))


def resolve_inside(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """The real path of ``relative`` under ``root``, refused if it leaves ``root``.

    Parameters
    ----------
    root : path
        The folder the dashboard is confined to.
    relative : path
        A path relative to ``root`` (as :func:`list_data_files` gives them).

    Returns
    -------
    Path
        The resolved path (symbolic links followed), inside the resolved ``root``.

    Raises
    ------
    FileFormatError
        If ``relative`` is absolute, or resolves (through ``..`` or a symbolic
        link) to a place outside ``root``.

    Examples
    --------
    >>> resolve_inside("/data", "../etc/passwd")
    Traceback (most recent call last):
    ...
    fourd_widgets.core.errors.FileFormatError: ../etc/passwd: is outside the folder /data ...
    """
    base = Path(root).resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise FileFormatError(rel, f"is an absolute path; the dashboard opens only files under {base}.",
                              "Choose a file from the list.")
    target = (base / rel).resolve()
    if not is_inside(target, base):
        raise FileFormatError(rel, f"is outside the folder {base} the dashboard was started in "
                              "(through '..' or a symbolic link), so it is not opened.",
                              "Copy the file into that folder, or start the dashboard in a folder that holds it.")
    return target


def list_data_files(root: str | os.PathLike, *, max_files: int = MAX_FILES,
                    max_depth: int = MAX_DEPTH) -> DataFiles:
    """The loadable files under ``root``, found by extension, confined to ``root``.

    Hidden files and folders (name starting with ``.``) are skipped. Symbolic
    links are listed only when they resolve to a place inside ``root``; linked
    folders are not searched (a link cannot lead the search out, nor round in a
    loop). A Zarr store (a folder named ``*.zarr`` or ``*.zspy``) is one entry, and so is
    a Merlin acquisition (``x.mib`` with its header ``x.hdr``: only the ``.mib`` is listed).

    Parameters
    ----------
    root : path
        The folder to search.
    max_files : int
        Stop after this many files.
    max_depth : int
        Do not search folders nested deeper than this below ``root``.

    Returns
    -------
    DataFiles

    Raises
    ------
    FileFormatError
        If ``root`` is not a folder.
    """
    base = Path(root).resolve()
    if not base.is_dir():
        raise FileFormatError(root, "is not a folder.", "Give the folder that holds your data.")
    extensions = loadable_extensions()
    found: list[str] = []
    truncated = False
    for folder, dirs, names in os.walk(base, followlinks=False):
        here = Path(folder)
        depth = len(here.relative_to(base).parts)
        stores = [d for d in dirs if d.lower().endswith(_FOLDER_FORMATS) and not d.startswith(".")]
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in stores)
        if depth >= max_depth and dirs:
            truncated = True
            dirs.clear()
        lowered = {n.lower() for n in names}
        for name in sorted([*names, *stores]):
            if name.startswith(".") or not name.lower().endswith(extensions):
                continue
            if name.lower().endswith(".hdr") and name.lower()[:-4] + ".mib" in lowered:
                continue  # a Merlin acquisition is one dataset: its .mib (read with this header) is listed
            rel = (here / name).relative_to(base)
            try:
                resolve_inside(base, rel)
            except FileFormatError:
                continue  # a link out of the folder: not listed
            if len(found) >= max_files:
                truncated = True
                break
            found.append(rel.as_posix())
        if truncated and len(found) >= max_files:
            break
    return DataFiles(root=base, files=tuple(sorted(found)), truncated=truncated)


def check_hdf5_links_inside(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Refuse an HDF5 file that makes HDF5 read a file outside ``root``.

    External links, external raw storage and virtual-dataset sources (and those of
    the files they link to) must resolve inside ``root``; a virtual dataset whose
    source is missing is refused too (it would read as zeros). Files that are not
    HDF5 pass unchanged.

    Parameters
    ----------
    path : path
        A file already checked by :func:`resolve_inside`.
    root : path
        The folder the dashboard is confined to.

    Returns
    -------
    Path
        ``path``, for chaining.

    Raises
    ------
    FileFormatError
        Naming the reference and where it resolves.
    """
    from ..io.hdf5 import check_references_inside, is_hdf5

    p = Path(path)
    if p.is_file() and is_hdf5(os.fspath(p)):
        base = Path(root).resolve()
        check_references_inside(os.fspath(p), os.fspath(base), what=f"the folder {base} the dashboard was started in",
                                hint="Copy the files it refers to into that folder, or open it from a notebook "
                                     "with fw.load(..., allow_external=True) if you trust it.")
    return p
