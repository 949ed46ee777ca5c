"""``OrientationSession``: the orientation mapper without its views (plan, chosen patterns, whole-scan map, grains).

Compute policy:

* a plan field changed (``set(plan=...)`` or a crystal): the plan is rebuilt on the worker with
  progress, then the chosen patterns are matched again;
* a matching field (``num_matches``, ``min_angle_deg``, ``refine``...): only the chosen patterns
  (six by default) are matched again;
* :meth:`OrientationSession.run_on_all`: the whole scan through the engine, partial IPF maps
  painted as chunks finish (``'ipf'`` events), cancel with :meth:`cancel`;
* :meth:`OrientationSession.set_grain_threshold`: the grains of the kept map, at once.

Events (besides the Tool ones): ``'pattern'`` (the selected position's view data: image, spots of
each match in detector px with their hkl, matches, correlation against in-plane angle, the
stereographic heat map of the zone axes), ``'chosen'`` (the chosen positions' matches), ``'route'``
(``'peaks'`` or ``'patterns'``, see :mod:`.orientation_route`), ``'record'`` (the record after each change),
``'ipf'`` (``(rgb, done, total)``), ``'grains'``.
``fw.run(session.params, cube)["orientation_map"]`` equals :attr:`OrientationSession.result`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..analysis.crystal import Crystal, simulate_spots
from ..analysis.disks import FindDisksParams, find_disks
from ..analysis.orientation import OrientationMapParams, match_details, orientation_map, plan_for, scan_frame_peaks
from ..analysis.orientation_grains import Grains, ipf_colors, segment_grains
from ..analysis.orientation_plan import CrystalParams, OrientationPlan
from ..analysis.orientation_raw import OrientationMapRawParams
from ..analysis.orientation_results import OrientationMap
from ..analysis.peak_calibration import scan_frame_matrix
from ..analysis.peaks import PeakTable
from ..core.calibration import Calibration
from ..core.errors import ParameterError
from ..core.recipe import Recipe
from .base import Request, Tool
from .orientation_route import PATTERNS, OrientationRoute, check_route_fields, convert_record

__all__ = ["OrientationSession", "default_positions", "stereographic"]


def default_positions(scan_shape: tuple[int, int], n: int = 6) -> list[tuple[int, int]]:
    """``n`` positions spread over the scan (a 3 x 2 grid of cell centres for six).

    >>> default_positions((16, 16))
    [(2, 4), (2, 12), (8, 4), (8, 12), (13, 4), (13, 12)]
    """
    Rx, Ry = scan_shape
    cols = 2 if n > 1 else 1
    rows = -(-n // cols)
    return [(int((i + 0.5) * Rx / rows), int((j + 0.5) * Ry / cols)) for i in range(rows) for j in range(cols)][:n]


def stereographic(directions: np.ndarray) -> np.ndarray:
    """(Z, 2) stereographic projection of unit vectors (upper hemisphere; lower ones are inverted first)."""
    d = np.asarray(directions, float).reshape(-1, 3)
    d = np.where(d[:, 2:] < 0, -d, d)
    return d[:, :2] / (1.0 + d[:, 2:])


class OrientationSession(OrientationRoute, Tool):
    """Orientation matching of a cube's Bragg peaks or raw patterns: plan, six chosen patterns, whole-scan map
    and grains.

    Parameters
    ----------
    cube : DataCube
        Calibrated (origin, reciprocal step, beam energy); its patterns are shown.
    peaks : PeakTable, optional
        Detected disks (detector px). Default: ``find_disks(cube, disks)`` on the worker.
    crystals : sequence of Crystal or CrystalParams, optional
        The phases (default: the record's, Si).
    params : OrientationMapParams or OrientationMapRawParams, optional
        The record; an ``orientation_map_raw`` record starts on the raw-pattern route.
    route : {'peaks', 'patterns'}, optional
        Match detected peaks (``orientation_map``) or the raw patterns (``orientation_map_raw``);
        default: the record's.
    disks : FindDisksParams, optional
        How the peaks are (or were) found; the first step of :attr:`params`.
    positions : sequence of (rx, ry), optional
        The chosen patterns matched on every change (default: six spread over the scan).
    start : bool
        Build the plan and match the chosen patterns at once.
    """

    name = "orientation mapper"

    def __init__(self, cube: Any, peaks: PeakTable | None = None, crystals: Sequence[Any] | None = None, *,
                 params: Any = None, route: str | None = None, disks: FindDisksParams | None = None,
                 positions: Sequence[tuple[int, int]] | None = None, start: bool = True) -> None:
        super().__init__(cube)
        if peaks is not None and not isinstance(peaks, PeakTable):
            raise TypeError(f"peaks must be a PeakTable (fw.find_disks(cube) gives one), got {type(peaks).__name__}")
        p = params or OrientationMapParams()
        if crystals is not None:
            recs = tuple(c if isinstance(c, CrystalParams) else CrystalParams.from_crystal(c) for c in crystals)
            p = p.replace(plan=p.plan.replace(crystals=recs))
        self.record = convert_record(p, route) if route is not None else p
        self.disks = disks or FindDisksParams()
        self.peaks = peaks
        self.plan: OrientationPlan | None = None
        self.positions = [tuple(int(v) for v in xy) for xy in (positions or default_positions(cube.scan_shape))]
        self.selected = self.positions[0]
        self.chosen: dict[tuple[int, int], dict[str, Any]] = {}
        self.result: OrientationMap | None = None
        #: The record :attr:`result` was computed with.
        self.result_record: Any = None
        self.grains: Grains | None = None
        self.grain_threshold_deg = 5.0
        self._worker = self._add_worker(self._compute, self._deliver)
        if start:
            self._worker.submit(Request(self.record))

    # --- the recipe -----------------------------------------------------------------------------------
    @property
    def calibration(self) -> Calibration:
        return self.cube.calibration

    @property
    def params(self) -> Recipe:
        """find_disks, then orientation_map (or orientation_map_raw alone): ``fw.run(session.params, cube)``
        replays the map."""
        if self.route == PATTERNS:
            return Recipe((self.record,), calibration=self.calibration)
        return Recipe((self.disks, self.record), calibration=self.calibration)

    @classmethod
    def from_params(cls, cube: Any, params: Any, **options: Any) -> "OrientationSession":
        rec = Recipe.coerce(params)
        disks = next((s for s in rec.steps if isinstance(s, FindDisksParams)), None)
        om = next((s for s in rec.steps if isinstance(s, (OrientationMapParams, OrientationMapRawParams))), None)
        if om is None:
            raise ParameterError("the recipe has no orientation_map (or orientation_map_raw) step", field="params")
        return cls(cube, params=om, disks=disks, **options)

    def results(self) -> dict[str, Any]:
        return {} if self.result is None else {self.record.step: self.result}

    # --- changes -----------------------------------------------------------------------------------------
    def set(self, **changes: Any) -> "OrientationSession":
        """Change fields of the record (``plan=`` a new OrientationPlanParams, or plan fields by name).

        A field of the other route's record only (``read``, ``decompose`` on the peak route) is refused
        with a :class:`~fourd_widgets.core.errors.ParameterError` naming it.
        """
        plan_fields = set(type(self.record.plan).__dataclass_fields__) - {"crystals"}
        plan_changes = {k: changes.pop(k) for k in list(changes) if k in plan_fields}
        check_route_fields(self.record, changes)
        p = self.record.replace(**changes) if changes else self.record
        if plan_changes:
            p = p.replace(plan=p.plan.replace(**plan_changes))
        self.record = p
        self._emit("record", p)
        self._worker.submit(Request(p))
        return self

    def select(self, rx: int, ry: int) -> "OrientationSession":
        """Show the pattern at (rx, ry) with its matches (added to the chosen patterns)."""
        Rx, Ry = self.cube.scan_shape
        if not (0 <= rx < Rx and 0 <= ry < Ry):
            raise ParameterError(f"position ({rx}, {ry}) is outside the scan {self.cube.scan_shape}", field="position")
        self.selected = (int(rx), int(ry))
        if self.selected not in self.positions:
            self.positions = (self.positions + [self.selected])[-6:]
        self._worker.submit(Request(self.record))
        return self

    def set_grain_threshold(self, degrees: float) -> "OrientationSession":
        """Re-segment the kept map's grains at a new misorientation threshold."""
        self.grain_threshold_deg = float(degrees)
        if self.result is not None:
            self.grains = segment_grains(self.result, self.grain_threshold_deg)
            self._emit("grains", self.grains)
        return self

    # --- compute -----------------------------------------------------------------------------------
    def _table(self, token: Any) -> PeakTable:
        if self.peaks is None:
            self.peaks = find_disks(self.cube, self.disks, progress=self._report, cancel=token)
        return self.peaks

    def _plan(self, record: Any) -> OrientationPlan:
        plan = self._route_plan(record) or plan_for(record.plan, self.calibration, tuple(self.cube.detector_shape))
        self.plan = plan
        return plan

    def _compute(self, req: Request) -> dict[str, Any]:
        token = self._start("matching the chosen patterns", req.cancel)
        try:
            if isinstance(req.params, OrientationMapRawParams):  # the raw-pattern route
                return self._match_raw(req.params, self._plan(req.params))
            table = scan_frame_peaks(self._table(token), self.calibration)
            plan = self._plan(req.params)
            Ry = table.scan_shape[1]
            out = {}
            for rx, ry in self.positions:
                p = rx * Ry + ry
                s = slice(int(table.offsets[p]), int(table.offsets[p + 1]))
                out[(rx, ry)] = match_details(table.qx[s], table.qy[s], table.intensity[s], plan, req.params)
            return out
        finally:
            self._finish(token)

    def _deliver(self, req: Request, chosen: dict[tuple[int, int], dict[str, Any]]) -> None:
        self.chosen = chosen
        self._say("error", "", "info")
        self._emit("chosen", chosen)
        self._emit("pattern", self.pattern_view())
        self._notify()

    def pattern_view(self) -> dict[str, Any]:
        """What the pattern panel shows at the selected position (image, spots per match, curves).

        With ``decompose`` on the raw route each match has its ``weight``: its share of the fitted spot
        intensity (the two grains under the probe), from this pattern alone. ``map_matches``: the whole-scan
        map's matches at this position with their weights, once "run on all" has run with the current record
        (the map's decomposition may also use the grains around the position).
        """
        rx, ry = self.selected
        m = self.chosen.get(self.selected)
        view: dict[str, Any] = {"position": (rx, ry), "image": np.asarray(self.cube.pattern(rx, ry)), "spots": [],
                                "matches": [], "map_matches": self._map_matches()}
        if m is None or self.plan is None:
            return view
        for k in range(len(m["phase"])):
            ph = int(m["phase"][k])
            if ph < 0:
                continue
            crystal: Crystal = self.plan.phases[ph].crystal
            spots = simulate_spots(crystal, m["matrix"][k], energy_eV=self.plan.energy_eV, g_max=self.plan.g_max,
                                   sigma_excitation_error=self.plan.params.sigma_excitation_error,
                                   precession_angle_deg=self.plan.params.precession_angle_deg)
            view["spots"].append({"xy": self.detector_px(spots.g), "hkl": spots.hkl, "intensity": spots.intensity})
            view["matches"].append({"phase": crystal.name, "correlation": float(m["correlation"][k]),
                                    "zone_axis": np.round(m["zone_axis"][k], 3).tolist(),
                                    "in_plane_deg": float(m["in_plane_deg"][k])})
            if "weight" in m and np.isfinite(m["weight"][k]):  # decomposed (NaN: not)
                view["matches"][-1]["weight"] = float(m["weight"][k])
        view.update(reliability=float(m["reliability"]), angles_deg=m["angles_deg"],
                    angle_correlation=m["angle_correlation"], stereo_xy=stereographic(m["directions"]),
                    zone_correlation=m["zone_correlation"])
        return view

    def _map_matches(self) -> list[dict[str, Any]]:
        """The decomposed whole-scan map's matches at the selected position (none without one for this record)."""
        r = self.result
        if r is None or self.result_record != self.record or not np.isfinite(r.weight[self.selected]).any():
            return []
        names = [c.name for c in r.crystals]
        return [{"phase": names[int(ph)], "zone_axis": np.round(r.zone_axis[self.selected][k], 3).tolist(),
                 "in_plane_deg": float(r.in_plane_deg[self.selected][k]),
                 "correlation": float(r.correlation[self.selected][k]), "weight": float(r.weight[self.selected][k])}
                for k, ph in enumerate(r.phase[self.selected]) if ph >= 0]

    def detector_px(self, g: np.ndarray) -> np.ndarray:
        """Scan-frame vectors (1/Å) -> detector pixels (inverse of the calibration's scan-frame map)."""
        cal = self.calibration
        step = cal.reciprocal_step * (0.1 if cal.reciprocal_units == "1/nm" else 1.0)
        if cal.reciprocal_units == "mrad":
            step = cal.reciprocal_step * 1e-3 / cal.wavelength_A
        v = np.asarray(g, float).reshape(-1, 2) @ np.linalg.inv(scan_frame_matrix(cal.rotation_deg, cal.flip)).T
        return v / step + np.asarray(cal.origin, float)

    # --- the whole scan --------------------------------------------------------------------------------
    def run_on_all(self) -> "OrientationSession":
        """Match every position (engine pass, partial IPF maps as chunks finish); then the grains."""
        self._add_thread(self._run_all, "orientation-all")
        return self

    def _run_all(self) -> None:
        token = self._start("matching every pattern")
        record = self.record
        try:
            plan = self._plan(record)
            if isinstance(record, OrientationMapRawParams):
                result = self._map_raw(record, plan, token)
            else:
                result = orientation_map(self._table(token), record, self.calibration, plan=plan,
                                         progress=self._report, cancel=token, on_partial=self._partial)
            self.result, self.result_record = result, record
            self.grains = segment_grains(result, self.grain_threshold_deg)
            self._emit("ipf", (ipf_colors(result, "z"), 1, 1))
            self._emit("grains", self.grains)
            self._emit("pattern", self.pattern_view())  # with the map's weights at the selected position
            self._notify()
        except Exception as exc:  # noqa: BLE001 - shown beside the run button, never raised into the notebook
            self._fail("run", exc)
        finally:
            self._finish(token)

    def _partial(self, partial: OrientationMap, done: int, total: int) -> None:
        self._emit("ipf", (ipf_colors(partial, "z"), done, total))
