"""``DiskTuner``: pick a probe template and tune Bragg disk thresholds live on a few patterns.

The tuner is a view over one :class:`~fourd_widgets.analysis.disks.FindDisksParams`
record held by :class:`fourd_widgets.tools.disk_tuner.DiskTunerSession`
(``tuner.session``): the session decides what to recompute when a field changes
(template, correlation, or only the thresholds), runs "run on all" and keeps the
results; this module lays out the controls and views and maps events both ways.

So ``fw.run(tuner.params, cube)["find_disks"] == tuner.peaks``.

Mouse: click a numbered point on the real-space image to select it (or pick
its number under "slot"), then click anywhere to move it there; drag the
vacuum rectangle or polygon (source 'vacuum region'). The orange handle on the
histogram drags the relative threshold.
"""

from __future__ import annotations

from typing import Any, Sequence

import ipywidgets as w
import numpy as np

from ..analysis.disks import FindDisksParams
from ..core.datacube import DataCube
from ..core.recipe import Recipe
from ..tools.disk_tuner import DiskTunerSession
from ..tools.disk_tuner_route import WHOLE_PATTERN, tuner_records
from ..tools.disk_tuner_compute import CORRELATION_FIELDS, DEFAULT_POSITIONS, TEMPLATE_SOURCES
from .disk_tuner_parts import (COLORS, DETECT_FIELDS, TEMPLATE_FIELDS, histogram_figure, marker_counts,
                               paint_histogram, paint_strip, profile_figure, show_record, tuner_controls)
from .disk_tuner_route import lattice_marker_counts, on_route_event, route_controls, show_route, wire_route
from .help_text import DISK_TUNER, explain_controls
from .image_view import ImageView
from .overlays import make_overlay
from .tool_view import Busy, ToolView, message_html

__all__ = ["DiskTuner", "CORRELATION_FIELDS", "TEMPLATE_SOURCES", "VACUUM_ID", "DEFAULT_POSITIONS"]

#: Overlay id of the vacuum region on the real-space view.
VACUUM_ID = "vacuum"


