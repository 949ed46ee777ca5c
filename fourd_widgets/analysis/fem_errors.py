"""How precisely counted data can give the FEM variance V(k): the Poisson (Cramér–Rao) bound.

Counting noise limits V(k) however it is estimated. With the pixels of every
pattern independent Poisson counts of means ``λ_p`` (electrons), the Fisher
information for ``λ_p`` is ``1 / λ_p``, so any unbiased estimate of a
statistic ``V(λ)`` has a variance of at least the Cramér–Rao bound [1]_

    ``Var(V̂) ≥ Σ_p λ_p (∂V / ∂λ_p)²``   (the sum over every pixel of every pattern).

:func:`fem_variance_bound` computes it for the three definitions of
:mod:`fourd_widgets.analysis.fem`, exactly through the pixel-split polar bins,
from noise-free (or high-dose) data. V is unchanged when the intensities are
scaled, so its derivative scales as ``1 / dose`` and the bound on the relative
standard error as ``1 / sqrt(dose)``: one pass gives the bound at every dose,
and the dose a wanted precision needs. Shot-noise removal
(``radial_statistics(counted=True)``) makes the estimate unbiased; its spread
over noise draws then sits at or a little above this bound (the bound omits the
second-order term of the Poisson variance, which matters below about one
electron per bin).

Derivatives, for one ring ``q`` with ``T`` valid angular bins, ``x_Rθ`` the bin
means, ``m_R`` their angular mean, ``M = <m_R>_R`` over the ``N`` positions:

* ``V_ring = <Var_θ x>_R / M²``: ``∂V/∂x_Rθ = 2 [(x_Rθ - m_R) - V M] / (N T M²)``;
* ``V_variance_of_mean = Var_R m / M²``: ``∂V/∂x_Rθ = 2 [(m_R - M) - V M] / (N T M²)``;
* ``V_mean_of_variance = <Var_R x_θ / μ_θ²>_θ`` (``μ_θ`` the scan mean of bin θ,
  ``V_θ`` its ratio): ``∂V/∂x_Rθ = 2 [(x_Rθ - μ_θ) - V_θ μ_θ] / (N T μ_θ²)``;

and a bin mean is ``x_b = Σ_p w_pb λ_p / A_b``, so ``∂V/∂λ_p = Σ_b w_pb ∂V/∂x_b / A_b``.

References
----------
.. [1] H. Cramér, *Mathematical Methods of Statistics* (1946), ch. 32; for FEM
   counting statistics see also T. Li, M. M. J. Treacy et al., Ultramicroscopy
   136, 1 (2014) (the shot-noise term of V).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..core.errors import ParameterError
from ..engine.job import Job
from ..engine.run import run_job
from ..kernels.polar import pixel_gradient_power
from .fem import RadialStatistics, RadialStatisticsParams, fem_variance, k_band, radial_statistics
from .polar import PolarGroups, as_cube, engine_options, resolve_params, split_block
from .polar_results import H5Fields

__all__ = ["FEMVarianceBound", "fem_variance_bound", "DEFINITIONS"]

#: The three definitions of V, in the order of the bound's columns.
DEFINITIONS = ("V_mean_of_variance", "V_variance_of_mean", "V_ring")


@dataclass(frozen=True, eq=False)
class FEMVarianceBound(H5Fields):
    """Cramér–Rao bound on the relative standard error of V(k) from counted patterns.

    Attributes
    ----------
    k : (n_q,) array
        Radial axis in ``units``.
    units : str
    V : (3, n_q) array
        V(k) of the noise-free data, rows in the order of :data:`DEFINITIONS`.
    relative : (3, n_q) array
        ``σ(V) / V`` at one electron per unit of the data's intensity; divide by
        ``sqrt(dose)`` for another dose (see :meth:`at`).
    bands : (n_bands, 2) array
        k ranges (in ``units``) whose band-mean V was bounded too.
    band_V, band_relative : (3, n_bands) arrays
        The band means of V and their relative bound at unit dose.
    """

    k: np.ndarray
    units: str
    V: np.ndarray
    relative: np.ndarray
    bands: np.ndarray
    band_V: np.ndarray
    band_relative: np.ndarray

    def at(self, dose: float, definition: str = "V_ring", band: int | None = None) -> np.ndarray | float:
        """Relative standard error of V at ``dose`` electrons per unit intensity.

        Parameters
        ----------
        dose : float
            Electrons per unit of the data's intensity (for patterns that sum to
            1: electrons per pattern).
        definition : str
            One of :data:`DEFINITIONS`.
        band : int, optional
            Index into ``bands``; None gives the bound for every k bin.
        """
        if dose <= 0:
            raise ParameterError(f"fem_variance_bound: the dose must be positive, got {dose}", field="dose")
        row = _row(definition)
        rel = self.relative[row] if band is None else self.band_relative[row, band]
        return rel / np.sqrt(dose)

    def dose_for(self, precision: float, definition: str = "V_ring", band: int = 0) -> float:
        """Electrons per unit intensity for a relative standard error of ``precision`` in a band."""
        if not 0 < precision < 1:
            raise ParameterError(f"fem_variance_bound: precision is a fraction in (0, 1), got {precision}",
                                 field="precision")
        return float((self.band_relative[_row(definition), band] / precision) ** 2)


def _row(definition: str) -> int:
    if definition not in DEFINITIONS:
        raise ParameterError(f"fem_variance_bound: unknown definition {definition!r}; use one of "
                             f"{', '.join(DEFINITIONS)}", field="definition")
    return DEFINITIONS.index(definition)


class FEMBoundJob(Job):
    """Per block: the derivatives of each V with respect to the bins, carried back to the pixels."""

    name = "FEM variance bound"

    def __init__(self, groups: PolarGroups, stats: RadialStatistics, region: np.ndarray,
                 band_rows: list[np.ndarray]) -> None:
        self.g = groups
        self.region = region
        self.bands = band_rows
        fv = fem_variance(stats)
        self.n = float(region.sum())
        self.M = fv.mean_profile
        self.V = np.stack([getattr(fv, d) for d in DEFINITIONS])
        with np.errstate(invalid="ignore", divide="ignore"):
            self.mu = stats.bin_sum / stats.bin_count
            var = stats.bin_sumsq / stats.bin_count - self.mu**2
            self.V_bin = var / self.mu**2
        self.nq = stats.q.size

    def init(self, cube: Any) -> dict:
        return {"ring": np.zeros((3, self.nq)), "band": np.zeros((3, len(self.bands)))}

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> dict:
        nx, ny = block.shape[:2]
        flat = block.reshape(nx * ny, *block.shape[2:])
        use = np.ascontiguousarray(self.region[rx, ry]).reshape(-1)
        out = self.init(None)
        M, V, N = self.M, self.V, self.n
        for geo, idx in self.g.groups(rx, ry):
            keep = idx[use[idx]]
            if keep.size == 0:
                continue
            x = split_block(flat, geo, keep)  # (m, nt, nq) bin sums
            valid = geo.valid
            T = np.maximum(valid.sum(axis=0), 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                x = np.where(valid, x / geo.area, 0.0)
                m = x.sum(axis=1) / T  # (m, nq) angular means over valid bins
                c = 2.0 / (N * T * M**2)
                grads = [
                    2.0 * ((x - self.mu) - self.V_bin * self.mu) / (N * T * self.mu**2),
                    np.broadcast_to(c * ((m - M) - V[1] * M)[:, None, :], x.shape),
                    c * ((x - m[:, None, :]) - V[2] * M),
                ]
            scale = geo.scale().reshape(valid.shape)
            sub = flat[keep]
            for d, g in enumerate(grads):
                g = np.where(valid & np.isfinite(g), g, 0.0) * scale  # derivative per bin sum
                g = np.ascontiguousarray(g.reshape(keep.size, -1))
                pixel_gradient_power(sub, geo.indptr, geo.bins, geo.weights, g, self.nq, True, out["ring"][d])
                for b, rows in enumerate(self.bands):
                    gb = np.zeros_like(g).reshape(keep.size, *valid.shape)
                    gb[:, :, rows] = g.reshape(keep.size, *valid.shape)[:, :, rows] / rows.size
                    acc = out["band"][d, b:b + 1]
                    pixel_gradient_power(sub, geo.indptr, geo.bins, geo.weights,
                                         np.ascontiguousarray(gb.reshape(keep.size, -1)), self.nq, False, acc)
        return out

    def merge(self, acc: dict, part: dict, rx: slice, ry: slice) -> dict:
        acc["ring"] += part["ring"]
        acc["band"] += part["band"]
        return acc


def fem_variance_bound(data: Any, params: RadialStatisticsParams | Mapping | None = None, *,
                       k_ranges: Any = (), progress: Any = None, cancel: Any = None, workers: int | None = None,
                       scheduler: Any = None, **overrides: Any) -> FEMVarianceBound:
    """Cramér–Rao bound on the precision of V(k) from counted patterns, from noise-free data.

    Parameters
    ----------
    data : DataCube
        Noise-free (or high-dose) patterns, calibrated with an origin; the
        intensity unit sets the dose unit (see :meth:`FEMVarianceBound.at`).
    params : RadialStatisticsParams, optional
        The binning of the V(k) to bound (``counted`` must be False here: the
        data are the expected counts).
    k_ranges : sequence of (k0, k1), optional
        Bands (in the calibrated units, as :func:`fourd_widgets.analysis.fem.k_band`)
        whose band-mean V is bounded too.
    progress, cancel, workers, scheduler
        Options of :func:`fourd_widgets.engine.run_job`.
    **overrides
        Fields of :class:`RadialStatisticsParams`.

    Returns
    -------
    FEMVarianceBound

    Examples
    --------
    Speckle of contrast 0.3 on a uniform ring, 2 positions: the relative bound
    falls as one over the square root of the dose.

    >>> from fourd_widgets.core import Calibration, DataCube
    >>> from fourd_widgets.analysis.polar import PolarParams
    >>> rng = np.random.default_rng(0)
    >>> cube = DataCube(1 + 0.3 * rng.standard_normal((2, 2, 32, 32)), Calibration(origin=(15.5, 15.5)))
    >>> b = fem_variance_bound(cube, polar=PolarParams(q_max=12, n_theta=12), progress=False)
    >>> bool(np.isclose(b.at(100.0)[5] / b.at(400.0)[5], 2.0))
    True
    """
    p = resolve_params(RadialStatisticsParams, params, overrides)
    if p.counted:
        raise ParameterError("fem_variance_bound takes noise-free (expected) intensities: run it with "
                             "counted=False on a noise-free or high-dose cube", field="counted")
    cube = as_cube(data)
    stats = radial_statistics(cube, p, progress=False, cancel=cancel, workers=workers, scheduler=scheduler)
    region = np.ones(cube.scan_shape, bool) if p.region is None else p.region
    ranges = [tuple(map(float, r)) for r in k_ranges]
    band_rows = [np.nonzero(k_band(stats, r))[0] for r in ranges]
    groups = PolarGroups(p.polar, cube.calibration, cube.scan_shape, cube.detector_shape, "FEM variance bound")
    job = FEMBoundJob(groups, stats, region, band_rows)
    acc = run_job(cube, job, **engine_options(progress, cancel, workers, scheduler))
    fv = fem_variance(stats)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rel = np.sqrt(acc["ring"]) / np.abs(job.V)
        band_V = np.array([[np.nanmean(job.V[d, rows]) for rows in band_rows] for d in range(3)]).reshape(3, -1)
        band_rel = np.sqrt(acc["band"]) / np.abs(band_V)
    return FEMVarianceBound(fv.k, fv.units, job.V, rel, np.array(ranges, float).reshape(-1, 2), band_V, band_rel)
