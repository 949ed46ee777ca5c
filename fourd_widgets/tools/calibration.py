"""``CalibrationSession``: origin, descan fit and ellipse of a cube, without a browser.

The session calls the recipe steps of :mod:`fourd_widgets.analysis.calibration`
themselves (``origin``, ``origin_fit``, ``ellipse``), so the calibration it
holds is the one ``fw.run(session.params, cube)`` computes, bit for bit. Its
compute policy:

* a new origin method: the origin is measured again on the worker (progress,
  cancel), then refitted;
* a new fit model or robust switch: only the (cheap) fit, in the caller's thread;
* a new ring: only the ellipse fit (with a peak table).

Messages: ``messages['origin' | 'fit' | 'ellipse']``. Events for a view (besides
the Tool ones): ``'origin'`` (the measured calibration), ``'fit'``
(``(OriginFit, limit)``), ``'selected'`` (the outlier position
stepped to, or None), ``'bvm'`` (``(map, centre)``), ``'ring'`` (the ring
to draw), ``'ellipse'`` (vertices of the fitted ellipse, or None), ``'options'``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..analysis.calibration import (EllipseFit, EllipseParams, OriginFitParams, OriginParams, distortion_matrix,
                                    fit_ellipse, fit_origin)
from ..analysis.disks import PeakTable
from ..analysis.steps import RunContext, step_function
from ..analysis.strain import corrected_bvm, suggest_basis
from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import CancelledError, FourDError, ParameterError
from ..core.recipe import Recipe
from ..engine.run import Cancel
from .base import Request, Tool

__all__ = ["CalibrationSession", "ORIGIN_METHODS", "FIT_MODELS", "DISK_LABEL"]

ORIGIN_METHODS = ("com", "template", "friedel")
FIT_MODELS = ("constant", "plane", "parabola", "bezier")
#: Label of the disk-detection step whose peak table the calibration and strain steps read.
DISK_LABEL = "find_disks"
#: Vertices of the drawn ellipse (a polygon overlay: the views have no ellipse shape).
ELLIPSE_VERTICES = 72


class CalibrationSession(Tool):
    """Origin maps, their fit and the ellipse of a cube: the calibration tool without its views.

    Parameters
    ----------
    cube : DataCube
    peaks : PeakTable, optional
        Disks found on this cube (needed for the ellipse).
    origin, origin_fit, ellipse : OriginParams, OriginFitParams, EllipseParams, optional
        The steps (default: centre of mass, robust plane, no ellipse).
    start : bool
        Measure the origin at once (a view passes False and calls :meth:`start`).

    Examples
    --------
    >>> import fourd_widgets as fw
    >>> cube, truth = fw.datasets.sample("vacuum_probe", scan_shape=(4, 4), detector_shape=(32, 32))
    >>> s = CalibrationSession(cube).wait()
    >>> bool(np.array_equal(fw.run(s.params, cube)["origin_fit"].origin_map, s.calibration.origin_map))
    True
    >>> s.close()
    """

    name = "calibration tool"

    def __init__(self, cube: DataCube, peaks: PeakTable | None = None, *, origin: OriginParams | None = None,
                 origin_fit: OriginFitParams | None = None, ellipse: EllipseParams | None = None,
                 start: bool = True) -> None:
        if not isinstance(cube, DataCube):
            raise TypeError(f"CalibrationTool needs a DataCube (fw.load(path) gives one), got {type(cube).__name__}")
        if peaks is not None and not isinstance(peaks, PeakTable):
            raise TypeError(f"peaks must be a PeakTable (fw.find_disks(cube) gives one), got {type(peaks).__name__}")
        super().__init__(cube)
        self.cube: DataCube = cube
        self.peaks = peaks
        self.initial_calibration = cube.calibration
        self.origin_fit = None
        self.ellipse_fit: EllipseFit | None = None
        self.origin_params = origin or OriginParams()
        self.fit_params = origin_fit or OriginFitParams()
        self.ellipse_params = ellipse
        #: the ring shown while no ellipse is fitted
        self.ring_default = ellipse or EllipseParams()
        self._cal_origin: Calibration | None = None
        self._cal_fit: Calibration | None = None
        self._cal_ellipse: Calibration | None = None
        self.bvm_center: tuple[float, float] | None = None
        #: the scan position stepped to by :meth:`next_outlier` (None: none yet)
        self.selected: tuple[int, int] | None = None
        self._measuring: Cancel | None = None
        self._runner = self._add_worker(self._compute_origin, self._deliver_origin, self._origin_failed)
        if peaks is None:
            self._say("ellipse", "no peak table: pass peaks=fw.find_disks(cube) to fit the elliptic distortion "
                                 "from the Bragg disks", "info")
        if start:
            self.start()

    def start(self) -> "CalibrationSession":
        """Measure the origin (the fit and ellipse follow)."""
        self.measure()
        return self

    @classmethod
    def from_params(cls, cube: DataCube, params: Recipe | dict | str, peaks: PeakTable | None = None,
                    **options: Any) -> "CalibrationSession":
        """Rebuild a session from its :attr:`params` (see :func:`calibration_steps`)."""
        cube, steps = calibration_steps(cube, params)
        return cls(cube, peaks, **steps, **options)

    @property
    def params(self) -> Recipe:
        """The calibration steps shown: ``fw.run(session.params, cube)`` computes :attr:`calibration`.

        The ellipse step reads the peak table of a step labelled ``'find_disks'``;
        put the disk step first (``Recipe(steps=(disks, *tool.params.steps))``) to replay it.
        """
        steps: list[Any] = [self.origin_params, self.fit_params]
        if self.ellipse_params is not None:
            steps.append(self.ellipse_params)
        return Recipe(steps=tuple(steps), labels=tuple(s.step for s in steps), calibration=self.initial_calibration)

    @property
    def calibration(self) -> Calibration:
        """The resulting calibration (the initial one until the origin is measured)."""
        with self._lock:
            for cal in (self._cal_ellipse if self.ellipse_params is not None else None, self._cal_fit,
                        self._cal_origin):
                if cal is not None:
                    return cal
            return self.initial_calibration

    @property
    def ready(self) -> bool:
        """True when every configured step has a result."""
        with self._lock:
            return self._cal_fit is not None and (self.ellipse_params is None or self._cal_ellipse is not None)

    def results(self) -> dict[str, Any]:
        return {} if self._cal_fit is None else {"origin_map": self.calibration.origin_map}

    def ring(self) -> EllipseParams:
        """The ring the annulus shows: the ellipse step's, or the default one while there is none."""
        return self.ellipse_params or self.ring_default

    # --- edits ----------------------------------------------------------------------------------
    def measure(self, params: OriginParams | None = None) -> None:
        """Measure the origin at every position (worker thread; the maps and fits follow)."""
        self.origin_params = params or self.origin_params
        self._emit("options")
        if self._measuring is not None:  # the newest measurement wins (a request never started ends here)
            self._measuring.cancel()
            self._finish(self._measuring)
        self._measuring = self._start(f"measuring the origin ({self.origin_params.method})")
        self._runner.submit(Request(self.origin_params, self._measuring))

    def set_fit(self, params: OriginFitParams) -> None:
        """Choose the origin model (and robust options); refits at once."""
        self.fit_params = params
        self._emit("options")
        self._refit()

    def set_ellipse(self, params: EllipseParams | None) -> None:
        """Fit the ellipse with this ring selection (None: no ellipse correction)."""
        self.ellipse_params = params
        self._emit("options")
        if params is not None and self.bvm_center is not None:
            self._emit("ring", params)
        self._fit_ellipse()
        self._notify()

    def set_ring(self, r_inner: float, r_outer: float) -> None:
        """The annulus as drawn: the new ring of the ellipse step (or of the default ring while there is none)."""
        current = self.ring()
        if (r_inner, r_outer) == (current.r_inner, current.r_outer):
            return
        try:
            new = current.replace(r_inner=max(r_inner, 0.5), r_outer=max(r_outer, r_inner + 0.5))
        except FourDError as exc:
            self._fail("ellipse", exc)
            return
        if self.ellipse_params is None:
            self.ring_default = new
            return
        self.ellipse_params = new
        self._fit_ellipse()
        self._notify()

    # --- origin ---------------------------------------------------------------------------------
    def _compute_origin(self, req: Request) -> Calibration:
        try:
            # the recipe step itself, so the tool's origin is what fw.run computes; the engine
            # options give it the tool's progress and cancel
            cube = self.cube.with_calibration(self.initial_calibration)
            ctx = RunContext(engine={"progress": self._report, "cancel": req.cancel})
            return step_function(req.params)(cube, req.params, ctx)
        finally:
            self._finish(req.cancel)

    def _deliver_origin(self, req: Request, cal: Calibration) -> None:
        if req.cancel.is_set():
            return
        with self._lock:
            self._cal_origin = cal
        self._emit("origin", cal)
        self._say("origin", "")
        self._set_status(f"origin measured ({req.params.method})")
        self._refit()

    def _origin_failed(self, req: Request, exc: BaseException) -> None:
        self._set_status("cancelled" if isinstance(exc, CancelledError) else "")
        if not isinstance(exc, CancelledError):
            self._fail("origin", exc)

    # --- origin fit -----------------------------------------------------------------------------
    def _refit(self) -> None:
        with self._lock:
            cal = self._cal_origin
        if cal is None:
            return
        try:
            fit = fit_origin(cal.origin_map, self.fit_params)
            cal_fit = step_function(self.fit_params)(self.cube.with_calibration(cal), self.fit_params, RunContext())
        except FourDError as exc:
            self._fail("fit", exc)
            return
        with self._lock:
            self.origin_fit, self._cal_fit = fit, cal_fit
        limit = float(np.nanmax(np.abs(fit.residuals))) if np.isfinite(fit.residuals).any() else 1.0
        self._emit("fit", (fit, max(limit, 1e-6)))
        outliers = int((~fit.inliers).sum())
        rms = float(np.sqrt(np.nanmean(np.sum(fit.residuals[fit.inliers] ** 2, axis=-1))))
        why = ""
        if outliers:
            why = (f": residual above {fit.limit_px:.3g} px, where the measured origin disagrees with the "
                   f"{fit.model} fit; 'next outlier' shows each" if math.isfinite(fit.limit_px)
                   else ": no origin measured there")
        self._say("fit", f"rms residual {rms:.3g} px over inliers; {outliers} outlier position(s){why}", "info")
        self.selected = None
        self._emit("selected", None)
        self._show_bvm()
        self._fit_ellipse()
        self._notify()

    def outlier_positions(self) -> list[tuple[int, int]]:
        """Scan positions ``(rx, ry)`` the origin fit left out, largest residual first."""
        fit = self.origin_fit
        if fit is None:
            return []
        rx, ry = np.nonzero(~fit.inliers)
        r = np.hypot(*np.moveaxis(fit.residuals[rx, ry], -1, 0))
        order = np.argsort(-np.nan_to_num(r, nan=np.inf), kind="stable")
        return [(int(rx[i]), int(ry[i])) for i in order]

    def next_outlier(self) -> tuple[int, int] | None:
        """Select the next outlier position (after the selected one, wrapping) and say why it is one."""
        found = self.outlier_positions()
        if not found:
            self._say("fit", "no outlier positions: every measured origin agrees with the fit", "info")
            return None
        i = (found.index(self.selected) + 1) % len(found) if self.selected in found else 0
        self.selected = found[i]
        why = self.origin_fit.why_outlier(*self.selected)  # type: ignore[union-attr]
        self._say("fit", f"outlier {i + 1}/{len(found)} at {self.selected}: {why}", "warning")
        self._emit("selected", self.selected)
        return self.selected

    # --- ellipse --------------------------------------------------------------------------------
    def _show_bvm(self) -> None:
        if self.peaks is None or self._cal_fit is None:
            return
        try:
            bvm, centre = corrected_bvm(self.peaks, self._cal_fit.replace(ellipse=None))
        except FourDError as exc:
            self._fail("ellipse", exc)
            return
        first = self.bvm_center is None
        self.bvm_center = centre
        self._emit("bvm", (bvm, centre))
        if first and self.ellipse_params is None:
            self.ring_default = self._default_ring()
        self._emit("ring", self.ring())

    def _default_ring(self) -> EllipseParams:
        """An annulus around the two shortest rings of disks (one ring of a cubic zone spans only two directions)."""
        try:
            g = float(np.hypot(*suggest_basis(self.peaks, self._cal_fit).g1))
            return EllipseParams(r_inner=round(0.8 * g, 1), r_outer=round(1.6 * g, 1))
        except FourDError:
            return EllipseParams()

    def _fit_ellipse(self) -> None:
        p = self.ellipse_params
        with self._lock:
            cal_fit = self._cal_fit
        if p is None or cal_fit is None:
            with self._lock:
                self._cal_ellipse, self.ellipse_fit = None, None
            self._emit("ellipse", None)
            return
        if self.peaks is None:
            self._fail("ellipse", ParameterError(
                "the ellipse fit needs a peak table: CalibrationTool(cube, peaks=fw.find_disks(cube))"))
            return
        try:
            fit = fit_ellipse(self.peaks, p, cal_fit)
            cal = step_function(p)(self.cube.with_calibration(cal_fit), p, RunContext(results={p.peaks: self.peaks}))
        except FourDError as exc:
            with self._lock:
                self._cal_ellipse, self.ellipse_fit = None, None
            self._fail("ellipse", exc)
            return
        with self._lock:
            self._cal_ellipse, self.ellipse_fit = cal, fit
        a, b, th = cal.ellipse
        self._say("ellipse", f"ellipse a/b = {a / b:.4f}, θ = {th:.1f}°, rms {fit.rms_px:.3g} px "
                             f"(radius {fit.radius:.2f} px)", "info")
        if self.bvm_center is not None:
            self._emit("ellipse", self._ellipse_vertices(fit))

    def _ellipse_vertices(self, fit: EllipseFit) -> list[list[float]]:
        """The fitted ellipse as polygon vertices on the Bragg vector map."""
        t = np.linspace(0, 2 * math.pi, ELLIPSE_VERTICES, endpoint=False)
        D = distortion_matrix((fit.a, fit.b, fit.theta_deg))
        pts = (D @ np.stack([np.cos(t), np.sin(t)])).T + np.asarray(self.bvm_center) + fit.center
        return pts.tolist()


def calibration_steps(cube: DataCube, params: Recipe | dict | str) -> tuple[DataCube, dict[str, Any]]:
    """``(cube, {'origin': ..., 'origin_fit': ..., 'ellipse': ...})`` of a calibration recipe.

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
    return cube, {"origin": found[OriginParams], "origin_fit": found.get(OriginFitParams),
                  "ellipse": found.get(EllipseParams)}
