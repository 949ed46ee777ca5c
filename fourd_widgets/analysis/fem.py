"""Radial statistics and fluctuation electron microscopy (FEM), after the polar transform.

One pass over the cube (:func:`radial_statistics`) keeps, per scan position and
radial bin, the annular mean and the variance over θ of the polar bins, and
over the region it sums each polar bin and its square. From those, without
touching the data again:

* ``V_mean_of_variance(k)``: the annular mean of the variance image,
  ``< Var_R[I(R, k, θ)] / <I(R, k, θ)>_R² >_θ`` (Voyles and Abelson [1]_);
* ``V_variance_of_mean(k)``: the variance of the annular mean,
  ``Var_R[<I>_θ] / <<I>_θ>_R²`` (Daulton, Bondi and Kelton [2]_; py4DSTEM's
  ``radial_var_norm``);
* ``V_ring(k)``: the mean annular variance ``<Var_θ I>_R / <<I>_θ>_R²`` (the
  scan average of the local FEM numerator);
* local FEM maps ``Var_θ I / <I>_θ²`` per position in a k band (py4DSTEM's
  ``calculate_FEM_local``), and annular symmetry maps ``|F_n| / F_0`` of the
  angular Fourier series, orders 2 to 12.

Counted data (``counted=True``): every variance above has its Poisson term
removed, computed exactly for the split bins. A bin mean ``x_b = Σ w_pb I_p / A_b``
has shot variance ``Σ w_pb² I_p / A_b²`` (an unbiased estimate, since
``E[I_p] = λ_p`` for counts), and a ring mean ``Σ u_p I_p`` has ``Σ u_p² I_p``;
``gain`` converts the data to electrons first. How precise V can be at a given
dose (the Cramér–Rao bound of counting) is :func:`fourd_widgets.analysis.fem_errors.fem_variance_bound`.

References
----------
.. [1] P. M. Voyles and J. R. Abelson, Sol. Energy Mater. Sol. Cells 78, 85 (2003);
   M. M. J. Treacy, J. M. Gibson, L. Fan, D. J. Paterson and I. McNulty,
   Rep. Prog. Phys. 68, 2899 (2005).
.. [2] T. L. Daulton, K. S. Bondi and K. F. Kelton, Ultramicroscopy 110, 1279 (2010).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.job import Job
from ..engine.run import run_job
from ..kernels.polar import polar_sums, ring_statistics
from .polar import PolarGroups, PolarParams, as_cube, engine_options, k_axis, resolve_params, split_block
from .polar_results import H5Fields

__all__ = ["RadialStatisticsParams", "RadialStatistics", "FEMVariance", "radial_statistics", "fem_variance",
           "local_fem_map", "symmetry_map", "k_band"]


@dataclass(frozen=True, eq=False)
class RadialStatisticsParams(Params):
    """Record of the radial-statistics pass (FEM, radial profiles, symmetry)."""

    step = "radial_statistics"
    polar: PolarParams = param(PolarParams(), doc="the polar binning")
    region: np.ndarray | None = param(None, doc="(Rx, Ry) bool: positions in the scan averages; None: all")
    counted: bool = param(False, doc="the data are counts (Poisson): remove the shot-noise variance")
    gain: float = param(1.0, gt=0, units="counts/e", doc="counts per electron, with counted")
    symmetry_orders: tuple[int, ...] = param((), doc="angular Fourier orders to map, e.g. (2, 3, 4, 6)")
    keep_polar: bool = param(False, doc="keep the polar cube (Rx, Ry, n_theta, n_q) float32 in the result")

    def validate(self) -> None:
        if any(n < 1 or n > self.polar.n_theta // 2 for n in self.symmetry_orders):
            raise ParameterError(f"radial_statistics.symmetry_orders must lie in 1..{self.polar.n_theta // 2} "
                                 f"(n_theta / 2), got {self.symmetry_orders}", field="symmetry_orders")
        if self.region is not None and (self.region.ndim != 2 or self.region.dtype != np.bool_):
            raise ParameterError("radial_statistics.region: expected a 2D bool (Rx, Ry) array", field="region")


@dataclass(frozen=True, eq=False)
class RadialStatistics(H5Fields):
    """Per-position radial statistics and scan sums of the polar bins.

    Attributes
    ----------
    q : (n_q,) array
        Radial bin centres, px.
    k : (n_q,) array or None
        The same in ``units``.
    annular_mean : (Rx, Ry, n_q) array
        Mean over θ of the valid bins (NaN where a ring is hidden).
    annular_var : (Rx, Ry, n_q) array
        Variance over θ (shot noise removed when counted).
    bin_sum, bin_sumsq, bin_noise : (n_theta, n_q) arrays
        Sums over the region of each bin, its square and its shot variance.
    bin_count : (n_theta, n_q) array
        Positions of the region where the bin was valid.
    mean_noise : (Rx, Ry, n_q) array or None
        Shot variance of the annular mean (counted data).
    symmetry : (Rx, Ry, n_q, n_orders) array or None
        ``|F_n| / F_0`` of the angular Fourier series.
    polar : (Rx, Ry, n_theta, n_q) float32 array or None
    params : RadialStatisticsParams
    """

    q: np.ndarray
    k: np.ndarray | None
    units: str
    annular_mean: np.ndarray
    annular_var: np.ndarray
    bin_sum: np.ndarray
    bin_sumsq: np.ndarray
    bin_noise: np.ndarray
    bin_count: np.ndarray
    mean_noise: np.ndarray | None
    symmetry: np.ndarray | None
    polar: np.ndarray | None
    params: RadialStatisticsParams

    @property
    def axis(self) -> np.ndarray:
        """Radial axis in ``units`` (px without a reciprocal calibration)."""
        return self.q if self.k is None else self.k

    def mean_profile(self, region: np.ndarray | None = None) -> np.ndarray:
        """Mean radial profile ``<<I>_θ>_R`` over a region (default: all positions), (n_q,)."""
        m = self.annular_mean if region is None else self.annular_mean[np.asarray(region, bool)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(m.reshape(-1, m.shape[-1]), axis=0)


@dataclass(frozen=True, eq=False)
class FEMVariance(H5Fields):
    """FEM variance curves over ``k`` (see the module docstring for the definitions)."""

    k: np.ndarray
    units: str
    mean_profile: np.ndarray
    V_mean_of_variance: np.ndarray
    V_variance_of_mean: np.ndarray
    V_ring: np.ndarray


class RadialStatisticsJob(Job):
    """Per-block polar split and the statistics of the module docstring."""

    name = "radial statistics"

    def __init__(self, groups: PolarGroups, params: RadialStatisticsParams, region: np.ndarray) -> None:
        self.g = groups
        self.p = params
        self.region = region

    def init(self, cube: Any) -> dict:
        nt, nq = self.g.reference.area.shape
        shp = cube.scan_shape
        acc = {"mean": np.full(shp + (nq,), np.nan), "var": np.full(shp + (nq,), np.nan),
               "sum": np.zeros((nt, nq)), "sumsq": np.zeros((nt, nq)), "noise": np.zeros((nt, nq)),
               "count": np.zeros((nt, nq))}
        if self.p.counted:
            acc["mean_noise"] = np.full(shp + (nq,), np.nan)
        if self.p.symmetry_orders:
            acc["symmetry"] = np.full(shp + (nq, len(self.p.symmetry_orders)), np.nan, np.float32)
        if self.p.keep_polar:
            acc["polar"] = np.full(shp + (nt, nq), np.nan, np.float32)
        return acc

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> dict:
        nx, ny = block.shape[:2]
        n = nx * ny
        flat = block.reshape(n, *block.shape[2:])
        nt, nq = self.g.reference.area.shape
        nb = nt * nq
        use = np.ascontiguousarray(self.region[rx, ry]).reshape(n)
        mean, var = np.empty((n, nq)), np.empty((n, nq))
        s1, s2, count = np.zeros(nb), np.zeros(nb), np.zeros(nb)
        p = self.p
        need_v = bool(p.symmetry_orders) or p.keep_polar
        v = np.empty((n, nt, nq)) if need_v else None
        noise_bins = np.zeros(nb)
        mean_noise = np.zeros((n, nq))
        for geo, idx in self.g.groups(rx, ry):
            sums = split_block(flat, geo, idx).reshape(idx.size, nb)
            scale = geo.scale()
            m, vv = np.empty((idx.size, nq)), np.empty((idx.size, nq))
            ring_statistics(sums, scale, nq, use[idx], m, vv, s1, s2, count)
            if p.counted:
                # E[Var_θ x] = Var_θ μ + <σ_b²>_θ - Var(x̄): remove the last two
                sq = split_block(flat, geo, idx, squared=True).reshape(idx.size, nb)
                noise = sq * scale**2 * p.gain
                nvalid = geo.valid.sum(axis=0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    per_ring = noise.reshape(idx.size, nt, nq).sum(axis=1) / nvalid
                ptr, rb, rw = geo.ring_weights()
                sub = flat[idx] if idx.size != n else flat
                mn = np.empty((idx.size, nq))
                polar_sums(sub.view(np.uint8) if sub.dtype.kind == "b" else sub, ptr, rb, rw * rw, mn)
                mean_noise[idx] = mn * p.gain
                vv = vv - (per_ring - mean_noise[idx])
                noise_bins += noise[use[idx]].sum(axis=0)
            mean[idx], var[idx] = m, vv
            if need_v:
                v[idx] = np.where(geo.valid, sums.reshape(idx.size, nt, nq) * scale.reshape(nt, nq), np.nan)
        out = {"mean": mean.reshape(nx, ny, nq), "var": var.reshape(nx, ny, nq),
               "sum": s1.reshape(nt, nq), "sumsq": s2.reshape(nt, nq), "noise": noise_bins.reshape(nt, nq),
               "count": count.reshape(nt, nq)}
        if p.counted:
            out["mean_noise"] = mean_noise.reshape(nx, ny, nq)
        if p.symmetry_orders:
            filled = np.where(np.isfinite(v), v, mean[:, None, :])
            F = np.abs(np.fft.rfft(np.nan_to_num(filled), axis=1))
            with np.errstate(invalid="ignore", divide="ignore"):
                sym = F[:, list(p.symmetry_orders), :] / F[:, :1, :]
            out["symmetry"] = np.moveaxis(sym, 1, 2).reshape(nx, ny, nq, -1).astype(np.float32)
        if p.keep_polar:
            out["polar"] = v.reshape(nx, ny, nt, nq).astype(np.float32)
        return out

    def merge(self, acc: dict, part: dict, rx: slice, ry: slice) -> dict:
        for key in ("mean", "var", "mean_noise", "symmetry", "polar"):
            if key in part:
                acc[key][rx, ry] = part[key]
        for key in ("sum", "sumsq", "noise", "count"):
            acc[key] += part[key]
        return acc


def radial_statistics(data: Any, params: RadialStatisticsParams | Mapping | None = None, *, progress: Any = None,
                      cancel: Any = None, workers: int | None = None, scheduler: Any = None,
                      **overrides: Any) -> RadialStatistics:
    """Radial statistics of a whole cube in one pass (py4DSTEM ``calculate_radial_statistics``).

    Parameters
    ----------
    data : DataCube
        Calibrated with ``origin`` or ``origin_map``.
    params : RadialStatisticsParams, optional
    progress, cancel, workers, scheduler
        Options of :func:`fourd_widgets.engine.run_job`.
    **overrides
        Fields of :class:`RadialStatisticsParams`.

    Returns
    -------
    RadialStatistics

    Examples
    --------
    >>> from fourd_widgets.core import Calibration, DataCube
    >>> cube = DataCube(np.ones((2, 3, 24, 24)), Calibration(origin=(11.5, 11.5)))
    >>> st = radial_statistics(cube, polar=PolarParams(q_max=10, n_theta=16), progress=False)
    >>> st.annular_mean.shape, float(np.nanmax(np.abs(st.annular_var)))
    ((2, 3, 10), 0.0)
    """
    p = resolve_params(RadialStatisticsParams, params, overrides)
    cube = as_cube(data)
    region = np.ones(cube.scan_shape, bool) if p.region is None else p.region
    if region.shape != tuple(cube.scan_shape):
        raise ShapeError(f"radial_statistics.region has shape {region.shape}; the scan is {cube.scan_shape}")
    if not region.any():
        raise ParameterError("radial_statistics.region selects no scan position", field="region")
    groups = PolarGroups(p.polar, cube.calibration, cube.scan_shape, cube.detector_shape, "radial statistics")
    acc = run_job(cube, RadialStatisticsJob(groups, p, region), **engine_options(progress, cancel, workers,
                                                                                  scheduler))
    k, units = k_axis(groups.reference.q, cube.calibration)
    return RadialStatistics(groups.reference.q, k, units, acc["mean"], acc["var"], acc["sum"], acc["sumsq"],
                            acc["noise"], acc["count"], acc.get("mean_noise"), acc.get("symmetry"),
                            acc.get("polar"), p)


def fem_variance(stats: RadialStatistics, region: np.ndarray | None = None) -> FEMVariance:
    """The FEM variance V(k), three ways, over the pass's region or a sub-region.

    A sub-region needs the per-bin data of its positions, so ``V_mean_of_variance``
    for a ``region`` other than the pass's needs ``keep_polar=True``. The result
    for the pass's region, and for the last sub-region asked, is computed once
    per ``stats`` and kept (a k-range drag asks for it again and again).
    """
    if region is None:
        got = stats.__dict__.get("_fem_variance")
        if got is None:
            got = _fem_variance(stats, None)
            object.__setattr__(stats, "_fem_variance", got)
        return got
    sel = np.asarray(region, bool)
    last = stats.__dict__.get("_fem_variance_region")
    if last is not None and last[0].shape == sel.shape and np.array_equal(last[0], sel):
        return last[1]
    got = _fem_variance(stats, sel)
    object.__setattr__(stats, "_fem_variance_region", (sel.copy(), got))
    return got


def _fem_variance(stats: RadialStatistics, region: np.ndarray | None) -> FEMVariance:
    counted = stats.params.counted
    nq = stats.q.size
    if region is None:
        n = stats.bin_count
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = stats.bin_sum / n
            var = stats.bin_sumsq / n - mu**2
            if counted:
                var = var - stats.bin_noise / n
            ratio = np.where(n > 1, var / mu**2, np.nan)
        if stats.params.region is None:  # every position: views, no copies
            m = stats.annular_mean.reshape(-1, nq)
            v = stats.annular_var.reshape(-1, nq)
            noise = None if stats.mean_noise is None else stats.mean_noise.reshape(-1, nq)
        else:
            sel = stats.params.region
            m, v = stats.annular_mean[sel], stats.annular_var[sel]
            noise = None if stats.mean_noise is None else stats.mean_noise[sel]
    else:
        sel = np.asarray(region, bool)
        if sel.shape != stats.annular_mean.shape[:2]:
            raise ShapeError(f"region has shape {sel.shape}; the scan is {stats.annular_mean.shape[:2]}")
        if counted:
            raise ParameterError("the shot variance of each bin is summed over the pass's region only; for a "
                                 "counted sub-region run radial_statistics with region=...", field="region")
        if stats.polar is None:
            raise ParameterError("V_mean_of_variance of a sub-region needs the polar cube: run "
                                 "radial_statistics with keep_polar=True", field="keep_polar")
        x = stats.polar[sel].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # bins invalid everywhere stay NaN
            mu = np.nanmean(x, axis=0)
            ratio = np.nanvar(x, axis=0) / mu**2
        m, v, noise = stats.annular_mean[sel], stats.annular_var[sel], None
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rings hidden everywhere stay NaN
        V_mv = np.nanmean(ratio, axis=0)
        mean = np.nanmean(m, axis=0)
        var_mean = np.nanmean((m - mean) ** 2, axis=0)
        if noise is not None:
            var_mean = var_mean - np.nanmean(noise, axis=0)
        V_vm = var_mean / mean**2
        V_ring = np.nanmean(v, axis=0) / mean**2
    return FEMVariance(stats.axis, stats.units, mean, V_mv, V_vm, V_ring)


def k_band(stats: RadialStatistics, k_range: Any) -> np.ndarray:
    """Bool (n_q,) of the radial bins whose centres lie in ``k_range`` (in ``stats.units``).

    Raises ParameterError when the range lies outside the binned radii or when the
    mask hides every ring of it.
    """
    lo, hi = (float(v) for v in k_range)
    if not hi > lo:
        raise ParameterError(f"k range ({lo:g}, {hi:g}): the upper end must exceed the lower", field="k_range")
    ax = stats.axis
    half = 0.5 * (ax[1] - ax[0]) if ax.size > 1 else 0.5
    if lo > ax[-1] + half or hi < ax[0] - half:
        raise ParameterError(f"k range ({lo:g}, {hi:g}) {stats.units} lies outside the detector's radii "
                             f"({ax[0] - half:.4g} to {ax[-1] + half:.4g} {stats.units}); choose a range inside",
                             field="k_range")
    band = (ax >= lo) & (ax <= hi)
    if not band.any():
        band = np.abs(ax - 0.5 * (lo + hi)) == np.abs(ax - 0.5 * (lo + hi)).min()
    if not np.any(stats.bin_count[:, band] > 0):
        raise ParameterError(f"k range ({lo:g}, {hi:g}) {stats.units}: the mask hides every ring in it; move "
                             "the range off the beam stop or shrink the mask", field="k_range")
    return band


def local_fem_map(stats: RadialStatistics, k_ranges: Any) -> np.ndarray:
    """Local FEM map: ``Var_θ I / <I>_θ²`` averaged over the bins of one or several k bands, (Rx, Ry).

    ``k_ranges`` is one ``(lo, hi)`` or a list of them (e.g. the {111} and {220} bands).
    """
    ranges = [k_ranges] if np.ndim(k_ranges) == 1 else list(k_ranges)
    band = np.zeros(stats.q.size, bool)
    for r in ranges:
        band |= k_band(stats, r)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        norm = stats.annular_var[..., band] / stats.annular_mean[..., band] ** 2
        return np.nanmean(norm, axis=-1)


def symmetry_map(stats: RadialStatistics, k_range: Any, order: int) -> np.ndarray:
    """Annular symmetry map ``|F_n| / F_0`` of angular order ``order`` over a k band, (Rx, Ry)."""
    if stats.symmetry is None or order not in stats.params.symmetry_orders:
        raise ParameterError(f"order {order} was not computed; run radial_statistics with "
                             f"symmetry_orders including {order}", field="symmetry_orders")
    band = k_band(stats, k_range)
    j = stats.params.symmetry_orders.index(order)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stats.symmetry[..., band, j], axis=-1)
