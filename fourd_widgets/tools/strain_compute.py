"""What the strain session computes on its worker: the lattice fit (kept while only the reference moves) and the maps."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.strain import LatticeFit, StrainMap, fit_lattice, strain_map_from_fit
from ..core.errors import FourDError, ParameterError
from .base import Request

__all__ = ["StrainCompute", "MAP_NAMES", "DISPLAY_SCALE", "FIT_FIELDS", "symmetric_limit"]

#: The maps shown, in order (StrainMap attribute names).
MAP_NAMES = ("exx", "eyy", "exy", "theta_deg")
#: Strain maps are shown in percent (the StrainMap holds fractions).
DISPLAY_SCALE = {"exx": 100.0, "eyy": 100.0, "exy": 100.0, "theta_deg": 1.0}
#: Fit options whose change needs a new lattice fit (the others only redo the cheap strain step).
FIT_FIELDS = ("g1", "g2", "max_peak_spacing", "min_num_peaks", "weights", "fit_origin", "refine")


class StrainCompute:
    """Worker methods of the strain session (mixed into it; uses its state)."""

    peaks: Any
    calibration: Any
    fit: LatticeFit | None
    strain: StrainMap | None
    lowdose: Any

    def _compute(self, req: Request) -> tuple[LatticeFit, StrainMap]:
        try:
            return self._fit_and_strain(req)
        finally:
            self._finish(req.cancel)

    def _fit_and_strain(self, req: Request) -> tuple[LatticeFit, StrainMap]:
        p = req.params
        key = tuple(getattr(p, f) for f in FIT_FIELDS)
        with self._lock:
            fit = self.fit if key == self._fit_key else None
        if fit is None:
            # the same calls as strain_map(peaks, p, calibration), split so the cheap part can rerun alone
            fit = fit_lattice(self.peaks, p.g1, p.g2, self.calibration, max_peak_spacing=p.max_peak_spacing,
                              min_num_peaks=p.min_num_peaks, weights=p.weights, fit_origin=p.fit_origin,
                              refine=p.refine)
            if not fit.valid.any():
                raise ParameterError(
                    f"no position could be fitted (at most {int(fit.num_peaks.max())} peaks indexed, "
                    f"{p.min_num_peaks} needed): check g1/g2 on the Bragg vector map, raise max spacing or lower "
                    "min peaks", field="min_num_peaks")
        if req.cancel.is_set():
            raise _Cancelled()
        ref = None if p.reference_g1 is None else (p.reference_g1, p.reference_g2)
        units = self.peaks.units if self.peaks.units != "px" else None
        try:
            sm = strain_map_from_fit(fit, self.calibration, reference=ref, reference_region=p.reference_region,
                                     frame_deg=p.frame_deg, units=units)
        except FourDError as exc:
            raise _ReferenceError(str(exc), fit, key) from exc
        return fit, sm

    def _deliver(self, req: Request, result: tuple[LatticeFit, StrainMap]) -> None:
        fit, sm = result
        if req.cancel.is_set():
            self._stale = False
            self._set_status("cancelled; the maps shown are the previous ones")
            return
        with self._lock:
            self.fit, self.strain = fit, sm
            self._fit_key = tuple(getattr(req.params, f) for f in FIT_FIELDS)
        self._say("reference", "")
        shown = {n: getattr(sm, n) * DISPLAY_SCALE[n] for n in MAP_NAMES}
        # one symmetric scale for the three strain components (comparable colours), its own for θ
        strain_lim = symmetric_limit(np.stack([shown[n] for n in MAP_NAMES[:3]]))
        if self.lowdose is None:  # the whole-pattern route shows its own maps and fit messages
            self._say("fit", "")
            self._emit("maps", {n: (shown[n], strain_lim if n != "theta_deg" else symmetric_limit(shown[n]))
                                for n in MAP_NAMES})
        self._show_pattern()
        self._stale = False
        if self.lowdose is None:
            self._set_status(f"{sm.mask.size - int(sm.mask.sum())}/{sm.mask.size} positions fitted")
        self._notify()

    def _failed(self, req: Request, exc: BaseException) -> None:
        self._stale = False
        if isinstance(exc, _Cancelled):
            self._set_status("cancelled; the maps shown are the previous ones")
            return
        self._set_status("")
        if isinstance(exc, _ReferenceError):
            with self._lock:  # the fit is good; only the reference is not
                self.fit, self._fit_key = exc.fit, exc.key
            self._fail("reference", exc.__cause__ or exc)
        else:
            self._fail("fit", exc)


class _Cancelled(Exception):
    """The user pressed cancel: the result is dropped."""


class _ReferenceError(Exception):
    """The lattice fit worked but the reference region holds no valid fit (kept so it need not rerun)."""

    def __init__(self, message: str, fit: LatticeFit, key: tuple) -> None:
        super().__init__(message)
        self.fit, self.key = fit, key


def symmetric_limit(values: np.ndarray) -> float:
    """Display limit ``L`` of a signed map shown on ``[-L, L]``: the 99.5th percentile of ``|v|``.

    >>> symmetric_limit(np.array([np.nan, -2.0, 1.0]))
    1.995
    """
    finite = np.abs(values[np.isfinite(values)])
    if not finite.size:
        return 1.0
    return max(float(np.percentile(finite, 99.5)), 1e-9)
