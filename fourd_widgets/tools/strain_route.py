"""The StrainMapper's route: disk detection + ``strain_map`` (default) or the whole-pattern lattice fit.

With the whole-pattern route (issue 13) the strain session holds a
:class:`~fourd_widgets.tools.strain_lowdose.LowDoseStrainSession` (its fit, σ maps and the
σ limit that masks without a refit) started from the session's basis, reference region
and frame, and shows its maps: the record is then the ``whole_pattern_fit`` step instead of
``find_disks`` + ``strain_map``. Events of that session reach the strain session's listeners;
its ``'maps'`` are split into ``'maps'`` (the four strain maps) and ``'sigma_maps'`` (their σ).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.calibration import distortion_matrix
from ..analysis.lattice_fit import WholePatternFitParams
from ..core.errors import ParameterError
from ..core.recipe import Recipe
from .strain_lowdose import SIGMA_NAMES, LowDoseStrainSession

__all__ = ["StrainRoute", "ROUTES", "DISKS", "WHOLE_PATTERN", "whole_pattern_step"]

DISKS = "disks"
WHOLE_PATTERN = "whole_pattern"
#: The routes a StrainMapper offers: detected disks + strain_map, or the whole-pattern fit.
ROUTES = (DISKS, WHOLE_PATTERN)


def whole_pattern_step(params: Any) -> WholePatternFitParams | None:
    """The whole_pattern_fit step of a recipe without a strain_map step (its route), else None."""
    steps = Recipe.coerce(params).steps
    if any(s.step == "strain_map" for s in steps):
        return None
    return next((s for s in steps if isinstance(s, WholePatternFitParams)), None)


class StrainRoute:
    """Route choice of the strain session (mixed into it; uses its state)."""

    lowdose: LowDoseStrainSession | None = None

    @property
    def route(self) -> str:
        """``'disks'`` (detected disks + strain_map) or ``'whole_pattern'`` (the whole-pattern fit)."""
        return WHOLE_PATTERN if self.lowdose is not None else DISKS

    def set_route(self, route: str, params: WholePatternFitParams | None = None, **options: Any) -> Any:
        """Show the maps of ``route``; ``params`` (or the basis, region and frame shown now) start the fit.

        ``options`` go to the low-dose session (``template=``, the probe).
        """
        if route not in ROUTES:
            raise ParameterError(f"route must be one of {ROUTES}, not {route!r}", field="route")
        if self.cube is None and route == WHOLE_PATTERN:
            raise ParameterError("the whole-pattern fit needs the data cube: give the StrainMapper a cube",
                                 field="route")
        old, self.lowdose = self.lowdose, None
        if old is not None:
            old.close()
        if route == WHOLE_PATTERN:
            self.lowdose = LowDoseStrainSession(self.cube, params or self._whole_pattern_params(), start=False,
                                                **options)
            self.lowdose.listen(self._from_lowdose)
            self.lowdose.start()
        else:
            self._submit()  # the kept disk fit: only the cheap strain step reruns, its maps come back
        self._emit("route", self.route)
        return self

    def set_sigma_limit(self, max_sigma: float | None) -> Any:
        """Mask positions whose largest strain σ (a fraction) exceeds ``max_sigma`` (whole-pattern route)."""
        if self.lowdose is None:
            raise ParameterError("σ maps come with the whole-pattern route: set_route('whole_pattern') first",
                                 field="route")
        self.lowdose.set_sigma_limit(max_sigma)
        return self

    def _whole_pattern_params(self) -> WholePatternFitParams:
        """The fit started from what the disk route shows: basis (detector frame), reference region, frame."""
        p = self.strain_params
        fields: dict[str, Any] = {"reference_region": p.reference_region, "frame_deg": p.frame_deg}
        if p.g1 is not None and p.g2 is not None:
            D = distortion_matrix(self.calibration.ellipse)  # the fit works on the detector, g1, g2 are corrected
            fields["g1"] = tuple((D @ np.asarray(p.g1, float)).tolist())
            fields["g2"] = tuple((D @ np.asarray(p.g2, float)).tolist())
        return WholePatternFitParams(**fields)

    def _from_lowdose(self, event: str, value: Any) -> None:
        if event == "maps":
            self._emit("maps", {n: v for n, v in value.items() if n not in SIGMA_NAMES})
            self._emit("sigma_maps", {n: v for n, v in value.items() if n in SIGMA_NAMES})
        elif event == "update":
            self._notify()
        elif event == "message":
            self._say(*value)
        elif event == "status":
            self._set_status(value)
        elif event != "closed":
            self._emit(event, value)

    def _route_recipe(self) -> Recipe | None:
        return None if self.lowdose is None else self.lowdose.params

    def _route_pending(self) -> bool:
        return self.lowdose is not None and self.lowdose._pending()

    def _close_route(self) -> None:
        if self.lowdose is not None:
            self.lowdose.close()
