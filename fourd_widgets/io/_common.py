"""Pieces every reader shares: the reader result, error wrapping, option parsing.

Readers return an :class:`Opened` record (a lazy array of any dimensionality plus
calibration fields and metadata); :mod:`fourd_widgets.io.load` turns it into a
:class:`~fourd_widgets.core.DataCube`. Keeping that last step in one place means
scan reshaping, binning, error wrapping and the reopen record behave the same for
every format.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..core.calibration import normalize_real_units, normalize_reciprocal_units
from ..core.errors import CalibrationError, FileFormatError, FourDError, ParameterError

__all__ = [
    "Opened",
    "Guarded",
    "FileStamp",
    "stamps_of",
    "check_readable_path",
    "check_numeric_dtype",
    "wrapped_errors",
    "as_pair",
    "scalar_or_equal_pair",
    "calibration_from_attrs",
    "clean_units",
    "real_units_or_none",
    "reciprocal_units_or_none",
    "choose_array",
    "product",
]


@dataclass
class Opened:
    """What a reader found: a lazy array and what it knows about it.

    ``array`` may be 2D (one pattern), 3D (a stack of frames), 4D, or a list of frame
    stacks to join (one per data file); ``calibration``
    holds keyword arguments for :class:`~fourd_widgets.core.Calibration`;
    ``scan_shape`` is a scan shape the file itself records for a frame stack;
    ``storage_chunks`` is the file's own chunking, in the dataset's own axes;
    ``files`` lists the files the array reads besides the one opened (data files
    of a master file), so that a change to any of them is noticed.
    """

    array: Any
    calibration: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    resources: tuple = ()
    scan_shape: tuple[int, int] | None = None
    storage_chunks: tuple[int, ...] | None = None
    files: tuple[str, ...] = ()


@contextlib.contextmanager
def wrapped_errors(path: str | os.PathLike, doing: str, hint: str = "") -> Iterator[None]:
    """Turn any third-party exception into a :class:`FileFormatError` naming ``path``.

    Our own errors pass through unchanged; ``MemoryError`` and interrupts are not ours
    to rename.
    """
    try:
        yield
    except (FourDError, MemoryError):
        raise
    except Exception as exc:  # third-party readers raise anything from KeyError to struct.error
        detail = str(exc).strip() or type(exc).__name__
        raise FileFormatError(
            path,
            f"could not {doing} ({type(exc).__name__}: {detail}).",
            hint or "The file may be truncated, corrupt or not of the format assumed; "
            "check it with its own software, or pass format= to choose another reader.",
        ) from exc


@dataclass(frozen=True)
class FileStamp:
    """Size and modification time of a file when it was opened.

    DESIGN.md: a file "that changed since it was opened" is refused. A reader that
    goes on after its file shrank reads zeros (HDF5's sec2 driver zero-fills past the
    end), and one that goes on after it was rewritten mixes two files; one
    ``os.stat`` before each block read catches both.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "a.bin")
    ...     _ = open(p, "wb").write(b"1234")
    ...     stamp = FileStamp.of(p)
    ...     stamp.check()
    ...     _ = open(p, "wb").write(b"12")
    ...     stamp.check()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fourd_widgets.core.errors.FileFormatError: ...a.bin: was truncated: it changed since it was opened: its size went from 4 to 2 bytes. ...
    """

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str) -> "FileStamp":
        st = os.stat(path)
        return cls(os.fspath(path), int(st.st_size), int(st.st_mtime_ns))

    def check(self) -> None:
        """Raise :class:`FileFormatError` if the file is gone, resized or modified."""
        hint = ("Reload it with fw.load once it is complete; a file that is still being written, or "
                "was replaced, cannot be read safely.")
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise FileFormatError(self.path, f"cannot be found any more since it was opened "
                                  f"({exc.strerror or type(exc).__name__}).", hint) from None
        if st.st_size != self.size:
            how = "was truncated: it " if st.st_size < self.size else ""
            raise FileFormatError(self.path, f"{how}changed since it was opened: its size went from "
                                  f"{self.size} to {st.st_size} bytes.", hint)
        if st.st_mtime_ns != self.mtime_ns:
            raise FileFormatError(self.path, "changed since it was opened: it was modified (its "
                                  f"modification time went from {self.mtime_ns} to {st.st_mtime_ns} ns).", hint)


def stamps_of(paths: Any) -> tuple[FileStamp, ...]:
    """Stamps of the regular files among ``paths`` (Zarr folders are not stamped)."""
    out = []
    seen = set()
    for p in paths:
        p = os.fspath(p)
        if p in seen:
            continue
        seen.add(p)
        try:
            if stat.S_ISREG(os.stat(p).st_mode):
                out.append(FileStamp.of(p))
        except OSError:
            continue
    return tuple(out)


class Guarded:
    """Backing-array wrapper that renames read failures into :class:`FileFormatError`.

    A file can open fine and still hold a corrupt chunk further in; users should see
    which file failed, not an h5py or dask traceback. Before each read the files
    behind the array are checked against their :class:`FileStamp` (one ``os.stat``
    each), so a file that shrank or was rewritten is refused instead of read.
    """

    def __init__(self, base: Any, path: str, stamps: tuple[FileStamp, ...] = ()) -> None:
        self.base = base
        self.path = path
        self.stamps = tuple(stamps)
        self.shape = tuple(int(n) for n in base.shape)
        self.dtype = np.dtype(base.dtype)
        chunks = getattr(base, "chunks", None)
        self.chunks = chunks if chunks is not None and len(chunks) == len(self.shape) else None

    def __getitem__(self, key: Any) -> np.ndarray:
        for stamp in self.stamps:
            stamp.check()
        with wrapped_errors(self.path, f"read the data block {_describe_key(key)}"):
            out = self.base[key]
            if hasattr(out, "compute") and not isinstance(out, np.ndarray):  # dask
                out = out.compute()
            out = np.asarray(out)
        for stamp in self.stamps:  # a change during the read would make this block a mix
            stamp.check()
        return out


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _blocking_folder(path: str) -> str | None:
    """The nearest folder above ``path`` that this user may not search, if any."""
    parent = os.path.dirname(path)
    blocked = None
    while parent and parent != os.path.dirname(parent):
        if os.path.isdir(parent) and not os.access(parent, os.X_OK):
            blocked = parent
        parent = os.path.dirname(parent)
    return blocked


def check_readable_path(path: str) -> os.stat_result:
    """Refuse what :func:`fourd_widgets.load` cannot open, before any reader touches it.

    A missing file, a file behind a folder this user may not enter, an unreadable
    file, and anything that is neither a regular file nor a folder (a named pipe
    would block the first read forever) each get their own message.

    Examples
    --------
    >>> check_readable_path("/no/such/scan.h5")
    Traceback (most recent call last):
    ...
    fourd_widgets.core.errors.FileFormatError: /no/such/scan.h5: no such file. ...
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        blocked = _blocking_folder(path)
        if blocked is not None:
            raise FileFormatError(path, f"cannot be reached: permission denied on the folder {blocked}.",
                                  "Ask for access to that folder (search permission), or copy the file "
                                  "somewhere you can read.") from None
        raise FileFormatError(path, "no such file.",
                              f"Check the path and the working directory ({os.getcwd()}).") from None
    except PermissionError:
        blocked = _blocking_folder(path) or os.path.dirname(path)
        raise FileFormatError(path, f"cannot be reached: permission denied on the folder {blocked}.",
                              "Ask for access to that folder (search permission), or copy the file "
                              "somewhere you can read.") from None
    except OSError as exc:
        raise FileFormatError(path, f"cannot be examined ({exc.strerror or exc}).",
                              "Check the path.") from None
    if stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise FileFormatError(path, "cannot be read: permission denied on this folder.",
                                  "Ask for read access, or copy the data somewhere you can read.")
        return st
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise FileFormatError(path, f"is {kind}, not a regular file; fourd_widgets reads data files "
                              "(and Zarr folders) only.", "Copy the data into a file and load that.")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    except PermissionError:
        raise FileFormatError(path, "cannot be read: permission denied.",
                              "Ask the owner for read access, or read a copy you own.") from None
    except OSError as exc:
        raise FileFormatError(path, f"cannot be opened ({exc.strerror or exc}).", "Check the file.") from None
    os.close(fd)
    return st


