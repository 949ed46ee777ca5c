"""``CalibrationTool``: origin maps with their fit and residuals, and the ellipse on the Bragg vector map.

The tool composes :class:`~fourd_widgets.widgets.image_view.ImageView` views and
calls the recipe steps of :mod:`fourd_widgets.analysis.calibration` themselves
(``origin``, ``origin_fit``, ``ellipse``), so the calibration it shows is the
one ``fw.run(tool.params, cube)`` computes, bit for bit:

* **origin**: the measured maps ``qx0``, ``qy0`` (method chooser: centre of
  mass, template, Friedel), measured in a worker thread with a progress bar
  and a cancel button;
* **origin fit**: the model chooser (constant, plane, parabola, Bézier) and
  robust switch, with the residual maps ``measured - fitted`` (diverging colours);
* **ellipse** (with a peak table): the Bragg vector map (origin-corrected,
  undistorted by nothing) with an annulus whose handles select the ring(s), and
  the fitted ellipse drawn over it.

Bad input never raises into the notebook: each section has a message line
beside its controls saying what is missing and how to supply it.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, Iterator

import ipywidgets as w
import numpy as np

from ..analysis.calibration import (
    EllipseFit,
    EllipseParams,
    OriginFitParams,
    OriginParams,
    distortion_matrix,
    fit_ellipse,
    fit_origin,
)
from ..analysis.disks import PeakTable
from ..tools.worker import LatestOnly
from ..analysis.steps import RunContext, step_function
from ..analysis.strain import corrected_bvm, suggest_basis
from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import CancelledError, FourDError, ParameterError
from ..core.recipe import Recipe
from ..engine.run import Cancel
from .image_view import ImageView
from .overlays import make_overlay
from .tool import ToolRequest, WorkerTool

__all__ = ["CalibrationTool", "ORIGIN_METHODS", "FIT_MODELS", "DISK_LABEL", "Busy", "message_label",
           "error_text"]

ORIGIN_METHODS = ("com", "template", "friedel")
FIT_MODELS = ("constant", "plane", "parabola", "bezier")
#: Label of the disk-detection step whose peak table the calibration and strain steps read.
DISK_LABEL = "find_disks"
#: Vertices of the drawn ellipse (a polygon overlay: ImageView has no ellipse shape).
ELLIPSE_VERTICES = 72


def message_label() -> w.HTML:
    """The message line shown beside a section's controls (empty when all is well)."""
    return w.HTML("", layout=w.Layout(min_width="200px"))


def error_text(exc: BaseException) -> str:
    """What a user reads for a failed step: our errors say what is missing; others name their type."""
    text = str(exc) if isinstance(exc, FourDError) else f"{type(exc).__name__}: {exc}"
    return f"<span style='color:#c0392b'>⚠ {_escape(text)}</span>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Busy:
    """Progress bar, cancel button and status line of a tool's worker thread.

    ``start()`` returns the cancel token of a new piece of work (cancelling the
    previous one), ``progress(done, total)`` moves the bar, ``finish(text)``
    resets it; the cancel button cancels the current token.
    """

    def __init__(self) -> None:
        self.bar = w.FloatProgress(value=0, min=0, max=1, layout=w.Layout(width="160px"))
        self.cancel_button = w.Button(description="cancel", disabled=True, layout=w.Layout(width="70px"))
        self.status = w.Label("")
        self.box = w.HBox([self.bar, self.cancel_button, self.status])
        self._token: Cancel | None = None
        self.cancel_button.on_click(lambda _: self.cancel())

    def start(self, text: str) -> Cancel:
        self.cancel()
        self._token = Cancel()
        self.bar.value = 0.0
        self.cancel_button.disabled = False
        self.status.value = text
        return self._token

    def progress(self, done: int, total: int) -> None:
        self.bar.value = done / total if total else 1.0

    def finish(self, text: str = "") -> None:
        self.bar.value = 1.0
        self.cancel_button.disabled = True
        self.status.value = text

    def cancel(self) -> None:
        if self._token is not None:
            self._token.cancel()


