"""``DiskTuner``: pick a probe template and tune Bragg disk thresholds live on a few patterns.

The tuner is a view over one :class:`~fourd_widgets.analysis.disks.FindDisksParams`
record (its nested :class:`~fourd_widgets.analysis.probe.ProbeTemplateParams`
included). Every number it shows comes from the analysis layer:

* the template from :func:`~fourd_widgets.analysis.probe.probe_template`, its
  preview from ``ProbeTemplate.preview()``;
* the strip of chosen patterns from one
  :func:`~fourd_widgets.analysis.disks.correlate_patterns` per template or
  correlation setting; a threshold, spacing, edge or refinement slider only
  re-runs ``DiskCorrelation.detect`` / ``.candidates`` (no FFT), so the markers
  follow the slider; requests go through a newest-wins worker;
* "run on all" is :func:`~fourd_widgets.analysis.disks.find_disks` in a worker
  thread with progress, cancel and the peak-count map painted chunk by chunk;
  then the :func:`~fourd_widgets.analysis.disks.bragg_vector_map`.

So ``fw.run(tuner.params, cube)["find_disks"] == tuner.peaks``.

The lattice constraint (``FindDisksParams.lattice``) has no control here; a record
that holds one keeps it, and "run on all" applies it, but the strip shows the free
estimates of its few patterns (the constraint shares the lattice vectors over a scan
neighbourhood, which a handful of chosen patterns does not have).

Mouse: click a numbered point on the real-space image to select it (or pick
its number under "slot"), then click anywhere to move it there; drag the
vacuum rectangle or polygon (source 'vacuum region'). The orange handle on the
histogram drags the relative threshold.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import ipywidgets as w
import numpy as np

from ..analysis.detectors import Circle, detector_mask
from ..analysis.disks import (
    FLAG_INVALID,
    Candidates,
    DiskCorrelation,
    FindDisksParams,
    NoPeaksWarning,
    PeakTable,
    bragg_vector_map,
    correlate_patterns,
    find_disks,
)
from ..tools.worker import LatestOnly
from ..analysis.probe import (
    ProbeTemplate,
    ProbeTemplateParams,
    measure_disk,
    probe_template,
)
from ..analysis.virtual import virtual_image
from ..core.datacube import DataCube
from ..core.errors import CancelledError, ParameterError
from ..core.recipe import Recipe
from ..engine.run import Cancel
from .image_view import ImageView
from .overlays import make_overlay, region_from_overlay
from .tool import WorkerTool

__all__ = ["DiskTuner", "CORRELATION_FIELDS", "TEMPLATE_SOURCES", "VACUUM_ID", "DEFAULT_POSITIONS"]

#: Fields of FindDisksParams that change the correlation maps (the others only re-filter them).
# subpixel too: only "disk" lets the correlation be sampled every other pixel (correlation_step)
CORRELATION_FIELDS = ("template", "corr_power", "sigma_dp", "sigma_cc", "log", "radial_background", "subpixel")
#: What the template can be made from, as the source buttons name them.
TEMPLATE_SOURCES = {"synthetic": "synthetic", "vacuum region": "vacuum_region", "vacuum image": "vacuum_image"}
#: Overlay id of the vacuum region on the real-space view.
VACUUM_ID = "vacuum"
#: How many scan positions the strip shows by default.
DEFAULT_POSITIONS = 6
#: Minimum time between two partial count maps painted during a run.
PARTIAL_EVERY_S = 0.15
#: Histogram bins of the candidate values.
HIST_BINS = 40
_MARKERS = "disks"
_COLORS = ("#ffd23d", "#5ad1ff", "#ff6f91", "#9dff6f", "#c79bff", "#ffa64d", "#ffffff", "#ff4d4d")


@dataclass
class _Request:
    """One snapshot of what the strip should show (the worker computes it; the newest wins)."""

    params: FindDisksParams
    positions: tuple[tuple[int, int], ...]
    started: float = field(default_factory=time.perf_counter)


@dataclass
class _Update:
    """What the worker computed for a request; messages instead of exceptions."""

    template: ProbeTemplate | None = None
    template_changed: bool = False
    peaks: PeakTable | None = None
    candidates: Candidates | None = None
    valid: np.ndarray | None = None
    template_error: str = ""
    detect_error: str = ""
    kind: str = "filter"


class DiskTuner(WorkerTool):
    """Probe template and disk-detection thresholds tuned live on a strip of chosen patterns.

    Parameters
    ----------
    cube : DataCube
        The data (only the chosen patterns are read while tuning).
    params : FindDisksParams, optional
        Starting record (default ``FindDisksParams()``).
    positions : sequence of (int, int), optional
        Scan positions of the strip (default: ``n_positions`` spread over the scan).
    n_positions : int
        Strip length when ``positions`` is not given.
    vacuum : (Qx, Qy) array, optional
        A separate vacuum recording of the probe; enables the 'vacuum image'
        source (the image travels inside the record, so a replay needs nothing else).
    real_image : (Rx, Ry) array, optional
        The real-space image to click on (default: a bright-field virtual image).
    size : int
        Canvas width of the large views, CSS px (the strip uses 60 %).
    engine_options : dict, optional
        ``chunk_bytes``, ``workers``, ``scheduler`` for "run on all".

    Attributes
    ----------
    peaks : PeakTable or None
        Peaks of the whole scan after "run on all" (None before, or after a cancel).
    partial_counts : (Rx, Ry) float array or None
        Peak counts per position of the last run, NaN where not computed (a cancelled run keeps it).
    correlations, detections : int
        How many times the strip was re-correlated / re-filtered (what tests count).
    compute_times : deque of (str, float)
        ``(kind, seconds)`` of each strip update, from request to markers sent
        (kind 'template', 'correlate' or 'filter').

    Examples
    --------
    >>> import fourd_widgets as fw
    >>> cube, truth = fw.datasets.sample("strained_crystal", small=True)
    >>> tuner = DiskTuner(cube, n_positions=2).wait()
    >>> tuner.set(min_relative_intensity=0.05).wait().marker_counts() == [
    ...     int(n) for n in tuner.strip_peaks.counts()]
    True
    >>> tuner.close()
    """

    _tool_name = "tuner"

    def __init__(self, cube: DataCube, params: FindDisksParams | None = None, *,
                 positions: Sequence[tuple[int, int]] | None = None, n_positions: int = DEFAULT_POSITIONS,
                 vacuum: np.ndarray | None = None, real_image: np.ndarray | None = None, size: int = 300,
                 engine_options: dict | None = None) -> None:
        if not isinstance(cube, DataCube):
            raise TypeError(f"DiskTuner needs a DataCube (fw.load(path) gives one), got {type(cube).__name__}")
        p = FindDisksParams() if params is None else params
        if not isinstance(p, FindDisksParams):
            raise ParameterError(f"DiskTuner params must be a FindDisksParams, got {type(p).__name__}",
                                 field="params")
        self.cube = cube
        self._lock = threading.RLock()
        self._params = p
        if vacuum is not None and p.template.image is None:
            self._params = p.replace(template=p.template.replace(image=np.asarray(vacuum, dtype=np.float64)))
        Rx, Ry = cube.scan_shape
        pos = positions if positions is not None else _spread(cube.scan_shape, n_positions)
        self._positions = [(int(np.clip(a, 0, Rx - 1)), int(np.clip(b, 0, Ry - 1))) for a, b in pos]
        if not self._positions:
            raise ParameterError("the tuner needs at least one scan position", field="positions")
        self._engine_options = {k: v for k, v in (engine_options or {}).items()
                                if k not in ("progress", "cancel", "on_partial")}
        self._syncing = False
        self._shown: dict[str, tuple[Any, float]] = {}
        self._closed = False
        self._callbacks: list[Callable[["DiskTuner"], Any]] = []
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
        self.updates = 0
        self.compute_times: deque[tuple[str, float]] = deque(maxlen=2000)
        self._run_cancel: Cancel | None = None
        self._run_thread: threading.Thread | None = None
        self._last_partial = 0.0
        self._build_ui(size)
        self._show_params()
        self._runner: LatestOnly[_Request] = LatestOnly(self._compute, self._deliver, on_error=self._failed,
                                                        name="fourd-disk-tuner")
        self._paint_real(real_image)
        self._show_positions()
        self._request()

    # --- construction ---------------------------------------------------------------------
    def _build_ui(self, size: int) -> None:
        cal = self.cube.calibration
        lay = w.Layout
        self.real_view = ImageView(title="real space: click to move the selected position", size=size,
                                   axis_names=["rx", "ry"], click_moves="p0", selected="p0",
                                   pixel_size=cal.real_step, units=cal.real_units if cal.real_step else "px")
        self.kernel_view = ImageView(title="kernel", size=max(160, size * 2 // 3), colormap="rdbu")
        self.strip_views = [ImageView(size=max(150, size * 3 // 5), scale="log", colormap="gray")
                            for _ in self._positions]
        self.count_view = ImageView(title="peak count", size=max(160, size * 2 // 3), colormap="viridis",
                                    axis_names=["rx", "ry"])
        self.bragg_view = ImageView(title="Bragg vector map", size=max(160, size * 2 // 3), scale="log",
                                    colormap="inferno", axis_names=["qx", "qy"])
        for v, cls in ((self.real_view, "fw-tuner-real"), (self.kernel_view, "fw-tuner-kernel"),
                       (self.count_view, "fw-tuner-counts"), (self.bragg_view, "fw-tuner-bragg")):
            v.add_class(cls)
        for v in self.strip_views:
            v.add_class("fw-tuner-strip")

        sources = [k for k, v in TEMPLATE_SOURCES.items()
                   if v != "vacuum_image" or self._params.template.image is not None]
        self._source = w.ToggleButtons(options=sources, description="template", style={"button_width": "95px"})
        self._region_kind = w.Dropdown(options=("rectangle", "polygon"), description="region",
                                       layout=lay(width="180px"))
        self._kernel = w.Dropdown(options=("flat", "gaussian", "sigmoid"), description="kernel",
                                  layout=lay(width="180px"))
        self._measure = w.ToggleButtons(options=("measured", "set"), description="radius",
                                        style={"button_width": "70px"})
        self._radius = w.FloatSlider(min=0.5, max=min(self.cube.detector_shape) / 4, step=0.05,
                                     description="disk radius", readout_format=".2f")
        self._sigma = w.FloatSlider(min=0.5, max=min(self.cube.detector_shape) / 4, step=0.1,
                                    description="gauss σ", readout_format=".1f")
        self._radii = w.FloatRangeSlider(min=0.0, max=min(self.cube.detector_shape) / 3, step=0.25,
                                         description="trench r", readout_format=".2f")
        self.template_message = w.HTML("", layout=lay(max_width="420px"))
        self._profile_fig, self._profile_line = _profile_figure()

        self._corr_power = w.FloatSlider(min=0, max=1, step=0.05, description="corr power")
        self._sigma_cc = w.FloatSlider(min=0, max=8, step=0.25, description="σ corr")
        self._subpixel = w.Dropdown(options=("none", "parabola", "dft", "disk"), description="subpixel",
                                    layout=lay(width="180px"))
        self._min_rel = w.FloatLogSlider(min=-4, max=0, step=0.05, base=10, description="min rel",
                                         readout_format=".4f")
        self._rel_to = w.BoundedIntText(min=0, max=20, description="rel. to peak", layout=lay(width="170px"))
        self._min_abs = w.BoundedFloatText(min=0, max=1e30, description="min abs", layout=lay(width="200px"))
        self._spacing = w.FloatSlider(min=0, max=min(self.cube.detector_shape) / 4, step=0.5,
                                      description="min spacing")
        self._edge = w.FloatSlider(min=0, max=min(self.cube.detector_shape) / 4, step=0.5, description="edge")
        self._max_peaks = w.IntSlider(min=1, max=200, description="max peaks")
        self._min_rel.add_class("fw-tuner-min-rel")
        self._min_abs.add_class("fw-tuner-min-abs")
        self.detect_message = w.HTML("", layout=lay(max_width="420px"))
        self._slot = w.ToggleButtons(options=[str(k + 1) for k in range(len(self._positions))],
                                     description="slot", style={"button_width": "32px"})
        self._hist_fig, self._hist_bars, self._hist_line, self._hist_handle = _histogram_figure()

        self._run_btn = w.Button(description="run on all", button_style="primary", layout=lay(width="110px"))
        self._run_btn.add_class("fw-tuner-run")
        self._cancel_btn = w.Button(description="cancel", disabled=True, layout=lay(width="80px"))
        self.progress = w.FloatProgress(value=0, min=0, max=1, layout=lay(width="220px"))
        self.run_message = w.HTML("")

        template_box = w.VBox([self._source, w.HBox([self._region_kind, self._kernel]),
                               w.HBox([self._measure, self._radius]), self._sigma, self._radii,
                               self.template_message])
        detect_box = w.VBox([self._corr_power, self._sigma_cc, self._subpixel, self._min_rel,
                             w.HBox([self._rel_to, self._min_abs]), self._spacing, self._edge, self._max_peaks,
                             self.detect_message])
        self._strip = w.Box(list(self.strip_views), layout=lay(flex_flow="row wrap"))
        self.widget = w.VBox([
            w.HBox([self.real_view, w.VBox([template_box, w.HBox([self.kernel_view, self._profile_fig])])],
                   layout=lay(align_items="flex-start")),
            w.HBox([detect_box, self._hist_fig], layout=lay(align_items="flex-start")),
            self._slot,
            self._strip,
            w.HBox([self._run_btn, self._cancel_btn, self.progress, self.run_message]),
            w.HBox([self.count_view, self.bragg_view]),
        ])
        self.widget.add_class("fw-disk-tuner")

        self._source.observe(self._on_source, names="value")
        self._region_kind.observe(self._on_region_kind, names="value")
        self.real_view.observe(self._on_real_overlays, names="overlays")
        self.real_view.observe(self._on_real_selected, names="selected")
        self._slot.observe(self._on_slot, names="value")
        self._measure.observe(self._on_measure, names="value")
        for ctl, name in ((self._kernel, "kernel"), (self._radius, "radius"), (self._sigma, "sigma"),
                          (self._radii, "radii")):
            ctl.observe(lambda ch, n=name: self._on_template_control(n, ch["new"]), names="value")
        for ctl, name in ((self._corr_power, "corr_power"), (self._sigma_cc, "sigma_cc"),
                          (self._subpixel, "subpixel"), (self._min_rel, "min_relative_intensity"),
                          (self._rel_to, "relative_to_peak"), (self._min_abs, "min_absolute_intensity"),
                          (self._spacing, "min_peak_spacing"), (self._edge, "edge_boundary"),
                          (self._max_peaks, "max_num_peaks")):
            ctl.observe(lambda ch, n=name: self._on_control(n, ch["new"]), names="value")
        self._hist_handle.observe(self._on_handle, names="x")
        self._run_btn.on_click(lambda _: self.run())
        self._cancel_btn.on_click(lambda _: self.cancel())

    def _paint_real(self, image: np.ndarray | None) -> None:
        """The real-space image: given, or a bright-field virtual image (disk measured on the mean pattern)."""
        if image is None:
            try:
                (cx, cy), r = measure_disk(self.cube.mean_pattern())
                image = virtual_image(self.cube, Circle((cx, cy), 1.2 * r), progress=False)
            except Exception as exc:  # no picture to click on, but the tuner still works
                image = np.zeros(self.cube.scan_shape)
                self.real_view.status = f"no bright-field image: {exc}"
        image = np.asarray(image)
        if image.shape != tuple(self.cube.scan_shape):
            raise ParameterError(f"real_image has shape {image.shape}; the scan is {self.cube.scan_shape}",
                                 field="real_image")
        self.real_view.set_image(image)

    # --- public API -----------------------------------------------------------------------
    @classmethod
    def from_params(cls, cube: DataCube, params: Recipe | FindDisksParams | dict | str,
                    **options: Any) -> "DiskTuner":
        """Rebuild a tuner from its :attr:`params` (a Recipe, a FindDisksParams, or their dict / JSON).

        Raises
        ------
        ParameterError
            When the recipe holds no find_disks step.
        """
        if isinstance(params, str):
            params = Recipe.from_json(params)
        elif isinstance(params, dict):
            params = Recipe.from_dict(params) if params.get("type") == "recipe" else FindDisksParams.from_dict(params)
        if isinstance(params, Recipe):
            if params.calibration is not None:
                cube = cube.with_calibration(params.calibration)
            found = [s for s in params.steps if isinstance(s, FindDisksParams)]
            if not found:
                raise ParameterError("this recipe has no find_disks step to tune", field="steps")
            params = found[0]
        if not isinstance(params, FindDisksParams):
            raise ParameterError(f"from_params needs a Recipe or FindDisksParams, got {type(params).__name__}")
        return cls(cube, params, **options)

    @property
    def find_params(self) -> FindDisksParams:
        """The detection record as the controls set it."""
        with self._lock:
            return self._params

    @property
    def params(self) -> Recipe:
        """The recipe of what is tuned: ``fw.run(tuner.params, cube)["find_disks"]`` replays it."""
        return Recipe(steps=(self.find_params,), labels=("find_disks",), calibration=self.cube.calibration)

    @property
    def positions(self) -> list[tuple[int, int]]:
        """Scan positions of the strip, in order."""
        with self._lock:
            return list(self._positions)

    @property
    def template(self) -> ProbeTemplate | None:
        """The template the strip was last correlated with (None if it could not be made)."""
        return self._template

    def set(self, **changes: Any) -> "DiskTuner":
        """Change fields of the record as the controls would (``template=`` takes a ProbeTemplateParams).

        Errors are shown beside the controls, as for a slider.
        """
        tpl = changes.pop("template", None)
        if tpl is not None:
            self._replace(template=tpl)
        if changes:
            self._replace(**changes)
        return self

    def set_template(self, **changes: Any) -> "DiskTuner":
        """Change fields of the template record (e.g. ``kernel='gaussian'``, ``region=mask``)."""
        with self._lock:
            tpl = self._params.template
        try:
            self._replace(template=tpl.replace(**changes))
        except (ParameterError, TypeError, ValueError) as exc:
            self._message(self.template_message, str(exc))
        return self

    def pick(self, rx: int, ry: int, slot: int | None = None) -> "DiskTuner":
        """Show scan position ``(rx, ry)`` in strip slot ``slot`` (default: the selected slot)."""
        k = int(self._slot.index if slot is None else slot)
        Rx, Ry = self.cube.scan_shape
        if not (0 <= rx < Rx and 0 <= ry < Ry):
            raise ParameterError(f"scan position ({rx}, {ry}) is outside the scan {self.cube.scan_shape}",
                                 field="positions")
        with self._lock:
            self._positions[k] = (int(rx), int(ry))
        self._show_positions()
        self._request()
        return self

    def set_vacuum_region(self, overlay: dict) -> "DiskTuner":
        """Make the template from the vacuum region drawn by ``overlay`` (a rectangle or polygon, scan px)."""
        ov = make_overlay(overlay["kind"], id=VACUUM_ID, color="#00e5ff",
                          **{k: v for k, v in overlay.items() if k not in ("kind", "id", "color", "editable")})
        self._syncing = True
        try:
            self._source.value = "vacuum region"
            self._region_kind.value = ov["kind"]
        finally:
            self._syncing = False
        self._put_vacuum_overlay(ov)
        self._region_from_overlay(ov)
        return self

    def marker_counts(self) -> list[int]:
        """Markers each strip view holds (what the browser draws)."""
        out = []
        for v in self.strip_views:
            try:
                out.append(len(v.marker_points(_MARKERS)[0]))
            except KeyError:
                out.append(0)
        return out

    def run(self) -> "DiskTuner":
        """Find the disks of every pattern in a worker thread ("run on all"); returns at once."""
        if self._run_thread is not None and self._run_thread.is_alive():
            return self
        params = self.find_params
        self._run_cancel = Cancel()
        self.peaks = None
        self.bragg_map = None
        self.partial_counts = np.full(self.cube.scan_shape, np.nan)
        self.run_state = "running"
        self._message(self.run_message, "")
        self._cancel_btn.disabled = False
        self._run_btn.disabled = True
        self.progress.value = 0.0
        self._run_thread = threading.Thread(target=self._run_all, args=(params, self._run_cancel),
                                            name="fourd-disk-tuner-run", daemon=True)
        self._run_thread.start()
        return self

    def wait_run(self, timeout: float = 600.0) -> "DiskTuner":
        """Block until "run on all" ended (finished, failed or cancelled)."""
        if self._run_thread is not None:
            self._run_thread.join(timeout)
            if self._run_thread.is_alive():
                raise TimeoutError(f"the run did not finish within {timeout} s")
        return self

    def cancel(self) -> None:
        """Stop "run on all" after the chunks in flight; the finished part of the count map stays."""
        if self._run_cancel is not None:
            self._run_cancel.cancel()

    def close(self) -> None:
        """Stop the workers and close the widgets (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        self.cancel()
        self._runner.close(5.0)
        if self._run_thread is not None:
            self._run_thread.join(10.0)
        for v in [self.real_view, self.kernel_view, *self.strip_views, self.count_view, self.bragg_view]:
            v.close()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- controls -> record ---------------------------------------------------------------
    def _replace(self, **changes: Any) -> None:
        """New record with ``changes``; a refused value is shown beside its control, not raised."""
        target = self.template_message if "template" in changes else self.detect_message
        try:
            with self._lock:
                new = self._params.replace(**changes)
                new.validate()
                self._params = new
        except (ParameterError, TypeError, ValueError) as exc:
            self._message(target, str(exc))
            return
        self._show_params()
        self._request()

    def _echo(self, name: str, value: Any) -> bool:
        """True when a slider only sends back the value we showed, snapped to its step.

        A slider rounds what Python shows to its step and syncs the rounded value back;
        taking that as an edit would turn an automatic value (None: the disk radius)
        into a fixed one just by displaying the tuner.
        """
        shown, step = self._shown.get(name, (None, 0.0))
        if shown is None or isinstance(value, (str, bool)) or step <= 0:
            return False
        a, b = np.atleast_1d(np.asarray(value, dtype=float)), np.atleast_1d(np.asarray(shown, dtype=float))
        return a.shape == b.shape and bool(np.all(np.abs(a - b) <= step / 2 + 1e-9))

    def _on_control(self, name: str, value: Any) -> None:
        if not self._syncing and not self._echo(name, value):
            self._replace(**{name: value})

    def _on_template_control(self, name: str, value: Any) -> None:
        if self._syncing or self._echo(name, value):
            return
        if name == "radii":
            value = (float(value[0]), float(value[1]))
        self.set_template(**{name: value})

    def _on_measure(self, change: dict) -> None:
        if not self._syncing:
            self.set_template(radius=None if change["new"] == "measured" else float(self._radius.value))

    def _on_handle(self, change: dict) -> None:
        """The histogram handle sits at log10 of the relative threshold."""
        if self._syncing or change["new"] is None or len(change["new"]) == 0:
            return
        value = float(np.clip(10.0 ** float(change["new"][0]), 10.0 ** self._min_rel.min, 1.0))
        self._replace(min_relative_intensity=round(value, 6))

    def _on_source(self, change: dict) -> None:
        if self._syncing:
            return
        source = TEMPLATE_SOURCES[change["new"]]
        if source == "vacuum_region":
            ov = self._vacuum_overlay() or self._default_vacuum_overlay(self._region_kind.value)
            self._put_vacuum_overlay(ov)
            self._region_from_overlay(ov)
        else:
            self._put_vacuum_overlay(None)
            self.set_template(source=source)

    def _on_region_kind(self, change: dict) -> None:
        if self._syncing or self._source.value != "vacuum region":
            return
        ov = self._default_vacuum_overlay(change["new"])
        self._put_vacuum_overlay(ov)
        self._region_from_overlay(ov)

    def _on_real_overlays(self, change: dict) -> None:
        if self._syncing:
            return
        moved = False
        for ov in change["new"]:
            if ov["id"] == VACUUM_ID and ov != self._vacuum_overlay(change["old"]):
                self._region_from_overlay(ov)
            elif ov["id"].startswith("p") and ov["id"][1:].isdigit():
                k = int(ov["id"][1:])
                Rx, Ry = self.cube.scan_shape
                new = (int(np.clip(round(ov["x"]), 0, Rx - 1)), int(np.clip(round(ov["y"]), 0, Ry - 1)))
                with self._lock:
                    if k < len(self._positions) and self._positions[k] != new:
                        self._positions[k] = new
                        moved = True
        if moved:
            self._show_positions()
            self._request()

    def _on_real_selected(self, change: dict) -> None:
        ident = change["new"]
        if ident.startswith("p") and ident[1:].isdigit() and int(ident[1:]) < len(self._positions):
            self._slot.index = int(ident[1:])

    def _on_slot(self, change: dict) -> None:
        ident = f"p{self._slot.index}"
        self.real_view.click_moves = ident
        self.real_view.selected = ident

    def _region_from_overlay(self, ov: dict) -> None:
        """Vacuum mask of the scan positions inside the overlay -> the template record."""
        try:
            mask = detector_mask(region_from_overlay(ov), tuple(self.cube.scan_shape)) > 0
        except (ParameterError, ValueError) as exc:
            self._message(self.template_message, str(exc))
            return
        self.set_template(source="vacuum_region", region=mask)

    def _vacuum_overlay(self, overlays: list[dict] | None = None) -> dict | None:
        for ov in self.real_view.overlays if overlays is None else overlays:
            if ov["id"] == VACUUM_ID:
                return ov
        return None

    def _default_vacuum_overlay(self, kind: str) -> dict:
        Rx, Ry = self.cube.scan_shape
        a, b = max(1, Rx // 4), max(1, Ry // 4)
        if kind == "polygon":
            return make_overlay("polygon", id=VACUUM_ID, color="#00e5ff",
                                vertices=[[0, 0], [0, b], [a, b], [a, 0]])
        return make_overlay("rectangle", id=VACUUM_ID, color="#00e5ff", x0=0, x1=a, y0=0, y1=b)

    def _put_vacuum_overlay(self, ov: dict | None) -> None:
        others = [o for o in self.real_view.overlays if o["id"] != VACUUM_ID]
        self._syncing = True
        try:
            self.real_view.overlays = others + ([ov] if ov is not None else [])
        finally:
            self._syncing = False

    # --- record -> controls ---------------------------------------------------------------
    def _show_params(self) -> None:
        """Set every control from the record without feeding it back."""
        p = self.find_params
        t = p.template
        radius = self._template.radius if self._template is not None else None
        self._syncing = True
        try:
            src = next(k for k, v in TEMPLATE_SOURCES.items() if v == t.source)
            if src in self._source.options:
                self._source.value = src
            self._kernel.value = t.kernel
            self._measure.value = "measured" if t.radius is None else "set"
            self._radius.disabled = t.radius is None
            self._show_slider("radius", self._radius, t.radius if t.radius is not None else radius)
            self._show_slider("sigma", self._sigma, t.sigma if t.sigma is not None else radius)
            r = t.radii if t.radii is not None else ((radius, radius + max(2.0, radius / 2)) if radius else None)
            if r is not None:
                self._radii.max = max(self._radii.max, float(r[1]))
                self._radii.value = (float(r[0]), float(r[1]))
                self._shown["radii"] = ((float(r[0]), float(r[1])), self._radii.step)
            self._sigma.layout.display = "" if t.kernel == "gaussian" else "none"
            self._radii.layout.display = "" if t.kernel == "sigmoid" else "none"
            self._region_kind.layout.display = "" if t.source == "vacuum_region" else "none"
            self._corr_power.value = p.corr_power
            self._sigma_cc.value = min(p.sigma_cc, self._sigma_cc.max)
            self._subpixel.value = p.subpixel
            self._min_rel.value = max(p.min_relative_intensity, 10.0 ** self._min_rel.min)
            self._rel_to.value = min(p.relative_to_peak, self._rel_to.max)
            self._min_abs.value = p.min_absolute_intensity
            self._show_slider("min_peak_spacing", self._spacing,
                              p.min_peak_spacing if p.min_peak_spacing is not None else radius)
            self._show_slider("edge_boundary", self._edge, p.edge_boundary if p.edge_boundary is not None else radius)
            self._shown["min_relative_intensity"] = (self._min_rel.value, 0.0)
            self._max_peaks.value = min(p.max_num_peaks, self._max_peaks.max)
            x = math.log10(max(p.min_relative_intensity, 10.0 ** self._min_rel.min))
            self._hist_line.x = [x, x]
            self._hist_handle.x = [x]
        finally:
            self._syncing = False

    def _show_slider(self, name: str, slider: w.FloatSlider, value: float | None) -> None:
        """Show ``value`` on a slider (widening its range) and remember it, to tell echoes from edits."""
        if value is None:
            return
        slider.max = max(slider.max, float(value))
        slider.value = float(value)
        self._shown[name] = (float(value), float(slider.step))

    def _show_positions(self) -> None:
        with self._lock:
            pos = list(self._positions)
        keep = [o for o in self.real_view.overlays if not (o["id"].startswith("p") and o["id"][1:].isdigit())]
        pts = [{**make_overlay("point", id=f"p{k}", color=_COLORS[k % len(_COLORS)], x=x, y=y),
                "label": str(k + 1)} for k, (x, y) in enumerate(pos)]
        self._syncing = True
        try:
            self.real_view.overlays = keep + pts
        finally:
            self._syncing = False

    # --- computing ------------------------------------------------------------------------
    def _request(self) -> None:
        with self._lock:
            req = _Request(self._params, tuple(self._positions))
        if not self._closed:
            self._runner.submit(req)

    def _compute(self, req: _Request) -> _Update:
        """Template (if its record changed), correlation (if a correlation field changed), filters."""
        up = _Update()
        p = req.params
        if self._template_key is None or self._template_key != p.template:
            up.kind = "template"
            try:
                tpl = probe_template(self.cube, p.template)
            except Exception as exc:  # shown beside the template controls
                self._template, self._template_key, self._corr_key = None, None, None
                up.template_error = _explain(exc)
                return up
            self._template, self._template_key = tpl, p.template
            up.template_changed = True
        up.template = self._template
        key = (tuple(getattr(p, f) for f in CORRELATION_FIELDS), req.positions)
        if self._corr is None or self._corr_key != key:
            up.kind = "correlate" if up.kind == "filter" else up.kind
            patterns = np.stack([np.asarray(self.cube.pattern(x, y)) for x, y in req.positions])
            try:
                self._corr = correlate_patterns(patterns, self._template, p, origins=self._origins(req.positions),
                                                workers=1)
            except Exception as exc:
                self._corr, self._corr_key = None, None
                up.template_error = _explain(exc)
                return up
            self._corr_key = key
            self.correlations += 1
        try:
            up.peaks = self._corr.detect(p)
            up.candidates = self._corr.candidates(p)
        except Exception as exc:
            up.detect_error = _explain(exc)
            return up
        self.detections += 1
        up.valid = self._corr.valid.copy()
        return up

    def _origins(self, positions: tuple[tuple[int, int], ...]) -> np.ndarray | None:
        cal = self.cube.calibration
        if getattr(cal, "origin_map", None) is not None:
            om = np.asarray(cal.origin_map, dtype=np.float64)
            return np.array([om[x, y] for x, y in positions])
        if cal.origin is not None:
            return np.tile(np.asarray(cal.origin, dtype=np.float64), (len(positions), 1))
        return None

    def _deliver(self, req: _Request, up: _Update) -> None:
        if self._closed:
            return
        if up.template_changed and up.template is not None:
            image, r, profile = up.template.preview()
            self.kernel_view.set_image(image)
            self._profile_line.x, self._profile_line.y = r, profile
            self._show_params()  # measured radius -> the sliders showing 'auto' values
        if req.positions != self._shown_positions:
            for v, (x, y) in zip(self.strip_views, req.positions):
                v.set_image(np.nan_to_num(np.asarray(self.cube.pattern(x, y), dtype=np.float64), nan=0.0))
            self._shown_positions = req.positions
        self._message(self.template_message, up.template_error)
        if up.template_error:
            for v in self.strip_views:
                v.set_markers(_MARKERS, np.zeros((0, 2)), visible=False)
            self._finish(req, up)
            return
        if up.peaks is None:
            self._message(self.detect_message, up.detect_error)
            self._finish(req, up)
            return
        self.strip_peaks, self.candidates = up.peaks, up.candidates
        counts = up.peaks.counts().reshape(-1)
        radius = up.template.radius if up.template is not None else 3.0
        for k, (v, (x, y)) in enumerate(zip(self.strip_views, req.positions)):
            pk = up.peaks.at(k)
            with v.hold_sync():
                v.set_markers(_MARKERS, np.column_stack([pk["qx"], pk["qy"]]), radius=radius,
                              color=_COLORS[k % len(_COLORS)])
                bad = up.valid is not None and not up.valid[k]
                v.title = f"{k + 1}: ({x}, {y}) · " + ("NaN: skipped" if bad else f"{int(counts[k])} disks")
                v.badge = "NaN" if bad else ""
        self._message(self.detect_message, _detect_message(up, req.params))
        self._paint_histogram(up.candidates, req.params)
        self._finish(req, up)

    def _finish(self, req: _Request, up: _Update) -> None:
        self.compute_times.append((up.kind, time.perf_counter() - req.started))
        self.updates += 1
        self._notify()

    def _paint_histogram(self, cands: Candidates, p: FindDisksParams) -> None:
        """Candidate values relative to each pattern's reference peak, kept and rejected stacked."""
        rel = _relative_values(cands, p.relative_to_peak)
        ok = np.isfinite(rel) & (rel > 0)
        if not ok.any():
            self._hist_bars.x, self._hist_bars.y = [0.0], [[0], [0]]
            return
        logs = np.log10(rel[ok])
        lo = min(float(logs.min()), self._min_rel.min)
        hi = max(float(logs.max()), 0.0) + 1e-9
        edges = np.linspace(lo, hi, HIST_BINS + 1)
        kept = cands.kept[ok]
        nk, _ = np.histogram(logs[kept], edges)
        nr, _ = np.histogram(logs[~kept], edges)
        with self._hist_bars.hold_sync():
            self._hist_bars.x = 0.5 * (edges[1:] + edges[:-1])
            self._hist_bars.y = np.vstack([nk, nr])
        top = float(max((nk + nr).max(), 1))
        self._hist_line.y = [0.0, top]
        self._hist_handle.y = [top]

    def _failed(self, req: _Request, exc: BaseException) -> None:
        self._message(self.detect_message, _explain(exc))
        self.compute_times.append(("error", time.perf_counter() - req.started))

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
                with self.count_view.hold_sync():
                    self.count_view.set_image(counts)
                    self.count_view.badge = f"partial {100 * done // total} %"

        def progress(done: int, total: int) -> None:
            self.progress.value = done / total if total else 1.0

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NoPeaksWarning)
                peaks = find_disks(self.cube, params, template=template, progress=progress, cancel=cancel,
                                   on_partial=partial, **self._engine_options)
            bvm = bragg_vector_map(peaks, tuple(self.cube.detector_shape))
        except CancelledError:
            self.run_state = "cancelled"
            done = int(np.isfinite(self.partial_counts).sum()) if self.partial_counts is not None else 0
            self._message(self.run_message, f"cancelled: {done} of {int(np.prod(self.cube.scan_shape))} positions "
                          "done; their counts stay on the map (nothing was saved)", level="info")
            if self.partial_counts is not None:
                with self.count_view.hold_sync():
                    self.count_view.set_image(self.partial_counts)
                    self.count_view.badge = "cancelled"
        except Exception as exc:
            self.run_state = "failed"
            self._message(self.run_message, _explain(exc))
        else:
            self.peaks, self.bragg_map = peaks, bvm
            self.partial_counts = peaks.counts().astype(np.float64)
            self.run_state = "done"
            with self.count_view.hold_sync():
                self.count_view.set_image(peaks.counts())
                self.count_view.badge = ""
            self.bragg_view.set_image(bvm)
            skipped = int(np.count_nonzero(peaks.flags & FLAG_INVALID))
            notes = [str(c.message) for c in caught if issubclass(c.category, NoPeaksWarning)]
            if skipped:
                notes.append(f"{skipped} patterns held NaN or infinite values and were skipped")
            self._message(self.run_message, "; ".join(notes) if notes else
                          f"{len(peaks)} disks in {int(np.prod(self.cube.scan_shape))} patterns",
                          level="warning" if notes else "info")
        finally:
            self._cancel_btn.disabled = True
            self._run_btn.disabled = False
            self._notify()

    def _notify(self) -> None:
        for fn in list(self._callbacks):
            try:
                fn(self)
            except Exception as exc:  # a user callback must not stop the tuner
                self._message(self.run_message, f"on_update callback failed: {exc}")

    @staticmethod
    def _message(target: w.HTML, text: str, level: str = "error") -> None:
        """Show ``text`` beside a control (empty hides it); HTML-escaped."""
        import html

        color = {"error": "#c62828", "warning": "#b26a00", "info": "#2e7d32"}[level]
        target.value = f'<span class="fw-message fw-{level}" style="color:{color}">{html.escape(text)}</span>' \
            if text else ""


# --- helpers -------------------------------------------------------------------------------
def _spread(scan_shape: tuple[int, int], n: int) -> list[tuple[int, int]]:
    """``n`` positions on a two-row grid over the scan (corners avoided: edges are often odd)."""
    if n < 1:
        raise ParameterError(f"n_positions must be at least 1, got {n}", field="n_positions")
    Rx, Ry = scan_shape
    rows = 1 if n == 1 else 2
    cols = math.ceil(n / rows)
    return [(int((2 * (k // cols) + 1) * Rx / (2 * rows)), int((2 * (k % cols) + 1) * Ry / (2 * cols)))
            for k in range(n)]


def _relative_values(cands: Candidates, relative_to_peak: int) -> np.ndarray:
    """Each candidate's correlation over its pattern's ``relative_to_peak``-th strongest (NaN if none)."""
    t = cands.table
    out = np.full(len(t), np.nan)
    for p in range(len(t.offsets) - 1):
        s = slice(int(t.offsets[p]), int(t.offsets[p + 1]))
        v = t.correlation[s]
        if v.size > relative_to_peak:
            ref = np.sort(v)[::-1][relative_to_peak]
            if ref > 0:
                out[s] = v / ref
    return out


def _detect_message(up: _Update, p: FindDisksParams) -> str:
    """Why the strip shows no disks, if it does not (empty string when all is well)."""
    parts = []
    if up.valid is not None and not up.valid.all():
        bad = [str(k + 1) for k in np.flatnonzero(~up.valid)]
        parts.append(f"pattern {', '.join(bad)} holds NaN or infinite values and is skipped (as in a full run)")
    valid = up.valid if up.valid is not None else np.ones(len(up.peaks.counts().reshape(-1)), bool)
    if valid.any() and len(up.peaks) == 0:
        top = float(up.candidates.table.correlation.max()) if len(up.candidates.table) else 0.0
        parts.append(f"the thresholds reject every peak in these patterns (strongest candidate {top:.4g}; "
                     f"min abs {p.min_absolute_intensity:.4g}, min rel {p.min_relative_intensity:.4g}, edge "
                     f"{p.edge_boundary}): lower them or pick other positions")
    return "; ".join(parts)


def _explain(exc: BaseException) -> str:
    """One line for the user: the message of our own errors, the type too for anything else."""
    from ..core.errors import FourDError

    if isinstance(exc, FourDError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _profile_figure() -> tuple[Any, Any]:
    """A small bqplot figure with the kernel's radial profile."""
    import bqplot as bq

    xs, ys = bq.LinearScale(), bq.LinearScale()
    line = bq.Lines(x=[0.0], y=[0.0], scales={"x": xs, "y": ys}, colors=["#1f77b4"])
    fig = bq.Figure(marks=[line], axes=[bq.Axis(scale=xs, label="r (px)"),
                                        bq.Axis(scale=ys, side="left", tick_format=".2g")],
                    title="radial profile", layout=w.Layout(width="260px", height="200px"),
                    fig_margin={"top": 30, "bottom": 35, "left": 50, "right": 10})
    return fig, line


def _histogram_figure() -> tuple[Any, Any, Any, Any]:
    """Histogram of candidate values (log10 of value / reference peak), threshold line and its handle."""
    import bqplot as bq

    xs, ys = bq.LinearScale(), bq.LinearScale(min=0)
    bars = bq.Bars(x=[0.0], y=[[0], [0]], scales={"x": xs, "y": ys}, type="stacked", padding=0.05,
                   colors=["#ffb000", "#9e9e9e"], labels=["kept", "rejected"])
    line = bq.Lines(x=[-1.7, -1.7], y=[0.0, 1.0], scales={"x": xs, "y": ys}, colors=["#e65100"],
                    stroke_width=2)
    handle = bq.Scatter(x=[-1.7], y=[1.0], scales={"x": xs, "y": ys}, colors=["#e65100"], marker="triangle-down",
                        default_size=200, enable_move=True, restrict_x=True, update_on_move=True)
    fig = bq.Figure(marks=[bars, line, handle],
                    axes=[bq.Axis(scale=xs, label="log10(candidate / reference peak)"),
                          bq.Axis(scale=ys, side="left", label="count")],
                    title="candidate peaks (drag ▼ = min rel)", layout=w.Layout(width="420px", height="280px"),
                    fig_margin={"top": 35, "bottom": 40, "left": 50, "right": 10})
    fig.add_class("fw-tuner-histogram")
    return fig, bars, line, handle
