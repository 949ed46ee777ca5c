"""Pieces of the disk tuner session: its requests, the strip update, and the texts and tallies it shows.

The histogram of candidate values and the positions spread over the scan are
small glue for the tuner's display; they read analysis results only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..analysis.disk_refine import SPOT_RADIUS_PX
from ..analysis.disks import Candidates, FindDisksParams, PeakTable, resolve_subpixel
from ..analysis.probe import ProbeTemplate
from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import ParameterError
from ..core.recipe import Recipe

__all__ = ["StripRequest", "StripUpdate", "CORRELATION_FIELDS", "TEMPLATE_SOURCES", "DEFAULT_POSITIONS",
           "HIST_BINS", "MIN_LOG_REL", "spread_positions", "relative_values", "candidate_histogram",
           "detect_message", "find_disks_record", "strip_origins", "refinement_note"]

#: Fields of FindDisksParams that change the correlation maps (the others only re-filter them).
# subpixel too: only disks.COARSE_GRID_REFINED let the correlation be sampled every other pixel (correlation_step)
CORRELATION_FIELDS = ("template", "corr_power", "sigma_dp", "sigma_cc", "log", "radial_background", "subpixel")
#: What the template can be made from, as the source buttons name them.
TEMPLATE_SOURCES = {"synthetic": "synthetic", "vacuum region": "vacuum_region", "vacuum image": "vacuum_image"}
#: How many scan positions the strip shows by default.
DEFAULT_POSITIONS = 6
#: Histogram bins of the candidate values.
HIST_BINS = 40
#: Smallest relative threshold the tuner offers, as log10.
MIN_LOG_REL = -4.0


@dataclass
class StripRequest:
    """One snapshot of what the strip should show (the worker computes it; the newest wins)."""

    params: FindDisksParams
    positions: tuple[tuple[int, int], ...]
    started: float = field(default_factory=time.perf_counter)


@dataclass
class StripUpdate:
    """What the worker computed for a request; messages instead of exceptions."""

    template: ProbeTemplate | None = None
    template_changed: bool = False
    peaks: PeakTable | None = None
    candidates: Candidates | None = None
    valid: np.ndarray | None = None
    template_error: str = ""
    detect_error: str = ""
    kind: str = "filter"


def spread_positions(scan_shape: tuple[int, int], n: int) -> list[tuple[int, int]]:
    """``n`` positions on a two-row grid over the scan (corners avoided: edges are often odd).

    >>> spread_positions((10, 12), 4)
    [(2, 3), (2, 9), (7, 3), (7, 9)]
    """
    if n < 1:
        raise ParameterError(f"n_positions must be at least 1, got {n}", field="n_positions")
    Rx, Ry = scan_shape
    rows = 1 if n == 1 else 2
    cols = math.ceil(n / rows)
    return [(int((2 * (k // cols) + 1) * Rx / (2 * rows)), int((2 * (k % cols) + 1) * Ry / (2 * cols)))
            for k in range(n)]


def relative_values(cands: Candidates, relative_to_peak: int) -> np.ndarray:
    """Each candidate's correlation over its pattern's ``relative_to_peak``-th strongest (NaN if none)."""
    t = cands.table
    out = np.full(len(t), np.nan)
    for p in range(len(t.offsets) - 1):
        s = slice(int(t.offsets[p]), int(t.offsets[p + 1]))
        v = t.correlation[s]
        if v.size > relative_to_peak:
            ref = np.sort(v)[::-1][relative_to_peak]
            if ref > 0:
                out[s] = v / ref
    return out


def candidate_histogram(cands: Candidates, p: FindDisksParams) -> tuple[np.ndarray, np.ndarray] | None:
    """``(bin centres of log10(value / reference), counts (2, bins): kept, rejected)``; None if no candidate."""
    rel = relative_values(cands, p.relative_to_peak)
    ok = np.isfinite(rel) & (rel > 0)
    if not ok.any():
        return None
    logs = np.log10(rel[ok])
    lo = min(float(logs.min()), MIN_LOG_REL)
    hi = max(float(logs.max()), 0.0) + 1e-9
    edges = np.linspace(lo, hi, HIST_BINS + 1)
    kept = cands.kept[ok]
    nk, _ = np.histogram(logs[kept], edges)
    nr, _ = np.histogram(logs[~kept], edges)
    return 0.5 * (edges[1:] + edges[:-1]), np.vstack([nk, nr])


def detect_message(up: StripUpdate, p: FindDisksParams) -> str:
    """Why the strip shows no disks, if it does not (empty string when all is well)."""
    parts = []
    if up.valid is not None and not up.valid.all():
        bad = [str(k + 1) for k in np.flatnonzero(~up.valid)]
        parts.append(f"pattern {', '.join(bad)} holds NaN or infinite values and is skipped (as in a full run)")
    valid = up.valid if up.valid is not None else np.ones(len(up.peaks.counts().reshape(-1)), bool)
    if valid.any() and len(up.peaks) == 0:
        top = float(up.candidates.table.correlation.max()) if len(up.candidates.table) else 0.0
        parts.append(f"the thresholds reject every peak in these patterns (strongest candidate {top:.4g}; "
                     f"min abs {p.min_absolute_intensity:.4g}, min rel {p.min_relative_intensity:.4g}, edge "
                     f"{p.edge_boundary}): lower them or pick other positions")
    return "; ".join(parts)


def refinement_note(p: FindDisksParams, radius: float | None) -> str:
    """Which sub-pixel refinement the record uses, and why when ``subpixel='auto'`` chose it.

    >>> refinement_note(FindDisksParams(), 2.0)
    'auto → spot: probe radius 2.00 px < 4 px, small spots are refined by their centroid'
    >>> refinement_note(FindDisksParams(subpixel="dft"), 2.0)
    'dft'
    >>> refinement_note(FindDisksParams(), 8.0).endswith("then fitted with the recorded central disk")
    True
    """
    fit = ", then fitted with the recorded central disk" if p.probe_fit else ""
    if p.subpixel != "auto":
        return p.subpixel + (fit if p.subpixel == "disk" else "")
    if radius is None:
        return "auto: chosen by the probe radius once the template is made"
    chosen = resolve_subpixel(p, radius).subpixel
    why = (f"probe radius {radius:.2f} px < {SPOT_RADIUS_PX:g} px, small spots are refined by their centroid"
           if chosen == "spot" else
           f"probe radius {radius:.2f} px ≥ {SPOT_RADIUS_PX:g} px, each disk is correlated with the probe{fit}")
    return f"auto → {chosen}: {why}"


def find_disks_record(cube: DataCube, params: Recipe | FindDisksParams | dict | str
                      ) -> tuple[DataCube, FindDisksParams]:
    """``(cube, record)`` of a tuner showing ``params`` (a Recipe, a FindDisksParams, or their dict / JSON).

    Raises
    ------
    ParameterError
        When the recipe holds no find_disks step.
    """
    if isinstance(params, str):
        params = Recipe.from_json(params)
    elif isinstance(params, dict):
        params = Recipe.from_dict(params) if params.get("type") == "recipe" else FindDisksParams.from_dict(params)
    if isinstance(params, Recipe):
        if params.calibration is not None:
            cube = cube.with_calibration(params.calibration)
        found = [s for s in params.steps if isinstance(s, FindDisksParams)]
        if not found:
            raise ParameterError("this recipe has no find_disks step to tune", field="steps")
        params = found[0]
    if not isinstance(params, FindDisksParams):
        raise ParameterError(f"from_params needs a Recipe or FindDisksParams, got {type(params).__name__}")
    return cube, params


def strip_origins(cal: Calibration, positions: tuple[tuple[int, int], ...]) -> np.ndarray | None:
    """Pattern origins of the strip's positions, (n, 2) px, from the calibration (None: not calibrated)."""
    if getattr(cal, "origin_map", None) is not None:
        om = np.asarray(cal.origin_map, dtype=np.float64)
        return np.array([om[x, y] for x, y in positions])
    if cal.origin is not None:
        return np.tile(np.asarray(cal.origin, dtype=np.float64), (len(positions), 1))
    return None