class DiskTuner(ToolView):
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
        A separate vacuum recording of the probe; enables the 'vacuum image' source.
    real_image : (Rx, Ry) array, optional
        The real-space image to click on (default: a bright-field virtual image).
    size : int
        Canvas width of the large views, CSS px (the strip uses 60 %).
    engine_options : dict, optional
        ``chunk_bytes``, ``workers``, ``scheduler`` for "run on all".

    Attributes
    ----------
    session : DiskTunerSession
        The record, caches, strip results and the run (``peaks``, ``partial_counts``,
        ``correlations``, ``detections``, ``compute_times`` are the session's).

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

    def __init__(self, cube: DataCube, params: FindDisksParams | None = None, *,
                 positions: Sequence[tuple[int, int]] | None = None, n_positions: int = DEFAULT_POSITIONS,
                 vacuum: np.ndarray | None = None, real_image: np.ndarray | None = None, size: int = 300,
                 engine_options: dict | None = None) -> None:
        self.session = s = DiskTunerSession(cube, params, positions=positions, n_positions=n_positions,
                                            vacuum=vacuum, engine_options=engine_options, start=False)
        self._shown: dict[str, tuple[Any, float]] = {}
        self._build_ui(size)
        s.listen(self._on_session)
        self._show_params()
        image, note = s.real_image(real_image)
        self.real_view.set_image(image)
        if note:
            self.real_view.status = note
        self._show_positions()
        s.start()

    def _build_ui(self, size: int) -> None:
        s, lay = self.session, w.Layout
        cal = s.cube.calibration
        self.real_view = ImageView(title="real space: click to move the selected position", size=size,
                                   axis_names=["rx", "ry"], click_moves="p0", selected="p0",
                                   pixel_size=cal.real_step, units=cal.real_units if cal.real_step else "px")
        small = max(160, size * 2 // 3)
        # scale bars and calibrated axes wherever the calibration knows the pixel size
        q_axes = dict(pixel_size=cal.reciprocal_step, units=cal.reciprocal_units if cal.reciprocal_step else "px",
                      axis_names=["qx", "qy"])
        self.kernel_view = ImageView(title="kernel", size=small, colormap="rdbu", **q_axes)
        self.strip_views = [ImageView(size=max(150, size * 3 // 5), scale="log", colormap="gray",
                                      value_units="counts", **q_axes) for _ in s.positions]
        self.count_view = ImageView(title="peak count", size=small, colormap="viridis", axis_names=["rx", "ry"],
                                    value_units="disks", pixel_size=cal.real_step,
                                    units=cal.real_units if cal.real_step else "px")
        self.bragg_view = ImageView(title="Bragg vector map", size=small, scale="log", colormap="inferno",
                                    value_units="intensity", **q_axes)
        for v, cls in ((self.real_view, "fw-tuner-real"), (self.kernel_view, "fw-tuner-kernel"),
                       (self.count_view, "fw-tuner-counts"), (self.bragg_view, "fw-tuner-bragg"),
                       *((v, "fw-tuner-strip") for v in self.strip_views)):
            v.add_class(cls)
        self.__dict__.update(vars(tuner_controls(s.cube.detector_shape, s.find_params.template.image is not None)))
        self.__dict__.update(vars(route_controls()))
        self.template_message = w.HTML("", layout=lay(max_width="420px"))
        self.detect_message = w.HTML("", layout=lay(max_width="420px"))
        self.run_message = w.HTML("")
        self._profile_fig, self._profile_line = profile_figure()
        self._slot = w.ToggleButtons(options=[str(k + 1) for k in range(len(s.positions))],
                                     description="slot", style={"button_width": "32px"})
        self._hist_fig, self._hist_bars, self._hist_line, self._hist_handle = histogram_figure()
        self._run_btn = w.Button(description="run on all", button_style="primary", layout=lay(width="110px"))
        self._run_btn.add_class("fw-tuner-run")
        self.busy = Busy(s, width="220px")
        self.progress, self._cancel_btn = self.busy.bar, self.busy.cancel_button
        self._cancel_btn.layout.width = "80px"
        template_box = w.VBox([self._source, w.HBox([self._region_kind, self._kernel]),
                               w.HBox([self._measure, self._radius]), self._sigma, self._radii,
                               self.template_message])
        detect_box = w.VBox([self._corr_power, self._sigma_cc, w.HBox([self._subpixel, self._probe_fit, self._subpixel_note]),
                             self._min_rel, w.HBox([self._rel_to, self._min_abs]), self._spacing, self._edge, self._max_peaks,
                             self.detect_message])
        self._strip = w.Box(list(self.strip_views), layout=lay(flex_flow="row wrap"))
        self._detect_row = w.HBox([detect_box, self._hist_fig], layout=lay(align_items="flex-start"))
        self.widget = w.VBox([
            w.HBox([self.real_view, w.VBox([template_box, w.HBox([self.kernel_view, self._profile_fig])])],
                   layout=lay(align_items="flex-start")),
            self._route, self.lattice_box, self._detect_row,
            self._slot, self._strip,
            w.HBox([self._run_btn, self._cancel_btn, self.progress, self.run_message]),
            w.HBox([self.count_view, self.bragg_view]),
        ])
        self.widget.add_class("fw-disk-tuner")
        explain_controls(self.widget, DISK_TUNER)

        self._source.observe(self._on_source, names="value")
        self._region_kind.observe(self._on_region_kind, names="value")
        self.real_view.observe(self._on_real_overlays, names="overlays")
        self.real_view.observe(self._on_real_selected, names="selected")
        self._slot.observe(self._on_slot, names="value")
        self._measure.observe(self._on_measure, names="value")
        for attr, name in TEMPLATE_FIELDS.items():
            getattr(self, attr).observe(lambda ch, n=name: self._on_template_control(n, ch["new"]), names="value")
        for attr, name in DETECT_FIELDS.items():
            getattr(self, attr).observe(lambda ch, n=name: self._on_control(n, ch["new"]), names="value")
        self._hist_handle.observe(self._on_handle, names="x")
        self._run_btn.on_click(lambda _: self.run())
        wire_route(self)

    @classmethod
    def from_params(cls, cube: DataCube, params: Recipe | FindDisksParams | dict | str,
                    **options: Any) -> "DiskTuner":
        """Rebuild a tuner from its :attr:`params` (a Recipe, a FindDisksParams, or their dict / JSON).

        Raises
        ------
        ParameterError
            When the recipe holds no find_disks step.
        """
        cube, p, lattice = tuner_records(cube, params)  # a whole_pattern_fit step opens the lattice route
        return cls(cube, p, **options) if lattice is None else cls(cube, p, **options).set_route(WHOLE_PATTERN, lattice)

    # --- the session's state, as the tuner's ----------------------------------------------------
    find_params = property(lambda self: self.session.find_params, doc="The detection record as the controls set it.")
    positions = property(lambda self: self.session.positions, doc="Scan positions of the strip, in order.")
    template = property(lambda self: self.session.template, doc="The template the strip was correlated with.")
    peaks = property(lambda self: self.session.peaks, doc="Peaks of the whole scan after 'run on all'.")
    partial_counts = property(lambda self: self.session.partial_counts, doc="Peak counts of the last run (NaN: not done).")
    bragg_map = property(lambda self: self.session.bragg_map, doc="Bragg vector map of the last run.")
    strip_peaks = property(lambda self: self.session.strip_peaks, doc="Peaks of the strip's patterns.")
    candidates = property(lambda self: self.session.candidates, doc="Candidate peaks of the strip.")
    run_state = property(lambda self: self.session.run_state, doc="'idle', 'running', 'done', 'cancelled', 'failed'.")
    correlations = property(lambda self: self.session.correlations, doc="Times the strip was re-correlated.")
    detections = property(lambda self: self.session.detections, doc="Times the strip was re-filtered.")
    compute_times = property(lambda self: self.session.compute_times, doc="(kind, seconds) of strip updates.")

    route = property(lambda self: self.session.route, doc="'disks' or 'whole_pattern' (the whole-pattern fit).")
    lattice_params = property(lambda self: self.session.lattice_params, doc="The lattice route's record, else None.")
    lattice_preview = property(lambda self: self.session.lattice_preview, doc="The strip's fitted lattice.")
    lattice_map = property(lambda self: self.session.lattice_map, doc="Strain with σ after 'run on all' (lattice).")

    def set_route(self, route: str, params: Any = None) -> "DiskTuner":
        """Choose ``'disks'`` or ``'whole_pattern'`` (``params``: a WholePatternFitParams to start from)."""
        self.session.set_route(route, params)
        return self

    def set_lattice(self, **changes: Any) -> "DiskTuner":
        """Change fields of the lattice record as its controls would (lattice route)."""
        self.session.set_lattice(**changes)
        return self

    def lattice_marker_counts(self) -> list[int]:
        """Lattice-site markers each strip view holds (what the browser draws)."""
        return lattice_marker_counts(self.strip_views)

    def set(self, **changes: Any) -> "DiskTuner":
        """Change fields of the record as the controls would (``template=`` takes a ProbeTemplateParams)."""
        self.session.set(**changes)
        return self

    def set_template(self, **changes: Any) -> "DiskTuner":
        """Change fields of the template record (e.g. ``kernel='gaussian'``, ``region=mask``)."""
        self.session.set_template(**changes)
        return self

    def pick(self, rx: int, ry: int, slot: int | None = None) -> "DiskTuner":
        """Show scan position ``(rx, ry)`` in strip slot ``slot`` (default: the selected slot)."""
        self.session.pick(rx, ry, int(self._slot.index if slot is None else slot))
        return self

    def set_vacuum_region(self, overlay: dict) -> "DiskTuner":
        """Make the template from the vacuum region drawn by ``overlay`` (a rectangle or polygon, scan px)."""
        ov = make_overlay(overlay["kind"], id=VACUUM_ID, color="#00e5ff",
                          **{k: v for k, v in overlay.items() if k not in ("kind", "id", "color", "editable")})
        self._synced(lambda: (setattr(self._source, "value", "vacuum region"),
                              setattr(self._region_kind, "value", ov["kind"])))
        self._put_vacuum_overlay(ov)
        self.session.set_vacuum_region(ov)
        return self

    def marker_counts(self) -> list[int]:
        """Markers each strip view holds (what the browser draws)."""
        return marker_counts(self.strip_views)

    def run(self) -> "DiskTuner":
        """Find the disks of every pattern in a worker thread ("run on all"); returns at once."""
        self.session.run_on_all()
        return self

    def wait_run(self, timeout: float = 600.0) -> "DiskTuner":
        """Block until "run on all" ended (finished, failed or cancelled)."""
        self.session.wait_run(timeout)
        return self

    def _views(self) -> list[Any]:
        return [self.real_view, self.kernel_view, *self.strip_views, self.count_view, self.bragg_view]

    # --- session -> views -----------------------------------------------------------------------
    def _on_session(self, event: str, value: Any) -> None:
        if on_route_event(self, event, value, COLORS):
            return
        if event == "params":
            self._show_params()
        elif event == "positions":
            self._show_positions()
        elif event == "message":
            where, text, level = value
            target = {"template": self.template_message, "detect": self.detect_message,
                      "run": self.run_message}.get(where)
            if target is not None:
                target.value = message_html(text, level)
        elif event == "busy":
            self._run_btn.disabled = bool(value)
        elif event == "template":
            image, r, profile = value
            self.kernel_view.set_image(image)
            self._profile_line.x, self._profile_line.y = r, profile
        elif event == "patterns":
            for v, img in zip(self.strip_views, value):
                v.set_image(img)
        elif event == "strip":
            paint_strip(self.strip_views, value)
        elif event == "histogram":
            paint_histogram(self._hist_bars, self._hist_line, self._hist_handle, value)
        elif event == "counts":
            counts, badge = value
            with self.count_view.hold_sync():
                self.count_view.set_image(counts)
                self.count_view.badge = badge
        elif event == "bragg":
            self.bragg_view.set_image(value)

    def _show_params(self) -> None:
        """Set every control from the record without feeding it back."""
        tpl = self.session.template
        self._synced(lambda: show_record(self, self.session.find_params, tpl.radius if tpl is not None else None))

    def _show_slider(self, name: str, slider: w.FloatSlider, value: float | None) -> None:
        """Show ``value`` on a slider (widening its range) and remember it, to tell echoes from edits."""
        if value is None:
            return
        slider.max = max(slider.max, float(value))
        slider.value = float(value)
        self._shown[name] = (float(value), float(slider.step))

    def _show_positions(self) -> None:
        keep = [o for o in self.real_view.overlays if not (o["id"].startswith("p") and o["id"][1:].isdigit())]
        pts = [{**make_overlay("point", id=f"p{k}", color=COLORS[k % len(COLORS)], x=x, y=y),
                "label": str(k + 1)} for k, (x, y) in enumerate(self.session.positions)]
        self._synced(lambda: setattr(self.real_view, "overlays", keep + pts))

    # --- controls -> session --------------------------------------------------------------------
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
            self.session.set(**{name: value})

    def _on_template_control(self, name: str, value: Any) -> None:
        if self._syncing or self._echo(name, value):
            return
        if name == "radii":
            value = (float(value[0]), float(value[1]))
        self.session.set_template(**{name: value})

    def _on_measure(self, change: dict) -> None:
        if not self._syncing:
            self.session.set_template(radius=None if change["new"] == "measured" else float(self._radius.value))

    def _on_handle(self, change: dict) -> None:
        """The histogram handle sits at log10 of the relative threshold."""
        if self._syncing or change["new"] is None or len(change["new"]) == 0:
            return
        value = float(np.clip(10.0 ** float(change["new"][0]), 10.0 ** self._min_rel.min, 1.0))
        self.session.set(min_relative_intensity=round(value, 6))

    def _on_source(self, change: dict) -> None:
        if self._syncing:
            return
        if TEMPLATE_SOURCES[change["new"]] == "vacuum_region":
            ov = self._vacuum_overlay() or self._default_vacuum_overlay(self._region_kind.value)
            self._put_vacuum_overlay(ov)
            self.session.set_vacuum_region(ov)
        else:
            self._put_vacuum_overlay(None)
            self.session.set_template(source=TEMPLATE_SOURCES[change["new"]])

    def _on_region_kind(self, change: dict) -> None:
        if self._syncing or self._source.value != "vacuum region":
            return
        ov = self._default_vacuum_overlay(change["new"])
        self._put_vacuum_overlay(ov)
        self.session.set_vacuum_region(ov)

    def _on_real_overlays(self, change: dict) -> None:
        if self._syncing:
            return
        moves = {}
        for ov in change["new"]:
            if ov["id"] == VACUUM_ID and ov != self._vacuum_overlay(change["old"]):
                self.session.set_vacuum_region(ov)
            elif ov["id"].startswith("p") and ov["id"][1:].isdigit():
                moves[int(ov["id"][1:])] = (ov["x"], ov["y"])
        self.session.move_positions(moves)

    def _on_real_selected(self, change: dict) -> None:
        ident = change["new"]
        if ident.startswith("p") and ident[1:].isdigit() and int(ident[1:]) < len(self.strip_views):
            self._slot.index = int(ident[1:])

    def _on_slot(self, change: dict) -> None:
        ident = f"p{self._slot.index}"
        self.real_view.click_moves = ident
        self.real_view.selected = ident

    def _vacuum_overlay(self, overlays: list[dict] | None = None) -> dict | None:
        return next((ov for ov in (self.real_view.overlays if overlays is None else overlays)
                     if ov["id"] == VACUUM_ID), None)

    def _default_vacuum_overlay(self, kind: str) -> dict:
        Rx, Ry = self.session.cube.scan_shape
        a, b = max(1, Rx // 4), max(1, Ry // 4)
        if kind == "polygon":
            return make_overlay("polygon", id=VACUUM_ID, color="#00e5ff", vertices=[[0, 0], [0, b], [a, b], [a, 0]])
        return make_overlay("rectangle", id=VACUUM_ID, color="#00e5ff", x0=0, x1=a, y0=0, y1=b)

    def _put_vacuum_overlay(self, ov: dict | None) -> None:
        others = [o for o in self.real_view.overlays if o["id"] != VACUUM_ID]
        self._synced(lambda: setattr(self.real_view, "overlays", others + ([ov] if ov is not None else [])))

