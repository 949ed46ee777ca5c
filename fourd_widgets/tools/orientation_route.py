"""The OrientationMapper's route: detected Bragg peaks (``orientation_map``, default) or raw patterns
(``orientation_map_raw``, polar template matching for spotty or precession data).

Both routes share the plan and the matching fields (``num_matches``, ``min_angle_deg``, ``refine``),
so switching keeps them; the record becomes the other step's, and with the raw route the recipe
is that one step (no disk detection). The chosen patterns are matched again at once.

The raw route's own fields (:func:`route_fields`: ``read``, ``decompose``, ...) are kept while the
peak route is shown, and come back with the raw route; setting one on the peak route is refused
with a :class:`~fourd_widgets.core.errors.ParameterError` naming the field and the route it needs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..analysis.orientation import OrientationMapParams
from ..analysis.orientation_plan import OrientationPlan
from ..analysis.orientation_raw import (OrientationMapRawParams, PatternPolar, match_pattern_details,
                                        orientation_map_raw, raw_plan)
from ..core.errors import ParameterError

__all__ = ["OrientationRoute", "ROUTES", "PEAKS", "PATTERNS", "route_of", "convert_record", "route_fields",
           "check_route_fields"]

PEAKS = "peaks"
PATTERNS = "patterns"
#: The routes an OrientationMapper offers: detected Bragg peaks, or the raw patterns.
ROUTES = (PEAKS, PATTERNS)
_SHARED = ("plan", "num_matches", "min_angle_deg", "refine")
_RECORDS = {PEAKS: OrientationMapParams, PATTERNS: OrientationMapRawParams}


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
    return _RECORDS[route](**{k: getattr(record, k) for k in _SHARED})


def route_fields(route: str) -> tuple[str, ...]:
    """The record fields only ``route`` has (in the record's order).

    >>> [name in route_fields("patterns") for name in ("read", "decompose", "num_matches")]
    [True, True, False]
    """
    other = next(r for r in ROUTES if r != route)
    theirs = {f.name for f in dataclasses.fields(_RECORDS[other])}
    return tuple(f.name for f in dataclasses.fields(_RECORDS[route]) if f.name not in theirs)


def check_route_fields(record: Any, changes: dict[str, Any]) -> None:
    """Refuse a change of a field the other route's record has, naming the route it needs.

    >>> check_route_fields(OrientationMapParams(), {"decompose": True})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fourd_widgets.core.errors.ParameterError: 'decompose' is a setting of the raw-patterns route ...
    """
    route = route_of(record)
    other = next(r for r in ROUTES if r != route)
    for name in set(changes) & set(route_fields(other)):
        what = "raw-patterns" if other == PATTERNS else "detected-peaks"
        raise ParameterError(f"{name!r} is a setting of the {what} route ({_RECORDS[other].step}), not of "
                             f"{record.step}: switch the route first (set_route({other!r}))", field=name)


class OrientationRoute:
    """Route choice of the orientation session (mixed into it; uses its state)."""

    _polar: tuple[Any, PatternPolar] | None = None
    #: The record each route had when it was left (its own fields come back with it).
    _left: dict[str, Any] | None = None

    @property
    def route(self) -> str:
        """``'peaks'`` (detected disks + orientation_map) or ``'patterns'`` (orientation_map_raw)."""
        return route_of(self.record)

    def set_route(self, route: str) -> Any:
        """Match from detected peaks (``'peaks'``) or from the raw patterns (``'patterns'``)."""
        new = convert_record(self.record, route)
        if new is not self.record:
            self._left = {**(self._left or {}), self.route: self.record}
            before = (self._left or {}).get(route)
            if before is not None:  # its own fields as they were; the shared ones as they are now
                new = before.replace(**{k: getattr(new, k) for k in _SHARED})
        self.record = new
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

    def _map_raw(self, record: OrientationMapRawParams, plan: OrientationPlan, token: Any) -> Any:
        """The whole scan on the raw route (engine pass, partial maps)."""
        return orientation_map_raw(self.cube, record, plan=plan, progress=self._report, cancel=token,
                                   on_partial=self._partial)