def check_numeric_dtype(path: str, dtype: Any) -> np.dtype:
    """Refuse anything but real numbers (bool, integers, floats), naming the dtype.

    Strings, raw bytes (``V2``), dates and times, records and objects are not
    intensities; complex values are refused too, because every step would drop
    the imaginary part.

    >>> check_numeric_dtype("a.npy", "<m8[s]")
    Traceback (most recent call last):
    ...
    fourd_widgets.core.errors.FileFormatError: a.npy: holds timedelta64[s] values (dtype '<m8[s]'), ...
    """
    dt = np.dtype(dtype)
    if dt.kind in "biuf" and dt.fields is None and dt.subdtype is None:
        return dt
    what = {"c": "complex", "U": "text", "S": "byte-string", "V": "raw-byte or record", "O": "Python object",
            "M": "date-time", "m": "time-interval"}.get(dt.kind, "non-numeric")
    raise FileFormatError(
        path, f"holds {dt} values (dtype {dt.str!r}), {what} data, not real-valued intensities.",
        "fourd_widgets reads bool, integer and float patterns; for complex data, load its "
        "magnitude (numpy.abs) or real part saved as a float array." if dt.kind == "c" else
        "fourd_widgets reads bool, integer and float patterns; choose the intensity array "
        "(dataset= or signal=) or convert it.",
    )


