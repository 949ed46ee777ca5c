"""What the radial profiler computes and draws, apart from its state: defaults, k <-> detector radii, curves.

Plain functions over :class:`~fourd_widgets.analysis.fem.RadialStatistics` and
the FEM and PDF results, so that the session (:mod:`.radial_profiler`) only
holds records, workers and events.

Examples
--------
>>> band_overlay(0, (0.3, 0.36), (32.0, 31.5), 0.03)["r_out"]
12.0
>>> k_from_overlay({"r_in": 10.0, "r_out": 12.0}, 0.03)
(0.3, 0.36)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..analysis.fem import RadialStatistics, RadialStatisticsParams
from ..analysis.fem_maps import FEMResult
from ..analysis.pdf import PDFParams, PDFResult
from ..analysis.polar import PolarParams
from ..core.calibration import Calibration
from ..core.errors import MissingCalibrationError
from .overlays import make_overlay

__all__ = ["BAND_COLORS", "PDF_COLOR", "PDF_ID", "band_id", "default_statistics", "default_bands", "default_pdf",
           "band_overlay", "pdf_overlay", "k_from_overlay", "pixel_step", "beam_origin", "profiles", "band_curve",
           "require_origin", "MAP_FEM", "pdf_curves"]

#: Colours of the k bands (the first is the band map's); the PDF range is drawn in its own.
BAND_COLORS = ("#ffd23d", "#3dd6ff", "#ff66ff", "#66ff66")
PDF_COLOR = "#ff9933"
PDF_ID = "pdf"
#: Name of the local FEM map among the maps shown.
MAP_FEM = "local FEM"


def band_id(index: int) -> str:
    """Overlay id of k band ``index``."""
    return f"band{index}"


def require_origin(calibration: Calibration) -> None:
    """Refuse a cube whose patterns have no calibrated origin (every ring is drawn about it)."""
    if calibration.origin is None and calibration.origin_map is None:
        raise MissingCalibrationError(
            "origin", "the radial profiler", "Measure it (fw.analysis.measure_origin, or the CalibrationTool) or "
            "set cube.calibration = cube.calibration.replace(origin=(qx, qy)) where the direct beam is")


def beam_origin(calibration: Calibration) -> tuple[float, float]:
    """The origin the rings are drawn about (the mean of an origin map)."""
    if calibration.origin_map is not None:
        o = np.nanmean(np.asarray(calibration.origin_map, float).reshape(-1, 2), axis=0)
        return float(o[0]), float(o[1])
    require_origin(calibration)
    return float(calibration.origin[0]), float(calibration.origin[1])  # type: ignore[index]


def pixel_step(stats: RadialStatistics) -> float:
    """Units of the k axis per detector px (1 when the axis is in px)."""
    if stats.k is None or stats.q.size < 2:
        return 1.0
    return float((stats.k[-1] - stats.k[0]) / (stats.q[-1] - stats.q[0]))


def default_statistics() -> RadialStatisticsParams:
    """The profiler's pass: 90 angles, symmetry orders 2 to 12, the polar cube kept (profiles of any region)."""
    return RadialStatisticsParams(polar=PolarParams(n_theta=90), symmetry_orders=(2, 3, 4, 6, 8, 10, 12),
                                  keep_polar=True)


def _strongest_ring(stats: RadialStatistics) -> float:
    """k of the highest mean intensity outside the inner fifth of the radii (the first amorphous ring)."""
    ax = stats.axis
    prof = stats.mean_profile()
    outer = ax > ax[0] + 0.2 * (ax[-1] - ax[0])
    prof = np.where(outer & np.isfinite(prof), prof, -np.inf)
    return float(ax[int(np.argmax(prof))]) if np.isfinite(prof).any() else float(ax[ax.size // 2])


def default_bands(stats: RadialStatistics) -> tuple[tuple[float, float], ...]:
    """One band on the strongest ring, 8 % of the radial range wide."""
    ax = stats.axis
    k0, half = _strongest_ring(stats), 0.04 * float(ax[-1] - ax[0])
    lo, hi = max(float(ax[0]), k0 - half), min(float(ax[-1]), k0 + half)
    return ((round(lo, 4), round(hi, 4)),)


def default_pdf(stats: RadialStatistics) -> PDFParams:
    """G(r) from the first measured k (past a beam stop) to the end of the profile, up to 10 Å."""
    prof = stats.mean_profile()
    ax = stats.axis
    first = float(ax[np.isfinite(prof)][0]) if np.isfinite(prof).any() else float(ax[0])
    k_min = round(max(0.1, first + 2 * pixel_step(stats)), 4)
    width = round(min(0.1, 0.1 * (float(ax[-1]) - k_min)), 4)
    return PDFParams(k_min=k_min, k_width=max(width, 0.0), r_max=10.0)


def band_overlay(index: int, k_range: Any, origin: tuple[float, float], step: float) -> dict[str, Any]:
    """The annulus of k band ``index`` on the detector (px about ``origin``)."""
    lo, hi = (float(v) / step for v in k_range)
    return make_overlay("annulus", band_id(index), BAND_COLORS[index % len(BAND_COLORS)], x=origin[0], y=origin[1],
                        r_in=round(lo, 3), r_out=round(hi, 3), label=f"k band {index + 1}")


def pdf_overlay(params: PDFParams, k_end: float, origin: tuple[float, float], step: float) -> dict[str, Any]:
    """The annulus of the PDF's k range (k_min to k_max or the end of the profile)."""
    hi = k_end if params.k_max is None else params.k_max
    return make_overlay("annulus", PDF_ID, PDF_COLOR, x=origin[0], y=origin[1], r_in=round(params.k_min / step, 3),
                        r_out=round(hi / step, 3), label="G(r) k range")


def k_from_overlay(ov: dict[str, Any], step: float) -> tuple[float, float]:
    """``(lo, hi)`` in k units of an annulus drawn in detector px."""
    return round(float(ov["r_in"]) * step, 5), round(float(ov["r_out"]) * step, 5)


def band_curve(k: np.ndarray, V: np.ndarray, bands: Any) -> tuple[np.ndarray, np.ndarray]:
    """V(k) inside the bands only (NaN between them): the highlighted part of the V(k) plot."""
    inside = np.zeros(k.size, bool)
    for lo, hi in bands:
        inside |= (k >= lo) & (k <= hi)
    return k, np.where(inside, V, np.nan)


def profiles(result: FEMResult) -> dict[str, Any]:
    """The curves of the plots: the mean profile, V(k) two ways, and V(k) inside the bands."""
    v = result.variance
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        band_mean = float(np.nanmean(result.band_map)) if np.isfinite(result.band_map).any() else float("nan")
    _, inside = band_curve(v.k, v.V_mean_of_variance, result.params.k_ranges)
    return {"k": v.k, "units": v.units, "mean": v.mean_profile, "V": v.V_mean_of_variance,
            "V_variance_of_mean": v.V_variance_of_mean, "V_band": inside, "bands": result.params.k_ranges,
            "band_mean": band_mean}


def pdf_curves(result: PDFResult | None) -> dict[str, Any] | None:
    """G(r) (and g(r) with a density) for the plot; None when there is none."""
    if result is None:
        return None
    return {"r": result.r, "G": result.G, "g": result.g}
