"""``CalibrationTool``: origin maps with their fit and residuals, and the ellipse on the Bragg vector map.

A view over :class:`fourd_widgets.tools.calibration.CalibrationSession`
(``tool.session``), which runs the recipe steps ``origin``, ``origin_fit`` and
``ellipse`` themselves, so the calibration shown is the one
``fw.run(tool.params, cube)`` computes, bit for bit:

* **origin**: the measured maps ``qx0``, ``qy0`` (method chooser: centre of
  mass, template, Friedel), with a progress bar and a cancel button;
* **origin fit**: the model chooser (constant, plane, parabola, Bézier) and
  robust switch, with the residual maps ``measured - fitted`` (diverging colours);
* **ellipse** (with a peak table): the Bragg vector map with an annulus whose
  handles select the ring(s), and the fitted ellipse drawn over it.

Bad input never raises into the notebook: each section has a message line
beside its controls saying what is missing and how to supply it.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from ..analysis.calibration import EllipseFit, EllipseParams, OriginFitParams, OriginParams
from ..analysis.disks import PeakTable
from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.recipe import Recipe
from ..tools.calibration import DISK_LABEL, FIT_MODELS, ORIGIN_METHODS, CalibrationSession, calibration_steps
from .help_text import CALIBRATION, explain_controls
from .image_view import ImageView
from .overlays import make_overlay
from .tool_view import Busy, ToolView, message_html, message_label

__all__ = ["CalibrationTool", "ORIGIN_METHODS", "FIT_MODELS", "DISK_LABEL"]


class CalibrationTool(ToolView):
    """Origin, descan fit and ellipse of a cube, chosen by looking at the maps.

    Parameters
    ----------
    cube : DataCube
        The data; its calibration is the starting point (``params.calibration``).
    peaks : PeakTable, optional
        Disks found on this cube in detector px (``fw.find_disks``); needed for the ellipse.
    origin : OriginParams, optional
        How the origin is measured (default centre of mass).
    origin_fit : OriginFitParams, optional
        The origin model (default a robust plane).
    ellipse : EllipseParams, optional
        Fit the ellipse with this ring selection (default: no ellipse until
        "fit ellipse" is pressed, with an annulus around the first two rings).
    size : int
        Canvas width of each view, CSS px.

    Attributes
    ----------
    session : CalibrationSession
        The steps, their results and the worker.
    widget : ipywidgets.VBox
        What the notebook shows.
    origin_views : (ImageView, ImageView)
        Measured ``qx0`` and ``qy0``.
    residual_views : (ImageView, ImageView)
        ``measured - fitted`` for qx and qy.
    bvm_view : ImageView or None
        The Bragg vector map with the ring annulus and the fitted ellipse (None without peaks).

    Examples
    --------
    >>> import fourd_widgets as fw
    >>> import numpy as np
    >>> cube, truth = fw.datasets.sample("vacuum_probe", scan_shape=(4, 4), detector_shape=(32, 32))
    >>> tool = CalibrationTool(cube).wait()
    >>> cal = fw.run(tool.params, cube)["origin_fit"]
    >>> bool(np.array_equal(cal.origin_map, tool.calibration.origin_map))
    True
    >>> tool.close()
    """

    def __init__(self, cube: DataCube, peaks: PeakTable | None = None, *, origin: OriginParams | None = None,
                 origin_fit: OriginFitParams | None = None, ellipse: EllipseParams | None = None,
                 size: int = 260) -> None:
        self.session = s = CalibrationSession(cube, peaks, origin=origin, origin_fit=origin_fit, ellipse=ellipse,
                                              start=False)
        cal = s.cube.calibration  # scale bars on the maps where the scan step is known; values in detector px
        scan_axes = {"axis_names": ["rx", "ry"], "size": size, "value_units": "px", "pixel_size": cal.real_step,
                     "units": cal.real_units if cal.real_step else "px"}
        self.origin_views = (ImageView(title="origin qx0 (px)", colormap="viridis", **scan_axes),
                             ImageView(title="origin qy0 (px)", colormap="viridis", **scan_axes))
        self.residual_views = (ImageView(title="residual qx (px)", colormap="rdbu", contrast="absolute", **scan_axes),
                               ImageView(title="residual qy (px)", colormap="rdbu", contrast="absolute", **scan_axes))
        lay = w.Layout
        self._method = w.Dropdown(options=ORIGIN_METHODS, value=s.origin_params.method, description="origin",
                                  layout=lay(width="190px"))
        self._measure = w.Button(description="measure", layout=lay(width="80px"))
        self._model = w.Dropdown(options=FIT_MODELS, value=s.fit_params.model, description="fit",
                                 layout=lay(width="190px"))
        self._robust = w.Checkbox(value=s.fit_params.robust, description="robust", indent=False,
                                  layout=lay(width="80px"))
        self._next_outlier = w.Button(description="next outlier", layout=lay(width="100px"),
                                      tooltip="Select the next position the fit left out (largest residual "
                                              "first), mark it on the maps and say why it is an outlier.")
        self.origin_message, self.fit_message, self.ellipse_message = message_label(), message_label(), message_label()
        self.busy = Busy(s)
        self._fit_ellipse_btn = w.Button(description="fit ellipse", layout=lay(width="90px"))
        self._use_ellipse = w.Checkbox(value=ellipse is not None, description="use ellipse", indent=False,
                                       layout=lay(width="110px"))
        self.bvm_view: ImageView | None = None
        sections: list[w.Widget] = [
            w.HBox([self._method, self._measure, self.busy.box, self.origin_message]),
            w.HBox(list(self.origin_views)),
            w.HBox([self._model, self._robust, self._next_outlier, self.fit_message]),
            w.HBox(list(self.residual_views)),
        ]
        if peaks is not None:
            self.bvm_view = ImageView(title="Bragg vector map (origin-corrected)", colormap="magma", scale="log",
                                      size=max(size, 320), axis_names=["qx", "qy"], pixel_size=cal.reciprocal_step,
                                      units=cal.reciprocal_units if cal.reciprocal_step else "px")
            sections.append(w.HBox([self._fit_ellipse_btn, self._use_ellipse, self.ellipse_message]))
            sections.append(self.bvm_view)
            self.bvm_view.observe(self._on_ring, names=["overlays", "dragging"])
        else:
            sections.append(self.ellipse_message)
        self.widget = w.VBox(sections)
        self.widget.add_class("fw-calibration-tool")
        explain_controls(self.widget, CALIBRATION)

        s.listen(self._on_session)
        for where, (text, level) in s.messages.items():
            self._on_session("message", (where, text, level))
        self._measure.on_click(lambda _: self.measure())
        self._method.observe(lambda c: self._syncing or self.measure(), names="value")
        self._model.observe(lambda c: self._syncing or self._refit(), names="value")
        self._robust.observe(lambda c: self._syncing or self._refit(), names="value")
        self._fit_ellipse_btn.on_click(lambda _: s.set_ellipse(s.ring()))
        self._next_outlier.on_click(lambda _: s.next_outlier())
        self._use_ellipse.observe(lambda c: self._syncing or s.set_ellipse(s.ring() if c["new"] else None),
                                  names="value")
        s.start()

    @classmethod
    def from_params(cls, cube: DataCube, params: Recipe | dict | str, peaks: PeakTable | None = None,
                    **options: Any) -> "CalibrationTool":
        """Rebuild the tool from its :attr:`params` (a Recipe, its dict or its JSON).

        Raises
        ------
        ParameterError
            If the recipe has no origin step.
        """
        cube, steps = calibration_steps(cube, params)
        return cls(cube, peaks, **steps, **options)

    # --- the session's state, as the tool's -----------------------------------------------------
    peaks = property(lambda self: self.session.peaks, doc="The peak table of the ellipse fit (or None).")
    initial_calibration = property(lambda self: self.session.initial_calibration)
    calibration: Calibration = property(lambda self: self.session.calibration,  # type: ignore[assignment]
                                        doc="The resulting calibration (the initial one until measured).")
    ready = property(lambda self: self.session.ready, doc="True when every configured step has a result.")
    origin_fit = property(lambda self: self.session.origin_fit, doc="The latest origin fit.")
    ellipse_fit: EllipseFit | None = property(lambda self: self.session.ellipse_fit,  # type: ignore[assignment]
                                              doc="The latest ellipse fit (semi-axes in px).")
    _bvm_centre = property(lambda self: self.session.bvm_center)

    def measure(self, params: OriginParams | None = None) -> None:
        """Measure the origin at every position (worker thread; the maps and fits follow)."""
        self.session.measure(params or self.session.origin_params.replace(method=self._method.value))

    def set_fit(self, params: OriginFitParams) -> None:
        """Choose the origin model (and robust options); refits at once."""
        self.session.set_fit(params)

    def set_ellipse(self, params: EllipseParams | None) -> None:
        """Fit the ellipse with this ring selection (None: no ellipse correction)."""
        self.session.set_ellipse(params)

    def _refit(self) -> None:
        self.session.set_fit(self.session.fit_params.replace(model=self._model.value, robust=self._robust.value))

    def _views(self) -> list[Any]:
        return [*self.origin_views, *self.residual_views, self.bvm_view]

    # --- session -> views -----------------------------------------------------------------------
    def _on_session(self, event: str, value: Any) -> None:
        s = self.session
        if event == "message":
            where, text, level = value
            target = {"origin": self.origin_message, "fit": self.fit_message, "ellipse": self.ellipse_message,
                      "error": self.origin_message}.get(where)
            if target is not None:
                target.value = message_html(text, level)
        elif event == "options":
            self._synced(lambda: (setattr(self._method, "value", s.origin_params.method),
                                  setattr(self._model, "value", s.fit_params.model),
                                  setattr(self._robust, "value", s.fit_params.robust),
                                  setattr(self._use_ellipse, "value", s.ellipse_params is not None)))
        elif event == "origin":
            for view, k in zip(self.origin_views, range(2)):
                view.set_image(value.origin_map[..., k])
        elif event == "fit":
            fit, limit = value
            for view, k in zip(self.residual_views, range(2)):
                with view.hold_sync():
                    view.set_image(fit.residuals[..., k])
                    view.vmin, view.vmax = -limit, limit
        elif event == "selected":
            for view in (*self.origin_views, *self.residual_views):
                if value is None:
                    view.remove_overlays(["outlier"])
                else:
                    view.set_overlay(make_overlay("point", "outlier", "#ffd23d", editable=False,
                                                  x=value[0], y=value[1]))
        elif self.bvm_view is None:
            return
        elif event == "bvm":
            self.bvm_view.set_image(value[0])
        elif event == "ring":
            self._draw_ring(value.r_inner, value.r_outer)
            self._synced(lambda: setattr(self.bvm_view, "selected", "ring"))
        elif event == "ellipse":
            if value is None:
                self.bvm_view.remove_overlays(["ellipse"])
            else:
                self.bvm_view.set_overlay(make_overlay("polygon", "ellipse", "#ffd23d", editable=False,
                                                       vertices=value))

    def _draw_ring(self, r_in: float, r_out: float) -> None:
        cx, cy = self.session.bvm_center  # type: ignore[misc]
        ring = make_overlay("annulus", "ring", "#3dd6ff", x=cx, y=cy, r_in=r_in, r_out=r_out)
        self._synced(lambda: self.bvm_view.set_overlay(ring))  # type: ignore[union-attr]

    def _on_ring(self, change: dict) -> None:
        if self._syncing or self.bvm_view is None or self.bvm_view.dragging:
            return  # the fit follows on release
        ring = next((o for o in self.bvm_view.overlays if o["id"] == "ring"), None)
        if ring is None or self.session.bvm_center is None:
            return
        if (ring["x"], ring["y"]) != self.session.bvm_center:  # the ring stays centred on the origin
            self._draw_ring(ring["r_in"], ring["r_out"])
        self.session.set_ring(ring["r_in"], ring["r_out"])
