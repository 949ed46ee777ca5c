"""The DiskTuner's route: detector-based ``find_disks`` (default) or the whole-pattern lattice fit.

With the lattice route (issue 13) the tuner keeps its probe template (the same controls make
it) and fits the lattice of each strip pattern at once, as
:func:`~fourd_widgets.analysis.lattice_fit.whole_pattern_fit` fits every pattern: the start is
the lattice of the whole cube's mean pattern, then :class:`WholePatternFitJob` fits the strip's
patterns. So the fitted sites shown on the strip are those of the full run at these positions.
The record is then a ``whole_pattern_fit`` step (the lattice_fit family) carrying the tuner's
template record: ``fw.run(session.params, cube)["whole_pattern_fit"]`` replays it, and "run on
all" computes that map (strain with σ at every position).

Events (besides the tuner's): ``'route'`` (the route), ``'lattice'`` (a :class:`LatticePreview`, or
None when there is none to show), ``'lattice_params'`` (the lattice record changed). Messages land
in ``messages['lattice']``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..analysis.disks import FindDisksParams
from ..analysis.lattice_fit import (StrainSigmaMap, WholePatternFitJob, WholePatternFitParams, pattern_model,
                                    start_lattice, strain_sigma, whole_pattern_fit)
from ..analysis.probe import ProbeTemplate, mean_pattern
from ..core.datacube import DataCube
from ..core.errors import CancelledError, ParameterError
from ..core.recipe import Recipe
from .base import explain
from .disk_tuner_compute import find_disks_record

__all__ = ["DiskTunerRoute", "LatticePreview", "TUNER_ROUTES", "DISKS", "WHOLE_PATTERN", "preview_lattice",
           "tuner_records"]

DISKS = "disks"
WHOLE_PATTERN = "whole_pattern"
#: The DiskTuner's routes: per-disk detection, or the whole-pattern lattice fit.
TUNER_ROUTES = (DISKS, WHOLE_PATTERN)


@dataclass
class LatticePreview:
    """The lattice fitted to each strip pattern, as the full run fits it there.

    Attributes
    ----------
    positions : tuple of (int, int)
    sites : (S, 2) int array
        ``(h, k)`` of the sites in the model.
    centers : (N, S, 2) array
        Fitted site centres per strip pattern, detector px.
    g1, g2 : (N, 2) arrays
        Fitted vectors, detector px.
    sigma_exx : (N,) array
        Standard error of ε_xx at each pattern (relative to the start lattice; a fraction).
    status : (N,) int array
        0 converged, 1 not converged, 2 singular information, 4 non-finite pattern.
    seconds : float
        Time of the strip's fit (start excluded).
    """

    positions: tuple
    sites: np.ndarray
    centers: np.ndarray
    g1: np.ndarray
    g2: np.ndarray
    sigma_exx: np.ndarray
    status: np.ndarray
    seconds: float

    def message(self) -> str:
        """One line for beside the lattice controls: what the fit found, or what went wrong."""
        bad = [str(k + 1) for k in np.flatnonzero(self.status != 0)]
        s = np.nanmedian(self.sigma_exx) if np.isfinite(self.sigma_exx).any() else np.nan
        text = f"{len(self.sites)} sites per pattern; median σ(ε_xx) {100 * s:.3g} %"
        return text + (f"; pattern {', '.join(bad)} did not converge" if bad else "")


def preview_lattice(cube: DataCube, positions: tuple, template: ProbeTemplate, p: WholePatternFitParams,
                    mean: np.ndarray) -> LatticePreview:
    """Fit the lattice of the patterns at ``positions`` as :func:`whole_pattern_fit` fits them (same start).

    ``mean`` is the cube's mean pattern; the reference vectors of ``p`` (if any) only pick the start.
    """
    model = pattern_model(template, p.window, p.upsample, p.edge_blur)
    ref = None if p.reference_g1 is None else (np.asarray(p.reference_g1, float), np.asarray(p.reference_g2, float))
    theta0, amps0, bg0, hk = start_lattice(mean, template, cube.calibration, p, p.counts_per_unit, ref, model=model)
    patterns = np.stack([np.asarray(cube.pattern(x, y)) for x, y in positions])
    t = time.perf_counter()
    out = WholePatternFitJob(model, hk, theta0, amps0, bg0, p).process(patterns[None], slice(0, 1),
                                                                        slice(0, len(positions)))
    seconds = time.perf_counter() - t
    theta, cov = out["theta"][0], out["cov"][0]
    centers = theta[:, None, :2] + hk[None, :, :1] * theta[:, None, 2:4] + hk[None, :, 1:] * theta[:, None, 4:]
    sig = strain_sigma(theta[:, 2:4], theta[:, 4:], cov[:, 2:, 2:], theta0[2:4], theta0[4:])["sigma_exx"]
    return LatticePreview(tuple(positions), hk, centers, theta[:, 2:4].copy(), theta[:, 4:].copy(), sig,
                          out["status"][0].astype(int), seconds)


def tuner_records(cube: DataCube, params: Any) -> tuple[DataCube, FindDisksParams, WholePatternFitParams | None]:
    """``(cube, detection record, lattice record or None)`` of a tuner showing ``params``.

    A recipe with a ``whole_pattern_fit`` step and no ``find_disks`` step opens the lattice route,
    its template record in the detection record (the template controls are shared).
    """
    if isinstance(params, WholePatternFitParams):
        return cube, FindDisksParams(template=params.template), params
    if isinstance(params, (Recipe, str)) or (isinstance(params, dict) and params.get("type") == "recipe"):
        recipe = Recipe.coerce(params)  # (JSON is a recipe's, as find_disks_record reads it)
        lat = next((s for s in recipe.steps if isinstance(s, WholePatternFitParams)), None)
        if lat is not None and not any(isinstance(s, FindDisksParams) for s in recipe.steps):
            if recipe.calibration is not None:
                cube = cube.with_calibration(recipe.calibration)
            return cube, FindDisksParams(template=lat.template), lat
    cube, p = find_disks_record(cube, params)
    return cube, p, None


class DiskTunerRoute:
    """Route choice of the disk tuner session (mixed into it; uses its state)."""

    _lattice: WholePatternFitParams | None = None  # None: the detector route
    _lattice_worker: Any = None
    _mean: np.ndarray | None = None
    lattice_preview: LatticePreview | None = None
    lattice_map: StrainSigmaMap | None = None
    #: Times the strip's lattice was fitted.
    lattice_fits: int = 0
    _lattice_key: tuple | None = None
    _lattice_template: ProbeTemplate | None = None
    _lattice_fitted: LatticePreview | None = None

    @property
    def route(self) -> str:
        """``'disks'`` (find_disks) or ``'whole_pattern'`` (the whole-pattern lattice fit), as in the StrainMapper."""
        return WHOLE_PATTERN if self._lattice is not None else DISKS

    @property
    def lattice_params(self) -> WholePatternFitParams | None:
        """The whole_pattern_fit record of the lattice route (with the tuner's template), else None."""
        lat = self._lattice
        return None if lat is None else lat.replace(template=self.find_params.template)

    def set_route(self, route: str, params: WholePatternFitParams | None = None) -> Any:
        """Choose the route; ``params`` (default: the last lattice record, or the defaults) start the lattice fit."""
        if route not in TUNER_ROUTES:
            raise ParameterError(f"route must be one of {TUNER_ROUTES}, not {route!r}", field="route")
        if route == WHOLE_PATTERN:
            if params is not None and not isinstance(params, WholePatternFitParams):
                raise ParameterError("the lattice route takes a WholePatternFitParams record", field="params")
            self._lattice = params or getattr(self, "_last_lattice", None) or WholePatternFitParams()
            self._last_lattice = self._lattice
            if self._lattice_worker is None:
                self._lattice_worker = self._add_worker(self._lattice_compute, self._lattice_deliver,
                                                        self._lattice_failed)
        else:
            self._lattice = None
            self.lattice_preview = None
            self._emit("lattice", None)
            self._request()  # the strip's disks again (a filter only: the correlation is kept)
        self._emit("route", self.route)
        self._emit("lattice_params")
        self._route_strip()
        return self

    def set_lattice(self, **changes: Any) -> Any:
        """Change fields of the lattice record (e.g. ``max_index=4``, ``counts_per_unit=2000``); refusals: messages."""
        if self._lattice is None:
            raise ParameterError("the lattice fields belong to the lattice route: set_route('whole_pattern') first",
                                 field="route")
        try:
            new = self._lattice.replace(**changes)
            new.validate()
        except (ParameterError, TypeError, ValueError) as exc:
            self._say("lattice", str(exc))
            return self
        self._lattice = self._last_lattice = new
        self._emit("lattice_params")
        self._route_strip()
        return self

    # --- the hooks the session calls ---------------------------------------------------------
    def _route_recipe(self, detector: Recipe) -> Recipe:
        """The recipe of the route shown (``detector``: the find_disks recipe)."""
        lat = self.lattice_params
        return detector if lat is None else Recipe(steps=(lat,), labels=("whole_pattern_fit",),
                                                   calibration=self.cube.calibration)

    def _route_results(self, detector: dict[str, Any]) -> dict[str, Any]:
        """The results of the route shown (``detector``: those of find_disks)."""
        if self._lattice is None:
            return detector
        return {} if self.lattice_map is None else {"whole_pattern_fit": self.lattice_map}

    def _route_strip(self) -> None:
        """A new strip or record: refit the strip's lattice (lattice route only)."""
        if self._lattice is None or self.closed or self._lattice_worker is None:
            return
        self._lattice_worker.submit((self.lattice_params, tuple(self.positions), self.template))

    # --- the worker ----------------------------------------------------------------------------
    def _lattice_compute(self, req: tuple) -> LatticePreview | None:
        p, positions, template = req
        if template is None:  # no template: the template controls say why
            return None
        key = (p, positions)
        # e.g. a detector threshold moved: the last fit stands (kept here, not taken from lattice_preview,
        # which a superseded request never set)
        if key == self._lattice_key and template is self._lattice_template:
            return self._lattice_fitted
        if self._mean is None:
            self._mean = mean_pattern(self.cube, progress=False)
        preview = preview_lattice(self.cube, positions, template, p, self._mean)
        self._lattice_key, self._lattice_template, self._lattice_fitted = key, template, preview
        self.lattice_fits += 1
        return preview

    def _lattice_deliver(self, req: tuple, preview: LatticePreview | None) -> None:
        if self.closed or self._lattice is None:
            return
        self.lattice_preview = preview
        self._emit("lattice", preview)
        self._say("lattice", "" if preview is None else preview.message(), "info")
        self._notify()

    def _lattice_failed(self, req: tuple, exc: BaseException) -> None:
        self.lattice_preview = None
        self._emit("lattice", None)
        self._say("lattice", explain(exc))

    # --- run on all ----------------------------------------------------------------------------
    def _run_lattice(self) -> Any:
        """The whole-pattern fit of every pattern in a thread (the lattice route's "run on all")."""
        if self.run_state == "running":
            return self
        self.lattice_map = None
        self.run_state = "running"
        self._say("run", "")
        p, token = self.lattice_params, self._start("fitting the lattice of every pattern")
        template = self.template if self._template_key == p.template else None
        self._add_thread(lambda: self._run_lattice_all(p, template, token), "disk-tuner-lattice")
        return self

    def _run_lattice_all(self, p: WholePatternFitParams, template: ProbeTemplate | None, cancel: Any) -> None:
        try:
            sm = whole_pattern_fit(self.cube, p, template=template, progress=self._report, cancel=cancel,
                                   **self._engine_options)
        except CancelledError:
            self.run_state = "cancelled"
            self._say("run", "cancelled (nothing was saved)", "info")
        except Exception as exc:  # noqa: BLE001 - a message beside the run button
            self.run_state = "failed"
            self._fail("run", exc)
        else:
            self.lattice_map, self.run_state = sm, "done"
            n = sm.mask.size
            self._emit("lattice_map", sm)
            self._say("run", f"{n - int(sm.mask.sum())}/{n} positions fitted; median σ(ε_xx) "
                      f"{100 * float(np.nanmedian(sm.sigma_exx)) if (~sm.mask).any() else float('nan'):.3g} %", "info")
        finally:
            self._finish(cancel)
            self._notify()
