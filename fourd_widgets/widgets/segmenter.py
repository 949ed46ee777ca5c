"""``fw.Segmenter(cube)``: pick features, drag the number of components, click classes.

A thin view over :class:`~fourd_widgets.tools.segmenter.SegmenterSession`:

* features: kind, binning and scaling;
* decomposition: method and number of components (the scree plot, a component map
  and its loading drawn as a diffraction pattern update as the slider moves);
* classes: method and number (0: chosen by BIC) or Bragg-vector co-occurrence, the
  class map; a click on the map
  shows that class's mean pattern, or, in paint mode, labels the position for a
  semi-supervised pass (dragging the marker paints a stroke with the brush radius);
  merge and split buttons act on the selected classes.

Its recipe (``tool.params``) replays the shown classes with ``fw.run``; it is a page
of the dashboard.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import numpy as np

from ..analysis.features_polar import FEATURE_KINDS
from ..tools.segmenter import SegmenterSession
from .image_view import ImageView
from .overlays import make_overlay
from .segmenter_parts import Brush, show_painted
from .tool_view import Busy, ToolView, message_html, message_label

__all__ = ["Segmenter"]

#: Id of the point overlay a click on the class map moves.
PICK_ID = "pick"


def scree_figure() -> tuple[Any, Any]:
    """A small bqplot figure of the explained variance ratio per component."""
    import bqplot as bq

    xs, ys = bq.LinearScale(min=0.0), bq.LogScale()
    line = bq.Lines(x=[1.0], y=[1.0], scales={"x": xs, "y": ys}, colors=["#1f77b4"], marker="circle",
                    marker_size=16)
    mark = bq.Lines(x=[1.0, 1.0], y=[1e-6, 1.0], scales={"x": xs, "y": ys}, colors=["#d62728"])
    fig = bq.Figure(marks=[line, mark], axes=[bq.Axis(scale=xs, label="component", tick_format="~g"),
                                              bq.Axis(scale=ys, side="left", tick_format=".0e",
                                                      label="explained variance", label_offset="48px")],
                    title="scree", layout=w.Layout(width="300px", height="220px"),
                    fig_margin={"top": 30, "bottom": 40, "left": 72, "right": 10})
    return fig, (line, mark)


class Segmenter(ToolView):
    """Classification and segmentation tool over a :class:`SegmenterSession`.

    Parameters
    ----------
    cube : DataCube
    params : Recipe or record, optional
        Records to start from (e.g. a saved recipe of this tool).
    size : int
        Side of each image view, screen pixels.
    peaks : PeakTable, optional
        Bragg peaks for classes by Bragg-vector co-occurrence ('bragg'); without them the
        disks are found with ``disks`` (default: the disk step's defaults).
    disks : FindDisksParams, optional
    """

    def __init__(self, cube: Any, params: Any = None, size: int = 300, peaks: Any = None,
                 disks: Any = None) -> None:
        self.session = s = SegmenterSession(cube, params, peaks=peaks, disks=disks)
        f, d, c = s.classify_record.features, s.decompose_record, s.classify_record
        self.busy = Busy(s)
        self.message = message_label()
        lay = w.Layout(width="300px")
        self.kind = w.Dropdown(options=list(FEATURE_KINDS), value=f.kind if f.kind in FEATURE_KINDS else "patterns",
                               description="features", layout=lay,
                               tooltip="fem_*: angular variance / mean² of the rings (crystallinity)")
        self.bin = w.IntSlider(value=f.bin, min=1, max=16, description="bin", continuous_update=False, layout=lay)
        self.scaling = w.Dropdown(options=["none", "sqrt", "log"], value=f.scaling, description="scaling",
                                  layout=lay)
        self.method = w.Dropdown(options=["pca", "nmf", "ica"], value=d.method, description="decompose",
                                 layout=lay)
        self.n_components = w.IntSlider(value=d.n_components, min=1, max=32, description="components",
                                        layout=lay)
        self.component = w.IntSlider(value=0, min=0, max=max(d.n_components - 1, 0), description="show",
                                     layout=lay)
        self.class_method = w.Dropdown(options=["gmm", "kmeans", "connectivity", "bragg"],
                                       value="bragg" if s.bragg_record is not None else c.method,
                                       description="classes by", layout=lay,
                                       tooltip="bragg: Bragg vectors that occur together (peaks given, or found "
                                               "with the disk step's defaults)")
        self.n_classes = w.IntSlider(value=c.n_classes or 0, min=0, max=16, description="classes",
                                     tooltip="0: chosen by BIC (Gaussian mixture)", continuous_update=False,
                                     layout=lay)
        self.class_components = w.IntSlider(value=c.n_components, min=1, max=32, description="class PCs",
                                            continuous_update=False, layout=lay)
        self.mode = w.ToggleButtons(options=["pick", "paint"], value="pick", description="click",
                                    style={"button_width": "60px"})
        self.brush = Brush(lambda pts, label, radius: self.session.paint_labels(pts, label, radius))
        self.paint_label = self.brush.label
        self.merge_with = w.BoundedIntText(value=1, min=0, max=63, description="other class", layout=lay)
        self.merge_button = w.Button(description="merge selected + other")
        self.split_button = w.Button(description="split selected")
        self.clear_button = w.Button(description="clear paint")
        self.selected = w.HTML("no class selected")
        self.map_view = ImageView(title="component map", size=size, colormap="viridis",
                                  axis_names=["rx", "ry"])
        self.loading_view = ImageView(title="loading", size=size, colormap="viridis")
        self.class_view = ImageView(title="class map: click a class", size=size, colormap="viridis",
                                    axis_names=["rx", "ry"], click_moves=PICK_ID, selected=PICK_ID)
        self.pattern_view = ImageView(title="class mean pattern", size=size, colormap="gray", scale="log")
        self.scree, (self._scree_line, self._scree_mark) = scree_figure()
        self.mode.add_class("fw-seg-mode")
        self.class_method.add_class("fw-seg-class-method")
        self.merge_with.add_class("fw-seg-merge-with")
        self.n_components.add_class("fw-seg-components")
        self.component.add_class("fw-seg-show")
        self.class_view.add_class("fw-seg-classes")
        # a click moves this marker; where it lands picks (or paints) a scan position
        self.class_view.set_overlay(make_overlay("point", id=PICK_ID, color="#ffffff", x=0.0, y=0.0))
        self._wire()
        s.listen(self._on_event)
        controls = w.VBox([self.kind, self.bin, self.scaling, self.method, self.n_components, self.component,
                           self.class_method, self.n_classes, self.class_components, self.mode, self.paint_label,
                           self.brush.radius,
                           self.merge_with, w.HBox([self.merge_button, self.split_button]), self.clear_button,
                           self.selected, self.message, self.busy.box])
        self.widget = w.VBox([w.HBox([controls, self.scree]),
                              w.HBox([self.map_view, self.loading_view]),
                              w.HBox([self.class_view, self.pattern_view])])
        self.widget.add_class("fw-segmenter")
        if s.decomposition is not None:
            self._show_components(s.decomposition)
        if s.classification is not None:
            self._show_classes(s.classification)

    # --- controls -> session --------------------------------------------------------------------
    def _wire(self) -> None:
        s = self.session
        on = lambda ctl, fn: ctl.observe(lambda ch: self._unless_syncing(fn, ch["new"]), names="value")  # noqa: E731
        on(self.kind, self._on_kind)
        on(self.bin, lambda v: s.set_features(bin=v))
        on(self.scaling, lambda v: s.set_features(scaling=v))
        on(self.method, lambda v: s.set_decomposition(method=v))
        on(self.n_components, self._on_components)
        on(self.component, lambda v: s.decomposition is not None and self._show_components(s.decomposition))
        on(self.class_method, self._on_class_method)
        on(self.n_classes, lambda v: s.set(n_classes=v or None))
        on(self.class_components, lambda v: s.set(n_components=v))
        self.class_view.observe(self._on_click, names="overlays")
        self.class_view.observe(self._on_drag, names="dragging")
        self.merge_button.on_click(lambda _: self._merge())
        self.split_button.on_click(lambda _: self._split())
        self.clear_button.on_click(lambda _: s.clear_paint())

    def _on_kind(self, kind: str) -> None:
        self.session.set_features(kind=kind)
        # a polar kind has its own default scaling: show the record's
        self._synced(lambda: setattr(self.scaling, "value", self.session.classify_record.features.scaling))

    def _on_class_method(self, method: str) -> None:
        s = self.session
        if method == "bragg":
            s.use_bragg()
            return
        s.bragg_record = s.bragg_result = None  # back to the feature route
        s.set(method=method, n_classes=self._classes_or_default(method))

    def _classes_or_default(self, method: str) -> int | None:
        n = self.n_classes.value or None
        if n is None and method != "gmm":
            n = 2
            self._synced(lambda: setattr(self.n_classes, "value", 2))
        return n

    def _on_components(self, n: int) -> None:
        self._synced(lambda: setattr(self.component, "max", max(n - 1, 0)))
        self.session.set_decomposition(n_components=n)

    def _on_click(self, change: dict) -> None:
        if self._syncing:
            return
        pick = next((ov for ov in change["new"] if ov.get("id") == PICK_ID), None)
        if pick is None:
            return
        if self.mode.value == "paint":
            self.brush.moved(pick["x"], pick["y"], self.class_view.dragging == PICK_ID)
            return
        self.click(pick["x"], pick["y"])

    def _on_drag(self, change: dict) -> None:
        """A drag of the marker in paint mode is a brush stroke: it starts where the marker is, ends on release.
        In pick mode, releasing the marker picks the class under it (a click on the marker itself moves nothing)."""
        pick = next((ov for ov in self.class_view.overlays if ov.get("id") == PICK_ID), None)
        if self.mode.value != "paint":
            if change["old"] == PICK_ID and pick is not None:
                self.click(pick["x"], pick["y"])
            return
        if change["new"] == PICK_ID:
            if pick is not None:
                self.brush.start(pick["x"], pick["y"])
        elif change["old"] == PICK_ID:
            self.brush.finish()

    def click(self, rx: float, ry: float) -> None:
        """What a click on the class map at scan position (rx, ry) does: pick its class, or paint it."""
        s = self.session
        if self.mode.value == "paint":
            s.paint_labels([(rx, ry)], self.paint_label.value, self.brush.radius.value)
            return
        k = s.class_at(rx, ry)
        if k is not None:
            s.select_class(k)

    def _merge(self) -> None:
        k = self.session.selected_class
        if k is None:
            self.message.value = message_html("click a class on the class map first", "warning")
            return
        self.session.merge(k, self.merge_with.value)

    def _split(self) -> None:
        k = self.session.selected_class
        if k is None:
            self.message.value = message_html("click a class on the class map first", "warning")
            return
        self.session.split(k)

    # --- session -> views ---------------------------------------------------------------------
    def _on_event(self, event: str, value: Any) -> None:
        if event == "components":
            self._show_components(value)
        elif event == "scree" and value is not None:
            self._show_scree(np.asarray(value))
        elif event == "classes":
            self._show_classes(value)
        elif event == "class_pattern":
            k, pattern = value
            self.pattern_view.set_image(pattern)
            self.pattern_view.title = f"class {k} mean pattern"
            self.selected.value = f"selected class <b>{k}</b>"
        elif event == "message":
            where, text, level = value
            self.message.value = message_html(text, level)
        elif event == "update":
            if not self.session.error:
                self.message.value = ""

    def _show_scree(self, ratio: np.ndarray) -> None:
        x = np.arange(1, ratio.size + 1, dtype=float)
        y = np.maximum(ratio, 1e-12)
        k = float(self.session.decompose_record.n_components)
        self._scree_line.x, self._scree_line.y = x, y
        self._scree_mark.x, self._scree_mark.y = [k, k], [float(y.min()), float(y.max())]

    def _show_components(self, dec: Any) -> None:
        k = min(self.component.value, dec.maps.shape[-1] - 1)
        self.map_view.set_image(dec.maps[..., k])
        self.map_view.title = f"component {k} map ({dec.params.method})"
        self.loading_view.set_image(dec.loading_images[k])
        self.loading_view.title = f"component {k} loading"
        if dec.explained_variance_ratio is not None:
            self._show_scree(np.asarray(dec.explained_variance_ratio))

    def _show_classes(self, cls: Any) -> None:
        self.class_view.set_image(cls.labels.astype(np.float32))
        self.class_view.title = f"class map: {cls.n_classes} classes (click a class)"
        rec = self.session.classify_record
        show_painted(self.class_view, rec.seeds)
        self._synced(lambda: (setattr(self.merge_with, "max", max(cls.n_classes - 1, 0)),
                              setattr(self.paint_label, "max", cls.n_classes)))
        if rec.n_classes is None and rec.seeds is None:
            self.selected.value = f"{cls.n_classes} classes chosen by BIC"

    def _views(self) -> list[Any]:
        return [self.map_view, self.loading_view, self.class_view, self.pattern_view]
