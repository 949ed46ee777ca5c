"""``load(path, **options)``: open any supported file as a lazy :class:`DataCube`.

The format is guessed from the extension (HDF5 files are told apart by their
content), or given with ``format=``. Each reader returns an :class:`Opened`
record; this module turns it into the cube: stacks get their scan shape,
detector binning is applied, read errors are wrapped so they name the file, and
the cube remembers how to reopen itself.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import CalibrationError, FileFormatError, MissingOptionError, ParameterError, ShapeError
from ._common import Guarded, Opened, as_pair, check_numeric_dtype, check_readable_path, stamps_of
from .stack import FrameStack, scan_shape_from_width

__all__ = ["load", "open_file", "guess_format", "SUPPORTED_FORMATS"]

#: (format name, extensions, description) for every format :func:`load` reads.
SUPPORTED_FORMATS: list[tuple[str, tuple[str, ...], str]] = [
    ("hdf5", (".h5", ".hdf5", ".hdf", ".nxs"), "HDF5 file with a 4D dataset (or a 3D stack + scan_shape=)"),
    ("arina", (".h5",), "DECTRIS Arina / NeXus master file with entry/data/data_NNNNNN frame stacks"),
    ("emd", (".emd", ".h5"), "EMD: Velox, Prismatic, py4DSTEM EMD 1.0 (rosettasciio)"),
    ("hspy", (".hspy",), "HyperSpy HDF5 (rosettasciio)"),
    ("zspy", (".zspy",), "HyperSpy Zarr (rosettasciio)"),
    ("zarr", (".zarr",), "Zarr store with a 4D array"),
    ("npy", (".npy",), "NumPy .npy array"),
    ("raw", (".raw", ".bin", ".dat"), "headerless binary; needs shape=, dtype= and optionally offset="),
    ("mib", (".mib", ".hdr"), "Quantum Detectors Merlin (rosettasciio)"),
    ("blo", (".blo",), "NanoMegas blockfile (rosettasciio)"),
    ("dm", (".dm3", ".dm4"), "Gatan Digital Micrograph (rosettasciio)"),
    ("mrc", (".mrc",), "MRC, including Direct Electron 4D movies (rosettasciio)"),
    ("empad", (".xml",), "EMPAD .xml + .raw (rosettasciio)"),
    ("tvips", (".tvips",), "TVIPS camera stream (rosettasciio)"),
    ("tia", (".emi", ".ser"), "FEI TIA .emi/.ser (rosettasciio)"),
    ("tiff", (".tif", ".tiff"), "TIFF diffraction image or stack (rosettasciio)"),
]

_FORMATS = {name for name, _, _ in SUPPORTED_FORMATS}
_HDF5_KINDS = ("hdf5", "arina", "emd", "hspy")
# The options each format understands beyond the common ones.
_COMMON_OPTIONS = {"format", "scan_shape", "scan_width", "binning", "allow_external"}
_FORMAT_OPTIONS = {
    "hdf5": {"dataset"}, "zarr": {"dataset"}, "raw": {"shape", "dtype", "offset"},
    **{fmt: {"signal", "index"} for fmt in ("mib", "blo", "dm", "mrc", "empad", "tvips", "tia",
                                            "hspy", "zspy", "emd", "tiff")},
}


def _supported_text() -> str:
    return "; ".join(f"{name} ({', '.join(exts)})" for name, exts, _ in SUPPORTED_FORMATS)


def guess_format(path: str, options: dict | None = None) -> str:
    """Format name for ``path`` from its extension and, for HDF5 and .npy, its content.

    >>> guess_format("scan.blo")
    'blo'
    """
    from .hdf5 import h5_kind, is_hdf5

    options = options or {}
    if os.path.isdir(path):
        if path.rstrip("/\\").endswith(".zspy"):
            return "zspy"
        if any(os.path.exists(os.path.join(path, n)) for n in ("zarr.json", ".zgroup", ".zarray")):
            return "zarr"
        raise FileFormatError(path, "is a directory, not a Zarr store or a data file.",
                              "Pass the path of a data file inside it.")
    ext = os.path.splitext(path)[1].lower()
    if os.path.exists(path) and is_hdf5(path):
        if ext in (".hspy", ".emd"):
            return ext[1:]
        return h5_kind(path)
    for name, exts, _ in SUPPORTED_FORMATS:
        if ext in exts and name not in _HDF5_KINDS:
            return name
    try:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                return "npy"
    except OSError:
        pass
    if "shape" in options:  # shape= describes a headerless file whatever its name
        return "raw"
    if ext in (".h5", ".hdf5", ".hdf", ".nxs", ".emd", ".hspy"):
        raise FileFormatError(path, "has an HDF5 extension but is not an HDF5 file (no HDF5 signature).",
                              "The file may be truncated or corrupt; check the copy.")
    raise FileFormatError(
        path, f"has an extension ({ext or 'none'}) that fourd_widgets does not recognise.",
        f"Supported formats: {_supported_text()}. Pass format='<name>' to choose one, or shape= and "
        "dtype= for raw binary.",
    )


def open_file(path: str, fmt: str, options: dict) -> Opened:
    """Run the reader of ``fmt`` with its own options."""
    if fmt == "npy":
        from .binary import open_npy
        return open_npy(path)
    if fmt == "raw":
        from .binary import open_raw
        return open_raw(path, options.get("shape"), options.get("dtype"), options.get("offset", 0))
    if fmt == "hdf5":
        from .hdf5 import open_hdf5
        return open_hdf5(path, options.get("dataset"))
    if fmt == "zarr":
        from .hdf5 import open_zarr
        return open_zarr(path, options.get("dataset"))
    if fmt == "arina":
        from .arina import open_arina
        return open_arina(path)
    from .rosetta import open_rosetta
    files: tuple[str, ...] = ()
    if fmt == "mib" and path.lower().endswith(".hdr"):
        path = os.path.splitext(path)[0] + ".mib"  # the header names no frames; read its .mib
        files = (path,)
    opened = open_rosetta(path, fmt, options.get("signal"), options.get("index"))
    opened.files = tuple(opened.files) + files
    return opened


def _resolve_scan_shape(path: str, n_frames: int, opened: Opened, scan_shape: Any,
                        scan_width: Any) -> tuple[int, int]:
    if scan_shape is not None and scan_width is not None:
        raise ParameterError(f"{path}: give scan_shape= or scan_width=, not both", field="scan_width")
    if scan_shape is not None:
        return as_pair(scan_shape, "scan_shape")  # type: ignore[return-value]
    if scan_width is not None:
        return scan_shape_from_width(path, n_frames, scan_width)
    if opened.scan_shape is not None:
        rx, ry = opened.scan_shape
        return scan_shape_from_width(path, n_frames, ry) if rx == -1 else (rx, ry)
    raise MissingOptionError(
        path, f"holds a stack of {n_frames} diffraction frames but does not record the scan shape.",
        "Pass scan_width=<positions per scan row> or scan_shape=(Rx, Ry)"
        + (f"; Rx * Ry must be {n_frames}." if n_frames > 1 else "."),
        options=("scan_width", "scan_shape"), frames=n_frames,
    )


def _as_cube_array(path: str, opened: Opened, scan_shape: Any, scan_width: Any) -> Any:
    arr = opened.array
    if isinstance(arr, list):  # several frame stacks (Arina)
        n = sum(int(p.shape[0]) if len(p.shape) == 3 else 1 for p in arr)
        return FrameStack(arr, _resolve_scan_shape(path, n, opened, scan_shape, scan_width), path)
    ndim = len(arr.shape)
    if ndim == 4:
        if scan_shape is not None or scan_width is not None:
            want = as_pair(scan_shape, "scan_shape") if scan_shape is not None else None
            if want not in (None, tuple(arr.shape[:2])) or (scan_width is not None and scan_width != arr.shape[1]):
                raise ShapeError(
                    f"{path}: the file is already 4D with scan shape {tuple(arr.shape[:2])}; "
                    "scan_shape=/scan_width= apply only to stacks of frames. Drop the option, or use "
                    "cube.crop() for a part of the scan."
                )
        return arr
    if ndim == 3:
        n = int(arr.shape[0])
        return FrameStack([arr], _resolve_scan_shape(path, n, opened, scan_shape, scan_width), path)
    if ndim == 2:
        shape = _resolve_scan_shape(path, 1, opened, scan_shape, scan_width) if (
            scan_shape is not None or scan_width is not None) else (1, 1)
        return FrameStack([arr], shape, path)
    raise ShapeError(
        f"{path}: holds a {ndim}D array of shape {tuple(arr.shape)}; a 4D-STEM cube needs 4 dimensions "
        "(Rx, Ry, Qx, Qy), a 3D stack of frames with scan_shape=, or a 2D pattern. "
        "Choose another array with dataset= or signal=."
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.dtype):
        return value.str
    if isinstance(value, type) and issubclass(value, np.generic):
        return np.dtype(value).str
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def load(path: str | os.PathLike, **options: Any) -> DataCube:
    """Open a 4D-STEM file lazily as a :class:`~fourd_widgets.core.DataCube`.

    Nothing but headers and metadata is read here; the cube reads scan blocks
    when a step asks for them.

    Parameters
    ----------
    path : str or os.PathLike
        The file (or Zarr directory). For Merlin, the ``.mib`` or ``.hdr``.
    format : str, optional
        Override the guess from extension and content; one of the names in
        :data:`SUPPORTED_FORMATS`.
    scan_shape : (int, int), optional
        ``(Rx, Ry)`` for a 3D stack of frames; frame ``k`` goes to
        ``(k // Ry, k % Ry)``.
    scan_width : int, optional
        ``Ry`` alone (positions per scan row); ``Rx`` follows from the frame count.
    binning : int or (int, int), optional
        Sum detector pixels in blocks of this size as they are read.
    dataset : str, optional
        HDF5/Zarr: path of the array to use when the file holds several.
    signal : int or str, optional
        rosettasciio formats: which signal (number or title) when there are several.
    index : int, optional
        rosettasciio 5D data (e.g. Prismatic depths): position along the first axis;
        defaults to the last.
    shape, dtype, offset : optional
        Raw binary: array shape, numpy dtype and header size in bytes.
    allow_external : bool, optional
        HDF5: also read external links, external raw storage and virtual-dataset
        sources that resolve outside the folder of the file opened. Default False:
        such a file is refused, as is a virtual dataset whose source is missing.

    Returns
    -------
    DataCube
        Axes ``(Rx, Ry, Qx, Qy)`` in the file's own array order, with the
        calibration the file records. ``cube.source`` records how to reopen it.

    Raises
    ------
    FileFormatError
        The file is missing, unreadable, not a regular file, not recognised,
        truncated, corrupt, holds non-numeric values, points outside its folder
        (HDF5) or changes after it was opened (raised by the read).
    MissingOptionError
        The file needs an option it does not hold (scan shape, raw shape).
    ShapeError
        The data do not fit a 4D cube or the scan shape given.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "scan.npy")
    ...     np.save(p, np.ones((2, 3, 8, 8), dtype=np.uint16))
    ...     with load(p, binning=2) as cube:
    ...         print(cube.shape, int(cube.read().sum()))
    (2, 3, 4, 4) 384
    """
    path = os.path.abspath(os.fspath(path))
    options = {k: v for k, v in options.items() if v is not None}
    check_readable_path(path)  # missing, unreadable, a pipe or a device: refused before any reader
    fmt = options.get("format")
    if fmt is not None:
        if fmt not in _FORMATS:
            raise ParameterError(f"{path}: unknown format={fmt!r}; supported: {_supported_text()}",
                                 field="format")
    else:
        fmt = guess_format(path, options)
    allowed = _COMMON_OPTIONS | _FORMAT_OPTIONS.get(fmt, set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ParameterError(
            f"{path}: option {unknown[0]}= does not apply to the {fmt} format; "
            f"options it takes: {', '.join(sorted(allowed))}", field=unknown[0])
    binning = as_pair(options.get("binning"), "binning")
    allow_external = options.get("allow_external", False)
    if not isinstance(allow_external, (bool, np.bool_)):
        raise ParameterError(f"{path}: allow_external= must be True or False, got {allow_external!r}",
                             field="allow_external")
    from .hdf5 import check_references_inside, is_hdf5

    if not allow_external and fmt in _HDF5_KINDS and is_hdf5(path):
        check_references_inside(
            path, os.path.dirname(path), what="the folder of the file opened",
            hint="If you trust the file, pass allow_external=True (for the command line, "
                 "-o allow_external=true); or copy the files it refers to beside it.")
    opened = open_file(path, fmt, options)
    try:
        # Stamped now, before the first read: any later change to these files is refused.
        stamps = stamps_of((path, *opened.files))
        parts = opened.array if isinstance(opened.array, list) else [opened.array]
        for part in parts:
            check_numeric_dtype(path, part.dtype)
        arr = _as_cube_array(path, opened, options.get("scan_shape"), options.get("scan_width"))
        if any(int(n) < 1 for n in arr.shape):
            raise FileFormatError(path, f"holds an empty array (shape {tuple(int(n) for n in arr.shape)}).",
                                  "The file is damaged or holds no patterns; check it with its own software.")
        try:
            cal = Calibration(**opened.calibration)
        except CalibrationError:
            cal = Calibration()  # a nonsensical calibration in a file should not hide its data
        meta = dict(opened.metadata)
        meta["format"] = fmt
        if opened.storage_chunks is not None:
            meta["storage_chunks"] = tuple(opened.storage_chunks)
        source = {"path": path, "format": fmt,
                  "options": {k: _jsonable(v) for k, v in options.items()}}
        cube = DataCube(Guarded(arr, path, stamps), cal, source=source, metadata=meta,
                        _resources=tuple(opened.resources))
        if binning is not None and binning != (1, 1):
            binned = cube.bin(detector=binning)
            # The reopen record already carries binning=, so the cube must not also
            # list the bin as a derived operation (it would be applied twice).
            cube = DataCube(binned.array, binned.calibration, source=source, metadata=meta,
                            _resources=tuple(opened.resources))
        return cube
    except BaseException:
        for r in opened.resources:
            r.close()
        raise
