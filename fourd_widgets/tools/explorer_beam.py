"""Detectors that start on the beam, a "centre on beam" action and detector warnings, for the explorer.

:class:`BeamPlacement` is mixed into
:class:`~fourd_widgets.tools.explorer.ExplorerSession`. When a file opens,
the default detectors come from :mod:`fourd_widgets.analysis.beam` on the mean
of a sparse sample of patterns (64 spread over the scan): a bright-field circle
on the measured beam and an annular dark field over the diffracted intensity.
Once the full mean pattern has been computed (in the background, before the
drag cache), the defaults are placed again from it, unless the user has edited,
added or removed a detector meanwhile. A calibrated pattern origin is the user's own measurement: when the
calibration has one, the detectors are centred on it and only their sizes
come from the pattern.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..analysis import beam as beam_analysis
from ..analysis.beam import Beam
from ..analysis.detectors import Annulus, Circle, Detector, Point, Polygon, Rectangle, pixel_scale
from ..analysis.steps import RunContext
from ..analysis.virtual import VirtualDiffractionParams, virtual_diffraction_from_params
from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import CancelledError

__all__ = ["BeamPlacement", "SPARSE_PATTERNS", "beam_defaults", "moved_to", "is_single_pattern"]

#: How many patterns, spread over the scan, give the first estimate of the beam.
SPARSE_PATTERNS = 64


def is_single_pattern(cube: DataCube) -> bool:
    """True for a 1 x 1 scan: one pattern, no real-space image to show."""
    return tuple(cube.scan_shape) == (1, 1)


def beam_defaults(pattern: np.ndarray, calibration: Calibration) -> tuple[Beam, list[Detector]]:
    """The beam measured in ``pattern`` and the default (bright field, annular dark field) detectors.

    With a calibrated origin the detectors are centred there (sizes from the pattern).

    >>> q = np.hypot(*np.meshgrid(np.arange(48) - 10.0, np.arange(48) - 30.0, indexing="ij"))
    >>> beam, (bf, adf) = beam_defaults(np.where(q <= 5, 100.0, 1.0 / (1 + q)), Calibration())
    >>> [round(v) for v in bf.center], adf.inner > bf.radius
    ([10, 30], True)
    """
    beam = beam_analysis.find_beam(pattern)
    placed = beam if calibration.origin is None else Beam(tuple(calibration.origin), beam.radius, beam.cut,
                                                          beam.contrast)
    return beam, list(beam_analysis.default_detectors(pattern, placed))


def moved_to(detector: Detector, target_px: tuple[float, float], calibration: Calibration) -> Detector:
    """``detector`` with its centre moved onto ``target_px`` (absolute detector pixels), same size and units.

    >>> moved_to(Circle((3, 4), 2), (10.0, 12.0), Calibration()).center
    (10.0, 12.0)
    >>> moved_to(Rectangle((0, 4), (0, 2)), (10.0, 10.0), Calibration()).qx_range
    (8.0, 12.0)
    """
    t = np.asarray(target_px, dtype=np.float64)
    if detector.relative_to_origin and calibration.origin is not None:
        t = t - np.asarray(calibration.origin, dtype=np.float64)
    t = t * pixel_scale(detector.units, calibration)
    x, y = round(float(t[0]), 3), round(float(t[1]), 3)
    if isinstance(detector, (Circle, Annulus)):
        return detector.replace(center=(x, y))
    if isinstance(detector, Point):
        return detector.replace(qx=x, qy=y)
    if isinstance(detector, Rectangle):
        (x0, x1), (y0, y1) = detector.qx_range, detector.qy_range
        hx, hy = (x1 - x0) / 2, (y1 - y0) / 2
        return detector.replace(qx_range=(x - hx, x + hx), qy_range=(y - hy, y + hy))
    if isinstance(detector, Polygon) and detector.vertices:
        v = np.asarray(detector.vertices, dtype=np.float64)
        v = v + (np.array([x, y]) - v.mean(axis=0))
        return detector.replace(vertices=tuple((float(a), float(b)) for a, b in v))
    return detector


class BeamPlacement:
    """Beam-aware defaults, "centre on beam" and detector warnings (mixed into the explorer session)."""

    cube: DataCube
    calibration: Calibration
    _lock: threading.RLock
    _records: list[Detector]
    _ids: list[str]
    _whole: dict[str, np.ndarray]

    def _beam_defaults(self, wanted: bool = True, refine: bool = True) -> list[Detector]:
        """Measure the beam on a sparse sample of patterns; the default detectors placed from it.

        ``refine``: they will be placed again from the full mean pattern (the drag cache's thread
        does it first); until then :meth:`wait` waits, so that a script sees the final defaults.
        """
        self._auto: dict[int, Detector] = {}
        self._refining = threading.Event()
        self.beam: Beam | None = None
        if not wanted:
            return []
        try:
            pattern = beam_analysis.sparse_mean_pattern(self.cube, SPARSE_PATTERNS)
            self.beam, dets = beam_defaults(pattern, self.calibration)
        except Exception:  # noqa: BLE001 - unreadable sample: fall back to the origin-centred defaults
            return []
        self._auto = dict(enumerate(dets))
        if refine and int(np.prod(self.cube.scan_shape)) > SPARSE_PATTERNS and not is_single_pattern(self.cube):
            self._refining.set()
        return dets

    def _refine_on_mean(self, cancel: threading.Event) -> None:
        """Compute the full mean pattern, then move the default detectors if the user has moved none."""
        try:
            self._refine(cancel)
        finally:
            self._refining.clear()

    def _refine(self, cancel: threading.Event) -> None:
        if not self._auto or not self._refining.is_set():
            return  # no defaults, or the sample was the whole scan already
        try:
            self._set_status("measuring the beam on the mean pattern")
            mean = self._whole.get("mean")
            if mean is None:
                ctx = RunContext(engine={"progress": False, **self._engine_options, "cancel": cancel})  # no console bar
                mean = virtual_diffraction_from_params(self.cube, VirtualDiffractionParams(method="mean"), ctx)
                self._whole["mean"] = mean
            self.beam, dets = beam_defaults(mean, self.calibration)
        except CancelledError:
            return
        except Exception:  # noqa: BLE001 - the sparse estimate stays
            return
        changed = []
        with self._lock:
            # the user edited, added or removed a detector: the layout is theirs, nothing moves under them
            untouched = len(self._records) == len(self._auto) and all(
                self._records[k] == placed for k, placed in self._auto.items())
            for k, placed in self._auto.items():
                if untouched and dets[k] != placed:
                    self._records[k] = dets[k]
                    self._exact[k] = False
                    changed.append(k)
            self._auto = {}
        if changed and not self.closed:
            self._emit("detectors")
            self._request_images(final=True, changed=tuple(changed))

    def measured_beam(self) -> Beam:
        """The beam on the best pattern at hand: the full mean if computed, else a sparse sample."""
        mean = self._whole.get("mean")
        if mean is None:
            mean = beam_analysis.sparse_mean_pattern(self.cube, SPARSE_PATTERNS)
        self.beam = beam_analysis.find_beam(mean)
        return self.beam

    def centre_on_beam(self) -> tuple[float, float]:
        """Move every detector's centre onto the measured beam (sizes kept); returns the beam centre (px)."""
        centre = self.measured_beam().center
        with self._lock:
            for k, det in enumerate(self._records):
                self._records[k] = moved_to(det, centre, self.calibration)
                self._exact[k] = False
            self._auto = {}
        self._emit("detectors")
        self._request_images(final=True)
        return centre

    def detector_warnings(self) -> dict[str, list[str]]:
        """What is wrong with where each detector sits, by detector id (empty lists: nothing)."""
        with self._lock:
            pairs = list(zip(self._ids, self._records))
        out: dict[str, list[str]] = {}
        for ident, det in pairs:
            try:
                out[ident] = beam_analysis.detector_warnings(det, self.cube.detector_shape, self.calibration)
            except Exception as exc:  # noqa: BLE001 - e.g. calibrated units without a calibration
                out[ident] = [str(exc)]
        return out

    # provided by the session
    _engine_options: dict
    _exact: list[bool]
    closed: bool

