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
about 50 splits, see bench/RESULTS.md).

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

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..core.calibration import Calibration
from ..core.datacube import DataCube
from ..core.errors import MissingCalibrationError, ParameterError, ShapeError
from ..core.params import Params, param
from ..engine.job import Job
from ..engine.run import run_job
from .polar_results import H5Fields
from .polar_tables import (PolarGeometry, bin_means, distortion, origin_key, polar_geometry, shifted_geometry,
                           split_block)

__all__ = ["PolarParams", "PolarGeometry", "PolarCube", "PolarGroups", "PolarJob", "polar_geometry",
           "polar_transform", "polar_pattern", "resolve_params", "engine_options", "distortion", "as_cube",
           "origin_key", "split_block", "bin_means", "k_axis"]


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
        # the reference geometry fixes the bins (n_q) for every position; one calibrated origin
        # is used as it is (origin_step rounds per-position origins only)
        if isinstance(self.origins, tuple):
            ref = self.origins
        else:
            ref = origin_key(self.origins.reshape(-1, 2).mean(axis=0), params.origin_step)
        self.reference = polar_geometry(params, self.shape, ref, self.D)
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
