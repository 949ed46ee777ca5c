"""``fourd-widgets info FILE``: what a 4D-STEM file holds, without reading its data.

Prints the format, shape, dtype, size, storage chunking and calibration that
:func:`fourd_widgets.io.describe` reports, as a table or (``--json``) as JSON.

Examples
--------
>>> human_size(16 * 2**20)
'16.0 MiB (16,777,216 bytes)'
>>> print(format_calibration({"reciprocal_step": 0.015625, "reciprocal_units": "1/Å",
...                           "energy_eV": 300e3, "origin": [64, 64]}))
  reciprocal step         0.015625 1/Å
  beam energy             300 keV
  origin                  (64, 64) px
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_parser", "run", "options_from_args", "human_size", "format_calibration",
           "format_table", "to_json"]

_LABEL_WIDTH = 14
_CAL_WIDTH = 22


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``info`` subcommand to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    parser = subparsers.add_parser(
        "info",
        help="describe a 4D-STEM file (format, shape, dtype, size, chunking, calibration)",
        description="Describe a 4D-STEM file without reading its data.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="the file to describe")
    parser.add_argument("--dataset", metavar="D",
                        help="which dataset inside the file (an HDF5 path, or an index)")
    parser.add_argument("--scan-shape", nargs=2, type=int, metavar=("RX", "RY"),
                        help="scan shape, for files that store a flat stack of patterns")
    parser.add_argument("--binning", type=int, metavar="N",
                        help="detector binning applied when the file is read")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)
    return parser


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The reader options given on the command line (those left out are not passed).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``info`` arguments.

    Returns
    -------
    dict
        Keyword arguments for :func:`fourd_widgets.io.describe` / :func:`fourd_widgets.load`.
    """
    options: dict[str, Any] = {}
    if args.dataset is not None:
        options["dataset"] = args.dataset
    if args.scan_shape is not None:
        options["scan_shape"] = tuple(args.scan_shape)
    if args.binning is not None:
        options["binning"] = args.binning
    return options


def run(args: argparse.Namespace) -> int:
    """Describe ``args.file`` and print the result; returns the exit status."""
    from ..io import describe

    description = describe(args.file, **options_from_args(args))
    if args.json:
        print(to_json(description))
    else:
        print(format_table(args.file, description))
    return 0


def human_size(nbytes: int) -> str:
    """A byte count in binary units, with the exact count beside it.

    Parameters
    ----------
    nbytes : int

    Returns
    -------
    str
        e.g. ``'16.0 MiB (16,777,216 bytes)'``; under 1 KiB just ``'512 bytes'``.
    """
    n = int(nbytes)
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            break
    return f"{value:.1f} {unit} ({n:,} bytes)"


def _num(value: Any) -> str:
    return f"{float(value):g}"


def _pair(value: Any) -> str:
    return "(" + ", ".join(_num(v) for v in value) + ")"


def _describe_origin(value: Any) -> str:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 1:
        return f"{_pair(arr)} px"
    return f"a map over the scan, {arr.shape[0]} × {arr.shape[1]} positions"


#: (field, label, formatter of a value that is set) in the order they are printed.
_CALIBRATION_ROWS: tuple[tuple[str, str, Any], ...] = (
    ("real_step", "real step", lambda v, c: f"{_num(v)} {c.get('real_units', 'Å')}"),
    ("reciprocal_step", "reciprocal step", lambda v, c: f"{_num(v)} {c.get('reciprocal_units', '1/Å')}"),
    ("energy_eV", "beam energy", lambda v, c: f"{_num(float(v) / 1e3)} keV"),
    ("convergence_semiangle_mrad", "convergence semi-angle", lambda v, c: f"{_num(v)} mrad"),
    ("origin", "origin", lambda v, c: _describe_origin(v)),
    ("origin_map", "origin", lambda v, c: _describe_origin(v)),
    ("ellipse", "ellipse (a, b, θ°)", lambda v, c: _pair(v)),
    ("rotation_deg", "rotation", lambda v, c: f"{_num(v)}°"),
    ("flip", "flip", lambda v, c: "yes" if v else "no"),
)
_UNIT_FIELDS = {"real_units", "reciprocal_units", "type", "schema_version"}


def format_calibration(calibration: dict[str, Any]) -> str:
    """Calibration lines with their units; fields that are not set are left out.

    Parameters
    ----------
    calibration : dict
        As :meth:`fourd_widgets.Calibration.to_dict` writes it.

    Returns
    -------
    str
        One indented line per field that is set; ``'  (none: everything in pixels)'``
        when nothing is.
    """
    lines = []
    known = {name for name, _, _ in _CALIBRATION_ROWS} | _UNIT_FIELDS
    for name, label, fmt in _CALIBRATION_ROWS:
        value = calibration.get(name)
        if value is None:
            continue
        lines.append(f"  {label:<{_CAL_WIDTH}}  {fmt(value, calibration)}")
    for name in sorted(set(calibration) - known):
        if calibration[name] is not None:
            lines.append(f"  {name:<{_CAL_WIDTH}}  {calibration[name]}")
    return "\n".join(lines) if lines else "  (none: everything in pixels)"


def _format_shape(shape: Any) -> str:
    shape = tuple(int(n) for n in shape)
    text = "(" + ", ".join(map(str, shape)) + ")"
    if len(shape) == 4:
        text += f"  scan {shape[0]} × {shape[1]}, detector {shape[2]} × {shape[3]}"
    return text


def _format_chunking(chunks: Any) -> str:
    if chunks is None:
        return "contiguous (not chunked)"
    return "(" + ", ".join(str(int(n)) for n in chunks) + ")"


#: Top-level rows of the table: (key in describe's dict, label, formatter).
_ROWS: tuple[tuple[str, str, Any], ...] = (
    ("format", "format", str),
    ("shape", "shape", _format_shape),
    ("dtype", "dtype", str),
    ("nbytes", "size", human_size),
    ("file_bytes", "size on disk", human_size),
    ("storage_chunks", "chunking", _format_chunking),
)
#: Keys of describe's dict that are not rows of their own (``path`` is the ``file`` row).
_HIDDEN = {"path", "calibration"}


def format_table(path: str | Path, description: dict[str, Any]) -> str:
    """The human-readable ``info`` table.

    Parameters
    ----------
    path : str or Path
        The file described (printed first, unless the description names it).
    description : dict
        What :func:`fourd_widgets.io.describe` returned.

    Returns
    -------
    str
    """
    lines = [f"{'file':<{_LABEL_WIDTH}}{description.get('path', path)}"]
    for key, label, fmt in _ROWS:
        if key in description:
            lines.append(f"{label:<{_LABEL_WIDTH}}{fmt(description[key])}")
    if description.get("options"):
        given = ", ".join(f"{k}={_plain(v)}" for k, v in description["options"].items())
        lines.append(f"{'options':<{_LABEL_WIDTH}}{given}")
    shown = {key for key, _, _ in _ROWS} | _HIDDEN | {"options"}
    for key in sorted(set(description) - shown):
        if description[key] not in (None, {}, []):
            lines.append(f"{key:<{_LABEL_WIDTH}}{_plain(description[key])}")
    lines.append("calibration")
    lines.append(format_calibration(description.get("calibration") or {}))
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and paths turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.dtype, Path)):
        return str(value)
    return value


def to_json(description: dict[str, Any]) -> str:
    """``description`` as indented JSON (numpy values become plain numbers and lists)."""
    return json.dumps(_plain(description), indent=2, ensure_ascii=False)
