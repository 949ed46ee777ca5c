"""Peak tables (Bragg disks per scan position as flat columns plus offsets) and Bragg vector maps.

A :class:`PeakTable` is what disk detection returns and what calibration, lattice
fits and strain maps read; it is a results-file container (``to_h5`` / ``from_h5``,
named ``peak_table`` in the step manifest).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..core.errors import ParameterError, ShapeError
from ..kernels import disks as K
from .peak_calibration import calibrated_peaks, origin_per_peak
from .steps import renamed_keyword

__all__ = ["PeakTable", "FLAG_INVALID", "FLAG_LATTICE", "origin_per_peak", "bragg_vector_map"]

#: Peak-table flag: the pattern held NaN or infinite values and was skipped.
FLAG_INVALID = 1
#: Peak-table flag: the peaks of this position are sites of its fitted lattice
#: (:func:`~fourd_widgets.analysis.disk_lattice.snap_to_lattice`), not free estimates.
FLAG_LATTICE = 2


class PeakTable:
    """Ragged table of peaks per scan position: flat columns plus offsets.

    Parameters
    ----------
    scan_shape : tuple of int
        Shape of the scan (e.g. ``(Rx, Ry)``, or ``(N,)`` for a list of patterns).
    offsets : (prod(scan_shape) + 1,) int64 array
        Peaks of position ``p`` (C order) are rows ``offsets[p]:offsets[p+1]``.
    qx, qy : (n,) float64 arrays
        Peak positions, in detector pixels (or calibrated units, see ``units``).
    intensity : (n,) float64 array
        Pattern intensity summed over the template disk at the peak.
    correlation : (n,) float64 array
        Correlation peak value (what the thresholds act on; py4DSTEM's ``intensity``).
    flags : array of scan_shape, uint8, optional
        Per position; bit :data:`FLAG_INVALID` = pattern held NaN/inf, skipped;
        bit :data:`FLAG_LATTICE` = its peaks are fitted lattice sites (lattice snap).
    units : str
        ``'px'`` (detector pixels, origin at pixel 0) or a reciprocal unit
        (then ``qx, qy`` are relative to the beam origin).

    Examples
    --------
    >>> t = PeakTable((1, 2), [0, 1, 3], qx=[1.0, 2, 3], qy=[4.0, 5, 6], intensity=[1.0, 1, 1],
    ...               correlation=[0.5, 0.4, 0.3])
    >>> t.counts().tolist(), t.at(0, 1)["qx"].tolist(), len(t)
    ([[1, 2]], [2.0, 3.0], 3)
    """

    columns = ("qx", "qy", "intensity", "correlation")

    def __init__(self, scan_shape: tuple[int, ...], offsets: Any, qx: Any, qy: Any, intensity: Any,
                 correlation: Any, flags: Any = None, units: str = "px") -> None:
        self.scan_shape = tuple(int(n) for n in scan_shape)
        npos = int(np.prod(self.scan_shape))
        self.offsets = np.asarray(offsets, dtype=np.int64)
        if self.offsets.shape != (npos + 1,) or self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 0):
            raise ShapeError(f"peak table offsets must be a non-decreasing ({npos + 1},) array from 0")
        n = int(self.offsets[-1])
        cols = {}
        for name, v in zip(self.columns, (qx, qy, intensity, correlation)):
            a = np.asarray(v, dtype=np.float64).reshape(-1)
            if a.shape != (n,):
                raise ShapeError(f"peak table column {name!r} has {a.size} rows, offsets say {n}")
            cols[name] = a
        self.qx, self.qy, self.intensity, self.correlation = (cols[c] for c in self.columns)
        self.flags = (np.zeros(self.scan_shape, np.uint8) if flags is None
                      else np.asarray(flags, dtype=np.uint8).reshape(self.scan_shape))
        self.units = str(units)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _index(self, idx: tuple[int, ...]) -> int:
        if len(idx) != len(self.scan_shape):
            raise ParameterError(f"peak table position needs {len(self.scan_shape)} indices, got {len(idx)}")
        return int(np.ravel_multi_index(tuple(int(i) for i in idx), self.scan_shape))

    def at(self, *idx: int) -> dict[str, np.ndarray]:
        """Columns of the peaks at one scan position (views), e.g. ``table.at(rx, ry)``."""
        p = self._index(idx)
        s = slice(int(self.offsets[p]), int(self.offsets[p + 1]))
        return {c: getattr(self, c)[s] for c in self.columns}

    def counts(self) -> np.ndarray:
        """Number of peaks per scan position, shape ``scan_shape``."""
        return np.diff(self.offsets).reshape(self.scan_shape)

    def positions(self) -> np.ndarray:
        """Flat scan index of each peak's position, shape ``(n,)``."""
        return np.repeat(np.arange(self.offsets.size - 1), np.diff(self.offsets))

    def to_calibrated(self, calibration: Any, origin: bool = True) -> "PeakTable":
        """Peaks relative to the beam origin, in the calibration's reciprocal units.

        Parameters
        ----------
        calibration : Calibration
            Uses ``origin_map`` (per position) or ``origin``, ``ellipse`` when set,
            and ``reciprocal_step``.
        origin : bool
            Subtract the origin and remove the ellipse (default, as
            :func:`fourd_widgets.analysis.peak_calibration.calibrated_peaks`); False only
            scales detector coordinates.

        Raises
        ------
        MissingCalibrationError
            When the origin or the reciprocal step is not set.
        """
        if self.units != "px":
            raise ParameterError(f"this peak table is already calibrated (units {self.units!r})")
        if origin:
            return calibrated_peaks(self, calibration)
        step = calibration.require("reciprocal_step", "calibrating the peak table")
        return PeakTable(self.scan_shape, self.offsets, self.qx * step, self.qy * step, self.intensity,
                         self.correlation, self.flags, units=calibration.reciprocal_units)

    def to_h5(self, group: Any) -> None:
        """Write the table into an HDF5 group (results files)."""
        group.attrs["scan_shape"] = np.asarray(self.scan_shape, dtype=np.int64)
        group.attrs["units"] = self.units
        group.create_dataset("offsets", data=self.offsets)
        group.create_dataset("flags", data=self.flags)
        for c in self.columns:
            group.create_dataset(c, data=getattr(self, c), compression="gzip" if len(self) > 4096 else None)

    @classmethod
    def from_h5(cls, group: Any) -> "PeakTable":
        """Read a table written by :meth:`to_h5`."""
        return cls(tuple(int(n) for n in group.attrs["scan_shape"]), group["offsets"][()],
                   *(group[c][()] for c in cls.columns), flags=group["flags"][()], units=str(group.attrs["units"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PeakTable):
            return NotImplemented
        return (self.scan_shape == other.scan_shape and self.units == other.units
                and np.array_equal(self.offsets, other.offsets) and np.array_equal(self.flags, other.flags)
                and all(np.array_equal(getattr(self, c), getattr(other, c), equal_nan=True)
                        for c in self.columns))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PeakTable(scan_shape={self.scan_shape}, peaks={len(self)}, units={self.units!r})"


def bragg_vector_map(peaks: PeakTable, shape: tuple[int, int], *,
                     weights: Literal["intensity", "correlation"] | None = "intensity",
                     origin: Any = None, center: tuple[float, float] | None = None,
                     sampling: float = 1.0, **deprecated: Any) -> np.ndarray:
    """2-D histogram of all peaks of a table, with sub-pixel bilinear splatting.

    Parameters
    ----------
    peaks : PeakTable
        In detector pixels (``units == 'px'``).
    shape : (H, W)
        Output shape (before ``sampling``), usually the detector shape.
    weights : {'intensity', 'correlation'} or None
        Column to weight each peak by, or None for counts.
    origin : None, (2,) array, (Rx, Ry, 2) array or Calibration
        When given, each peak is taken relative to the origin of its position
        and placed relative to ``center`` (origin-centred map).
    center : (float, float), optional
        Where the origin lands (default ``(H // 2, W // 2)``; ``centre=`` is the
        deprecated spelling).
    sampling : float
        Output pixels per detector pixel (2: twice finer).

    Returns
    -------
    (round(H * sampling), round(W * sampling)) float64 array

    Examples
    --------
    >>> t = PeakTable((2,), [0, 1, 2], qx=[1.5, 1.5], qy=[2.0, 2.0], intensity=[1.0, 3.0],
    ...               correlation=[1.0, 1.0])
    >>> m = bragg_vector_map(t, (4, 4))
    >>> float(m[1, 2]), float(m[2, 2])
    (2.0, 2.0)
    """
    center = renamed_keyword(deprecated, "centre", "center", center, "bragg_vector_map")
    if peaks.units != "px":
        raise ParameterError(f"bragg_vector_map needs a peak table in detector pixels, got units {peaks.units!r}")
    if sampling <= 0:
        raise ParameterError(f"sampling must be positive, got {sampling}", field="sampling")
    H, W = (int(n) for n in shape)
    qx, qy = peaks.qx.copy(), peaks.qy.copy()
    if origin is not None:
        if hasattr(origin, "reciprocal_step"):
            ox, oy = origin_per_peak(peaks, origin)
        else:
            o = np.asarray(origin, dtype=np.float64)
            if o.shape == (2,):
                ox, oy = np.full(len(peaks), o[0]), np.full(len(peaks), o[1])
            elif o.shape == peaks.scan_shape + (2,):
                flat = o.reshape(-1, 2)[peaks.positions()]
                ox, oy = flat[:, 0], flat[:, 1]
            else:
                raise ShapeError(f"origin must be (2,) or {peaks.scan_shape + (2,)}, got {o.shape}")
        c = center if center is not None else (H // 2, W // 2)
        qx += c[0] - ox
        qy += c[1] - oy
    w = np.ones(len(peaks)) if weights is None else getattr(peaks, weights)
    out = np.zeros((int(round(H * sampling)), int(round(W * sampling))))
    K.splat_bilinear(qx * sampling, qy * sampling, np.asarray(w, dtype=np.float64), out)
    return out