class _Watched:
    """A cube whose chunk iteration reports progress and stops on cancel.

    The origin step reads the cube through ``iter_chunks`` only, so wrapping the
    cube gives it a progress bar and a cancel button without touching the step.
    """

    def __init__(self, cube: DataCube, progress: Callable[[int, int], Any], cancel: Cancel) -> None:
        self._cube, self._progress, self._cancel = cube, progress, cancel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cube, name)

    def with_calibration(self, calibration: Calibration) -> "_Watched":
        return _Watched(self._cube.with_calibration(calibration), self._progress, self._cancel)

    def iter_chunks(self, chunk_bytes: int | None = None) -> Iterator[Any]:
        total = int(np.prod(self._cube.scan_shape))
        done = 0
        for chunk in self._cube.iter_chunks(chunk_bytes):
            if self._cancel.is_set():
                raise CancelledError("cancelled: the origin was not measured")
            yield chunk
            done += chunk.data.shape[0] * chunk.data.shape[1]
            self._progress(done, total)


class CalibrationTool(WorkerTool):
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
    widget : ipywidgets.VBox
        What the notebook shows.
    origin_views : (ImageView, ImageView)
        Measured ``qx0`` and ``qy0``.
    residual_views : (ImageView, ImageView)
        ``measured - fitted`` for qx and qy.
    bvm_view : ImageView or None
        The Bragg vector map with the ring annulus and the fitted ellipse (None without peaks).
    origin_fit : OriginFit or None
        The latest origin fit (maps, residuals, inliers).
    ellipse_fit : EllipseFit or None
        The latest ellipse fit (semi-axes in px).

    Examples
    --------
    >>> import fourd_widgets as fw
    >>> cube, truth = fw.datasets.sample("vacuum_probe", scan_shape=(4, 4), detector_shape=(32, 32))
    >>> tool = CalibrationTool(cube).wait()
    >>> cal = fw.run(tool.params, cube)["origin_fit"]
    >>> bool(np.array_equal(cal.origin_map, tool.calibration.origin_map))
    True
    >>> tool.close()
    """

    _tool_name = "calibration tool"

    def __init__(self, cube: DataCube, peaks: PeakTable | None = None, *, origin: OriginParams | None = None,
                 origin_fit: OriginFitParams | None = None, ellipse: EllipseParams | None = None,
                 size: int = 260) -> None:
        if not isinstance(cube, DataCube):
            raise TypeError(f"CalibrationTool needs a DataCube (fw.load(path) gives one), got {type(cube).__name__}")
        if peaks is not None and not isinstance(peaks, PeakTable):
            raise TypeError(f"peaks must be a PeakTable (fw.find_disks(cube) gives one), got {type(peaks).__name__}")
        self.cube = cube
        self.peaks = peaks
        self.initial_calibration = cube.calibration
        self.origin_fit = None
        self.ellipse_fit: EllipseFit | None = None
        self._origin_params = origin or OriginParams()
        self._fit_params = origin_fit or OriginFitParams()
        self._ellipse_params = ellipse
        #: the ring the annulus shows while no ellipse is fitted
        self._ring_default = ellipse or EllipseParams()
        self._cal_origin: Calibration | None = None
        self._cal_fit: Calibration | None = None
        self._cal_ellipse: Calibration | None = None
        self._bvm_centre: tuple[float, float] | None = None
        self._lock = threading.RLock()
        self._callbacks: list[Callable[["CalibrationTool"], Any]] = []
        self._syncing = False
        self.updates = 0

        scan_axes = {"axis_names": ["rx", "ry"], "size": size}
        self.origin_views = (ImageView(title="origin qx0 (px)", colormap="viridis", **scan_axes),
                             ImageView(title="origin qy0 (px)", colormap="viridis", **scan_axes))
        self.residual_views = (ImageView(title="residual qx (px)", colormap="rdbu", contrast="absolute", **scan_axes),
                               ImageView(title="residual qy (px)", colormap="rdbu", contrast="absolute", **scan_axes))
        self._method = w.Dropdown(options=ORIGIN_METHODS, value=self._origin_params.method, description="origin",
                                  layout=w.Layout(width="190px"))
        self._measure = w.Button(description="measure", layout=w.Layout(width="80px"))
        self._model = w.Dropdown(options=FIT_MODELS, value=self._fit_params.model, description="fit",
                                 layout=w.Layout(width="190px"))
        self._robust = w.Checkbox(value=self._fit_params.robust, description="robust", indent=False,
                                  layout=w.Layout(width="80px"))
        self.origin_message = message_label()
        self.fit_message = message_label()
        self.ellipse_message = message_label()
        self.busy = Busy()
        self._fit_ellipse_btn = w.Button(description="fit ellipse", layout=w.Layout(width="90px"))
        self._use_ellipse = w.Checkbox(value=ellipse is not None, description="use ellipse", indent=False,
                                       layout=w.Layout(width="110px"))
        self.bvm_view: ImageView | None = None
        sections: list[w.Widget] = [
            w.HBox([self._method, self._measure, self.busy.box, self.origin_message]),
            w.HBox(list(self.origin_views)),
            w.HBox([self._model, self._robust, self.fit_message]),
            w.HBox(list(self.residual_views)),
        ]
        if peaks is not None:
            self.bvm_view = ImageView(title="Bragg vector map (origin-corrected)", colormap="magma", scale="log",
                                      size=max(size, 320), axis_names=["qx", "qy"])
            sections.append(w.HBox([self._fit_ellipse_btn, self._use_ellipse, self.ellipse_message]))
            sections.append(self.bvm_view)
            self.bvm_view.observe(self._on_ring, names=["overlays", "dragging"])
        else:
            self.ellipse_message.value = ("no peak table: pass peaks=fw.find_disks(cube) to fit the elliptic "
                                          "distortion from the Bragg disks")
            sections.append(self.ellipse_message)
        self.widget = w.VBox(sections)
        self.widget.add_class("fw-calibration-tool")

        self._runner: LatestOnly[ToolRequest[OriginParams]] = LatestOnly(
            self._compute_origin, self._deliver_origin, on_error=self._origin_failed, name="fourd-calibration")
        self._measure.on_click(lambda _: self.measure())
        self._method.observe(lambda c: self.measure(), names="value")
        self._model.observe(lambda c: self._refit(), names="value")
        self._robust.observe(lambda c: self._refit(), names="value")
        self._fit_ellipse_btn.on_click(lambda _: self.set_ellipse(self._ring_params()))
        self._use_ellipse.observe(self._on_use_ellipse, names="value")
        self.measure()

    # --- public API ---------------------------------------------------------------------------
    @classmethod
    def from_params(cls, cube: DataCube, params: Recipe | dict | str, peaks: PeakTable | None = None,
                    **options: Any) -> "CalibrationTool":
        """Rebuild the tool from its :attr:`params` (a Recipe, its dict or its JSON).

        Raises
        ------
        ParameterError
            If the recipe has no origin step.
        """
        recipe = Recipe.coerce(params)
        if recipe.calibration is not None:
            cube = cube.with_calibration(recipe.calibration)
        found = {type(s): s for s in recipe.steps}
        if OriginParams not in found:
            raise ParameterError("this recipe has no origin step to show; a calibration recipe starts with "
                                 "OriginParams", field="steps")
        return cls(cube, peaks, origin=found[OriginParams], origin_fit=found.get(OriginFitParams),
                   ellipse=found.get(EllipseParams), **options)

    @property
    def params(self) -> Recipe:
        """The calibration steps shown: ``fw.run(tool.params, cube)`` computes :attr:`calibration`.

        The ellipse step reads the peak table of a step labelled ``'find_disks'``;
        put the disk step first (``Recipe(steps=(disks, *tool.params.steps))``) to replay it.
        """
        steps: list[Any] = [self._origin_params, self._fit_params]
        if self._ellipse_params is not None:
            steps.append(self._ellipse_params)
        labels = tuple(s.step for s in steps)
        return Recipe(steps=tuple(steps), labels=labels, calibration=self.initial_calibration)

    @property
    def calibration(self) -> Calibration:
        """The resulting calibration (the initial one until the origin is measured)."""
        with self._lock:
            for cal in (self._cal_ellipse if self._ellipse_params is not None else None, self._cal_fit,
                        self._cal_origin):
                if cal is not None:
                    return cal
            return self.initial_calibration

    @property
    def ready(self) -> bool:
        """True when every configured step has a result."""
        with self._lock:
            return self._cal_fit is not None and (self._ellipse_params is None or self._cal_ellipse is not None)

    def measure(self, params: OriginParams | None = None) -> None:
        """Measure the origin at every position (worker thread; the maps and fits follow)."""
        p = params or self._origin_params.replace(method=self._method.value)
        self._origin_params = p
        if self._method.value != p.method:
            self._syncing = True
            try:
                self._method.value = p.method
            finally:
                self._syncing = False
        req = ToolRequest(p, self.busy.start(f"measuring the origin ({p.method})"))
        self._runner.submit(req)

    def set_fit(self, params: OriginFitParams) -> None:
        """Choose the origin model (and robust options); refits at once."""
        self._fit_params = params
        self._syncing = True
        try:
            self._model.value, self._robust.value = params.model, params.robust
        finally:
            self._syncing = False
        self._refit()

    def set_ellipse(self, params: EllipseParams | None) -> None:
        """Fit the ellipse with this ring selection (None: no ellipse correction)."""
        self._ellipse_params = params
        self._syncing = True
        try:
            self._use_ellipse.value = params is not None
            if params is not None and self.bvm_view is not None and self._bvm_centre is not None:
                self._draw_ring()
        finally:
            self._syncing = False
        self._fit_ellipse()
        self._notify()

    def close(self) -> None:
        """Stop the worker and close the widgets."""
        self.busy.cancel()
        self._runner.close(5.0)
        for v in [*self.origin_views, *self.residual_views, self.bvm_view]:
            if v is not None:
                v.close()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- origin -----------------------------------------------------------------------------
    def _compute_origin(self, req: ToolRequest[OriginParams]) -> Calibration:
        watched = _Watched(self.cube.with_calibration(self.initial_calibration), self.busy.progress, req.cancel)
        # the recipe step itself, so the tool's origin is what fw.run computes
        return step_function(req.params)(watched, req.params, RunContext())

    def _deliver_origin(self, req: ToolRequest[OriginParams], cal: Calibration) -> None:
        if req.cancel.is_set():
            return
        with self._lock:
            self._cal_origin = cal
        for view, k in zip(self.origin_views, range(2)):
            view.set_image(cal.origin_map[..., k])
        self.origin_message.value = ""
        self.busy.finish(f"origin measured ({req.params.method})")
        self._refit()

    def _origin_failed(self, req: ToolRequest[OriginParams], exc: BaseException) -> None:
        self.busy.finish("cancelled" if isinstance(exc, CancelledError) else "")
        if not isinstance(exc, CancelledError):
            self.origin_message.value = error_text(exc)

    # --- origin fit ----------------------------------------------------------------------------
    def _refit(self) -> None:
        if self._syncing:
            return
        self._fit_params = self._fit_params.replace(model=self._model.value, robust=self._robust.value)
        with self._lock:
            cal = self._cal_origin
        if cal is None:
            return
        try:
            fit = fit_origin(cal.origin_map, self._fit_params)
            cal_fit = step_function(self._fit_params)(self.cube.with_calibration(cal), self._fit_params,
                                                      RunContext())
        except FourDError as exc:
            self.fit_message.value = error_text(exc)
            return
        with self._lock:
            self.origin_fit, self._cal_fit = fit, cal_fit
        limit = float(np.nanmax(np.abs(fit.residuals))) if np.isfinite(fit.residuals).any() else 1.0
        for view, k in zip(self.residual_views, range(2)):
            with view.hold_sync():
                view.set_image(fit.residuals[..., k])
                view.vmin, view.vmax = -max(limit, 1e-6), max(limit, 1e-6)
        outliers = int((~fit.inliers).sum())
        rms = float(np.sqrt(np.nanmean(np.sum(fit.residuals[fit.inliers] ** 2, axis=-1))))
        self.fit_message.value = f"rms residual {rms:.3g} px over inliers; {outliers} outlier position(s)"
        self._show_bvm()
        self._fit_ellipse()
        self._notify()

    # --- ellipse -------------------------------------------------------------------------------
    def _show_bvm(self) -> None:
        if self.bvm_view is None or self._cal_fit is None:
            return
        try:
            bvm, centre = corrected_bvm(self.peaks, self._cal_fit.replace(ellipse=None))
        except FourDError as exc:
            self.ellipse_message.value = error_text(exc)
            return
        first = self._bvm_centre is None
        self._bvm_centre = centre
        self.bvm_view.set_image(bvm)
        if first and self._ellipse_params is None:
            self._ring_default = self._default_ring()
        self._draw_ring()

    def _default_ring(self) -> EllipseParams:
        """An annulus around the two shortest rings of disks (one ring of a cubic zone spans only two directions)."""
        try:
            g = float(np.hypot(*suggest_basis(self.peaks, self._cal_fit).g1))
            return EllipseParams(r_inner=round(0.8 * g, 1), r_outer=round(1.6 * g, 1))
        except FourDError:
            return EllipseParams()

    def _ring_params(self) -> EllipseParams:
        return self._ellipse_params or self._ring_default

    def _draw_ring(self) -> None:
        if self.bvm_view is None or self._bvm_centre is None:
            return
        p = self._ring_params()
        cx, cy = self._bvm_centre
        ring = make_overlay("annulus", "ring", "#3dd6ff", x=cx, y=cy, r_in=p.r_inner, r_out=p.r_outer)
        self._syncing = True
        try:
            self.bvm_view.set_overlay(ring)
            self.bvm_view.selected = "ring"
        finally:
            self._syncing = False

    def _on_ring(self, change: dict) -> None:
        if self._syncing or self.bvm_view is None or self.bvm_view.dragging:
            return  # the fit follows on release
        ring = next((o for o in self.bvm_view.overlays if o["id"] == "ring"), None)
        if ring is None or self._bvm_centre is None:
            return
        if (ring["x"], ring["y"]) != self._bvm_centre:  # the ring stays centred on the origin
            self._draw_ring_at(ring["r_in"], ring["r_out"])
        current = self._ring_params()
        if (ring["r_in"], ring["r_out"]) == (current.r_inner, current.r_outer):
            return
        try:
            new = current.replace(r_inner=max(ring["r_in"], 0.5), r_outer=max(ring["r_out"], ring["r_in"] + 0.5))
        except FourDError as exc:
            self.ellipse_message.value = error_text(exc)
            return
        if self._ellipse_params is None:
            self._ring_default = new
            return
        self._ellipse_params = new
        self._fit_ellipse()
        self._notify()

    def _draw_ring_at(self, r_in: float, r_out: float) -> None:
        cx, cy = self._bvm_centre  # type: ignore[misc]
        self._syncing = True
        try:
            self.bvm_view.set_overlay(make_overlay("annulus", "ring", "#3dd6ff", x=cx, y=cy, r_in=r_in,  # type: ignore[union-attr]
                                                   r_out=r_out))
        finally:
            self._syncing = False

    def _on_use_ellipse(self, change: dict) -> None:
        if not self._syncing:
            self.set_ellipse(self._ring_params() if change["new"] else None)

    def _fit_ellipse(self) -> None:
        p = self._ellipse_params
        with self._lock:
            cal_fit = self._cal_fit
        if p is None or cal_fit is None:
            with self._lock:
                self._cal_ellipse, self.ellipse_fit = None, None
            if self.bvm_view is not None:
                self.bvm_view.remove_overlays(["ellipse"])
            return
        if self.peaks is None:
            self.ellipse_message.value = error_text(ParameterError(
                "the ellipse fit needs a peak table: CalibrationTool(cube, peaks=fw.find_disks(cube))"))
            return
        try:
            fit = fit_ellipse(self.peaks, cal_fit, p)
            cal = step_function(p)(self.cube.with_calibration(cal_fit), p, RunContext(results={p.peaks: self.peaks}))
        except FourDError as exc:
            with self._lock:
                self._cal_ellipse, self.ellipse_fit = None, None
            self.ellipse_message.value = error_text(exc)
            return
        with self._lock:
            self._cal_ellipse, self.ellipse_fit = cal, fit
        a, b, th = cal.ellipse
        self.ellipse_message.value = (f"ellipse a/b = {a / b:.4f}, θ = {th:.1f}°, rms {fit.rms_px:.3g} px "
                                      f"(radius {fit.radius:.2f} px)")
        self._draw_ellipse(fit)

    def _draw_ellipse(self, fit: EllipseFit) -> None:
        if self.bvm_view is None or self._bvm_centre is None:
            return
        # the fitted ellipse as a polygon: ImageView has no ellipse shape; its handles are the ring's
        t = np.linspace(0, 2 * math.pi, ELLIPSE_VERTICES, endpoint=False)
        D = distortion_matrix((fit.a, fit.b, fit.theta_deg))
        pts = (D @ np.stack([np.cos(t), np.sin(t)])).T + np.asarray(self._bvm_centre) + fit.centre
        self.bvm_view.set_overlay(make_overlay("polygon", "ellipse", "#ffd23d", editable=False,
                                               vertices=pts.tolist()))

    def _notify(self) -> None:
        self.updates += 1
        for fn in list(self._callbacks):
            try:
                fn(self)
            except Exception as exc:  # a user callback must not break the tool
                self.busy.status.value = f"on_update callback failed: {exc}"
