"""The FEM step a user tunes by dragging k ranges: V(k) and band maps from stored radial statistics.

The pass over the data is :func:`fourd_widgets.analysis.fem.radial_statistics`;
everything here reads only its small per-position arrays, so moving a k band
costs milliseconds (bench/RESULTS.md), and the record of the bands
replays the same maps.

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.core import Calibration, DataCube
>>> from fourd_widgets.analysis.polar import PolarParams
>>> from fourd_widgets.analysis.fem import radial_statistics
>>> rng = np.random.default_rng(0)
>>> cube = DataCube(rng.random((4, 4, 32, 32)), Calibration(origin=(15.5, 15.5)))
>>> st = radial_statistics(cube, polar=PolarParams(q_max=14, n_theta=24), progress=False)
>>> res = fem(st, k_ranges=((4, 6), (9, 11)))
>>> res.band_map.shape, res.variance.V_ring.shape
((4, 4), (14,))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..core.errors import ParameterError
from ..core.params import Params, param
from .fem import FEMVariance, RadialStatistics, fem_variance, local_fem_map, symmetry_map
from .polar import resolve_params
from .polar_results import H5Fields

__all__ = ["FEMParams", "FEMResult", "fem"]


@dataclass(frozen=True, eq=False)
class FEMParams(Params):
    """Record of the FEM view: the k bands of the local map, the symmetry order, the region of V(k)."""

    step = "fem"
    k_ranges: tuple[tuple[float, float], ...] = param(
        ((0.29, 0.35),), doc="k bands (lo, hi) of the local FEM map, in the statistics' units (1/Å or px)")
    symmetry_order: int | None = param(None, ge=1, doc="angular order of the symmetry map (needs it computed)")
    region: np.ndarray | None = param(None, doc="(Rx, Ry) bool: positions of V(k); None: the pass's region")

    def validate(self) -> None:
        if not self.k_ranges:
            raise ParameterError("fem.k_ranges: give at least one (lo, hi) band", field="k_ranges")
        for lo, hi in self.k_ranges:
            if not hi > lo:
                raise ParameterError(f"fem.k_ranges: band ({lo:g}, {hi:g}) must have hi > lo", field="k_ranges")


@dataclass(frozen=True, eq=False)
class FEMResult(H5Fields):
    """V(k) three ways, the local FEM map of the bands and (optionally) their symmetry map."""

    variance: FEMVariance
    band_map: np.ndarray
    symmetry_map: np.ndarray | None
    params: FEMParams


def fem(stats: RadialStatistics, params: FEMParams | Mapping | None = None, **overrides: Any) -> FEMResult:
    """V(k) and the band maps of ``params`` from radial statistics (no pass over the data).

    Parameters
    ----------
    stats : RadialStatistics
        From :func:`radial_statistics`.
    params : FEMParams, optional
    **overrides
        Fields of :class:`FEMParams` (``k_ranges=...`` while dragging).
    """
    p = resolve_params(FEMParams, params, overrides)
    V = fem_variance(stats, p.region)
    band = local_fem_map(stats, list(p.k_ranges))
    sym = None
    if p.symmetry_order is not None:
        maps = [symmetry_map(stats, r, p.symmetry_order) for r in p.k_ranges]
        sym = np.nanmean(np.stack(maps), axis=0) if len(maps) > 1 else maps[0]
    return FEMResult(V, band, sym, p)