def _describe_key(key: Any) -> str:
    if not isinstance(key, tuple):
        key = (key,)
    parts = []
    for k in key:
        parts.append(f"{k.start}:{k.stop}" if isinstance(k, slice) else str(k))
    return "[" + ", ".join(parts) + "]"


def as_pair(value: Any, name: str, *, allow_none: bool = True) -> tuple[int, int] | None:
    """A pair of positive ints from an int, a pair, or None.

    >>> as_pair(3, "binning"), as_pair([4, 2], "scan_shape")
    ((3, 3), (4, 2))
    """
    if value is None:
        if allow_none:
            return None
        raise ParameterError(f"{name} is required", field=name)
    seq = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        pair = tuple(seq)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                 for v in pair):
        raise ParameterError(f"{name} must be a positive integer or a pair of them, got {value!r}", field=name)
    return int(pair[0]), int(pair[1])


def scalar_or_equal_pair(value: Any) -> float | None:
    """One number from a scalar or from a pair whose entries agree (else None).

    >>> scalar_or_equal_pair([1.0, 1.0]), scalar_or_equal_pair([1.0, 2.0]), scalar_or_equal_pair(0.5)
    (1.0, None, 0.5)
    """
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    if arr.size == 0 or not np.all(np.isfinite(arr)) or not np.allclose(arr, arr[0], rtol=1e-9, atol=0):
        return None
    v = float(arr[0])
    return v if v > 0 else None


def clean_units(units: Any) -> str:
    """Unit text without bytes, LaTeX markup or brackets: ``'$A^{-1}$'`` -> ``'A^-1'``."""
    if units is None:
        return ""
    if isinstance(units, bytes):
        units = units.decode("utf-8", "replace")
    text = str(units)
    for ch in "${}[]":
        text = text.replace(ch, "")
    return text.replace("\\AA", "Å").replace("n_m", "nm").strip()


_NO_UNITS = ("", "<undefined>", "undefined", "px", "pixel", "pixels")


def _units_or_none(units: Any, normalize: Callable[[str], str]) -> str | None:
    text = clean_units(units)
    if text.lower() in _NO_UNITS:
        return None
    try:
        return normalize(text)
    except CalibrationError:  # e.g. 'cm' on a detector axis: not a calibration we can use
        return None


def real_units_or_none(units: Any) -> str | None:
    """Canonical real-space unit, or None when the text is not a length unit.

    >>> real_units_or_none("A"), real_units_or_none("<undefined>")
    ('Å', None)
    """
    return _units_or_none(units, normalize_real_units)


def reciprocal_units_or_none(units: Any) -> str | None:
    """Canonical reciprocal unit, or None when the text is not one.

    >>> reciprocal_units_or_none("$A^{-1}$"), reciprocal_units_or_none("1 / nm"), reciprocal_units_or_none("cm")
    ('1/Å', '1/nm', None)
    """
    return _units_or_none(units, normalize_reciprocal_units)


