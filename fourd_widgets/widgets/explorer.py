"""``Explorer``: a diffraction view linked to virtual images, as in py4D-browser, in a notebook.

The left view shows a diffraction pattern (the mean or maximum of the scan, or
what the real-space selector picks); its overlays are virtual detectors, each
with its own colour, response and real-space view. Dragging a detector edits
its record; the images come from the analysis layer only:

* while dragging: :func:`fourd_widgets.analysis.interactive.interactive_cache`
  (exact :class:`DragCache` when the cube fits the budget, a binned
  :class:`PreviewCache` otherwise), on a :class:`LatestOnly` worker;
* on release: the exact images from
  :func:`fourd_widgets.analysis.virtual.virtual_image_from_params` on the
  explorer's own :class:`VirtualImageParams` (all detectors in one pass, with
  progress, cancel and partial images), unless every image shown is already
  exact (drag cache, integer data, integrated response).

So ``fw.run(explorer.params, cube)`` returns exactly the images shown.

Keyboard (focus a view first, as in py4D-browser): W A S D move the selected
detector on the diffraction view, I J K L move the real-space selector, the
arrow keys move whatever overlay is selected; Shift moves five pixels.
Mouse: drag shapes or their handles, drag the background to pan, wheel to
zoom, double-click to fit, click in real space to move the selector there.
Polygons: double-click an edge to insert a vertex; Alt-click or right-click a
vertex (or click it and press Delete / Backspace) to remove it (three stay).
A real-space view flagged 'preview' shows a binned approximation (the cube
does not fit the drag cache budget); the exact image replaces it on release.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import ipywidgets as w
import numpy as np

from ..analysis.detectors import Annulus, Circle, Detector, Polygon, Rectangle
from ..analysis.interactive import DragCache, PreviewCache, interactive_cache
from ..tools.worker import LatestOnly
from ..analysis.steps import RunContext
from ..analysis.virtual import (VirtualDiffractionParams, VirtualImageParams, virtual_diffraction_from_params,
                                virtual_image_from_params)
from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import CancelledError, ParameterError
from ..core.recipe import Recipe
from ..engine.run import Cancel
from .image_view import DEFAULT_KEYMAP, ImageView
from .overlays import (PALETTE, detector_from_overlay, make_overlay, overlay_from_detector, region_from_overlay,
                       validate_overlay)

__all__ = ["Explorer", "RESPONSES", "DIFFRACTION_MODES", "SELECTOR_KINDS", "SELECTOR_ID"]

RESPONSES = ("sum", "com_x", "com_y", "max")
DIFFRACTION_MODES = ("selection", "mean", "max")
SELECTOR_KINDS = ("point", "rectangle", "polygon")
SELECTOR_ID = "selector"
#: py4D-browser's keys: WASD moves the detector, IJKL the real-space selector (x = rows, down).
DIFFRACTION_KEYS = {**DEFAULT_KEYMAP, "w": ["", -1, 0], "s": ["", 1, 0], "a": ["", 0, -1], "d": ["", 0, 1]}
REAL_KEYS = {**DEFAULT_KEYMAP, "i": [SELECTOR_ID, -1, 0], "k": [SELECTOR_ID, 1, 0],
             "j": [SELECTOR_ID, 0, -1], "l": [SELECTOR_ID, 0, 1]}
#: Minimum time between two partial images painted during an exact pass.
PARTIAL_EVERY_S = 0.15


@dataclass
class _ImageRequest:
    detectors: tuple[Detector, ...]
    changed: tuple[int, ...]
    final: bool
    cancel: Cancel = field(default_factory=Cancel)


@dataclass
class _PatternRequest:
    params: VirtualDiffractionParams
    point: tuple[int, int] | None
    cancel: Cancel = field(default_factory=Cancel)


class Explorer:
    """Linked diffraction and virtual-image views of a 4D-STEM cube.

    Parameters
    ----------
    cube : DataCube
        The data (any backing; only what the views ask for is read).
    detectors : sequence of Detector, optional
        Virtual detectors (:mod:`fourd_widgets.analysis.detectors`); default a
        bright-field disc and an annular dark field around the pattern origin.
    selector : {'point', 'rectangle', 'polygon'} or dict
        The real-space selector, or an overlay dict in scan pixels.
    diffraction : {'selection', 'mean', 'max'}
        The pattern shown: what the selector picks, or the scan's mean / maximum.
    selection_method : {'mean', 'max'}
        How a rectangle or polygon selection combines its patterns.
    colormap : str
        Initial colormap of every view.
    cache_budget : int, optional
        Bytes the drag cache may use (default: half the free memory).
    build_cache : bool
        Build the drag cache in the background after the first images.
    size : int
        Canvas width of each view, in CSS pixels.
    engine_options : dict, optional
        Options of :func:`fourd_widgets.engine.run_job` for the chunked passes
        (``chunk_bytes``, ``workers``, ``scheduler``); progress, cancel and
        partial images are the explorer's own.

    Attributes
    ----------
    full_passes, cancelled_passes : int
        Chunked passes started, and those stopped because a newer request came
        (or the cancel button was pressed): what tests count.

    Examples
    --------
    >>> from fourd_widgets.core import DataCube
    >>> from fourd_widgets.analysis.detectors import Circle
    >>> cube = DataCube(np.arange(4 * 4 * 8 * 8, dtype=np.uint16).reshape(4, 4, 8, 8))
    >>> ex = Explorer(cube, [Circle((4, 4), 2)], build_cache=False).wait()
    >>> from fourd_widgets.analysis.run import run
    >>> bool(np.array_equal(run(ex.params, cube)["virtual_image"][0], ex.virtual_images[0]))
    True
    >>> ex.close()
    """

    def __init__(self, cube: DataCube, detectors: Sequence[Detector] | None = None, *,
                 selector: str | dict = "point", diffraction: str = "selection", selection_method: str = "mean",
                 colormap: str = "gray", cache_budget: int | None = None, build_cache: bool = True,
                 size: int = 320, engine_options: dict | None = None) -> None:
        if not isinstance(cube, DataCube):
            raise TypeError(f"Explorer needs a DataCube (fw.load(path) gives one), got {type(cube).__name__}")
        if diffraction not in DIFFRACTION_MODES:
            raise ParameterError(f"diffraction must be one of {DIFFRACTION_MODES}, got {diffraction!r}",
                                 field="diffraction")
        if selection_method not in ("mean", "max"):
            raise ParameterError(f"selection_method must be 'mean' or 'max', got {selection_method!r}",
                                 field="selection_method")
        self.cube = cube
        self.calibration = cube.calibration
        self._lock = threading.RLock()
        self._records: list[Detector] = []
        self._ids: list[str] = []
        self._next_id = 0
        self._images: list[np.ndarray | None] = []
        self._exact: list[bool] = []
        self._pattern: np.ndarray | None = None
        self._whole: dict[str, np.ndarray] = {}
        self._callbacks: list[Callable[["Explorer"], Any]] = []
        self._running: dict[str, _ImageRequest | _PatternRequest | None] = {"image": None, "pattern": None}
        self._final_pending = False
        self._syncing = False
        self._last_partial = 0.0
        self.updates = 0
        self.full_passes = 0
        self.cancelled_passes = 0
        self._engine_options = {k: v for k, v in (engine_options or {}).items()
                                if k not in ("progress", "cancel", "on_partial")}
        self._latest_image: _ImageRequest | None = None
        #: (kind, seconds) of the latest image computations: 'drag'/'preview' cache queries, 'exact' passes.
        self.compute_times: deque[tuple[str, float]] = deque(maxlen=2000)
        self._size = int(size)
        self._colormap = colormap
        self._cache: Any = None
        self._cache_ready = threading.Event()
        self._cache_cancel = Cancel()
        self._cache_budget = cache_budget
        self._closed = False

        cal = self.calibration
        self.diffraction_view = ImageView(
            title="Diffraction", colormap=colormap, scale="log", size=self._size, keymap=DIFFRACTION_KEYS,
            pixel_size=cal.reciprocal_step, units=cal.reciprocal_units if cal.reciprocal_step else "px",
            origin=list(cal.origin) if cal.origin else [0.0, 0.0], axis_names=["qx", "qy"])
        self._real_box = w.Box(layout=w.Layout(flex_flow="row wrap"))
        self.real_views: list[ImageView] = []

        self._diff_mode = w.Dropdown(options=DIFFRACTION_MODES, value=diffraction, description="pattern",
                                     layout=w.Layout(width="170px"))
        self._sel_kind = w.Dropdown(options=SELECTOR_KINDS, value="point", description="selector",
                                    layout=w.Layout(width="170px"))
        self._sel_method = w.Dropdown(options=("mean", "max"), value=selection_method, description="region",
                                      layout=w.Layout(width="150px"))
        self._active = w.Dropdown(options=[], description="detector", layout=w.Layout(width="170px"))
        self._response = w.Dropdown(options=RESPONSES, description="response", layout=w.Layout(width="170px"))
        self._new_kind = w.Dropdown(options=("circle", "annulus", "rectangle", "polygon", "point"),
                                    value="circle", layout=w.Layout(width="100px"))
        self._add = w.Button(description="add", layout=w.Layout(width="50px"))
        self._remove = w.Button(description="remove", layout=w.Layout(width="70px"))
        self.progress = w.FloatProgress(value=0, min=0, max=1, description="", layout=w.Layout(width="200px"))
        self._cancel_btn = w.Button(description="cancel", layout=w.Layout(width="70px"), disabled=True)
        self.status = w.Label("")
        controls = w.VBox([
            w.HBox([self._diff_mode, self._sel_kind, self._sel_method]),
            w.HBox([self._active, self._response, self._new_kind, self._add, self._remove]),
        ])
        self.widget = w.VBox([
            controls,
            w.HBox([self.diffraction_view, self._real_box], layout=w.Layout(align_items="flex-start")),
            w.HBox([self.progress, self._cancel_btn, self.status]),
        ])
        self.widget.add_class("fw-explorer")

        self._image_runner: LatestOnly[_ImageRequest] = LatestOnly(
            self._compute_images, self._deliver_images, on_error=self._failed, name="fourd-explorer-images")
        self._pattern_runner: LatestOnly[_PatternRequest] = LatestOnly(
            self._compute_pattern, self._deliver_pattern, on_error=self._failed, name="fourd-explorer-pattern")

        self._selector = self._default_selector(selector)
        self._sel_kind.value = self._selector["kind"]
        for det in (self._default_detectors() if detectors is None else detectors):
            self._add_record(det, refresh=False)
        self._refresh_views()

        self.diffraction_view.observe(self._on_detector_overlays, names="overlays")
        self.diffraction_view.observe(self._on_drag_state, names="dragging")
        self.diffraction_view.observe(self._on_selected, names="selected")
        self._diff_mode.observe(lambda _: self._request_pattern(), names="value")
        self._sel_method.observe(lambda _: self._request_pattern(), names="value")
        self._sel_kind.observe(self._on_selector_kind, names="value")
        self._active.observe(self._on_active, names="value")
        self._response.observe(self._on_response, names="value")
        self._add.on_click(lambda _: self.add_detector(self._new_detector(self._new_kind.value)))
        self._remove.on_click(lambda _: self._active.value and self.remove_detector(self._active.value))
        self._cancel_btn.on_click(lambda _: self.cancel())

        self._request_images(final=True)
        self._request_pattern()
        if build_cache:
            threading.Thread(target=self._build_cache, name="fourd-explorer-cache", daemon=True).start()

    # --- construction helpers -------------------------------------------------------------
    def _centre(self) -> tuple[float, float]:
        if self.calibration.origin is not None:
            return self.calibration.origin
        Qx, Qy = self.cube.detector_shape
        return (Qx - 1) / 2, (Qy - 1) / 2

    def _probe_radius(self) -> float:
        try:
            r = float(self.calibration.convergence_semiangle_px)
        except Exception:  # no calibration of the probe: a tenth of the detector
            r = 0.0
        return r if 0 < r < min(self.cube.detector_shape) / 2 else min(self.cube.detector_shape) / 10

    def _default_detectors(self) -> list[Detector]:
        c, r = self._centre(), self._probe_radius()
        outer = min(3.5 * r, min(self.cube.detector_shape) / 2)
        return [Circle(c, round(1.1 * r, 2)), Annulus(c, round(min(1.5 * r, outer), 2), round(outer, 2))]

    def _new_detector(self, kind: str) -> Detector:
        (cx, cy), r = self._centre(), self._probe_radius()
        if kind == "circle":
            return Circle((cx, cy), r)
        if kind == "annulus":
            return Annulus((cx, cy), 1.5 * r, 3 * r)
        if kind == "rectangle":
            return Rectangle((round(cx - r), round(cx + r)), (round(cy - r), round(cy + r)))
        if kind == "polygon":
            return Polygon(((cx - r, cy), (cx, cy + r), (cx + r, cy), (cx, cy - r)))
        from ..analysis.detectors import Point

        return Point(cx, cy)

    def _default_selector(self, selector: str | dict) -> dict:
        Rx, Ry = self.cube.scan_shape
        if isinstance(selector, dict):
            ov = validate_overlay({**selector, "id": SELECTOR_ID})
        elif selector == "point":
            ov = make_overlay("point", x=Rx // 2, y=Ry // 2)
        elif selector == "rectangle":
            ov = make_overlay("rectangle", x0=Rx // 4, x1=max(Rx // 4 + 1, 3 * Rx // 4),
                              y0=Ry // 4, y1=max(Ry // 4 + 1, 3 * Ry // 4))
        elif selector == "polygon":
            ov = make_overlay("polygon", vertices=[[Rx / 4, Ry / 4], [Rx / 4, 3 * Ry / 4], [3 * Rx / 4, Ry / 2]])
        else:
            raise ParameterError(f"selector must be one of {SELECTOR_KINDS} or an overlay dict, got {selector!r}",
                                 field="selector")
        if ov["kind"] not in SELECTOR_KINDS:
            raise ParameterError(f"a real-space selector is a point, rectangle or polygon, not {ov['kind']}",
                                 field="selector")
        return {**ov, "id": SELECTOR_ID, "color": "#00ff00"}

    # --- public API -----------------------------------------------------------------------
    @classmethod
    def from_params(cls, cube: DataCube, params: Recipe | dict | str, **options: Any) -> "Explorer":
        """Rebuild an explorer from its :attr:`params` (a Recipe, its dict or its JSON).

        Raises
        ------
        ParameterError
            If the recipe has no virtual image step or holds something an
            explorer cannot draw (a Mask detector, an array region).
        """
        params = Recipe.coerce(params)
        if params.calibration is not None:
            cube = cube.with_calibration(params.calibration)
        vi = [s for s in params.steps if isinstance(s, VirtualImageParams)]
        vd = [s for s in params.steps if isinstance(s, VirtualDiffractionParams)]
        if not vi:
            raise ParameterError("this recipe has no virtual_image step to show", field="steps")
        if vi[0].shift != "none":
            raise ParameterError("the explorer shows uncorrected virtual images (shift='none')", field="shift")
        kw: dict[str, Any] = {}
        if vd:
            d = vd[0]
            if isinstance(d.region, np.ndarray) or d.method == "median" or d.align:
                raise ParameterError("the explorer's selector is a point, rectangle or polygon with method "
                                     "'mean' or 'max' and no alignment", field="region")
            if d.region is None:
                kw["diffraction"] = d.method
            else:
                kw["diffraction"] = "selection"
                kw["selection_method"] = d.method
                kw["selector"] = _selector_from_region(d.region)
        return cls(cube, vi[0].detectors, **kw, **options)

    @property
    def detectors(self) -> tuple[Detector, ...]:
        """The detector records, in order (one virtual image each)."""
        with self._lock:
            return tuple(self._records)

    @property
    def detector_ids(self) -> tuple[str, ...]:
        """Overlay ids of the detectors (``'d0'``, ``'d1'``, ...)."""
        with self._lock:
            return tuple(self._ids)

    @property
    def selector(self) -> dict:
        """The real-space selector overlay (scan pixels)."""
        return dict(self._selector)

    @property
    def diffraction(self) -> str:
        """The pattern shown: 'selection', 'mean' or 'max' (settable)."""
        return self._diff_mode.value

    @diffraction.setter
    def diffraction(self, mode: str) -> None:
        if mode not in DIFFRACTION_MODES:
            raise ParameterError(f"diffraction must be one of {DIFFRACTION_MODES}, got {mode!r}", field="diffraction")
        self._diff_mode.value = mode

    @property
    def selection_method(self) -> str:
        """How a region selection combines patterns: 'mean' or 'max' (settable)."""
        return self._sel_method.value

    @selection_method.setter
    def selection_method(self, method: str) -> None:
        if method not in ("mean", "max"):
            raise ParameterError(f"selection_method must be 'mean' or 'max', got {method!r}", field="selection_method")
        self._sel_method.value = method

    @property
    def image_params(self) -> VirtualImageParams:
        """Record of the virtual images shown."""
        return VirtualImageParams(detectors=self.detectors)

    @property
    def diffraction_params(self) -> VirtualDiffractionParams:
        """Record of the diffraction pattern shown."""
        mode = self._diff_mode.value
        if mode != "selection":
            return VirtualDiffractionParams(method=mode)
        return VirtualDiffractionParams(method=self._sel_method.value, region=region_from_overlay(self._selector))

    @property
    def params(self) -> Recipe:
        """The recipe of what is shown: ``fw.run(explorer.params, cube)`` replays it."""
        return Recipe(steps=(self.image_params, self.diffraction_params),
                      labels=("virtual_image", "virtual_diffraction"), calibration=self.calibration)

    @property
    def virtual_images(self) -> np.ndarray:
        """The images shown, (k, Rx, Ry) float64 (NaN where not computed yet)."""
        with self._lock:
            imgs = [np.full(self.cube.scan_shape, np.nan) if im is None else im for im in self._images]
        return np.stack(imgs) if imgs else np.zeros((0,) + self.cube.scan_shape)

    @property
    def diffraction_pattern(self) -> np.ndarray | None:
        """The pattern shown, (Qx, Qy) float64."""
        return self._pattern

    @property
    def drag_cache(self) -> DragCache | PreviewCache | None:
        """The cache drags query (a binned PreviewCache when the cube exceeds the budget); None until built."""
        return self._cache if self._cache_ready.is_set() else None

    @property
    def exact(self) -> bool:
        """True when every image shown is the exact one of the current detectors."""
        with self._lock:
            return all(self._exact) and not self._final_pending

    def add_detector(self, detector: Detector) -> str:
        """Add a detector (its own colour and real-space view); returns its id."""
        ident = self._add_record(detector)
        self._request_images(final=True)
        return ident

    def remove_detector(self, ident: str) -> None:
        """Remove the detector with this id (the last one cannot be removed)."""
        with self._lock:
            if ident not in self._ids or len(self._ids) == 1:
                return
            k = self._ids.index(ident)
            for lst in (self._ids, self._records, self._images, self._exact):
                del lst[k]
        self._refresh_views()
        self._request_images(final=True)

    def set_detector(self, ident: str | int, detector: Detector) -> None:
        """Replace a detector's record (by id or index) and recompute its image."""
        with self._lock:
            k = ident if isinstance(ident, int) else self._ids.index(ident)
            self._records[k] = _checked(detector, self.calibration)
            self._exact[k] = False
        self._refresh_views()
        self._request_images(final=True, changed=(k,))

    def select(self, rx: int, ry: int) -> None:
        """Put a point selector on scan position ``(rx, ry)`` and show that pattern."""
        self.set_selector(make_overlay("point", x=rx, y=ry))

    def set_selector(self, selector: dict) -> None:
        """Replace the real-space selector (an overlay dict in scan pixels)."""
        self._selector = self._default_selector(selector)
        self._sync_selector()
        self._request_pattern()

    def on_update(self, callback: Callable[["Explorer"], Any]) -> None:
        """Call ``callback(explorer)`` (on a worker thread) whenever exact images or a pattern were shown."""
        self._callbacks.append(callback)

    def wait(self, timeout: float = 120.0) -> "Explorer":
        """Block until every requested image and pattern is shown (for scripts and tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            idle = (self._image_runner.wait_idle(max(0.0, deadline - time.monotonic()))
                    and self._pattern_runner.wait_idle(max(0.0, deadline - time.monotonic())))
            if idle and not self._final_pending:
                return self
            time.sleep(0.01)
        raise TimeoutError(f"the explorer did not finish within {timeout} s")

    def wait_cache(self, timeout: float = 600.0) -> bool:
        """Block until the drag cache is built; False if it is not (or not being) built."""
        return self._cache_ready.wait(timeout)

    def cancel(self) -> None:
        """Stop the exact pass or pattern in progress (partial images stay)."""
        for req in self._running.values():
            if req is not None:
                req.cancel.cancel()

    def close(self) -> None:
        """Stop the workers and close the widgets (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        self._cache_cancel.cancel()
        self.cancel()
        self._image_runner.close(5.0)
        self._pattern_runner.close(5.0)
        if self._cache is not None:
            self._cache.release()  # the drag cache can be twice the size of the cube
        for v in [self.diffraction_view, *self.real_views]:
            v.close()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- views ----------------------------------------------------------------------------
    def _add_record(self, detector: Detector, refresh: bool = True) -> str:
        det = _checked(detector, self.calibration)
        with self._lock:
            ident = f"d{self._next_id}"
            self._next_id += 1
            self._records.append(det)
            self._ids.append(ident)
            self._images.append(None)
            self._exact.append(False)
        if refresh:
            self._refresh_views()
        return ident

    def _color(self, ident: str) -> str:
        return PALETTE[int(ident[1:]) % len(PALETTE)]

    def _refresh_views(self) -> None:
        """Make overlays, real views and the detector controls match the records."""
        with self._lock:
            records, ids = list(self._records), list(self._ids)
        ovs = [{**overlay_from_detector(d, i, self._color(i), self.calibration), "label": i}
               for d, i in zip(records, ids)]
        self._syncing = True
        try:
            self.diffraction_view.overlays = ovs
            if self.diffraction_view.selected not in ids:
                self.diffraction_view.selected = ids[0] if ids else ""
            while len(self.real_views) < len(ids):
                view = ImageView(colormap=self._colormap, size=max(160, self._size * 3 // 4), keymap=REAL_KEYS,
                                 pixel_size=self.calibration.real_step,
                                 units=self.calibration.real_units if self.calibration.real_step else "px",
                                 axis_names=["rx", "ry"], click_moves=SELECTOR_ID, selected=SELECTOR_ID)
                view.observe(self._on_selector_overlays, names="overlays")
                self.real_views.append(view)
            for view in self.real_views[len(ids):]:
                view.close()
            del self.real_views[len(ids):]
            for view, d, i in zip(self.real_views, records, ids):
                view.title = f"{i}: {d.step.split('.')[-1]} · {d.response}"
                view.overlays = [self._selector]
            self._real_box.children = tuple(self.real_views)
            self._active.options = ids
            if self.diffraction_view.selected in ids:
                self._active.value = self.diffraction_view.selected
            self._response.value = records[ids.index(self._active.value)].response if ids else "sum"
        finally:
            self._syncing = False

    def _sync_selector(self, source: ImageView | None = None) -> None:
        self._syncing = True
        try:
            for view in self.real_views:
                if view is not source:
                    view.overlays = [self._selector]
        finally:
            self._syncing = False

    # --- events from the browser ---------------------------------------------------------
    def _on_detector_overlays(self, change: dict) -> None:
        if self._syncing:
            return
        changed = []
        with self._lock:
            for ov in change["new"]:
                if ov["id"] not in self._ids:
                    continue
                k = self._ids.index(ov["id"])
                old = self._records[k]
                new = detector_from_overlay(ov, old.response, old.units, old.relative_to_origin, self.calibration)
                if new != old:
                    self._records[k] = new
                    self._exact[k] = False
                    changed.append(k)
        if changed:
            dragging = bool(self.diffraction_view.dragging)
            self._request_images(final=not dragging, changed=tuple(changed))

    def _on_drag_state(self, change: dict) -> None:
        if not change["new"] and not self.exact:
            self._request_images(final=True)

    def _on_selected(self, change: dict) -> None:
        if change["new"] in self._active.options and not self._syncing:
            self._active.value = change["new"]

    def _on_active(self, change: dict) -> None:
        if change["new"] is None or self._syncing:
            return
        with self._lock:
            rec = self._records[self._ids.index(change["new"])]
        self._syncing = True
        try:
            self._response.value = rec.response
            self.diffraction_view.selected = change["new"]
        finally:
            self._syncing = False

    def _on_response(self, change: dict) -> None:
        if self._syncing or self._active.value is None:
            return
        with self._lock:
            k = self._ids.index(self._active.value)
            rec = self._records[k]
        if rec.response != change["new"]:
            self.set_detector(k, rec.replace(response=change["new"]))

    def _on_selector_overlays(self, change: dict) -> None:
        if self._syncing:
            return
        for ov in change["new"]:
            if ov["id"] == SELECTOR_ID and ov != self._selector:
                self._selector = {**ov, "color": "#00ff00"}
                self._sync_selector(source=change["owner"])
                self._request_pattern()

    def _on_selector_kind(self, change: dict) -> None:
        if change["new"] != self._selector["kind"]:
            self._selector = self._default_selector(change["new"])
            self._sync_selector()
            if self._diff_mode.value == "selection":
                self._request_pattern()

    # --- computing ------------------------------------------------------------------------
    def _request_images(self, final: bool, changed: tuple[int, ...] | None = None) -> None:
        with self._lock:
            dets = tuple(self._records)
            if final:
                self._final_pending = True
        req = _ImageRequest(dets, tuple(range(len(dets))) if changed is None else changed, final)
        with self._lock:
            previous, self._latest_image = self._latest_image, req
        if previous is not None:
            # Newest request wins. Cancel the previous one whether it is pending or already
            # running: the worker may have taken it but not yet registered it as running, and a
            # stale chunked pass (exact, or a drag query the cache cannot answer) must stop
            # between chunks instead of running to the end for a result nobody will see.
            previous.cancel.cancel()
        self._image_runner.submit(req)

    def _request_pattern(self) -> None:
        params = self.diffraction_params
        point = None
        if self._diff_mode.value == "selection" and self._selector["kind"] == "point":
            Rx, Ry = self.cube.scan_shape
            point = (int(np.clip(round(self._selector["x"]), 0, Rx - 1)),
                     int(np.clip(round(self._selector["y"]), 0, Ry - 1)))
            params = VirtualDiffractionParams(method=self._sel_method.value,
                                              region=Rectangle((point[0], point[0] + 1), (point[1], point[1] + 1)))
            if region_from_overlay(self._selector) != params.region:  # selector off the scan: clamp it
                self._selector = {**self._selector, "x": float(point[0]), "y": float(point[1])}
                self._sync_selector()
        running = self._running["pattern"]
        if running is not None:
            running.cancel.cancel()
        self._pattern_runner.submit(_PatternRequest(params, point))

    def _compute_images(self, req: _ImageRequest) -> tuple[str, dict[int, np.ndarray], frozenset[int]]:
        """``(kind, images by detector index, indices whose image is a binned preview)``."""
        cache = self._cache if self._cache_ready.is_set() else None
        start = time.perf_counter()
        if not req.final and cache is not None:
            wanted = [k for k in req.changed if k < len(req.detectors)]
            # The caches answer integrated responses only; 'max' needs a chunked pass, which
            # must stay cancellable by the next drag update (cache.query would not be).
            slow = [k for k in wanted if not _cache_answers(req.detectors[k])]
            out = {}
            previews = set()
            for k in wanted:
                if k not in slow:
                    res = cache.query(req.detectors[k])
                    out[k] = res.expanded() if res.is_preview else res.image
                    if res.is_preview:
                        previews.add(k)
            kind = "drag" if isinstance(cache, DragCache) else "preview"
            if slow:
                stack = self._chunked_pass(req, tuple(req.detectors[k] for k in slow), partial=False)
                out.update(zip(slow, stack))
                kind = "full" if len(slow) == len(wanted) else kind
            self.compute_times.append((kind, time.perf_counter() - start))
            return kind, out, frozenset(previews)
        if req.final and cache is not None and isinstance(cache, DragCache) and self._cache_is_exact(req.detectors):
            out = {k: cache.image(d) for k, d in enumerate(req.detectors)}
            self.compute_times.append(("exact-cache", time.perf_counter() - start))
            return "exact", out, frozenset()
        stack = self._chunked_pass(req, req.detectors, partial=True)
        self.compute_times.append(("exact" if req.final else "full", time.perf_counter() - start))
        return ("exact" if req.final else "full"), {k: stack[k] for k in range(len(req.detectors))}, frozenset()

    def _chunked_pass(self, req: _ImageRequest, detectors: tuple[Detector, ...], partial: bool) -> np.ndarray:
        """Virtual images of ``detectors`` in one chunked pass that ``req.cancel`` stops between chunks.

        ``partial`` paints partial images, which only makes sense when ``detectors``
        are all of ``req.detectors`` (view k shows image k).
        """
        self._running["image"] = req
        self.full_passes += 1
        self._set_busy(True, "computing virtual images")
        engine: dict[str, Any] = {**self._engine_options, "progress": self._progress, "cancel": req.cancel}
        if partial:
            engine["on_partial"] = lambda v, d, t: self._partial(req, v, d, t)
        try:
            return virtual_image_from_params(self.cube, VirtualImageParams(detectors=detectors),
                                             RunContext(engine=engine))
        except CancelledError:
            self.cancelled_passes += 1
            raise
        finally:
            self._running["image"] = None
            self._set_busy(False)

    def _cache_is_exact(self, detectors: Sequence[Detector]) -> bool:
        """The drag cache equals the reference for integer data and integrated responses."""
        return self.cube.dtype.kind in "uib" and all(d.response == "sum" for d in detectors)

    def _partial(self, req: _ImageRequest, value: np.ndarray, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - self._last_partial < PARTIAL_EVERY_S or req.cancel.is_set():
            return
        self._last_partial = now
        with self._lock:
            if req.detectors != tuple(self._records):
                return
        for k, view in enumerate(list(self.real_views)):
            if k < value.shape[0]:
                with view.hold_sync():
                    view.set_image(_displayable(value[k]))
                    view.badge = f"partial {100 * done // total} %"

    def _deliver_images(self, req: _ImageRequest,
                        result: tuple[str, dict[int, np.ndarray], frozenset[int]]) -> None:
        kind, images, previews = result
        with self._lock:
            if req.detectors != tuple(self._records):
                return  # stale: the detectors changed meanwhile
            for k, img in images.items():
                self._images[k] = img
                self._exact[k] = kind == "exact"
            if req.final:
                self._final_pending = False
            views = list(self.real_views)
        for k, img in images.items():
            if k < len(views):
                with views[k].hold_sync():  # image and its flag arrive together
                    views[k].set_image(_displayable(img))
                    views[k].badge = "preview" if k in previews else ""
        if kind == "preview":
            self._set_status("preview (binned) while dragging; the full image follows on release")
        elif kind == "exact":
            self._set_status("")
            self._notify()

    def _compute_pattern(self, req: _PatternRequest) -> np.ndarray:
        if req.point is not None:
            return np.asarray(self.cube.pattern(*req.point), dtype=np.float64)
        if req.params.region is None and req.params.method in self._whole:
            return self._whole[req.params.method]
        self._running["pattern"] = req
        self._set_busy(True, "computing the diffraction pattern")
        try:
            ctx = RunContext(engine={**self._engine_options, "progress": self._progress, "cancel": req.cancel})
            out = virtual_diffraction_from_params(self.cube, req.params, ctx)
        finally:
            self._running["pattern"] = None
            self._set_busy(False)
        if req.params.region is None:
            self._whole[req.params.method] = out
        return out

    def _deliver_pattern(self, req: _PatternRequest, pattern: np.ndarray) -> None:
        self._pattern = pattern
        self.diffraction_view.set_image(_displayable(pattern))
        self._notify()

    def _failed(self, req: Any, exc: BaseException) -> None:
        if isinstance(exc, CancelledError):
            self._set_status("cancelled; the partial image stays")
            if isinstance(req, _ImageRequest) and req.final and self._running["image"] is None:
                with self._lock:
                    self._final_pending = False
            return
        if isinstance(req, _ImageRequest) and req.final:
            with self._lock:
                self._final_pending = False
        self._set_status(f"error: {type(exc).__name__}: {exc}")

    def _notify(self) -> None:
        self.updates += 1
        for fn in list(self._callbacks):
            try:
                fn(self)
            except Exception as exc:  # a user callback must not stop the explorer
                self._set_status(f"on_update callback failed: {exc}")

    def _progress(self, done: int, total: int) -> None:
        self.progress.value = done / total if total else 1.0

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self._cancel_btn.disabled = not busy
        if busy:
            self.progress.value = 0.0
            self._set_status(text)
        else:
            self.progress.value = 1.0

    def _set_status(self, text: str) -> None:
        self.status.value = text

    def _build_cache(self) -> None:
        try:
            self._set_status("building the drag cache")
            cache = interactive_cache(self.cube, self._cache_budget)

            def report(done: int, total: int) -> None:
                self._set_status(f"building the drag cache: {100 * done // max(total, 1)} %")

            cache.build(progress=report, cancel=self._cache_cancel)
        except CancelledError:
            return
        except Exception as exc:  # no cache: drags fall back to exact passes
            self._set_status(f"no drag cache ({exc}); dragging recomputes in full")
            return
        self._cache = cache
        self._cache_ready.set()
        if not self._closed:
            self._set_status("drag cache ready" + (" (binned preview)" if not isinstance(cache, DragCache) else ""))


def _checked(detector: Any, calibration: Calibration) -> Detector:
    if not isinstance(detector, Detector):
        raise ParameterError(f"a detector must be a record of fw.detectors (Circle, Annulus, ...), "
                             f"got {type(detector).__name__}", field="detectors")
    overlay_from_detector(detector, "check", PALETTE[0], calibration)  # raises for shapes without handles
    return detector


def _cache_answers(detector: Detector) -> bool:
    """Whether an interactive cache answers this detector without a chunked pass (not for 'max')."""
    return detector.response != "max"


def _selector_from_region(region: Rectangle | Polygon) -> dict:
    if isinstance(region, Rectangle):
        (x0, x1), (y0, y1) = region.qx_range, region.qy_range
        if x1 - x0 == 1 and y1 - y0 == 1 and float(x0).is_integer() and float(y0).is_integer():
            return make_overlay("point", x=x0, y=y0)
    return overlay_from_detector(region, SELECTOR_ID, "#00ff00")


def _displayable(img: np.ndarray) -> np.ndarray:
    """Real part to show (complex images show their magnitude)."""
    return np.abs(img) if np.iscomplexobj(img) else img
