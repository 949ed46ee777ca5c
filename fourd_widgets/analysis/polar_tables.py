"""Pixel -> (θ, q) bin tables of the polar transform: building, caching, cutting for descan.

The numerics are in :mod:`fourd_widgets.kernels.polar`; this module chooses
the bins from a :class:`~fourd_widgets.analysis.polar.PolarParams` record (any
object with its fields), caches the tables (they are built once per origin,
ellipse and bins) and turns bin sums into bin means. Per-position origins are
served from shift-invariant tables of their sub-pixel part
(:func:`shifted_geometry`).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.calibration import Calibration
from ..core.errors import ParameterError, ShapeError
from ..kernels.polar import bin_totals, build_polar_table, polar_sums, ring_table, shift_table

__all__ = ["PolarGeometry", "polar_geometry", "shifted_geometry", "split_block", "bin_means", "distortion",
           "origin_key", "clear_caches"]


def distortion(calibration: Calibration, use_ellipse: bool) -> np.ndarray:
    """The ellipse's distortion matrix ``R(θ) diag(a, b) R(θ)^T`` (identity without one)."""
    if not use_ellipse or calibration.ellipse is None:
        return np.eye(2)
    a, b, th = calibration.ellipse
    t = math.radians(th)
    R = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return R @ np.diag([a, b]) @ R.T


def origin_key(origin: Any, step: float) -> tuple[float, float]:
    return (round(float(origin[0]) / step) * step, round(float(origin[1]) / step) * step)


