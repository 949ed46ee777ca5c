"""Polar (q, θ) transform of diffraction patterns, with the calibrated origin and ellipse.

Every pattern is split into (θ, q) bins by :mod:`fourd_widgets.kernels.polar`
(full pixel splitting, masks honoured, intensity conserved). A bin's value is
the mean intensity per detector pixel in it: the split intensity divided by
the unmasked pixel area in the bin. Bins whose unmasked area is less than
``min_coverage`` of their geometric area are invalid (NaN).

Radii are in pixels of the undistorted detector frame (the ellipse is
normalised to ``a b = 1``, so they equal detector pixels on average); results
also carry ``k`` in the calibration's reciprocal units when it is set.

Per-position origins (``calibration.origin_map``, descan) are rounded to
multiples of ``origin_step`` pixels. The splitting depends only on a pixel's
offset from the origin, so one shift-invariant table is built per distinct
sub-pixel part of the origin and each whole-pixel position is cut from it
(a copy of rows, as fast as splitting one pattern; building a table costs
about 50 splits, see bench/RESULTS_polar.md).

Examples
--------
>>> import numpy as np
>>> from fourd_widgets.core import Calibration, DataCube
>>> cube = DataCube(np.ones((2, 2, 32, 32)), Calibration(origin=(15.5, 15.5)))
>>> pc = polar_transform(cube, q_max=15, n_theta=36, progress=False)
>>> pc.data.shape, bool(np.allclose(pc.data[0, 0][pc.valid], 1.0))
((2, 2, 36, 15), True)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import MissingCalibrationError, ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.job import Job
from ..engine.run import run_job
from ..kernels.polar import bin_totals, build_polar_table, polar_sums, ring_table, shift_table
from .polar_results import H5Fields

__all__ = ["PolarParams", "PolarGeometry", "PolarCube", "polar_geometry", "polar_transform",
           "polar_pattern", "resolve_params", "engine_options", "distortion", "as_cube", "origin_key"]


@dataclass(frozen=True, eq=False)
class PolarParams(Params):
    """Record of the polar binning: radial and angular bins, mask, ellipse use."""

    step = "polar"
    q_min: float = param(0.0, units="px", ge=0, doc="lower edge of the first radial bin")
    q_max: float | None = param(None, units="px", gt=0,
                                doc="upper edge of the last radial bin; None: the largest circle inside the detector")
    q_step: float = param(1.0, units="px", gt=0, doc="radial bin width")
    n_theta: int = param(180, ge=4, le=3600, doc="number of angular bins over 360 degrees")
    mask: np.ndarray | None = param(None, doc="(Qx, Qy) bool, True where the detector is blocked "
                                    "(beam stop, hot pixels)")
    use_ellipse: bool = param(True, doc="undo calibration.ellipse before binning")
    origin_step: float = param(0.1, units="px", gt=0, le=1,
                               doc="per-position origins are rounded to multiples of this")
    min_coverage: float = param(0.5, ge=0, le=1,
                                doc="bins with less unmasked area than this fraction of their own are invalid")

    def validate(self) -> None:
        if self.q_max is not None and self.q_max <= self.q_min + self.q_step:
            raise ParameterError(f"polar: q_max ({self.q_max}) must exceed q_min + q_step "
                                 f"({self.q_min + self.q_step})", field="q_max")
        if self.mask is not None and (self.mask.ndim != 2 or self.mask.dtype != np.bool_):
            raise ParameterError(f"polar.mask: expected a 2D bool array, got {self.mask.dtype} "
                                 f"of shape {self.mask.shape}", field="mask")


def resolve_params(cls: type[Params], params: Any, overrides: Mapping[str, Any]) -> Any:
    """The record to run: ``params`` (a record or its dict) with ``overrides`` applied."""
    if params is None:
        return cls(**overrides)
    if isinstance(params, Mapping):
        params = cls.from_dict(params)
    if not isinstance(params, cls):
        raise ParameterError(f"expected a {cls.__name__} record, got {type(params).__name__}", field="params")
    return params.replace(**overrides) if overrides else params


def engine_options(progress: Any, cancel: Any, workers: Any, scheduler: Any) -> dict[str, Any]:
    return {"progress": progress, "cancel": cancel, "workers": workers, "scheduler": scheduler}


def as_cube(data: Any) -> DataCube:
    if isinstance(data, DataCube):
        return data
    arr = np.asarray(data)
    if arr.ndim != 4:
        raise ShapeError(f"expected a DataCube or a 4D (Rx, Ry, Qx, Qy) array, got shape {arr.shape}")
    return DataCube(arr)


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
_CACHE_SIZE = 64


def _q_range(params: PolarParams, shape: tuple[int, int], origin: tuple[float, float], D: np.ndarray) -> tuple[float, int]:
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


def polar_geometry(params: PolarParams, shape: tuple[int, int], origin: Any,
                   D: np.ndarray | None = None) -> PolarGeometry:
    """The (cached) table of one origin and detector shape."""
    D = np.eye(2) if D is None else np.asarray(D, float)
    origin = (float(origin[0]), float(origin[1]))
    mask = params.mask
    if mask is not None and mask.shape != tuple(shape):
        raise ShapeError(f"polar.mask has shape {mask.shape} but the detector is {tuple(shape)}")
    key = (tuple(shape), origin, tuple(np.round(D, 12).ravel()), params.q_min, params.q_max, params.q_step,
           params.n_theta, params.min_coverage, None if mask is None else hash(mask.tobytes()))
    got = _CACHE.get(key)
    if got is not None:
        _CACHE.move_to_end(key)
        return got
    q_max, n_q = _q_range(params, shape, origin, D)
    m = np.zeros(shape, np.bool_) if mask is None else np.ascontiguousarray(mask, np.bool_)
    table = build_polar_table(shape[0], shape[1], origin[0], origin[1], np.linalg.inv(D),
                              params.q_min, params.q_step, n_q, params.n_theta, m)
    return _remember(key, _finish(table, params, n_q, D, origin))


def _remember(key: tuple, geo: "PolarGeometry") -> "PolarGeometry":
    _CACHE[key] = geo
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return geo


def _finish(table: tuple, params: PolarParams, n_q: int, D: np.ndarray, origin: tuple[float, float]) -> PolarGeometry:
    indptr, bins, weights = table
    area = bin_totals(bins, weights, n_q * params.n_theta).reshape(params.n_theta, n_q)
    edges = params.q_min + params.q_step * np.arange(n_q + 1)
    nominal = 0.5 * (edges[1:] ** 2 - edges[:-1] ** 2) * (2 * math.pi / params.n_theta) * abs(np.linalg.det(D))
    valid = (area >= params.min_coverage * nominal[None, :]) & (area > 0)
    return PolarGeometry(indptr, bins, weights, area, valid, 0.5 * (edges[1:] + edges[:-1]),
                         (np.arange(params.n_theta) + 0.5) * 2 * math.pi / params.n_theta, origin)


def shifted_geometry(params: PolarParams, shape: tuple[int, int], origin: Any, D: np.ndarray, n_q: int) -> PolarGeometry:
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
    got = _CACHE.get(key)
    if got is not None:
        _CACHE.move_to_end(key)
        return got
    ix, iy = math.floor(origin[0]), math.floor(origin[1])
    fx, fy = round(origin[0] - ix, 9), round(origin[1] - iy, 9)
    smax = float(np.linalg.svd(D, compute_uv=False)[0])
    c = int(math.ceil((params.q_min + n_q * params.q_step) * smax)) + 2
    vkey = ("virtual", fx, fy, dkey, params.q_min, params.q_step, n_q, params.n_theta)
    virtual = _VIRTUAL.get(vkey)
    if virtual is None:
        v = 2 * c + 1
        virtual = build_polar_table(v, v, c + fx, c + fy, np.linalg.inv(D), params.q_min, params.q_step, n_q,
                                    params.n_theta, np.zeros((v, v), np.bool_))
        _VIRTUAL[vkey] = virtual
        while len(_VIRTUAL) > _VIRTUAL_SIZE:
            _VIRTUAL.popitem(last=False)
    m = np.zeros(shape, np.bool_) if mask is None else np.ascontiguousarray(mask, np.bool_)
    table = shift_table(*virtual, 2 * c + 1, c, c, shape[0], shape[1], ix, iy, m)
    return _remember(key, _finish(table, params, n_q, D, origin))


_VIRTUAL: "OrderedDict[tuple, tuple]" = OrderedDict()
#: Shift-invariant tables kept: all sub-pixel parts at the default origin_step of 0.1 px.
_VIRTUAL_SIZE = 128


def _origins(cal: Calibration, scan_shape: tuple[int, int], step: str) -> np.ndarray | tuple[float, float]:
    if cal.origin_map is not None:
        if cal.origin_map.shape[:2] != tuple(scan_shape):
            raise ShapeError(f"origin_map has scan shape {cal.origin_map.shape[:2]} but the cube's is "
                             f"{tuple(scan_shape)}")
        return cal.origin_map
    if cal.origin is None:
        raise MissingCalibrationError(
            "origin", step, "Measure it (fw.analysis.measure_origin) or set cube.calibration = "
            "cube.calibration.replace(origin=(qx, qy)); the polar transform is centred on it.")
    return cal.origin


class PolarGroups:
    """Tables for the positions of a block, grouped by their (rounded) origin."""

    def __init__(self, params: PolarParams, calibration: Calibration, scan_shape: tuple[int, int],
                 detector_shape: tuple[int, int], step: str) -> None:
        self.params = params
        self.shape = tuple(detector_shape)
        self.D = distortion(calibration, params.use_ellipse)
        self.origins = _origins(calibration, scan_shape, step)
        # the reference geometry fixes the bins (n_q) for every position
        ref = self.origins if isinstance(self.origins, tuple) else self.origins.reshape(-1, 2).mean(axis=0)
        self.reference = polar_geometry(params, self.shape, origin_key(ref, params.origin_step), self.D)
        if params.q_max is None and not isinstance(self.origins, tuple):
            self.params = params.replace(q_max=float(self.reference.q[-1] + 0.5 * params.q_step))

    def groups(self, rx: slice, ry: slice) -> list[tuple[PolarGeometry, np.ndarray]]:
        """(geometry, flat indices into the block) pairs covering the block."""
        if isinstance(self.origins, tuple):
            n = (rx.stop - rx.start) * (ry.stop - ry.start)
            return [(self.reference, np.arange(n))]
        o = self.origins[rx, ry].reshape(-1, 2)
        keys = [origin_key(v, self.params.origin_step) for v in o]
        out: dict[tuple[float, float], list[int]] = {}
        for i, k in enumerate(keys):
            out.setdefault(k, []).append(i)
        n_q = self.reference.q.size
        return [(shifted_geometry(self.params, self.shape, k, self.D, n_q), np.asarray(v)) for k, v in out.items()]


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


@dataclass(frozen=True, eq=False)
class PolarCube(H5Fields):
    """Polar-transformed patterns.

    Attributes
    ----------
    data : (Rx, Ry, n_theta, n_q) float32 array
        Mean intensity per pixel of each bin; NaN where invalid.
    q : (n_q,) array
        Radial bin centres, px.
    theta : (n_theta,) array
        Angular bin centres, rad.
    valid : (n_theta, n_q) bool array
        Valid bins of the reference origin.
    k : (n_q,) array or None
        Radial bin centres in ``units`` (None without a reciprocal calibration).
    units : str
    params : PolarParams
    """

    data: np.ndarray
    q: np.ndarray
    theta: np.ndarray
    valid: np.ndarray
    k: np.ndarray | None
    units: str
    params: PolarParams


def k_axis(q: np.ndarray, cal: Calibration) -> tuple[np.ndarray | None, str]:
    if cal.reciprocal_step is None:
        return None, "px"
    return q * cal.reciprocal_step, cal.reciprocal_units


class PolarJob(Job):
    """The polar transform of every pattern, kept as a (Rx, Ry, n_theta, n_q) float32 array."""

    name = "polar transform"

    def __init__(self, groups: PolarGroups) -> None:
        self.g = groups

    def init(self, cube: Any) -> np.ndarray:
        return np.full(cube.scan_shape + self.g.reference.area.shape, np.nan, np.float32)

    def process(self, block: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        nx, ny = block.shape[:2]
        flat = block.reshape(nx * ny, *block.shape[2:])
        out = np.empty((nx * ny,) + self.g.reference.area.shape, np.float32)
        for geo, idx in self.g.groups(rx, ry):
            out[idx] = bin_means(split_block(flat, geo, idx), geo)
        return out.reshape(nx, ny, *out.shape[1:])

    def merge(self, acc: np.ndarray, partial: np.ndarray, rx: slice, ry: slice) -> np.ndarray:
        acc[rx, ry] = partial
        return acc


def polar_transform(data: Any, params: PolarParams | Mapping | None = None, *, progress: Any = None,
                    cancel: Any = None, workers: int | None = None, scheduler: Any = None,
                    **overrides: Any) -> PolarCube:
    """Polar (θ, q) transform of every pattern of a cube, through the engine.

    Parameters
    ----------
    data : DataCube
        Calibrated with ``origin`` or ``origin_map`` (and ``ellipse`` if any).
    params : PolarParams, optional
    progress, cancel, workers, scheduler
        Options of :func:`fourd_widgets.engine.run_job`.
    **overrides
        Fields of :class:`PolarParams`.

    Returns
    -------
    PolarCube
    """
    p = resolve_params(PolarParams, params, overrides)
    cube = as_cube(data)
    groups = PolarGroups(p, cube.calibration, cube.scan_shape, cube.detector_shape, "the polar transform")
    out = run_job(cube, PolarJob(groups), **engine_options(progress, cancel, workers, scheduler))
    k, units = k_axis(groups.reference.q, cube.calibration)
    return PolarCube(out, groups.reference.q, groups.reference.theta, groups.reference.valid, k, units, groups.params)


def polar_pattern(image: Any, origin: Any, params: PolarParams | Mapping | None = None, *,
                  ellipse: Any = None, **overrides: Any) -> tuple[np.ndarray, PolarGeometry]:
    """Polar transform of one pattern: ``(n_theta, n_q)`` bin means (NaN where invalid) and the geometry.

    >>> img = np.ones((16, 16))
    >>> v, geo = polar_pattern(img, (7.5, 7.5), q_max=7, n_theta=8)
    >>> v.shape, bool(np.allclose(v[geo.valid], 1))
    ((8, 7), True)
    """
    p = resolve_params(PolarParams, params, overrides)
    img = np.asarray(image)
    if img.ndim != 2:
        raise ShapeError(f"polar_pattern needs one 2D pattern, got shape {img.shape}")
    D = distortion(Calibration(ellipse=ellipse), True) if ellipse is not None else np.eye(2)
    geo = polar_geometry(p, img.shape, origin, D)
    return bin_means(split_block(img[None], geo)[0], geo), geo
