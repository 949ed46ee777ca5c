"""The OrientationMapper's route: detected Bragg peaks (``orientation_map``, default) or raw patterns
(``orientation_map_raw``, polar template matching for spotty or precession data).

Both routes share the plan and the matching fields (``num_matches``, ``min_angle_deg``, ``refine``),
so switching keeps them; the record becomes the other step's, and with the raw route the recipe
is that one step (no disk detection). The chosen patterns are matched again at once.
"""

from __future__ import annotations

from typing import Any

from ..analysis.orientation import OrientationMapParams
from ..analysis.orientation_plan import OrientationPlan
from ..analysis.orientation_raw import (OrientationMapRawParams, PatternPolar, match_pattern_details,
                                        orientation_map_raw, raw_plan)
from ..core.errors import ParameterError

__all__ = ["OrientationRoute", "ROUTES", "PEAKS", "PATTERNS", "route_of", "convert_record"]

PEAKS = "peaks"
PATTERNS = "patterns"
#: The routes an OrientationMapper offers: detected Bragg peaks, or the raw patterns.
ROUTES = (PEAKS, PATTERNS)
_SHARED = ("plan", "num_matches", "min_angle_deg", "refine")


def route_of(record: Any) -> str:
    """``'patterns'`` for an ``orientation_map_raw`` record, else ``'peaks'``."""
    return PATTERNS if isinstance(record, OrientationMapRawParams) else PEAKS


def convert_record(record: Any, route: str) -> Any:
    """The record of ``route`` keeping the plan and matching fields of ``record``.

    >>> convert_record(OrientationMapParams(num_matches=2), "patterns").num_matches
    2
    """
    if route not in ROUTES:
        raise ParameterError(f"route must be one of {ROUTES}, not {route!r}", field="route")
    if route_of(record) == route:
        return record
    cls = OrientationMapRawParams if route == PATTERNS else OrientationMapParams
    return cls(**{k: getattr(record, k) for k in _SHARED})


class OrientationRoute:
    """Route choice of the orientation session (mixed into it; uses its state)."""

    _polar: tuple[Any, PatternPolar] | None = None

    @property
    def route(self) -> str:
        """``'peaks'`` (detected disks + orientation_map) or ``'patterns'`` (orientation_map_raw)."""
        return route_of(self.record)

    def set_route(self, route: str) -> Any:
        """Match from detected peaks (``'peaks'``) or from the raw patterns (``'patterns'``)."""
        self.record = convert_record(self.record, route)
        self.result = None
        self.grains = None
        self._emit("route", self.route)
        return self.set()

    def _route_plan(self, record: Any) -> OrientationPlan | None:
        """The raw route's plan (None on the peak route)."""
        if not isinstance(record, OrientationMapRawParams):
            return None
        return raw_plan(record, self.calibration, tuple(self.cube.detector_shape))

    def _match_raw(self, record: OrientationMapRawParams, plan: OrientationPlan) -> dict[tuple[int, int], Any]:
        """The chosen patterns matched from their raw pixels (one polar reader per plan and record)."""
        key = (id(plan), record, id(self.calibration))
        if self._polar is None or self._polar[0] != key:
            self._polar = (key, PatternPolar(plan, record, self.calibration, tuple(self.cube.scan_shape),
                                             tuple(self.cube.detector_shape)))
        polar = self._polar[1]
        return {(rx, ry): match_pattern_details(self.cube.pattern(rx, ry), plan, self.calibration, record,
                                                position=(rx, ry), polar=polar) for rx, ry in self.positions}

    def _map_raw(self, plan: OrientationPlan, token: Any) -> Any:
        """The whole scan on the raw route (engine pass, partial maps)."""
        return orientation_map_raw(self.cube, self.record, plan=plan, progress=self._report, cancel=token,
                                   on_partial=self._partial)