@dataclass(frozen=True, eq=False)
class PolarGeometry:
    """The pixel -> bin table of one origin, with the bins' areas and validity.

    Attributes
    ----------
    indptr, bins, weights : arrays
        CSR table by pixel (see :func:`fourd_widgets.kernels.polar.build_polar_table`).
    area : (n_theta, n_q) array
        Unmasked detector area in each bin, px².
    valid : (n_theta, n_q) bool array
        Bins with enough coverage.
    q : (n_q,) array
        Bin centres, px.
    theta : (n_theta,) array
        Bin centres, rad.
    """

    indptr: np.ndarray
    bins: np.ndarray
    weights: np.ndarray
    area: np.ndarray
    valid: np.ndarray
    q: np.ndarray
    theta: np.ndarray
    origin: tuple[float, float]

    @property
    def n_bins(self) -> int:
        return self.area.size

    def scale(self) -> np.ndarray:
        """Flat ``1 / area`` on valid bins, 0 elsewhere."""
        with np.errstate(divide="ignore"):
            return np.where(self.valid, 1.0 / self.area, 0.0).ravel()

    def ring_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-pixel weights of each ring's angular mean (for its Poisson variance)."""
        got = self.__dict__.get("_rings")
        if got is None:
            nvalid = self.valid.sum(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.where(self.valid, 1.0 / (self.area * np.maximum(nvalid, 1)[None, :]), 0.0)
            got = ring_table(self.indptr, self.bins, self.weights, s.ravel(), self.q.size)
            object.__setattr__(self, "_rings", got)
        return got


_CACHE: "OrderedDict[tuple, PolarGeometry]" = OrderedDict()
#: Guards both caches: engine threads look tables up concurrently.
_LOCK = threading.Lock()
_CACHE_SIZE = 64


def _q_range(params: Any, shape: tuple[int, int], origin: tuple[float, float], D: np.ndarray) -> tuple[float, int]:
    inscribed = min(origin[0] + 0.5, shape[0] - 0.5 - origin[0], origin[1] + 0.5, shape[1] - 0.5 - origin[1])
    smax = float(np.linalg.svd(D, compute_uv=False)[0])
    corners = np.array([[-0.5, -0.5], [-0.5, shape[1] - 0.5], [shape[0] - 0.5, -0.5],
                        [shape[0] - 0.5, shape[1] - 0.5]]) - np.asarray(origin)
    farthest = float(np.linalg.norm(corners @ np.linalg.inv(D).T, axis=1).max())
    q_max = params.q_max if params.q_max is not None else inscribed / smax
    if q_max > farthest + params.q_step or params.q_min >= farthest:
        raise ParameterError(
            f"polar: the radial range {params.q_min:g}-{q_max:g} px lies outside the detector, whose farthest "
            f"corner is {farthest:.1f} px from the origin; lower q_max (to {farthest:.1f} px at most)", field="q_max")
    if q_max <= params.q_min:
        raise ParameterError(f"polar: q_max ({q_max:g} px) must exceed q_min ({params.q_min:g} px); the origin "
                             "lies near the detector edge, so set q_max", field="q_max")
    return q_max, max(1, int(round((q_max - params.q_min) / params.q_step)))


def polar_geometry(params: Any, shape: tuple[int, int], origin: Any,
                   D: np.ndarray | None = None) -> PolarGeometry:
    """The (cached) table of one origin and detector shape."""
    D = np.eye(2) if D is None else np.asarray(D, float)
    origin = (float(origin[0]), float(origin[1]))
    mask = params.mask
    if mask is not None and mask.shape != tuple(shape):
        raise ShapeError(f"polar.mask has shape {mask.shape} but the detector is {tuple(shape)}")
    key = (tuple(shape), origin, tuple(np.round(D, 12).ravel()), params.q_min, params.q_max, params.q_step,
           params.n_theta, params.min_coverage, None if mask is None else hash(mask.tobytes()))
    got = _cached(key)
    if got is not None:
        return got
    q_max, n_q = _q_range(params, shape, origin, D)
    m = np.zeros(shape, np.bool_) if mask is None else np.ascontiguousarray(mask, np.bool_)
    table = build_polar_table(shape[0], shape[1], origin[0], origin[1], np.linalg.inv(D),
                              params.q_min, params.q_step, n_q, params.n_theta, m)
    return _remember(key, _finish(table, params, n_q, D, origin))


def _cached(key: tuple) -> "PolarGeometry | None":
    with _LOCK:
        got = _CACHE.get(key)
        if got is not None:
            _CACHE.move_to_end(key)
        return got


def _remember(key: tuple, geo: "PolarGeometry") -> "PolarGeometry":
    with _LOCK:
        _CACHE[key] = geo
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return geo


def _finish(table: tuple, params: Any, n_q: int, D: np.ndarray, origin: tuple[float, float]) -> PolarGeometry:
    indptr, bins, weights = table
    area = bin_totals(bins, weights, n_q * params.n_theta).reshape(params.n_theta, n_q)
    edges = params.q_min + params.q_step * np.arange(n_q + 1)
    nominal = 0.5 * (edges[1:] ** 2 - edges[:-1] ** 2) * (2 * math.pi / params.n_theta) * abs(np.linalg.det(D))
    valid = (area >= params.min_coverage * nominal[None, :]) & (area > 0)
    return PolarGeometry(indptr, bins, weights, area, valid, 0.5 * (edges[1:] + edges[:-1]),
                         (np.arange(params.n_theta) + 0.5) * 2 * math.pi / params.n_theta, origin)


def shifted_geometry(params: Any, shape: tuple[int, int], origin: Any, D: np.ndarray, n_q: int) -> PolarGeometry:
    """The geometry of one origin, cut from a shift-invariant table of its sub-pixel part (cached).

    Used for per-position origins (descan): one table is built per distinct
    fractional origin (rounded to ``origin_step``) on a virtual detector just
    larger than the q range, and each whole-pixel position of it is a copy of
    table rows (as fast as splitting one pattern), not a new build.
    """
    origin = (float(origin[0]), float(origin[1]))
    mask = params.mask
    mkey = None if mask is None else hash(mask.tobytes())
    dkey = tuple(np.round(D, 12).ravel())
    key = ("cut", tuple(shape), origin, dkey, params.q_min, params.q_step, n_q, params.n_theta,
           params.min_coverage, mkey)
    got = _cached(key)
    if got is not None:
        return got
    ix, iy = math.floor(origin[0]), math.floor(origin[1])
    fx, fy = round(origin[0] - ix, 9), round(origin[1] - iy, 9)
    smax = float(np.linalg.svd(D, compute_uv=False)[0])
    c = int(math.ceil((params.q_min + n_q * params.q_step) * smax)) + 2
    vkey = ("virtual", fx, fy, dkey, params.q_min, params.q_step, n_q, params.n_theta)
    with _LOCK:
        virtual = _VIRTUAL.get(vkey)
    if virtual is None:
        v = 2 * c + 1
        virtual = build_polar_table(v, v, c + fx, c + fy, np.linalg.inv(D), params.q_min, params.q_step, n_q,
                                    params.n_theta, np.zeros((v, v), np.bool_))
        with _LOCK:
            _VIRTUAL[vkey] = virtual
            while len(_VIRTUAL) > _VIRTUAL_SIZE:
                _VIRTUAL.popitem(last=False)
    m = np.zeros(shape, np.bool_) if mask is None else np.ascontiguousarray(mask, np.bool_)
    table = shift_table(*virtual, 2 * c + 1, c, c, shape[0], shape[1], ix, iy, m)
    return _remember(key, _finish(table, params, n_q, D, origin))


_VIRTUAL: "OrderedDict[tuple, tuple]" = OrderedDict()
#: Shift-invariant tables kept: all sub-pixel parts at the default origin_step of 0.1 px.
_VIRTUAL_SIZE = 128


def split_block(block: np.ndarray, geo: PolarGeometry, idx: np.ndarray | None = None,
                squared: bool = False) -> np.ndarray:
    """Polar bin sums (n, n_theta, n_q) of the patterns ``block`` (n, Qx, Qy) (or a subset)."""
    if block.dtype.kind == "b":
        block = block.view(np.uint8)
    if idx is not None and idx.size != block.shape[0]:
        block = block[idx]
    out = np.empty((block.shape[0], geo.n_bins))
    polar_sums(block, geo.indptr, geo.bins, geo.weights * geo.weights if squared else geo.weights, out)
    return out.reshape(block.shape[0], *geo.area.shape)


def bin_means(sums: np.ndarray, geo: PolarGeometry) -> np.ndarray:
    """Mean intensity per pixel in each bin; NaN on invalid bins."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(geo.valid, sums / geo.area, np.nan)




def clear_caches() -> None:
    """Forget every cached table (benchmarks time cold builds with it)."""
    with _LOCK:
        _CACHE.clear()
        _VIRTUAL.clear()
