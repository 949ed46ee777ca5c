"""``DiskTunerSession``: a FindDisksParams record tuned on a strip of chosen patterns, without a browser.

The session holds one :class:`~fourd_widgets.analysis.disks.FindDisksParams`
record (its :class:`~fourd_widgets.analysis.probe.ProbeTemplateParams` included),
the strip's scan positions and two caches on its newest-wins worker. Its
compute policy, field by field:

* a template field: a new :func:`~fourd_widgets.analysis.probe.probe_template`,
  then a new correlation;
* a field of :data:`CORRELATION_FIELDS` or a moved position: one
  :func:`~fourd_widgets.analysis.disks.correlate_patterns` of the strip;
* any other field (thresholds, spacing, edge, peak count): only
  ``DiskCorrelation.detect`` / ``.candidates`` (no FFT);
* :meth:`DiskTunerSession.run_on_all`: :func:`~fourd_widgets.analysis.disks.find_disks`
  in a thread with progress, cancel and the count map chunk by chunk, then the
  :func:`~fourd_widgets.analysis.disks.bragg_vector_map`.

So ``fw.run(session.params, cube)["find_disks"] == session.peaks``. The lattice constraint
(``FindDisksParams.lattice``) is kept and applied by the run; the strip shows free estimates (its few
patterns have no scan neighbourhood). The other route, the whole-pattern lattice fit
(``set_route('whole_pattern')``), is :mod:`fourd_widgets.tools.disk_tuner_route`.

Messages (``messages['template' | 'detect' | 'run']``) say what is wrong beside each group of controls.
Events for a view (besides the Tool ones): ``'params'``, ``'positions'``, ``'template'`` (``(image, r,
profile)``), ``'patterns'``, ``'strip'`` (the update, or None), ``'histogram'``, ``'counts'`` (``(map,
badge)``), ``'bragg'`` (the map).
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from typing import Any, Sequence

import numpy as np

from ..analysis.detectors import Circle, detector_mask
from ..analysis.disks import (FLAG_INVALID, Candidates, DiskCorrelation, FindDisksParams, NoPeaksWarning, PeakTable,
                              bragg_vector_map, correlate_patterns, find_disks)
from ..analysis.probe import ProbeTemplate, ProbeTemplateParams, measure_disk, probe_template
from ..analysis.virtual import virtual_image
from ..core.datacube import DataCube
from ..core.errors import CancelledError, ParameterError
from ..core.recipe import Recipe
from ..engine.run import Cancel
from .base import Tool, explain
from .disk_tuner_compute import (CORRELATION_FIELDS, DEFAULT_POSITIONS, StripRequest, StripUpdate,
                                 candidate_histogram, detect_message, find_disks_record, refinement_note,
                                 spread_positions, strip_origins)
from .disk_tuner_route import WHOLE_PATTERN, DiskTunerRoute, tuner_records
from .overlays import region_from_overlay

__all__ = ["DiskTunerSession", "PARTIAL_EVERY_S"]

#: Minimum time between two partial count maps shown during a run.
PARTIAL_EVERY_S = 0.15


class DiskTunerSession(DiskTunerRoute, Tool):
    """Probe template and disk thresholds tuned on a strip of patterns: the tuner without its views.

    Parameters
    ----------
    cube : DataCube
    params : FindDisksParams, optional
        Starting record (default ``FindDisksParams()``).
    positions : sequence of (int, int), optional
        Scan positions of the strip (default: ``n_positions`` spread over the scan).
    n_positions : int
    vacuum : (Qx, Qy) array, optional
        A separate vacuum recording of the probe (travels inside the record).
    engine_options : dict, optional
        ``chunk_bytes``, ``workers``, ``scheduler`` for "run on all".
    start : bool
        Compute the strip at once (a view passes False and calls :meth:`start` once it listens).

    Examples
    --------
    >>> import fourd_widgets as fw
    >>> cube, truth = fw.datasets.sample("strained_crystal", small=True)
    >>> s = DiskTunerSession(cube, n_positions=2).wait()
    >>> n, c = s.correlations, s.detections
    >>> s.set(min_relative_intensity=0.05).wait().correlations == n, s.detections == c + 1
    (True, True)
    >>> s.close()
    """

    name = "tuner"

    def __init__(self, cube: DataCube, params: FindDisksParams | None = None, *,
                 positions: Sequence[tuple[int, int]] | None = None, n_positions: int = DEFAULT_POSITIONS,
                 vacuum: np.ndarray | None = None, engine_options: dict | None = None, start: bool = True) -> None:
        if not isinstance(cube, DataCube):
            raise TypeError(f"DiskTuner needs a DataCube (fw.load(path) gives one), got {type(cube).__name__}")
        p = FindDisksParams() if params is None else params
        if not isinstance(p, FindDisksParams):
            raise ParameterError(f"DiskTuner params must be a FindDisksParams, got {type(p).__name__}", field="params")
        super().__init__(cube)
        self.cube: DataCube = cube
        if vacuum is not None and p.template.image is None:
            p = p.replace(template=p.template.replace(image=np.asarray(vacuum, dtype=np.float64)))
        self._params = p
        Rx, Ry = cube.scan_shape
        pos = positions if positions is not None else spread_positions(cube.scan_shape, n_positions)
        self._positions = [(int(np.clip(a, 0, Rx - 1)), int(np.clip(b, 0, Ry - 1))) for a, b in pos]
        if not self._positions:
            raise ParameterError("the tuner needs at least one scan position", field="positions")
        self._engine_options = {k: v for k, v in (engine_options or {}).items()
                                if k not in ("progress", "cancel", "on_partial")}
        # caches of the worker thread: the template and the correlation of the strip
        self._template: ProbeTemplate | None = None
        self._template_key: ProbeTemplateParams | None = None
        self._corr: DiskCorrelation | None = None
        self._corr_key: tuple | None = None
        self._shown_positions: tuple | None = None
        self.strip_peaks: PeakTable | None = None
        self.candidates: Candidates | None = None
        self.peaks: PeakTable | None = None
        self.partial_counts: np.ndarray | None = None
        self.bragg_map: np.ndarray | None = None
        self.run_state = "idle"
        self.correlations = 0
        self.detections = 0
        #: ``(kind, seconds)`` of each strip update, request to delivery ('template', 'correlate', 'filter', 'error').
        self.compute_times: deque[tuple[str, float]] = deque(maxlen=2000)
        self._last_partial = 0.0
        self._runner = self._add_worker(self._compute, self._deliver, self._failed)
        if start:
            self.start()

    def start(self) -> "DiskTunerSession":
        """Compute the strip of the current record (once; later edits recompute by themselves)."""
        self._request()
        return self

    @classmethod
    def from_params(cls, cube: DataCube, params: Recipe | FindDisksParams | dict | str,
                    **options: Any) -> "DiskTunerSession":
        """Rebuild a session from its :attr:`params` (see :func:`find_disks_record`)."""
        cube, p, lattice = tuner_records(cube, params)  # a whole_pattern_fit step opens the lattice route
        return cls(cube, p, **options) if lattice is None else cls(cube, p, **options).set_route(WHOLE_PATTERN, lattice)

    # --- state --------------------------------------------------------------------------------
    @property
    def find_params(self) -> FindDisksParams:
        """The detection record as the controls set it."""
        with self._lock:
            return self._params

    @property
    def params(self) -> Recipe:
        """The recipe of what is tuned: ``fw.run(session.params, cube)["find_disks"]`` replays it."""
        return self._route_recipe(Recipe(steps=(self.find_params,), labels=("find_disks",),
                                         calibration=self.cube.calibration))

    @property
    def positions(self) -> list[tuple[int, int]]:
        """Scan positions of the strip, in order."""
        with self._lock:
            return list(self._positions)

    @property
    def template(self) -> ProbeTemplate | None:
        """The template the strip was last correlated with (None if it could not be made)."""
        return self._template

    @property
    def refinement(self) -> str:
        """The sub-pixel refinement in use; for ``subpixel='auto'`` the one the probe radius chose, and why."""
        return refinement_note(self.find_params, None if self._template is None else self._template.radius)

    def results(self) -> dict[str, Any]:
        return self._route_results({} if self.peaks is None else {"find_disks": self.peaks})

    def images(self) -> dict[str, np.ndarray]:
        out = {} if self.partial_counts is None else {"peak_count": self.partial_counts}
        return out if self.bragg_map is None else {**out, "bragg_vector_map": self.bragg_map}

    def real_image(self, image: np.ndarray | None = None) -> tuple[np.ndarray, str]:
        """``(image, note)``: the scan image to click on: ``image``, or a bright-field virtual image."""
        note = ""
        if image is None:
            try:
                (cx, cy), r = measure_disk(self.cube.mean_pattern(progress=False))
                image = virtual_image(self.cube, Circle((cx, cy), 1.2 * r), progress=False)
            except Exception as exc:  # noqa: BLE001 - no picture to click on, but the tuner still works
                image, note = np.zeros(self.cube.scan_shape), f"no bright-field image: {exc}"
        image = np.asarray(image)
        if image.shape != tuple(self.cube.scan_shape):
            raise ParameterError(f"real_image has shape {image.shape}; the scan is {self.cube.scan_shape}",
                                 field="real_image")
        return image, note

    # --- edits ----------------------------------------------------------------------------------
    def set(self, **changes: Any) -> "DiskTunerSession":
        """Change fields of the record (``template=`` takes a ProbeTemplateParams); refusals are messages."""
        tpl = changes.pop("template", None)
        if tpl is not None:
            self._replace(template=tpl)
        if changes:
            self._replace(**changes)
        return self

    def set_template(self, **changes: Any) -> "DiskTunerSession":
        """Change fields of the template record (e.g. ``kernel='gaussian'``, ``region=mask``)."""
        with self._lock:
            tpl = self._params.template
        try:
            self._replace(template=tpl.replace(**changes))
        except (ParameterError, TypeError, ValueError) as exc:
            self._say("template", str(exc))
        return self

    def set_vacuum_region(self, overlay: dict) -> "DiskTunerSession":
        """Make the template from the scan positions inside ``overlay`` (a rectangle or polygon, scan px)."""
        try:
            mask = detector_mask(region_from_overlay(overlay), tuple(self.cube.scan_shape)) > 0
        except (ParameterError, ValueError) as exc:
            self._say("template", str(exc))
            return self
        return self.set_template(source="vacuum_region", region=mask)

    def pick(self, rx: int, ry: int, slot: int) -> "DiskTunerSession":
        """Show scan position ``(rx, ry)`` in strip slot ``slot``."""
        Rx, Ry = self.cube.scan_shape
        if not (0 <= rx < Rx and 0 <= ry < Ry):
            raise ParameterError(f"scan position ({rx}, {ry}) is outside the scan {(Rx, Ry)}", field="positions")
        self.move_positions({int(slot): (rx, ry)})
        return self

    def move_positions(self, moves: dict[int, tuple[float, float]]) -> None:
        """Move strip slots to scan positions (rounded, clamped onto the scan); recomputes if one moved."""
        Rx, Ry = self.cube.scan_shape
        moved = False
        with self._lock:
            for k, (x, y) in moves.items():
                new = (int(np.clip(round(x), 0, Rx - 1)), int(np.clip(round(y), 0, Ry - 1)))
                if k < len(self._positions) and self._positions[k] != new:
                    self._positions[k] = new
                    moved = True
        if moved:
            self._emit("positions")
            self._request()

    def _replace(self, **changes: Any) -> None:
        """New record with ``changes``; a refused value is a message beside its controls, not raised."""
        try:
            with self._lock:
                new = self._params.replace(**changes)
                new.validate()
                self._params = new
        except (ParameterError, TypeError, ValueError) as exc:
            self._say("template" if "template" in changes else "detect", str(exc))
            return
        self._emit("params")
        self._request()

    # --- the strip ----------------------------------------------------------------------------------
    def _request(self) -> None:
        with self._lock:
            req = StripRequest(self._params, tuple(self._positions))
        if not self.closed:
            self._runner.submit(req)

    def _compute(self, req: StripRequest) -> StripUpdate:
        """Template (if its record changed), correlation (if a correlation field changed), filters."""
        up = StripUpdate()
        p = req.params
        if self._template_key is None or self._template_key != p.template:
            up.kind = "template"
            try:
                tpl = probe_template(self.cube, p.template)
            except Exception as exc:  # noqa: BLE001 - shown beside the template controls
                self._template, self._template_key, self._corr_key = None, None, None
                up.template_error = explain(exc)
                return up
            self._template, self._template_key = tpl, p.template
            up.template_changed = True
        up.template = self._template
        key = (tuple(getattr(p, f) for f in CORRELATION_FIELDS), req.positions)
        if self._corr is None or self._corr_key != key:
            up.kind = "correlate" if up.kind == "filter" else up.kind
            patterns = np.stack([np.asarray(self.cube.pattern(x, y)) for x, y in req.positions])
            try:
                self._corr = correlate_patterns(patterns, self._template, p, origins=strip_origins(self.cube.calibration, req.positions),
                                                workers=1)
            except Exception as exc:  # noqa: BLE001
                self._corr, self._corr_key = None, None
                up.template_error = explain(exc)
                return up
            self._corr_key = key
            self.correlations += 1
        try:
            up.peaks = self._corr.detect(p)
            up.candidates = self._corr.candidates(p)
        except Exception as exc:  # noqa: BLE001
            up.detect_error = explain(exc)
            return up
        self.detections += 1
        up.valid = self._corr.valid.copy()
        return up

    def _deliver(self, req: StripRequest, up: StripUpdate) -> None:
        if self.closed:
            return
        if up.template_changed and up.template is not None:
            self._emit("template", up.template.preview())
            self._emit("params")  # the measured radius -> controls showing automatic values
        if req.positions != self._shown_positions:
            patterns = [np.nan_to_num(np.asarray(self.cube.pattern(x, y), dtype=np.float64), nan=0.0)
                        for x, y in req.positions]
            self._emit("patterns", patterns)
            self._shown_positions = req.positions
        self._say("template", up.template_error)
        if up.template_error:
            self._emit("strip", None)
        elif up.peaks is None:
            self._say("detect", up.detect_error)
        else:
            self.strip_peaks, self.candidates = up.peaks, up.candidates
            self._emit("strip", (req.positions, up))
            self._route_strip()
            self._say("detect", detect_message(up, req.params))
            self._emit("histogram", candidate_histogram(up.candidates, req.params))
        self.compute_times.append((up.kind, time.perf_counter() - req.started))
        self._notify()

    def _failed(self, req: StripRequest, exc: BaseException) -> None:
        self._say("detect", explain(exc))
        self.compute_times.append(("error", time.perf_counter() - req.started))

    # --- run on all ----------------------------------------------------------------------------------
    def run_on_all(self) -> "DiskTunerSession":
        """Find the disks of every pattern in a thread ("run on all"); returns at once."""
        if self.run_state == "running" or self.route == WHOLE_PATTERN:
            return self._run_lattice() if self.route == WHOLE_PATTERN else self
        self.peaks, self.bragg_map = None, None
        self.partial_counts = np.full(self.cube.scan_shape, np.nan)
        self.run_state = "running"
        self._say("run", "")
        params, token = self.find_params, self._start("finding the disks of every pattern")
        self._add_thread(lambda: self._run_all(params, token), "disk-tuner-run")
        return self

    def _run_all(self, params: FindDisksParams, cancel: Cancel) -> None:
        slices = self.cube.chunk_slices(self._engine_options.get("chunk_bytes"))
        template = self._template if self._template_key == params.template else None

        def partial(table: PeakTable, done: int, total: int) -> None:
            counts = np.full(self.cube.scan_shape, np.nan)
            for rx, ry in slices[:done]:
                counts[rx, ry] = table.counts()[rx, ry]
            self.partial_counts = counts
            now = time.monotonic()
            if done < total and now - self._last_partial >= PARTIAL_EVERY_S:
                self._last_partial = now
                self._emit("counts", (counts, f"partial {100 * done // total} %"))

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NoPeaksWarning)
                peaks = find_disks(self.cube, params, template=template, progress=self._report, cancel=cancel,
                                   on_partial=partial, **self._engine_options)
            bvm = bragg_vector_map(peaks, tuple(self.cube.detector_shape))
        except CancelledError:
            self.run_state = "cancelled"
            done = int(np.isfinite(self.partial_counts).sum()) if self.partial_counts is not None else 0
            self._say("run", f"cancelled: {done} of {int(np.prod(self.cube.scan_shape))} positions done; "
                      "their counts stay on the map (nothing was saved)", "info")
            if self.partial_counts is not None:
                self._emit("counts", (self.partial_counts, "cancelled"))
        except Exception as exc:  # noqa: BLE001 - a message beside the run button
            self.run_state = "failed"
            self._fail("run", exc)
        else:
            self.peaks, self.bragg_map = peaks, bvm
            self.partial_counts = peaks.counts().astype(np.float64)
            self.run_state = "done"
            self._emit("counts", (peaks.counts(), ""))
            self._emit("bragg", bvm)
            skipped = int(np.count_nonzero(peaks.flags & FLAG_INVALID))
            notes = [str(c.message) for c in caught if issubclass(c.category, NoPeaksWarning)]
            if skipped:
                notes.append(f"{skipped} patterns held NaN or infinite values and were skipped")
            self._say("run", "; ".join(notes) if notes else
                      f"{len(peaks)} disks in {int(np.prod(self.cube.scan_shape))} patterns",
                      "warning" if notes else "info")
        finally:
            self._finish(cancel)
            self._notify()

    def wait_run(self, timeout: float = 600.0) -> "DiskTunerSession":
        """Block until "run on all" ended (finished, failed or cancelled)."""
        for t in list(self._threads):
            t.join(timeout)
            if t.is_alive():
                raise TimeoutError(f"the run did not finish within {timeout} s")
        return self