# Attribute names (lower case) that simulation and facility files use for each field.
_REAL_STEP_A = ("scan_step_a", "real_space_sampling_a", "real_step_a", "r_pixel_size_a")
_RECIP_INV_A = ("reciprocal_sampling_inva", "reciprocal_step_inva", "q_pixel_size_inva", "k_sampling_inva")
_RECIP_MRAD = ("angular_sampling_mrad", "reciprocal_step_mrad")
_ENERGY_EV = ("energy_ev", "beam_energy_ev", "accelerating_voltage_v")
_ENERGY_KV = ("beam_energy_kv", "accelerating_voltage_kv", "high_tension_kv")
_ALPHA_MRAD = ("convergence_semiangle_mrad", "convergence_angle_mrad", "semiangle_mrad", "alpha_mrad")
_ORIGIN_PX = ("origin_px", "origin", "beam_center_px", "qx0_qy0")


def calibration_from_attrs(*attr_maps: Mapping[str, Any]) -> dict:
    """Calibration keyword arguments from attributes with common names.

    Earlier maps win (pass the dataset's attributes before the file's).

    >>> calibration_from_attrs({"scan_step_A": [1.0, 1.0], "energy_eV": 3e5, "origin_px": [64, 64]})
    {'real_step': 1.0, 'real_units': 'Å', 'energy_eV': 300000.0, 'origin': (64.0, 64.0)}
    """
    merged: dict[str, Any] = {}
    for attrs in reversed(attr_maps):
        for k in attrs.keys():
            try:
                merged[str(k).lower()] = attrs[k]
            except Exception:  # an unreadable attribute is no reason to refuse the data
                continue

    def first(names: tuple[str, ...]) -> float | None:
        for n in names:
            if n in merged:
                v = scalar_or_equal_pair(merged[n])
                if v is not None:
                    return v
        return None

    out: dict[str, Any] = {}
    if (v := first(_REAL_STEP_A)) is not None:
        out.update(real_step=v, real_units="Å")
    if (v := first(_RECIP_INV_A)) is not None:
        out.update(reciprocal_step=v, reciprocal_units="1/Å")
    elif (v := first(_RECIP_MRAD)) is not None:
        out.update(reciprocal_step=v, reciprocal_units="mrad")
    if (v := first(_ENERGY_EV)) is not None:
        out["energy_eV"] = v
    elif (v := first(_ENERGY_KV)) is not None:
        out["energy_eV"] = v * 1e3
    if (v := first(_ALPHA_MRAD)) is not None:
        out["convergence_semiangle_mrad"] = v
    for n in _ORIGIN_PX:
        if n in merged:
            try:
                o = np.asarray(merged[n], dtype=np.float64).ravel()
            except (TypeError, ValueError):
                continue
            if o.size == 2 and np.all(np.isfinite(o)):
                out["origin"] = (float(o[0]), float(o[1]))
                break
    return out


def choose_array(path: str, found: dict[str, Any], requested: str | None, what: str) -> str:
    """Pick the 4D array among ``found`` (name -> array), or say how to choose.

    With ``requested`` it must be one of them; otherwise a single 4D array wins, then
    one whose last name component is ``data`` or ``datacube``;
    failing those, a 3D stack of patterns chosen the same way.
    """
    if requested is not None:
        key = str(requested).strip("/")
        if key in found:
            return key
        listing = ", ".join(f"{k} {tuple(found[k].shape)}" for k in sorted(found)) or "none"
        raise FileFormatError(
            path, f"has no {what} named {requested!r}.", f"Arrays in the file: {listing}."
        )
    for ndim in (4, 3):
        cands = [k for k, a in found.items() if len(a.shape) == ndim]
        if len(cands) > 1:
            preferred = [k for k in cands if k.rsplit("/", 1)[-1].lower() in ("data", "datacube")]
            if len(preferred) != 1:
                listing = ", ".join(f"{k} {tuple(found[k].shape)}" for k in sorted(cands))
                raise FileFormatError(
                    path, f"holds several {ndim}D arrays: {listing}.", "Choose one with dataset='<path>'."
                )
            cands = preferred
        if cands:
            return cands[0]
    listing = ", ".join(f"{k} {tuple(a.shape)}" for k, a in sorted(found.items())) or "no arrays at all"
    raise FileFormatError(
        path,
        f"holds no 4D array (Rx, Ry, Qx, Qy) and no 3D stack of patterns; found {listing}.",
        "Check that this is a 4D-STEM file, or choose an array with dataset='<path>'.",
    )


def product(shape: Any) -> int:
    """Product of a shape as a Python int (no overflow)."""
    return math.prod(int(n) for n in shape)
