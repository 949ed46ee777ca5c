"""Peak-table calibration: peak vectors relative to the origin, without the ellipse, in the scan frame.

These functions take a :class:`~fourd_widgets.analysis.peaks.PeakTable` (or any
table with its columns and methods) and a :class:`~fourd_widgets.core.Calibration`;
a table they return is of the type they were given. They import nothing of the
analysis package, so :mod:`.peaks`, :mod:`.lattice_basis`, :mod:`.calibration` and
:mod:`.strain` can all build on them without import cycles.

Conventions (as in :mod:`.calibration`): the ellipse ``(a, b, θ)`` maps a physical
vector ``g`` (px) to ``D g`` with ``D = R(θ) diag(a, b) R(θ)^T``; a scan-frame
vector ``v`` appears on the detector as ``R(rotation_deg) S v`` (``S`` swaps x
and y when ``flip``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.calibration import Calibration
from ..core.errors import ParameterError, ShapeError

__all__ = ["distortion_matrix", "scan_frame_matrix", "origin_per_peak", "corrected_vectors", "peaks_in_region",
           "calibrated_peaks"]


def distortion_matrix(ellipse: Any) -> np.ndarray:
    """``D = R(θ) diag(a, b) R(θ)^T`` of an ellipse ``(a, b, θ_deg)``; identity for None.

    >>> np.round(distortion_matrix((2.0, 1.0, 90.0)), 12).tolist()
    [[1.0, 0.0], [0.0, 2.0]]
    """
    if ellipse is None:
        return np.eye(2)
    a, b, th = (float(v) for v in ellipse)
    t = math.radians(th)
    R = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return R @ np.diag([a, b]) @ R.T


def scan_frame_matrix(rotation_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """Matrix taking a detector-frame vector to the scan frame: ``S R(-rotation_deg)``.

    >>> np.round(scan_frame_matrix(90.0) @ [0.0, 1.0], 12).tolist()
    [1.0, 0.0]
    """
    t = math.radians(-float(rotation_deg))
    M = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return M[::-1].copy() if flip else M


def corrected_vectors(peaks: Any, calibration: Calibration, step: str = "correcting peak positions") -> np.ndarray:
    """Peak vectors relative to their position's origin, with the ellipse removed, in px.

    Parameters
    ----------
    peaks : PeakTable
        In detector px.
    calibration : Calibration
        ``origin_map`` (preferred) or ``origin``; ``ellipse`` when set.
    step : str
        What needs them (for the error message).

    Returns
    -------
    (n, 2) array
        ``D^-1 (q - origin)``.

    Raises
    ------
    MissingCalibrationError
        Without origin and origin_map.

    Examples
    --------
    >>> from fourd_widgets.analysis.peaks import PeakTable
    >>> from fourd_widgets.core import Calibration
    >>> t = PeakTable((1,), [0, 1], qx=[12.0], qy=[10.0], intensity=[1.0], correlation=[1.0])
    >>> corrected_vectors(t, Calibration(origin=(10, 10), ellipse=(2, 1, 0))).tolist()
    [[1.0, 0.0]]
    """
    if peaks.units != "px":
        raise ParameterError(f"{step}: the peak table is already calibrated (units {peaks.units!r}); pass the "
                             "table in detector px", field="peaks")
    ox, oy = origin_per_peak(peaks, calibration, step)
    v = np.stack([peaks.qx - ox, peaks.qy - oy], -1)
    if calibration.ellipse is not None:
        v = v @ np.linalg.inv(distortion_matrix(calibration.ellipse)).T
    return v


def peaks_in_region(peaks: Any, region: np.ndarray | None) -> Any:
    """The peaks of the scan positions where ``region`` is True (all for None); same scan shape.

    >>> from fourd_widgets.analysis.peaks import PeakTable
    >>> t = PeakTable((1, 2), [0, 1, 3], qx=[1.0, 2, 3], qy=[4.0, 5, 6], intensity=[1.0, 1, 1], correlation=[1.0, 1, 1])
    >>> peaks_in_region(t, np.array([[False, True]])).counts().tolist()
    [[0, 2]]
    """
    if region is None:
        return peaks
    reg = np.asarray(region)
    if reg.shape != peaks.scan_shape or reg.dtype != bool:
        raise ParameterError(f"region must be a bool mask of the scan shape {peaks.scan_shape}, got {reg.dtype} "
                             f"of shape {reg.shape}", field="region")
    if not reg.any():
        raise ParameterError("the region selects no scan position; draw it over the area to use", field="region")
    keep = reg.ravel()[peaks.positions()]
    counts = np.where(reg.ravel(), peaks.counts().ravel(), 0)
    return type(peaks)(peaks.scan_shape, np.concatenate([[0], np.cumsum(counts)]), peaks.qx[keep], peaks.qy[keep],
                     peaks.intensity[keep], peaks.correlation[keep], peaks.flags)


def calibrated_peaks(peaks: Any, calibration: Calibration, *, scan_frame: bool = False) -> Any:
    """Peak table relative to the origin, ellipse-corrected, in the calibration's reciprocal units.

    ``scan_frame=True`` also rotates (and flips) the vectors into the scan frame.
    Needs ``reciprocal_step`` (MissingCalibrationError otherwise).
    """
    step = calibration.require("reciprocal_step", "calibrating the peak table")
    v = corrected_vectors(peaks, calibration, "calibrating the peak table")
    if scan_frame:
        v = v @ scan_frame_matrix(calibration.rotation_deg, calibration.flip).T
    return type(peaks)(peaks.scan_shape, peaks.offsets, v[:, 0] * step, v[:, 1] * step, peaks.intensity,
                     peaks.correlation, peaks.flags, units=calibration.reciprocal_units)


def origin_per_peak(table: Any, calibration: Any,
                    step: str = "calibrating the peak table") -> tuple[np.ndarray, np.ndarray]:
    """The origin (qx0, qy0) under each peak: ``origin_map`` at its position, else ``origin``."""
    om = getattr(calibration, "origin_map", None)
    if om is not None:
        om = np.asarray(om, dtype=np.float64)
        if om.shape[:-1] != table.scan_shape:
            raise ShapeError(f"origin_map has scan shape {om.shape[:-1]}, the peak table {table.scan_shape}")
        flat = om.reshape(-1, 2)[table.positions()]
        return flat[:, 0], flat[:, 1]
    o = calibration.require("origin", step)
    return np.full(len(table), o[0]), np.full(len(table), o[1])
