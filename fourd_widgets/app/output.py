"""Where the dashboard writes: an output folder outside the data folder, and file names that never clash.

DESIGN.md: a dashboard "writes only to its output folder, never into the data
folder". ``fourd-widgets dashboard DIR --out OUT`` names the output folder;
without ``--out`` it is ``./fourd-widgets-out`` in the working folder, unless that
lies inside DIR (then the dashboard refuses to start and asks for ``--out``).
A recipe saved for the dataset ``scan.h5`` from the strain tool is called
``scan.strain.recipe.json``; one saved for another file, or from another tool,
never has the same name, and an existing file is overwritten only when asked.

Examples
--------
>>> recipe_filename("scans/grain 3.h5", "strain")
'grain 3.strain.recipe.json'
>>> is_inside(Path("/data/run1/out"), Path("/data"))
True
>>> is_inside(Path("/data-out"), Path("/data"))
False
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ..core.errors import FourDError

__all__ = ["DEFAULT_OUT", "OutputFolderError", "is_inside", "resolve_output_dir", "recipe_filename"]

#: The output folder used when ``--out`` is not given, relative to the working folder.
DEFAULT_OUT = "fourd-widgets-out"


class OutputFolderError(FourDError, OSError):
    """The output folder cannot be used: inside the data folder, not a folder, or not writable."""


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both taken as given; resolve them first)."""
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def resolve_output_dir(data_dir: str | os.PathLike | None, out: str | os.PathLike | None = None,
                       cwd: str | os.PathLike | None = None, *, create: bool = True) -> Path:
    """The folder the dashboard writes to, resolved, checked and (by default) created.

    Parameters
    ----------
    data_dir : path or None
        The data folder the dashboard browses (None: no data folder, as in the demo).
    out : path, optional
        The output folder asked for (``--out``). Default: ``cwd / DEFAULT_OUT``.
    cwd : path, optional
        The working folder (default: the process's).
    create : bool
        Make the folder (and its parents) when it does not exist.

    Returns
    -------
    Path

    Raises
    ------
    OutputFolderError
        If the folder lies inside ``data_dir`` (with or without ``--out``), is a
        file, or cannot be created or written.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    given = out is not None
    folder = (base / Path(out).expanduser()) if given else base / DEFAULT_OUT
    folder = folder.resolve()
    if data_dir is not None:
        root = Path(data_dir).expanduser().resolve()
        if is_inside(folder, root):
            if given:
                raise OutputFolderError(
                    f"the output folder {folder} is inside the data folder {root}: the dashboard never "
                    "writes into the data folder. Pass --out with a folder outside it.")
            raise OutputFolderError(
                f"the working folder is inside the data folder {root}, so the default output folder "
                f"{folder} would be too. Pass --out with a folder outside the data folder "
                f"(for example --out {root.parent / (root.name + '-out')}).")
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"the output folder {folder} is a file, not a folder. Pass --out with a folder.")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputFolderError(f"the output folder {folder} could not be made ({exc.strerror or exc}). "
                                    "Pass --out with a folder you can write to.") from None
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise OutputFolderError(f"the output folder {folder} is not writable. Pass --out with a folder you "
                                "can write to.")
    return folder


def recipe_filename(dataset: str, tool: str) -> str:
    """``<dataset>.<tool>.recipe.json`` for a dataset path (its file name without the extension)."""
    stem = PurePosixPath(str(dataset).replace(os.sep, "/")).name
    for suffix in (".zarr", ".zspy"):  # stores are folders: keep the name, drop the suffix
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        stem = PurePosixPath(stem).stem or stem
    return f"{stem}.{tool}.recipe.json"
