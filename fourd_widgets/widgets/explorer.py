"""``Explorer``: a diffraction view linked to virtual images, as in py4D-browser, in a notebook.

The left view shows a diffraction pattern (the mean or maximum of the scan, or
what the real-space selector picks); its overlays are virtual detectors, each
with its own colour, response and real-space view. This module is the view
only: the records, the drag cache, the exact passes and what to recompute when
live in :class:`fourd_widgets.tools.explorer.ExplorerSession` (``explorer.session``).

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

from typing import Any, Sequence

import ipywidgets as w
import numpy as np

from ..analysis.detectors import Detector
from ..core.datacube import DataCube
from ..core.recipe import Recipe
from ..tools.explorer import ExplorerSession
from ..tools.explorer_beam import is_single_pattern
from ..tools.explorer_compute import (DIFFRACTION_MODES, RESPONSES, SELECTOR_ID, SELECTOR_KINDS,
                                      ImageRequest, options_from_recipe)
from .help_text import EXPLORER, explain_controls
from .image_view import DEFAULT_KEYMAP, ImageView
from .overlays import PALETTE, overlay_from_detector
from .tool_view import Busy, ToolView, message_html

__all__ = ["Explorer", "RESPONSES", "DIFFRACTION_MODES", "SELECTOR_KINDS", "SELECTOR_ID"]

#: py4D-browser's keys: WASD moves the detector, IJKL the real-space selector (x = rows, down).
DIFFRACTION_KEYS = {**DEFAULT_KEYMAP, "w": ["", -1, 0], "s": ["", 1, 0], "a": ["", 0, -1], "d": ["", 0, 1]}
REAL_KEYS = {**DEFAULT_KEYMAP, "i": [SELECTOR_ID, -1, 0], "k": [SELECTOR_ID, 1, 0],
             "j": [SELECTOR_ID, 0, -1], "l": [SELECTOR_ID, 0, 1]}
#: The request type of the image worker (tests build stale ones).
_ImageRequest = ImageRequest


class Explorer(ToolView):
    """Linked diffraction and virtual-image views of a 4D-STEM cube.

    Parameters
    ----------
    cube : DataCube
        The data (any backing; only what the views ask for is read).
    detectors : sequence of Detector, optional
        Virtual detectors (:mod:`fourd_widgets.analysis.detectors`); default a
        bright-field disc on the measured beam and an annular dark field over the
        diffracted intensity (:mod:`fourd_widgets.tools.explorer_beam`); the
        "centre on beam" button moves every detector onto the beam.
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
        (``chunk_bytes``, ``workers``, ``scheduler``).

    Attributes
    ----------
    session : ExplorerSession
        The headless state and workers (records, images, caches).
    full_passes, cancelled_passes : int
        Chunked passes started, and those stopped because a newer request came
        (or the cancel button was pressed): what tests count.

    Examples
    --------
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
        self.session = s = ExplorerSession(cube, detectors, selector=selector, diffraction=diffraction,
                                           selection_method=selection_method, cache_budget=cache_budget,
                                           build_cache=build_cache, engine_options=engine_options, start=False)
        self.calibration = cal = s.calibration
        self._size, self._colormap = int(size), colormap
        self.diffraction_view = ImageView(
            title="Diffraction", colormap=colormap, scale="log", size=self._size, keymap=DIFFRACTION_KEYS,
            pixel_size=cal.reciprocal_step, units=cal.reciprocal_units if cal.reciprocal_step else "px",
            origin=list(cal.origin) if cal.origin else [0.0, 0.0], axis_names=["qx", "qy"], value_units="counts")
        # beside the pattern, taking the width left and wrapping its views there (never below the pattern)
        self._real_box = w.Box(layout=w.Layout(flex_flow="row wrap", flex="1 1 0%", min_width="0"))
        self.real_views: list[ImageView] = []
        lay = w.Layout
        self._diff_mode = w.Dropdown(options=DIFFRACTION_MODES, value=diffraction, description="pattern",
                                     layout=lay(width="170px"))
        self._sel_kind = w.Dropdown(options=SELECTOR_KINDS, value=s.selector["kind"], description="selector",
                                    layout=lay(width="170px"))
        self._sel_method = w.Dropdown(options=("mean", "max"), value=selection_method, description="region",
                                      layout=lay(width="150px"))
        self._active = w.Dropdown(options=[], description="detector", layout=lay(width="170px"))
        self._response = w.Dropdown(options=RESPONSES, description="response", layout=lay(width="170px"))
        self._new_kind = w.Dropdown(options=("circle", "annulus", "rectangle", "polygon", "point"),
                                    value="circle", layout=lay(width="100px"))
        self._add = w.Button(description="add", layout=lay(width="50px"))
        self._remove = w.Button(description="remove", layout=lay(width="70px"))
        self._centre = w.Button(description="centre on beam", icon="crosshairs", layout=lay(width="auto"))
        self._new_kind.tooltip = EXPLORER["new detector"]
        #: What is wrong with where the detectors sit (a detector that covers no pixel, one past the edge).
        self.warnings = w.HTML("", layout=lay(max_width="900px"))
        self.warnings.add_class("fw-detector-warnings")
        self.busy = Busy(s, width="200px")
        self.progress, self._cancel_btn, self.status = self.busy.bar, self.busy.cancel_button, self.busy.status
        wrap = lay(flex_flow="row wrap", align_items="center")
        controls = w.VBox([
            w.HBox([self._diff_mode, self._sel_kind, self._sel_method], layout=wrap),
            w.HBox([self._active, self._response, self._new_kind, self._add, self._remove, self._centre],
                   layout=wrap),
        ])
        self.single = is_single_pattern(cube)
        if self.single:  # one pattern: no real-space image, selector or drag cache to show
            self._real_box.layout.display = "none"
            for c in (self._diff_mode, self._sel_kind, self._sel_method):
                c.layout.display = "none"
            self.diffraction_view.title = "Diffraction (single pattern: 1 x 1 scan)"
        self.widget = w.VBox([
            controls, self.warnings,
            w.HBox([self.diffraction_view, self._real_box], layout=lay(align_items="flex-start")),
            self.busy.box,
        ])
        self.widget.add_class("fw-explorer")
        explain_controls(self.widget, EXPLORER)
        self._refresh_views()
        self._show_warnings()

        s.listen(self._on_session)
        self.diffraction_view.observe(self._on_detector_overlays, names="overlays")
        self.diffraction_view.observe(self._on_drag_state, names="dragging")
        self.diffraction_view.observe(self._on_selected, names="selected")
        self._diff_mode.observe(lambda ch: self._unless_syncing(setattr, s, "diffraction", ch["new"]), names="value")
        self._sel_method.observe(lambda ch: self._unless_syncing(setattr, s, "selection_method", ch["new"]),
                                 names="value")
        self._sel_kind.observe(self._on_selector_kind, names="value")
        self._active.observe(self._on_active, names="value")
        self._response.observe(self._on_response, names="value")
        self._add.on_click(lambda _: s.add_new(self._new_kind.value))
        self._remove.on_click(lambda _: self._active.value and s.remove_detector(self._active.value))
        self._centre.on_click(lambda _: s.centre_on_beam())
        s.start()

    @classmethod
    def from_params(cls, cube: DataCube, params: Recipe | dict | str, **options: Any) -> "Explorer":
        """Rebuild an explorer from its :attr:`params` (a Recipe, its dict or its JSON).

        Raises
        ------
        ParameterError
            If the recipe has no virtual image step or holds something an
            explorer cannot draw (a Mask detector, an array region).
        """
        cube, detectors, kw = options_from_recipe(cube, params)
        return cls(cube, detectors, **kw, **options)

    # --- the session's state, as the explorer's ---------------------------------------------------
    detectors = property(lambda self: self.session.detectors, doc="The detector records, in order.")
    detector_ids = property(lambda self: self.session.detector_ids, doc="Overlay ids of the detectors.")
    selector = property(lambda self: self.session.selector, doc="The real-space selector overlay (scan px).")
    image_params = property(lambda self: self.session.image_params, doc="Record of the virtual images shown.")
    diffraction_params = property(lambda self: self.session.diffraction_params,
                                  doc="Record of the diffraction pattern shown.")
    virtual_images = property(lambda self: self.session.virtual_images,
                              doc="The images shown, (k, Rx, Ry) float64 (NaN where not computed yet).")
    diffraction_pattern = property(lambda self: self.session.diffraction_pattern, doc="The pattern shown.")
    drag_cache = property(lambda self: self.session.drag_cache, doc="The cache drags query (None until built).")
    exact = property(lambda self: self.session.exact, doc="True when every image shown is exact.")
    full_passes = property(lambda self: self.session.full_passes)
    cancelled_passes = property(lambda self: self.session.cancelled_passes)
    compute_times = property(lambda self: self.session.compute_times)
    _image_runner = property(lambda self: self.session._image_runner)
    _pattern_runner = property(lambda self: self.session._pattern_runner)
    _latest_image = property(lambda self: self.session._latest_image)

    @property
    def diffraction(self) -> str:
        """The pattern shown: 'selection', 'mean' or 'max' (settable)."""
        return self.session.diffraction

    @diffraction.setter
    def diffraction(self, mode: str) -> None:
        self.session.diffraction = mode

    @property
    def selection_method(self) -> str:
        """How a region selection combines patterns: 'mean' or 'max' (settable)."""
        return self.session.selection_method

    @selection_method.setter
    def selection_method(self, method: str) -> None:
        self.session.selection_method = method

    def add_detector(self, detector: Detector) -> str:
        """Add a detector (its own colour and real-space view); returns its id."""
        return self.session.add_detector(detector)

    def remove_detector(self, ident: str) -> None:
        """Remove the detector with this id (the last one cannot be removed)."""
        self.session.remove_detector(ident)

    def set_detector(self, ident: str | int, detector: Detector) -> None:
        """Replace a detector's record (by id or index) and recompute its image."""
        self.session.set_detector(ident, detector)

    def select(self, rx: int, ry: int) -> None:
        """Put a point selector on scan position ``(rx, ry)`` and show that pattern."""
        self.session.select(rx, ry)

    def set_selector(self, selector: dict) -> None:
        """Replace the real-space selector (an overlay dict in scan pixels)."""
        self.session.set_selector(selector)

    def wait_cache(self, timeout: float = 600.0) -> bool:
        """Block until the drag cache is built; False if it is not (or not being) built."""
        return self.session.wait_cache(timeout)

    def _deliver_images(self, req: ImageRequest, result: tuple) -> None:
        self.session._deliver_images(req, result)

    def _views(self) -> list[Any]:
        return [self.diffraction_view, *self.real_views]

    # --- session -> views -----------------------------------------------------------------------
    def _on_session(self, event: str, value: Any) -> None:
        if event == "detectors":
            self._refresh_views()
            self._show_warnings()
        elif event == "images":
            images, previews = value
            views = list(self.real_views)
            for k, img in images.items():
                if k < len(views):
                    with views[k].hold_sync():  # image and its flag arrive together
                        views[k].set_image(_displayable(img))
                        views[k].badge = "preview" if k in previews else ""
        elif event == "partial":
            stack, done, total = value
            for k, view in enumerate(list(self.real_views)[:stack.shape[0]]):
                with view.hold_sync():
                    view.set_image(_displayable(stack[k]))
                    view.badge = f"partial {100 * done // total} %"
        elif event == "pattern":
            self.diffraction_view.set_image(_displayable(value))
        elif event == "selector":
            self._sync_selector(source=value)
        elif event == "options":
            self._synced(lambda: (setattr(self._diff_mode, "value", self.session.diffraction),
                                  setattr(self._sel_method, "value", self.session.selection_method)))

    def _refresh_views(self) -> None:
        """Make overlays, real views and the detector controls match the records."""
        s = self.session
        records, ids = list(s.detectors), list(s.detector_ids)
        ovs = [{**overlay_from_detector(d, i, PALETTE[int(i[1:]) % len(PALETTE)], self.calibration), "label": i}
               for d, i in zip(records, ids)]
        self._syncing = True
        try:
            self.diffraction_view.overlays = ovs
            if self.diffraction_view.selected not in ids:
                self.diffraction_view.selected = ids[0] if ids else ""
            while len(self.real_views) < len(ids):
                cal = self.calibration
                view = ImageView(colormap=self._colormap, size=max(160, self._size * 3 // 4), keymap=REAL_KEYS,
                                 pixel_size=cal.real_step, units=cal.real_units if cal.real_step else "px",
                                 axis_names=["rx", "ry"], click_moves=SELECTOR_ID, selected=SELECTOR_ID)
                view.observe(self._on_selector_overlays, names="overlays")
                self.real_views.append(view)
            for view in self.real_views[len(ids):]:
                view.close()
            del self.real_views[len(ids):]
            for view, d, i in zip(self.real_views, records, ids):
                view.title = f"{i}: {d.step.split('.')[-1]} · {d.response}"
                view.value_units = "counts" if d.response in ("sum", "max") else d.units  # centre of mass: position
                view.overlays = [s.selector]
            self._real_box.children = tuple(self.real_views)
            self._active.options = ids
            if self.diffraction_view.selected in ids:
                self._active.value = self.diffraction_view.selected
            self._response.value = records[ids.index(self._active.value)].response if ids else "sum"
        finally:
            self._syncing = False

    def _sync_selector(self, source: ImageView | None = None) -> None:
        selector = self.session.selector
        self._synced(lambda: [setattr(v, "overlays", [selector]) for v in self.real_views if v is not source])
        if self._sel_kind.value != selector["kind"]:
            self._synced(lambda: setattr(self._sel_kind, "value", selector["kind"]))

    # --- browser -> session -----------------------------------------------------------------------
    def _on_detector_overlays(self, change: dict) -> None:
        if not self._syncing:
            self.session.edit_overlays(change["new"], dragging=bool(self.diffraction_view.dragging))

    def _on_drag_state(self, change: dict) -> None:
        if not change["new"]:
            self.session.release()
            self._show_warnings()

    def _show_warnings(self) -> None:
        """The detectors' warnings as a visible message line ('' when every detector sees pixels)."""
        lines = [f"{i}: {m}" for i, msgs in self.session.detector_warnings().items() for m in msgs]
        self.warnings.value = "<br>".join(message_html(t, "warning") for t in lines)

    def _on_selected(self, change: dict) -> None:
        if change["new"] in self._active.options and not self._syncing:
            self._active.value = change["new"]

    def _on_active(self, change: dict) -> None:
        if change["new"] is None or self._syncing:
            return
        rec = self.session.detectors[self.session.detector_ids.index(change["new"])]
        self._synced(lambda: (setattr(self._response, "value", rec.response),
                              setattr(self.diffraction_view, "selected", change["new"])))

    def _on_response(self, change: dict) -> None:
        if not self._syncing and self._active.value is not None:
            self.session.set_response(self._active.value, change["new"])

    def _on_selector_overlays(self, change: dict) -> None:
        if self._syncing:
            return
        for ov in change["new"]:
            if ov["id"] == SELECTOR_ID:
                self.session.move_selector(ov, source=change["owner"])

    def _on_selector_kind(self, change: dict) -> None:
        if not self._syncing and change["new"] != self.session.selector["kind"]:
            self.session.set_selector(change["new"])


def _displayable(img: np.ndarray) -> np.ndarray:
    """Real part to show (complex images show their magnitude)."""
    return np.abs(img) if np.iscomplexobj(img) else img
